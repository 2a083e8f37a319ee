"""First run: on an empty database, /auth creates the first administrator and signs them in."""

from __future__ import annotations

import re

import pytest
from playwright.sync_api import expect

from tests.browser.support import PASSWORD, shot


@pytest.mark.browser
def test_first_visit_creates_the_admin_and_lands_on_the_functions_list(fresh_page, fresh_server):
    page = fresh_page
    page.goto("/")
    expect(page).to_have_url(re.compile(r"/auth"))
    expect(page.get_by_role("heading", name="Set up Sluice")).to_be_visible()
    shot(page, "first-run-setup")

    # A password that is too short is refused beside its field, and what was typed is kept.
    page.get_by_label("Name").fill("Grace Hopper")
    page.get_by_label("Email").fill("grace@example.com")
    page.get_by_label("Password").fill("short")
    page.get_by_role("button", name="Create administrator").click()
    expect(page.locator(".field.has-error")).to_have_count(1)
    expect(page.get_by_label("Email")).to_have_value("grace@example.com")

    page.get_by_label("Password").fill(PASSWORD)
    page.get_by_role("button", name="Create administrator").click()

    expect(page).to_have_url(re.compile(r"/admin/functions$"))
    expect(page.get_by_role("heading", name="Functions", exact=True)).to_be_visible()
    expect(page.locator(".flash-success")).to_contain_text("administrator account is ready")
    expect(page.locator(".whoami")).to_contain_text("Grace Hopper")
    expect(page.locator(".whoami .role")).to_have_text("admin")
    shot(page, "functions-list-empty")

    # The set-up form is gone for good: signed out, /auth is the ordinary sign-in page.
    page.get_by_role("button", name="Sign out").click()
    expect(page.get_by_role("heading", name="Sign in")).to_be_visible()
    expect(page.get_by_label("Name")).to_have_count(0)
