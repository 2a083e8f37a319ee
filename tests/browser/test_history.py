"""A function's history in the browser: open an old version, compare two, restore one after confirming, all by
keyboard; the pages fit a phone."""

from __future__ import annotations

import re

import pytest
from playwright.sync_api import Page, expect

from tests import factories
from tests.browser.support import PHONE, assert_fits_width, shot

EDITED = factories.FILTER.replace('prefix: str = Field(default=">> "', 'prefix: str = Field(default="-> "')

# The focused element draws a visible ring (the console's :focus-visible box-shadow).
FOCUS_RING = "() => getComputedStyle(document.activeElement).boxShadow"


def _function_with_three_versions(live_server, function_id: str) -> list[str]:
    """Create a function and save it twice; its version ids, oldest first."""
    first = live_server.create_function(function_id, factories.FILTER, name="History Filter")["version_id"]
    path = f"/api/v1/functions/id/{function_id}/update"
    body = {"id": function_id, "name": "History Filter", "content": EDITED, "meta": {}}
    second = live_server.api_json("POST", path, json={**body, "commit_message": "Arrow prefix"})["version_id"]
    renamed = {**body, "name": "Arrow Filter", "commit_message": "A better name"}
    third = live_server.api_json("POST", path, json=renamed)["version_id"]
    return [first, second, third]


def _activate_with_keyboard(page: Page, locator) -> None:
    """Focus a link or button as Tab would, check its focus is visible, and press Enter on it."""
    page.wait_for_load_state("load")  # the focus ring is read from the stylesheet, which may still be loading
    locator.focus()
    expect(locator).to_be_focused()
    page.keyboard.press("Shift+Tab")
    page.keyboard.press("Tab")  # arrive by keyboard, so :focus-visible applies
    expect(locator).to_be_focused()
    assert page.evaluate(FOCUS_RING) != "none", "the focused control shows no focus ring"
    page.keyboard.press("Enter")


def _tab_to(page: Page, test_id: str, limit: int = 60) -> None:
    """Press Tab until the control with this test id has the focus (it must be reachable by keyboard)."""
    for _ in range(limit):
        if page.evaluate("() => document.activeElement && document.activeElement.dataset.testid") == test_id:
            return
        page.keyboard.press("Tab")
    pytest.fail(f"{test_id} is not reachable with Tab")


@pytest.mark.browser
def test_open_compare_and_restore_a_version_with_the_keyboard(admin_page, live_server):
    page = admin_page
    first, second, third = _function_with_three_versions(live_server, "history_filter")

    page.goto("/admin/functions/edit?id=history_filter")
    _activate_with_keyboard(page, page.get_by_test_id("history-link"))
    expect(page).to_have_url(re.compile(r"/admin/functions/history\?id=history_filter$"))
    rows = page.get_by_test_id("version-row")
    expect(rows).to_have_count(3)
    expect(rows.nth(0)).to_contain_text("current")
    expect(rows.nth(0)).to_contain_text("A better name")
    expect(rows.nth(1).get_by_test_id("change-size")).to_contain_text("+1")
    expect(rows.nth(1).get_by_test_id("change-size")).to_contain_text("−1")
    shot(page, "history-list")

    # Open the first version: read-only, highlighted with the source view's colours.
    _activate_with_keyboard(page, rows.nth(2).get_by_test_id("open-version"))
    expect(page).to_have_url(re.compile(rf"version={first}$"))
    code = page.get_by_test_id("version-code")
    expect(code).to_contain_text('default=">> "')
    keyword = code.locator(".k").first
    expect(keyword).to_have_text("class")
    # Colours come from the stylesheet: a navigation's URL and DOM can be there before it has applied.
    page.wait_for_load_state("load")
    plain = code.locator("td.code pre").evaluate("el => getComputedStyle(el).color")
    assert keyword.evaluate("el => getComputedStyle(el).color") != plain
    expect(page.locator("textarea, [contenteditable=true]")).to_have_count(0)

    # Compare the current version with the previous one (the default): the rename and the code's change.
    page.go_back()
    _activate_with_keyboard(page, page.get_by_test_id("compare-latest"))
    expect(page).to_have_url(re.compile(rf"from={second}&to={third}$"))
    expect(page.locator('[data-testid="meta-change"][data-path="name"]')).to_contain_text("Arrow Filter")
    expect(page.get_by_test_id("code-unchanged")).to_be_visible()

    # Any two, through the picker (a plain form): the first version against the current one.
    page.get_by_label("From").select_option(first)
    _activate_with_keyboard(page, page.get_by_role("button", name="Compare", exact=True))
    expect(page).to_have_url(re.compile(rf"from={first}&to={third}$"))
    removed = page.locator('[data-testid="diff-line"][data-kind="removed"]')
    added = page.locator('[data-testid="diff-line"][data-kind="added"]')
    expect(removed).to_have_count(1)
    expect(added).to_have_count(1)
    expect(removed.locator(".diff-marker")).to_have_text("−removed")
    expect(added.locator(".diff-marker")).to_have_text("+added")
    expect(removed).to_contain_text('">> "')
    expect(added).to_contain_text('"-> "')
    same = page.locator('[data-testid="diff-line"][data-kind="same"]').first
    page.wait_for_load_state("load")
    background = "el => getComputedStyle(el.querySelector('.diff-code')).backgroundColor"
    assert len({removed.evaluate(background), added.evaluate(background), same.evaluate(background)}) == 3
    shot(page, "history-compare")

    # Restore the first version: a confirmation first, nothing changes until it is confirmed.
    page.goto("/admin/functions/history?id=history_filter")
    _activate_with_keyboard(page, rows.nth(2).get_by_test_id("restore-link"))
    expect(page.get_by_test_id("restore-confirmation")).to_be_visible()
    expect(page.get_by_test_id("restore-summary")).to_contain_text("+1")
    assert live_server.api_json("GET", "/api/v1/functions/id/history_filter")["version_id"] == third
    shot(page, "history-restore-confirmation")
    page.locator("h1").focus()
    _tab_to(page, "confirm-restore")
    assert page.evaluate(FOCUS_RING) != "none"
    page.keyboard.press("Enter")

    expect(page).to_have_url(re.compile(r"/admin/functions/history\?id=history_filter$"))
    expect(page.locator(".flash-success")).to_contain_text("Restored the version of")
    expect(rows.nth(2)).to_contain_text("current")
    restored = live_server.api_json("GET", "/api/v1/functions/id/history_filter")
    assert restored["version_id"] == first and restored["content"] == factories.FILTER
    assert restored["name"] == "History Filter"


@pytest.mark.browser
def test_history_pages_fit_a_phone(admin_page, live_server):
    page = admin_page
    first, _second, third = _function_with_three_versions(live_server, "history_phone")
    page.set_viewport_size(PHONE)
    for name, path in (
        ("list", "/admin/functions/history?id=history_phone"),
        ("compare", f"/admin/functions/history/compare?id=history_phone&from={first}&to={third}"),
        ("restore", f"/admin/functions/history/restore?id=history_phone&version={first}"),
    ):
        assert page.goto(path).status == 200
        expect(page.locator("h1")).to_have_count(1)
        shot(page, f"history-{name}-phone")
        assert_fits_width(page)
