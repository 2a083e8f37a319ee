"""Import an Open WebUI export file through the import page: preview, apply, and the functions are listed."""

from __future__ import annotations

import json
import time

import pytest
from playwright.sync_api import expect

from tests import factories
from tests.browser.support import shot


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
