"""A tour of the console: every main page opens, labels its controls, fits a phone; screenshots for people.

And "load from URL", against a small web server on this machine (the live server allows private addresses).
"""

from __future__ import annotations

import functools
import re
import threading
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer

import pytest
from playwright.sync_api import expect

from tests import factories
from tests.browser.support import LAPTOP, PHONE, assert_fits_width, shot

ADMIN_PAGES = [
    ("functions-list", "/admin/functions"),
    ("function-create", "/admin/functions/create?template=pipe"),
    ("function-edit", "/admin/functions/edit?id=tour_filter"),
    ("function-source", "/admin/functions/source?id=tour_filter"),
    ("valves-admin", "/admin/functions/valves?id=tour_filter"),
    ("import", "/admin/functions/import"),
    ("load-url", "/admin/functions/load-url"),
    ("users", "/admin/users"),
    ("my-valves", "/settings/valves"),
    ("my-valves-form", "/settings/valves?id=tour_filter"),
    ("api-keys", "/settings/keys"),
]

UNLABELLED_CONTROLS = """() => [...document.querySelectorAll("input, select, textarea, button")]
    .filter(el => el.type !== "hidden" && !el.hidden && el.getClientRects().length > 0)
    .filter(el => {
        if (el.getAttribute("aria-label") || el.getAttribute("aria-labelledby") || el.title) return false;
        if (el.labels && el.labels.length) return false;
        if (el.tagName === "BUTTON" && el.textContent.trim()) return false;
        return true;
    })
    .map(el => el.outerHTML.slice(0, 120))"""


@pytest.fixture(scope="module")
def tour_function(live_server):
    if live_server.api("GET", "/api/v1/functions/id/tour_filter").status_code == 404:
        live_server.create_function("tour_filter", factories.FILTER, name="Tour Filter", active=True)
    return "tour_filter"


@pytest.mark.browser
@pytest.mark.parametrize("name, path", ADMIN_PAGES, ids=[name for name, _ in ADMIN_PAGES])
def test_each_page_opens_labels_its_controls_and_fits_a_phone(admin_page, tour_function, name, path):
    page = admin_page
    response = page.goto(path)
    assert response.status == 200, f"{path} → {response.status}"
    if page.locator("[data-code-editor]").count():
        expect(page.locator('.code-field[data-editor-ready="1"]')).to_be_visible()
    expect(page.locator("h1")).to_have_count(1)
    assert page.evaluate(UNLABELLED_CONTROLS) == [], f"controls without a label on {path}"
    shot(page, f"tour-{name}-laptop", LAPTOP)
    shot(page, f"tour-{name}-phone", PHONE)
    assert_fits_width(page)


@pytest.mark.browser
def test_the_sign_in_page_fits_a_phone(page):
    page.set_viewport_size(PHONE)
    page.goto("/auth")
    expect(page.get_by_role("heading", name="Sign in")).to_be_visible()
    shot(page, "sign-in-phone")
    assert_fits_width(page)


@pytest.fixture
def code_server(tmp_path):
    """A plain web server for a folder of Python files, on 127.0.0.1."""
    handler = functools.partial(SimpleHTTPRequestHandler, directory=str(tmp_path))
    handler.log_message = lambda *args: None
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield tmp_path, f"http://127.0.0.1:{server.server_port}"
    server.shutdown()
    thread.join(timeout=10)
    server.server_close()


@pytest.mark.browser
def test_load_from_url_opens_the_code_in_the_editor_and_saves_it(admin_page, live_server, code_server):
    folder, base = code_server
    (folder / "echo_pipe.py").write_text(factories.PIPE)
    page = admin_page
    page.goto("/admin/functions")
    page.get_by_role("link", name="Load from URL").first.click()
    page.get_by_label("Address of the Python file").fill(f"{base}/echo_pipe.py")
    page.get_by_role("button", name="Load").click()

    expect(page.get_by_test_id("loaded-from")).to_contain_text(f"{base}/echo_pipe.py")
    expect(page.locator('.code-field[data-editor-ready="1"]')).to_be_visible()
    expect(page.get_by_label("Name")).to_have_value("Echo Pipe")
    expect(page.locator("#id")).to_have_value("echo_pipe")
    assert (
        page.evaluate("document.querySelector('textarea#content').sluiceEditor.getValue()") == factories.PIPE
    )
    assert live_server.api("GET", "/api/v1/functions/id/echo_pipe").status_code == 404  # nothing stored yet

    page.get_by_test_id("save").click()
    expect(page).to_have_url(re.compile(r"/admin/functions/edit\?id=echo_pipe$"))
    expect(page.locator(".flash-success")).to_have_text("Saved Echo Pipe.")
    stored = live_server.api_json("GET", "/api/v1/functions/id/echo_pipe")
    assert stored["content"] == factories.PIPE
    assert stored["type"] == "pipe"


@pytest.mark.browser
def test_load_from_url_says_why_an_address_fails(admin_page, code_server):
    _folder, base = code_server
    page = admin_page
    page.goto("/admin/functions/load-url")
    page.get_by_label("Address of the Python file").fill(f"{base}/missing.py")
    page.get_by_role("button", name="Load").click()
    expect(page.locator(".field.has-error .field-error")).to_be_visible()
    expect(page.get_by_label("Address of the Python file")).to_have_value(f"{base}/missing.py")


# For each line number: its top, and the top of the first token of its line of code (the anchor of a blank line).
LINE_POSITIONS = """() => {
    const numbers = [...document.querySelectorAll(".source-code td.linenos a")];
    return numbers.map(number => {
        const anchor = document.getElementById(number.getAttribute("href").slice(1));
        let token = anchor.nextElementSibling;
        if (token && token.classList.contains("hll")) token = token.firstElementChild;
        if (!token || token.tagName === "A") token = anchor;
        return [number.textContent.trim(), number.getBoundingClientRect().top, token.getBoundingClientRect().top];
    });
}"""


@pytest.mark.browser
@pytest.mark.parametrize("viewport", [LAPTOP, PHONE], ids=["laptop", "phone"])
def test_the_source_view_keeps_numbers_and_lines_in_step_around_a_marked_line(
    admin_page, tour_function, viewport
):
    page = admin_page
    page.set_viewport_size(viewport)
    page.goto(f"/admin/functions/source?id={tour_function}&line=12")
    marked = page.locator(".source-code .hll")
    expect(marked).to_have_count(1)
    positions = page.evaluate(LINE_POSITIONS)
    assert len(positions) == len(factories.FILTER.splitlines())
    for number, number_top, line_top in positions:
        assert abs(number_top - line_top) < 2, f"line {number}: number at {number_top}, code at {line_top}"
    # The marked band is one line tall and holds line 12 (no second, empty line inside it).
    band = marked.bounding_box()
    number_tops = {number: top for number, top, _ in positions}
    pitch = number_tops["13"] - number_tops["12"]
    assert abs(band["height"] - pitch) < 1
    assert band["y"] <= number_tops["12"] < number_tops["13"] <= band["y"] + band["height"] + 2
    shot(page, f"function-source-marked-{'laptop' if viewport is LAPTOP else 'phone'}")


@pytest.mark.browser
def test_the_edit_page_switches_change_the_function_in_place(admin_page, live_server):
    live_server.create_function("edit_switched", factories.FILTER, name="Edit Switched")
    page = admin_page
    page.goto("/admin/functions/edit?id=edit_switched")
    page.get_by_label("Description").fill("typed, not saved")  # what is typed survives a switch
    page.evaluate("window.__sameDocument = true")
    switches = page.get_by_test_id("function-switches")
    for kind, field in (("active", "is_active"), ("global", "is_global")):
        button = switches.get_by_test_id(f"toggle-{kind}")
        expect(button).to_have_attribute("aria-pressed", "false")
        with page.expect_response(lambda r: "/api/v1/functions/id/edit_switched/toggle" in r.url) as answer:
            button.click()
        assert answer.value.status == 200
        expect(button).to_have_attribute("aria-pressed", "true")
        assert live_server.api_json("GET", "/api/v1/functions/id/edit_switched")[field] is True
    assert page.evaluate("window.__sameDocument") is True
    expect(page.get_by_label("Description")).to_have_value("typed, not saved")
    shot(page, "function-edit-switches-laptop", LAPTOP)
    shot(page, "function-edit-switches-phone", PHONE)
    assert_fits_width(page)


@pytest.mark.browser
def test_dates_in_the_edit_pages_details_keep_to_one_line(admin_page, tour_function):
    page = admin_page
    page.goto(f"/admin/functions/edit?id={tour_function}")
    for time in page.locator(".function-aside .facts time").all():
        height = time.evaluate("el => el.getClientRects().length")
        assert height == 1, f"{time.inner_text()!r} wraps"


@pytest.mark.browser
def test_a_phone_card_keeps_a_cells_parts_together(admin_page):
    # Users: "Ada Admin" and "(you)" were pushed to opposite edges of the card by justify-content: space-between.
    page = admin_page
    page.set_viewport_size(PHONE)
    page.goto("/admin/users")
    cell = page.locator('tr[data-testid="user-row-admin@example.com"] td[data-label="Name"]')
    you = cell.get_by_text("(you)")
    name_right = cell.evaluate(
        """td => {
            const walker = document.createTreeWalker(td, NodeFilter.SHOW_TEXT);
            while (walker.nextNode() && !walker.currentNode.data.includes("Ada Admin"));
            const range = document.createRange();
            range.selectNodeContents(walker.currentNode);
            return range.getBoundingClientRect().right;
        }"""
    )
    assert you.bounding_box()["x"] - name_right < 12, "the name and (you) are apart"


@pytest.mark.browser
@pytest.mark.parametrize("viewport", [LAPTOP, PHONE], ids=["laptop", "phone"])
def test_the_create_key_button_lines_up_with_its_input(admin_page, viewport):
    page = admin_page
    page.set_viewport_size(viewport)
    page.goto("/settings/keys")
    field = page.get_by_label("Name (optional)").bounding_box()
    button = page.get_by_role("button", name="Create key").bounding_box()
    help_text = page.get_by_text("What will use it").bounding_box()
    if viewport is LAPTOP:
        assert abs((field["y"] + field["height"] / 2) - (button["y"] + button["height"] / 2)) < 2
    assert help_text["y"] >= max(field["y"] + field["height"], button["y"] + button["height"]) - 1
    shot(page, f"api-keys-{'laptop' if viewport is LAPTOP else 'phone'}")
