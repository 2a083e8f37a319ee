"""API keys: created on /settings/keys, shown once, usable with the API at once, and refused once revoked."""

from __future__ import annotations

import pytest
from playwright.sync_api import expect

from tests.browser.support import PHONE, assert_fits_width, shot, sign_in


@pytest.mark.browser
def test_a_key_made_on_the_keys_page_works_with_the_api_and_is_shown_once(page, live_server):
    live_server.create_user("kai@example.com", "Kai Keys")
    sign_in(page, "kai@example.com")
    page.get_by_role("navigation", name="Main").get_by_role("link", name="API keys").click()
    expect(page.get_by_role("heading", name="API keys", exact=True)).to_be_visible()
    expect(page.get_by_test_id("keys-empty")).to_be_visible()

    page.get_by_label("Name (optional)").fill("backup script")
    page.get_by_role("button", name="Create key").click()
    shown = page.get_by_test_id("new-key-value")
    expect(shown).to_be_visible()
    key = shown.input_value()
    assert key.startswith("sk-") and len(key) > 40
    rows = page.get_by_test_id("keys-table").locator("tbody tr")
    expect(rows).to_have_count(1)
    expect(rows.first).to_contain_text("backup script")
    expect(rows.first).to_contain_text(key[:10] + "…")
    expect(rows.first).to_contain_text("never")
    shot(page, "api-keys-new")
    shot(page, "api-keys-new-phone", PHONE)
    assert_fits_width(page)

    answer = live_server.api("GET", "/api/v1/functions/", key=key)
    assert answer.status_code == 200, answer.text
    assert isinstance(answer.json(), list)

    # Shown once: reloading the page (which followed the form's redirect) makes no second key and lists this one
    # by its prefix only, now with its last use.
    page.reload()
    expect(page.get_by_test_id("new-key-value")).to_have_count(0)
    assert key not in page.content()
    assert key[10:] not in page.content()
    expect(rows).to_have_count(1)
    expect(rows.first).to_contain_text(key[:10] + "…")
    expect(rows.first.locator('td[data-label="Last used"] time')).to_have_count(1)

    # Revoked from the page, the key stops working at once.
    rows.first.get_by_text("Revoke…").click()  # opens the confirmation
    rows.first.get_by_role("button", name="Revoke key").click()
    expect(page.locator(".flash-success")).to_contain_text("revoked")
    expect(rows.first).to_contain_text("revoked")
    assert live_server.api("GET", "/api/v1/functions/", key=key).status_code == 401
