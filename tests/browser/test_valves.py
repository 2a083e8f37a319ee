"""Valves forms in the browser: the admin's (a password and selects) and a normal user's personal valves."""

from __future__ import annotations

import re

import pytest
from playwright.sync_api import expect

from tests import factories
from tests.browser.support import PHONE, assert_fits_width, shot, sign_in

SECRET = "sk-live-0123456789-very-secret"

VALVED_FILTER = factories.source(
    '''
    """
    title: Valved Filter
    description: Has one valve of every common kind.
    """

    from typing import Literal

    from pydantic import BaseModel, Field


    class Filter:
        class Valves(BaseModel):
            api_key: str = Field(
                default="", description="Key of the upstream service", json_schema_extra={"input": {"type": "password"}}
            )
            model: Literal["small", "medium", "large"] = Field(default="small", description="Which model answers")
            region: str = Field(
                default="eu", json_schema_extra={"input": {"type": "select", "options": ["eu", "us", "asia"]}}
            )
            temperature: float = Field(default=0.7, ge=0, le=2)
            prefix: str = Field(default=">> ", description="Put **in front** of every message")
            verbose: bool = False

        class UserValves(BaseModel):
            nickname: str = Field(default="", description="What the model calls you")
            max_turns: int = Field(default=4, ge=1, le=100)
            enabled: bool = True

        def __init__(self):
            self.valves = self.Valves()

        def inlet(self, body: dict) -> dict:
            return body
    '''
)


def field(page, name: str):
    return page.locator(f'[name="valve-{name}"]:not([type="hidden"])')


@pytest.mark.browser
def test_admin_valves_store_only_what_was_set_and_never_show_the_secret(admin_page, live_server):
    live_server.create_function("valved_filter", VALVED_FILTER, name="Valved Filter")
    page = admin_page
    page.goto("/admin/functions/edit?id=valved_filter")
    page.get_by_test_id("valves-link").click()
    expect(page).to_have_url(re.compile(r"/admin/functions/valves\?id=valved_filter$"))
    expect(page.get_by_test_id("valves-form")).to_be_visible()

    expect(field(page, "api_key")).to_have_attribute("type", "password")
    expect(field(page, "model")).to_have_js_property("tagName", "SELECT")
    expect(field(page, "region")).to_have_js_property("tagName", "SELECT")
    expect(page.get_by_test_id("valve-default-model")).to_have_text("small")
    expect(page.get_by_test_id("valve-state-model")).to_have_text("Default")
    shot(page, "valves-admin-empty")

    field(page, "api_key").fill(SECRET)
    field(page, "model").select_option(label="large")
    page.get_by_test_id("valves-save").click()
    expect(page.locator(".flash-success")).to_have_text("Valves saved.")

    # Only the two fields that were set are stored; the others follow the function's defaults.
    assert live_server.api_json("GET", "/api/v1/functions/id/valved_filter/valves") == {
        "api_key": SECRET,
        "model": "large",
    }
    expect(page.get_by_test_id("valve-state-model")).to_have_text("Custom")
    expect(page.get_by_test_id("valve-state-api_key")).to_have_text("Custom")
    expect(page.get_by_test_id("valve-state-region")).to_have_text("Default")
    expect(field(page, "model")).to_have_value("large")
    expect(field(page, "api_key")).to_have_value("")
    assert SECRET not in page.content()

    # A second save that leaves the password field empty keeps the stored secret.
    page.reload()
    assert SECRET not in page.content()
    field(page, "prefix").fill("## ")
    page.get_by_test_id("valves-save").click()
    expect(page.locator(".flash-success")).to_have_text("Valves saved.")
    assert live_server.api_json("GET", "/api/v1/functions/id/valved_filter/valves") == {
        "api_key": SECRET,
        "model": "large",
        "prefix": "## ",
    }
    assert SECRET not in page.content()
    shot(page, "valves-admin-saved")
    shot(page, "valves-admin-phone", PHONE)
    assert_fits_width(page)

    # Reset one field to its default: it is no longer stored.
    page.get_by_test_id("valve-reset-model").check()
    page.get_by_test_id("valves-save").click()
    expect(page.locator(".flash-success")).to_have_text("Valves saved.")
    assert live_server.api_json("GET", "/api/v1/functions/id/valved_filter/valves") == {
        "api_key": SECRET,
        "prefix": "## ",
    }


@pytest.mark.browser
@pytest.mark.parametrize("typed", ["4e", "0.3-"])
def test_a_number_chromium_cannot_parse_is_an_error_and_keeps_what_is_stored(admin_page, live_server, typed):
    # Chromium submits "" for these, which read as "use the default" and wiped the value: the browser's own check
    # (the form is not novalidate) stops the save before anything is sent, and says why beside the field.
    function_id = "valved_number_" + ("a" if typed == "4e" else "b")
    live_server.create_function(function_id, VALVED_FILTER, name="Valved Number")
    live_server.api_json(
        "POST", f"/api/v1/functions/id/{function_id}/valves/update", json={"temperature": 1.5}
    )
    page = admin_page
    page.goto(f"/admin/functions/valves?id={function_id}")
    temperature = field(page, "temperature")
    temperature.fill("")
    temperature.press_sequentially(typed)
    assert temperature.evaluate("el => el.validity.badInput") is True
    posts = []
    page.on("request", lambda request: posts.append(request.url) if request.method == "POST" else None)
    page.get_by_test_id("valves-save").click()
    error = page.get_by_test_id("valve-field-temperature").locator(".field-error")
    expect(error).to_have_text("Enter a number.")
    expect(temperature).to_be_focused()
    assert posts == []
    expect(page.locator(".flash-success")).to_have_count(0)
    assert live_server.api_json("GET", f"/api/v1/functions/id/{function_id}/valves") == {"temperature": 1.5}

    # Emptied, the stored value is not silently dropped either: the reset box is the way.
    temperature.fill("")
    expect(error).to_have_count(0)  # the browser's message goes once the field is valid again
    page.get_by_test_id("valves-save").click()
    expect(error).to_have_text("Enter a number, or tick Reset to default.")
    # The error sits right below its input, above the reset box. Focus scrolls the error into view: the three boxes
    # are read in one frame, else a scroll still moving between readings shifts one against the others.
    input_box, error_box, reset_box = page.evaluate(
        """([a, b, c]) => [a, b, c].map((el) => { const r = el.getBoundingClientRect(); return {y: r.y, height: r.height}; })""",
        [
            temperature.element_handle(),
            error.element_handle(),
            page.get_by_test_id("valve-reset-temperature").element_handle(),
        ],
    )
    assert input_box["y"] + input_box["height"] <= error_box["y"] < reset_box["y"]
    shot(page, f"valves-number-error-{function_id[-1]}")
    assert live_server.api_json("GET", f"/api/v1/functions/id/{function_id}/valves") == {"temperature": 1.5}


@pytest.mark.browser
def test_a_field_error_is_shown_beside_its_field_and_nothing_is_stored(admin_page, live_server):
    live_server.create_function("valved_filter_2", VALVED_FILTER, name="Valved Filter 2")
    page = admin_page
    page.goto("/admin/functions/valves?id=valved_filter_2")
    field(page, "api_key").fill(SECRET)
    temperature = field(page, "temperature")
    expect(temperature).to_have_attribute("min", "0")
    expect(temperature).to_have_attribute("max", "2")
    temperature.fill("5")  # above le=2
    posts = []
    page.on("request", lambda request: posts.append(request.url) if request.method == "POST" else None)
    page.get_by_test_id("valves-save").click()
    # The browser checks the range first, and says so beside the field in the server's own words.
    error = page.get_by_test_id("valve-field-temperature").locator(".field-error")
    expect(error).to_have_text("Enter a number between 0 and 2.")
    expect(temperature).to_be_focused()
    assert posts == []

    # A browser that does not check sends it: the server's answer is the same sentence, beside the same field.
    page.evaluate("document.querySelector('form[data-testid=valves-form]').noValidate = true")
    page.get_by_test_id("valves-save").scroll_into_view_if_needed()
    page.get_by_test_id("valves-save").click()
    banner = page.get_by_test_id("valves-form-errors")
    expect(banner).to_be_visible()
    expect(error).to_have_text("Enter a number between 0 and 2.")
    assert "Input should" not in page.content()
    # The banner has the focus and is wholly in view (it was half off screen).
    expect(banner).to_be_focused()
    box = banner.bounding_box()
    viewport = page.viewport_size
    assert box["y"] >= 0 and box["y"] + box["height"] <= viewport["height"], box
    expect(field(page, "temperature")).to_have_value("5")
    assert SECRET not in page.content()
    assert live_server.api_json("GET", "/api/v1/functions/id/valved_filter_2/valves") == {}


@pytest.mark.browser
def test_a_user_sets_personal_valves_and_cannot_open_admin_pages(page, live_server):
    live_server.create_function("personal_filter", VALVED_FILTER, name="Personal Filter", active=True)
    live_server.create_function("inactive_filter", VALVED_FILTER, name="Inactive Filter")
    live_server.create_user("uma@example.com", "Uma User")
    user_key = live_server.create_key("uma@example.com")

    sign_in(page, "uma@example.com")
    expect(page).to_have_url(re.compile(r"/settings/valves$"))
    nav = page.get_by_role("navigation", name="Main")
    expect(nav.get_by_role("link", name="My valves")).to_be_visible()
    expect(nav.get_by_role("link", name="Functions")).to_have_count(0)
    expect(nav.get_by_role("link", name="Users")).to_have_count(0)
    # Only active functions with UserValves are listed.
    expect(page.get_by_test_id("my-valves-link-inactive_filter")).to_have_count(0)

    page.get_by_test_id("my-valves-link-personal_filter").click()
    expect(page).to_have_url(re.compile(r"/settings/valves\?id=personal_filter$"))
    expect(field(page, "max_turns")).to_have_value("4")
    expect(field(page, "api_key")).to_have_count(0)  # the admin valves are not on this page
    field(page, "max_turns").fill("12")
    field(page, "nickname").fill("Captain")
    page.get_by_test_id("valves-save").click()
    expect(page.locator(".flash-success")).to_have_text("Valves saved.")
    expect(field(page, "max_turns")).to_have_value("12")
    shot(page, "valves-personal")
    shot(page, "valves-personal-phone", PHONE)
    assert_fits_width(page)

    assert live_server.api_json("GET", "/api/v1/functions/id/personal_filter/valves/user", key=user_key) == {
        "max_turns": 12,
        "nickname": "Captain",
    }
    # The admin's own personal valves are untouched.
    assert live_server.api_json("GET", "/api/v1/functions/id/personal_filter/valves/user") == {}

    for path in (
        "/admin/functions",
        "/admin/functions/edit?id=personal_filter",
        "/admin/functions/valves?id=personal_filter",
        "/admin/functions/create",
        "/admin/users",
    ):
        response = page.goto(path)
        assert response.status == 403, path
        expect(page.get_by_role("heading", name="Not allowed")).to_be_visible()
    shot(page, "error-403")
    assert live_server.api(
        "GET", "/api/v1/functions/id/personal_filter/valves", key=user_key
    ).status_code in (
        401,
        403,
    )


@pytest.mark.browser
def test_a_value_equal_to_the_default_can_be_pinned_and_shows_as_set(admin_page, live_server):
    live_server.create_function("valved_pin", VALVED_FILTER, name="Valved Pin")
    page = admin_page
    page.goto("/admin/functions/valves?id=valved_pin")
    expect(page.get_by_test_id("valve-state-temperature")).to_have_text("Default")
    expect(field(page, "temperature")).to_have_value("0.7")
    page.get_by_test_id("valve-pin-temperature").check()
    page.get_by_test_id("valves-save").click()
    expect(page.locator(".flash-success")).to_have_text("Valves saved.")
    # Stored explicitly, so a new default in a later version does not change it.
    assert live_server.api_json("GET", "/api/v1/functions/id/valved_pin/valves") == {"temperature": 0.7}
    expect(page.get_by_test_id("valve-state-temperature")).to_have_text("Set · same as default")
    expect(page.get_by_test_id("valve-state-prefix")).to_have_text("Default")
    expect(page.get_by_test_id("valve-pin-temperature")).to_have_count(0)
    expect(page.get_by_test_id("valve-reset-temperature")).to_be_visible()  # back to "use the default"


@pytest.mark.browser
def test_leaving_a_changed_valves_form_asks_first_but_not_after_saving(admin_page, live_server):
    live_server.create_function("valved_leave", VALVED_FILTER, name="Valved Leave")
    page = admin_page
    page.goto("/admin/functions/valves?id=valved_leave")
    field(page, "prefix").fill("## ")
    dialogs = []

    def stay(dialog):
        dialogs.append(dialog.type)
        dialog.dismiss()

    page.once("dialog", stay)
    page.locator(".breadcrumbs a").first.click()
    expect(field(page, "prefix")).to_have_value("## ")
    assert dialogs == ["beforeunload"]
    assert "/admin/functions/valves" in page.url

    page.get_by_test_id("valves-save").click()
    expect(page.locator(".flash-success")).to_have_text("Valves saved.")
    page.on("dialog", lambda dialog: (dialogs.append("after save"), dialog.dismiss()))
    page.locator(".breadcrumbs a").first.click()
    expect(page).to_have_url(re.compile(r"/admin/functions$"))
    assert dialogs == ["beforeunload"]


@pytest.mark.browser
def test_opening_reset_all_does_not_move_the_page(admin_page, live_server):
    live_server.create_function("valved_reset", VALVED_FILTER, name="Valved Reset")
    live_server.api_json("POST", "/api/v1/functions/id/valved_reset/valves/update", json={"prefix": "## "})
    page = admin_page
    page.goto("/admin/functions/valves?id=valved_reset")
    summary = page.get_by_text("Reset all…")
    summary.scroll_into_view_if_needed()
    # Where each part sits on the page (not in the window), and how tall the page is.
    layout = """() => [
        ...["[data-testid=valves-save]", ".valves-actions summary", ".valves-card", "[data-testid=valve-field-verbose]"]
            .map(selector => { const box = document.querySelector(selector).getBoundingClientRect();
                               return [box.left, box.top + window.scrollY, box.width, box.height]; }),
        document.documentElement.scrollHeight, window.scrollY]"""
    before = page.evaluate(layout)
    summary.click()
    confirm = page.get_by_test_id("valves-reset-all")
    expect(confirm).to_be_visible()
    assert page.evaluate(layout) == before
    # The confirmation opens over the form, wholly in view.
    box = confirm.bounding_box()
    assert 0 <= box["y"] and box["y"] + box["height"] <= page.viewport_size["height"]
    confirm.click()
    expect(page.locator(".flash-success")).to_have_text("Every valve is back to its default.")
    assert live_server.api_json("GET", "/api/v1/functions/id/valved_reset/valves") == {}
