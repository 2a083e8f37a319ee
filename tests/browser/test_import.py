"""Import an Open WebUI export file through the import page: preview, apply, and the functions are listed."""

from __future__ import annotations

import json
import time

import pytest
from playwright.sync_api import expect

from tests import factories
from tests.browser.support import LAPTOP, PHONE, assert_fits_width, shot


def function_model(id: str, name: str, type: str, content: str, description: str) -> dict:
    """One FunctionModel as Open WebUI's "Export" button writes it."""
    now = int(time.time())
    return {
        "id": id,
        "user_id": "0b2c3d4e-owui-user",
        "name": name,
        "type": type,
        "content": content,
        "meta": {"description": description, "manifest": {}},
        "is_active": True,
        "is_global": False,
        "updated_at": now,
        "created_at": now,
    }


@pytest.mark.browser
def test_an_open_webui_export_file_is_previewed_then_imported(admin_page, live_server, tmp_path):
    live_server.create_function("imported_action", factories.ACTION, name="Old Action Name")
    export = tmp_path / "functions-export-1718000000000.json"
    export.write_text(
        json.dumps(
            [
                function_model(
                    "imported_filter", "Imported Filter", "filter", factories.FILTER, "From a file."
                ),
                function_model("imported_action", "Imported Action", "action", factories.ACTION, "Replaced."),
                function_model("broken_import", "Broken Import", "filter", factories.SYNTAX_ERROR, "Fails."),
            ],
            indent=2,
        )
    )
    page = admin_page
    page.goto("/admin/functions")
    page.get_by_role("link", name="Import", exact=True).click()
    expect(page.get_by_role("heading", name="Import functions")).to_be_visible()
    page.get_by_label("Export file (.json)").set_input_files(export)
    page.get_by_role("button", name="Preview").click()

    expect(page.get_by_role("heading", name="Import preview")).to_be_visible()
    expect(page.get_by_test_id("import-summary")).to_contain_text(export.name)
    items = page.get_by_test_id("import-item")
    expect(items).to_have_count(3)
    expect(items.nth(0)).to_have_attribute("data-action", "create")
    expect(items.nth(1)).to_have_attribute("data-action", "update")
    expect(items.nth(1)).to_contain_text("Old Action Name")
    expect(items.nth(2)).to_have_attribute("data-action", "create")
    expect(items.nth(2)).to_contain_text("Its code does not load")
    expect(page.get_by_label("Import Broken Import")).not_to_be_checked()  # known to fail: not ticked
    shot(page, "import-preview")
    # Nothing has changed yet.
    assert live_server.api("GET", "/api/v1/functions/id/imported_filter").status_code == 404

    page.get_by_label("Import Broken Import").check()  # the admin wants to see it fail anyway
    page.get_by_test_id("import-apply").click()
    results = page.get_by_test_id("import-result")
    expect(results).to_have_count(3)
    expect(results.nth(0)).to_have_attribute("data-status", "created")
    expect(results.nth(1)).to_have_attribute("data-status", "updated")
    expect(results.nth(2)).to_have_attribute("data-status", "failed")
    expect(results.nth(2)).to_contain_text("SyntaxError")
    expect(page.locator(".flash")).to_contain_text("Imported 2 functions; 1 failed.")
    shot(page, "import-results")

    page.get_by_role("link", name="Back to functions").click()
    page.get_by_label("Search").fill("imported")
    page.get_by_role("button", name="Apply").click()
    rows = page.get_by_test_id("function-row")
    expect(rows).to_have_count(2)
    expect(page.locator('tr[data-function-id="imported_filter"]')).to_contain_text("Imported Filter")
    expect(page.locator('tr[data-function-id="imported_action"]')).to_contain_text("Imported Action")
    expect(page.locator('tr[data-function-id="broken_import"]')).to_have_count(0)

    imported = live_server.api_json("GET", "/api/v1/functions/id/imported_filter")
    assert imported["content"] == factories.FILTER
    assert imported["type"] == "filter"
    assert imported["is_active"] is False  # new functions start switched off
    assert live_server.api_json("GET", "/api/v1/functions/id/imported_action")["name"] == "Imported Action"


@pytest.mark.browser
def test_the_preview_says_what_each_function_would_change_and_needs_a_choice(
    admin_page, live_server, tmp_path
):
    live_server.create_function("same_here", factories.FILTER, name="Same Here")
    live_server.create_function("code_changes", factories.FILTER, name="Code Changes")
    stored = {item["id"]: item for item in live_server.api_json("GET", "/api/v1/functions/export")}
    changed_code = dict(stored["code_changes"], content=factories.FILTER + "\n# changed\n")
    export = tmp_path / "mixed.json"
    export.write_text(
        json.dumps(
            [
                # Without settings to restore, an identical function is offered unticked.
                {
                    key: value
                    for key, value in stored["same_here"].items()
                    if key not in ("is_active", "is_global")
                },
                changed_code,
                function_model("all_new", "All New", "action", factories.ACTION, "New."),
                {"id": "bad id!", "name": "Bad", "content": factories.ACTION},
            ]
        )
    )
    page = admin_page
    page.goto("/admin/functions/import")
    page.get_by_label("Export file (.json)").set_input_files(export)
    page.get_by_role("button", name="Preview").click()
    items = page.get_by_test_id("import-item")
    expect(items).to_have_count(4)
    changes = [items.nth(i).get_by_test_id("import-change").all_inner_texts() for i in range(4)]
    assert changes == [["unchanged"], ["changed code"], ["new"], ["invalid"]]
    boxes = page.locator("input[data-import-choice]")
    expect(boxes).to_have_count(3)
    assert [boxes.nth(i).is_checked() for i in range(3)] == [False, True, True]

    apply = page.get_by_test_id("import-apply")
    select_all = page.get_by_test_id("import-select-all")
    select_all.check()
    assert [boxes.nth(i).is_checked() for i in range(3)] == [True, True, True]
    expect(apply).to_be_enabled()
    select_all.uncheck()
    expect(apply).to_be_disabled()
    boxes.nth(2).check()
    expect(apply).to_be_enabled()
    shot(page, "import-preview-changes")

    # On a phone each function is one compact row, not a card of ~380 px.
    page.set_viewport_size(PHONE)
    heights = [items.nth(i).bounding_box()["height"] for i in range(4)]
    assert max(heights) <= 100, heights
    assert_fits_width(page)
    shot(page, "import-preview-phone")
    page.set_viewport_size(LAPTOP)

    before = stored["same_here"]["updated_at"]
    apply.click()
    expect(page.get_by_test_id("import-result")).to_have_count(4)
    assert live_server.api_json("GET", "/api/v1/functions/id/same_here")["updated_at"] == before
