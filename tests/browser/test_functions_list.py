"""The functions list: switches that change a function in place, without reloading the page."""

from __future__ import annotations

import base64
import re

import pytest
from playwright.sync_api import expect

from tests import factories
from tests.browser.support import LAPTOP, PHONE, assert_fits_width, shot


def switch(page, function_id: str, kind: str = "active"):
    return page.locator(f'tr[data-function-id="{function_id}"]').get_by_test_id(f"toggle-{kind}")


def switch_error(page, function_id: str, kind: str = "active"):
    return page.locator(f'form[data-switch="{kind}"][data-function-id="{function_id}"] .switch-error')


def flip(page, function_id: str, kind: str = "active") -> None:
    """Click a switch and wait for the API's answer."""
    suffix = "/toggle/global" if kind == "global" else "/toggle"
    with page.expect_response(
        lambda r: r.request.method == "POST" and r.url.endswith(f"/api/v1/functions/id/{function_id}{suffix}")
    ) as answer:
        switch(page, function_id, kind).click()
    assert answer.value.status == 200, answer.value.text()


@pytest.mark.browser
def test_the_active_switch_changes_the_function_without_a_reload(admin_page, live_server):
    live_server.create_function("list_filter", factories.FILTER, name="List Filter")
    live_server.create_function("list_action", factories.ACTION, name="List Action")
    live_server.create_function("list_pipe", factories.PIPE, name="List Pipe", active=True)
    page = admin_page
    page.goto("/admin/functions")
    row = page.locator('tr[data-function-id="list_filter"]')
    expect(row.get_by_test_id("function-name")).to_have_text("List Filter")
    expect(switch(page, "list_filter")).to_have_attribute("aria-pressed", "false")
    shot(page, "functions-list-laptop", LAPTOP)

    # A marker on the window survives only if the page is not reloaded.
    page.evaluate("window.__sameDocument = true")
    flip(page, "list_filter")
    expect(switch(page, "list_filter")).to_have_attribute("aria-pressed", "true")
    expect(switch(page, "list_filter")).to_contain_text("On")
    expect(switch_error(page, "list_filter")).to_be_empty()
    assert page.evaluate("window.__sameDocument") is True

    function = live_server.api_json("GET", "/api/v1/functions/id/list_filter")
    assert function["is_active"] is True
    assert function["is_global"] is False

    # A filter can also be made global in place; a pipe has no global switch.
    flip(page, "list_filter", "global")
    expect(switch(page, "list_filter", "global")).to_have_attribute("aria-pressed", "true")
    assert live_server.api_json("GET", "/api/v1/functions/id/list_filter")["is_global"] is True
    expect(switch(page, "list_pipe", "global")).to_have_count(0)
    assert page.evaluate("window.__sameDocument") is True

    page.reload()
    expect(switch(page, "list_filter")).to_have_attribute("aria-pressed", "true")
    expect(switch(page, "list_filter")).to_contain_text("On")
    expect(switch(page, "list_filter", "global")).to_have_attribute("aria-pressed", "true")
    assert page.evaluate("window.__sameDocument") is None

    # Switched off again, in place; the server agrees.
    flip(page, "list_filter")
    expect(switch(page, "list_filter")).to_have_attribute("aria-pressed", "false")
    assert live_server.api_json("GET", "/api/v1/functions/id/list_filter")["is_active"] is False
    shot(page, "functions-list-phone", PHONE)
    assert_fits_width(page)


@pytest.mark.browser
def test_a_failed_switch_flips_back_and_says_why(admin_page, live_server):
    live_server.create_function("doomed_filter", factories.FILTER, name="Doomed Filter")
    page = admin_page
    page.goto("/admin/functions?q=doomed")
    expect(switch(page, "doomed_filter")).to_have_attribute("aria-pressed", "false")
    # Deleted behind the page's back: the API answers 404, so the switch must not claim it is on.
    assert live_server.api("DELETE", "/api/v1/functions/id/doomed_filter/delete").status_code == 200
    with page.expect_response(
        lambda r: r.url.endswith("/api/v1/functions/id/doomed_filter/toggle")
    ) as answer:
        switch(page, "doomed_filter").click()
    assert answer.value.status == 404
    expect(switch(page, "doomed_filter")).to_have_attribute("aria-pressed", "false")
    expect(switch_error(page, "doomed_filter")).to_have_text(
        "This function no longer exists; reload the list."
    )


HIT_TEST = """link => {
    const box = link.getBoundingClientRect();
    const hit = document.elementFromPoint(box.left + box.width / 2, box.top + box.height / 2);
    return hit === link || link.contains(hit);
}"""


@pytest.fixture
def menu_rows(live_server):
    for number in range(1, 6):
        function_id = f"menu_fn_{number}"
        if live_server.api("GET", f"/api/v1/functions/id/{function_id}").status_code == 404:
            live_server.create_function(function_id, factories.ACTION, name=f"Menu Fn {number}")
    return "/admin/functions?q=menu_fn&sort=id"


@pytest.mark.browser
@pytest.mark.parametrize("viewport", [LAPTOP, PHONE], ids=["laptop", "phone"])
def test_the_last_rows_more_menu_is_not_clipped(admin_page, menu_rows, viewport):
    # The table's box scrolls sideways (overflow-x), which clipped the menu of the last rows at its bottom edge.
    page = admin_page
    page.set_viewport_size(viewport)
    page.goto(menu_rows)
    last = page.locator('tr[data-function-id="menu_fn_5"]')
    menu = last.locator("details.row-menu")
    menu.locator("summary").click()
    delete = menu.get_by_test_id("delete")
    expect(delete).to_be_visible()
    # Placed on the `toggle` event, a moment after the click: wait until the last item can be hit.
    page.wait_for_function(HIT_TEST, arg=delete.element_handle(), timeout=5000)

    # With the row at the very bottom of the window, the menu opens upward and stays inside the window.
    page.keyboard.press("Escape")
    bottom = menu.locator("summary").evaluate("el => el.getBoundingClientRect().bottom + window.scrollY")
    page.set_viewport_size({"width": viewport["width"], "height": int(bottom) + 12})
    page.evaluate("window.scrollTo(0, document.documentElement.scrollHeight)")
    menu.locator("summary").click()
    # The menu is placed on the `toggle` event, which the browser sends a moment after the click.
    menu.locator("ul").evaluate(
        """list => new Promise((resolve, reject) => {
            const deadline = Date.now() + 5000;
            (function check() {
                const box = list.getBoundingClientRect();
                if (box.top >= 0 && box.bottom <= window.innerHeight) return resolve();
                if (Date.now() > deadline) return reject(new Error("menu outside the window: " + JSON.stringify(box)));
                requestAnimationFrame(check);
            })();
        })"""
    )
    page.wait_for_function(HIT_TEST, arg=delete.element_handle(), timeout=5000)
    shot(page, f"functions-list-menu-{'laptop' if viewport is LAPTOP else 'phone'}")


@pytest.mark.browser
def test_tabbing_out_of_a_row_menu_closes_it(admin_page, menu_rows):
    page = admin_page
    page.goto(menu_rows)
    menu = page.locator('tr[data-function-id="menu_fn_2"] details.row-menu')
    menu.locator("summary").focus()
    page.keyboard.press("Enter")
    expect(menu).to_have_attribute("open", "")
    for _item in ("Clone", "Export", "Export with valves", "View source", "Delete"):
        page.keyboard.press("Tab")
        expect(menu).to_have_attribute("open", "")
    expect(menu.get_by_test_id("delete")).to_be_focused()
    page.keyboard.press("Tab")  # on to the next row's switch
    expect(menu).not_to_have_attribute("open", "")


@pytest.mark.browser
def test_the_counts_follow_a_switch_flipped_in_place(admin_page, live_server):
    live_server.create_function("counted_filter", factories.FILTER, name="Counted Filter")
    page = admin_page
    page.goto("/admin/functions?q=counted_filter")
    active = page.locator('[data-count="active"]')
    before = int(active.inner_text())
    total = int(active.get_attribute("data-total"))
    state_option = page.locator("select#status option")
    expect(state_option.filter(has_text="Inactive")).to_have_text(f"Inactive ({total - before})")

    flip(page, "counted_filter")
    expect(active).to_have_text(str(before + 1))
    expect(page.get_by_test_id("function-counts")).to_contain_text(f"{before + 1} active")
    expect(state_option.filter(has_text="Inactive")).to_have_text(f"Inactive ({total - before - 1})")
    expect(page.locator('select#status option[value="active"]')).to_have_text(f"Active ({before + 1})")

    flip(page, "counted_filter")
    expect(active).to_have_text(str(before))
    expect(page.locator('select#status option[value="active"]')).to_have_text(f"Active ({before})")
    # The page's counts are the server's (nothing else changed meanwhile).
    page.reload()
    expect(active).to_have_text(str(before))


LONG_ID = "a_rather_long_function_identifier_for_the_id_column"


@pytest.fixture
def list_rows(live_server):
    if live_server.api("GET", f"/api/v1/functions/id/{LONG_ID}").status_code == 404:
        live_server.create_function(LONG_ID, factories.FILTER, name="Long Id Filter")
        live_server.create_function("layout_pipe_bare", factories.PIPE, name="Layout Pipe")
    return "/admin/functions?sort=name"


@pytest.mark.browser
def test_on_a_laptop_the_filters_show_and_ids_keep_to_one_line(admin_page, list_rows):
    page = admin_page
    page.goto(list_rows)
    expect(page.get_by_test_id("function-filters")).to_be_visible()
    expect(page.get_by_test_id("filters-summary")).to_be_hidden()
    code = page.locator(f'tr[data-function-id="{LONG_ID}"] code.function-id')
    expect(code).to_have_attribute("title", LONG_ID)
    line_height = code.evaluate("el => parseFloat(getComputedStyle(el).lineHeight) || el.offsetHeight")
    assert code.bounding_box()["height"] <= line_height + 2, "the id wraps onto several lines"
    assert code.evaluate("el => el.scrollWidth > el.clientWidth"), "a long id is cut with an ellipsis"
    shot(page, "functions-list-laptop", LAPTOP)


@pytest.mark.browser
def test_on_a_phone_the_filters_fold_away_and_cards_skip_empty_cells(admin_page, list_rows):
    page = admin_page
    page.set_viewport_size(PHONE)
    page.goto(list_rows)
    filters = page.get_by_test_id("function-filters")
    expect(filters).to_be_hidden()
    first_row = page.locator("tr[data-function-id]").first
    assert first_row.bounding_box()["y"] < PHONE["height"], "the first function is below the first screen"
    pipe = page.locator('tr[data-function-id="layout_pipe_bare"]')
    for label in ("Version", "Author", "Global"):
        expect(pipe.locator(f'td[data-label="{label}"]')).to_be_hidden()
    expect(pipe.locator('td[data-label="Name"]')).to_be_visible()
    assert_fits_width(page)
    shot(page, "functions-list-phone")

    page.get_by_test_id("filters-summary").click()
    expect(filters).to_be_visible()
    page.get_by_label("Search").fill("layout")
    page.get_by_role("button", name="Apply").click()
    # A filter that applies keeps the fold open, and says so on it.
    expect(filters).to_be_visible()
    expect(page.get_by_test_id("filters-summary")).to_contain_text("1 applied")
    expect(page.locator("tr[data-function-id]")).to_have_count(1)


@pytest.mark.browser
def test_deleting_from_a_filtered_list_comes_back_to_it(admin_page, live_server):
    for number in (1, 2):
        live_server.create_function(f"doomed_{number}", factories.ACTION, name=f"Doomed {number}")
    page = admin_page
    listing = "/admin/functions?q=doomed_&type=action&sort=name&dir=desc"
    page.goto(listing)
    menu = page.locator('tr[data-function-id="doomed_1"] details.row-menu')
    menu.locator("summary").click()
    page.once("dialog", lambda dialog: dialog.accept())
    with page.expect_navigation():
        menu.get_by_test_id("delete").click()
    assert page.url.endswith(listing)
    expect(page.locator(".flash")).to_contain_text("Deleted Doomed 1.")
    expect(page.get_by_test_id("function-row")).to_have_count(1)


@pytest.mark.browser
def test_on_a_phone_each_function_is_one_compact_row(admin_page, list_rows):
    page = admin_page
    page.set_viewport_size(PHONE)
    page.goto(list_rows)
    rows = page.locator("tr[data-function-id]")
    heights = [rows.nth(i).bounding_box()["height"] for i in range(rows.count())]
    # It was a card of labelled lines, ~380 px per function.
    assert max(heights) <= 125, heights
    row = rows.first
    for test_id in ("function-name", "toggle-active"):
        expect(row.get_by_test_id(test_id)).to_be_visible()
    assert_fits_width(page)
    shot(page, "functions-list-phone-compact")


VALVED_ACTION = factories.source(
    '''
    """
    title: Valved Action
    icon_url: data:image/svg+xml;base64,PHN2ZyB4bWxucz0iaHR0cDovL3d3dy53My5vcmcvMjAwMC9zdmciIHZpZXdCb3g9IjAgMCAxIDEiPjxyZWN0IHdpZHRoPSIxIiBoZWlnaHQ9IjEiIGZpbGw9InJlZCIvPjxzY3JpcHQ+d2luZG93LnB3bmVkPTE8L3NjcmlwdD48L3N2Zz4=
    """

    from pydantic import BaseModel


    class Action:
        class Valves(BaseModel):
            greeting: str = "hello"

        class UserValves(BaseModel):
            shout: bool = False

        def __init__(self):
            self.valves = self.Valves()

        async def action(self, body: dict) -> dict:
            return body
    '''
)


@pytest.mark.browser
def test_search_and_type_apply_as_one_types_and_the_address_follows(admin_page, list_rows):
    page = admin_page
    page.goto("/admin/functions")
    page.evaluate("window.stillThisPage = true")
    with page.expect_response(lambda r: "q=layout" in r.url):
        page.get_by_label("Search").press_sequentially("layout", delay=20)
    expect(page.locator("tr[data-function-id]")).to_have_count(1)
    expect(page).to_have_url(re.compile(r"/admin/functions\?q=layout$"))
    expect(page.get_by_test_id("filters-summary")).to_contain_text("1 applied")
    page.get_by_label("Search").fill("")
    page.get_by_label("Type", exact=True).select_option("action")
    expect(page).to_have_url(re.compile(r"/admin/functions\?type=action$"))
    expect(page.locator('tr[data-function-id="layout_pipe_bare"]')).to_have_count(0)
    assert page.evaluate("window.stillThisPage") is True  # swapped in place, not reloaded
    # The address is shareable: opened afresh, it shows the same list.
    count = page.locator("tr[data-function-id]").count()
    page.goto(page.url)
    expect(page.locator("tr[data-function-id]")).to_have_count(count)


@pytest.mark.browser
def test_valves_links_only_where_there_are_valves_and_a_quick_dialog(admin_page, live_server, list_rows):
    live_server.create_function("valved_action", VALVED_ACTION, name="Valved Action")
    live_server.create_function("no_valves_action", factories.ACTION, name="No Valves Action")
    page = admin_page
    page.goto("/admin/functions?sort=name")
    bare = page.locator('tr[data-function-id="no_valves_action"]')
    expect(bare.get_by_test_id("function-name")).to_be_visible()
    expect(bare.get_by_test_id("valves-link")).to_have_count(0)  # no Valves class: no link to an empty page
    expect(bare.get_by_test_id("my-valves-link")).to_have_count(0)
    row = page.locator('tr[data-function-id="valved_action"]')
    expect(row.get_by_test_id("my-valves-link")).to_have_attribute(
        "href", "/settings/valves?id=valved_action"
    )
    # Its icon, as an image (an SVG in an <img> never runs its script).
    icon = row.get_by_test_id("function-icon")
    expect(icon).to_be_visible()
    assert icon.evaluate("img => img.complete && img.naturalWidth > 0")
    assert page.evaluate("window.pwned") is None

    row.get_by_test_id("valves-link").click()
    dialog = page.get_by_test_id("valves-dialog")
    expect(dialog).to_be_visible()
    expect(dialog.get_by_role("heading")).to_have_text("Valves · Valved Action")
    dialog.locator('[name="valve-greeting"]').fill("bonjour")
    dialog.get_by_test_id("valves-save").click()
    expect(dialog).to_be_hidden()
    expect(page.locator("[data-valves-notice]")).to_have_text("Valves saved.")
    assert live_server.api_json("GET", "/api/v1/functions/id/valved_action/valves") == {"greeting": "bonjour"}
    assert "/admin/functions" in page.url and "valves" not in page.url


# An icon named by the code, as real filters name theirs (`self.icon` in `__init__`): an SVG with a script inside.
SCRIPTED_SVG = (
    '<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 1 1"><rect width="1" height="1" fill="blue"/>'
    "<script>window.pwned = 1</script></svg>"
)
SCRIPTED_ICON = "data:image/svg+xml;base64," + base64.b64encode(SCRIPTED_SVG.encode()).decode()
CODE_ICON_FILTER = factories.ICON_FILTER.replace(factories.SVG_ICON, SCRIPTED_ICON)


def drawn_width(icon) -> int:
    """The icon's natural width once the browser has decoded it (decode() fails for a picture it cannot draw)."""
    return icon.evaluate("img => img.decode().then(() => img.naturalWidth)")


@pytest.mark.browser
def test_the_icon_the_code_names_is_drawn_in_the_list_and_on_its_page_and_runs_nothing(
    admin_page, live_server
):
    live_server.create_function("coded_icon_filter", CODE_ICON_FILTER, name="Coded Icon Filter")
    page = admin_page
    answer = page.goto("/admin/functions?q=coded_icon")
    # Under the Content-Security-Policy every page is sent with, which lets images be data: URLs.
    assert "img-src 'self' data: https:" in answer.headers["content-security-policy"]
    icon = page.locator('tr[data-function-id="coded_icon_filter"]').get_by_test_id("function-icon")
    expect(icon).to_be_visible()
    expect(icon).to_have_attribute("src", SCRIPTED_ICON)
    assert drawn_width(icon) > 0

    page.goto("/admin/functions/edit?id=coded_icon_filter")
    icon = page.locator("h1.function-title").get_by_test_id("function-icon")
    expect(icon).to_be_visible()
    assert drawn_width(icon) > 0
    assert page.evaluate("typeof window.pwned") == "undefined"  # an SVG shown as an <img> runs no script
