"""The audit trail page (`/admin/audit`): admins only, in the menu, filtered by function, user, action and time,
paginated with the console's own page links."""

from __future__ import annotations

import html
import re

import pytest

from tests.api.test_audit_api import add_entries

URL = "/admin/audit"


def rows(response) -> list[str]:
    """Each entry's row as text, top to bottom."""
    page = response.get_data(as_text=True)
    found = re.findall(r'<tr data-testid="audit-entry".*?</tr>', page, re.S)
    return [" ".join(html.unescape(re.sub(r"<[^>]+>", " ", row)).split()) for row in found]


def test_anonymous_visitors_are_sent_to_sign_in(client, admin_id):
    response = client.get(URL)
    assert response.status_code == 302 and "/auth" in response.headers["Location"]


def test_users_get_the_403_page_and_no_menu_entry(user_client):
    assert user_client.get(URL).status_code == 403
    assert b'href="/admin/audit"' not in user_client.get("/settings/keys").data


def test_the_menu_leads_admins_to_the_trail(admin_client):
    assert b'href="/admin/audit"' in admin_client.get("/admin/functions").data
    page = admin_client.get(URL)
    assert page.status_code == 200
    assert b'<a href="/admin/audit" aria-current="page">Audit</a>' in page.data


def test_entries_show_who_when_what_through_which_face(app, admin_client):
    add_entries(
        app,
        [
            {
                "at": 86_400,
                "action": "function.valves_changed",
                "target": "alpha",
                "actor_id": "a1",
                "email": "ann@example.com",
                "name": "Ann",
                "face": "api_key",
                "details": {"fields": ["api_key", "priority"]},
            },
            {"at": 86_401, "action": "user.sign_in_failed", "kind": "user", "email": "who@example.com"},
        ],
    )
    shown = rows(admin_client.get(URL + "?from=1970-01-02&to=1970-01-02"))
    assert shown == [
        "1970-01-02 00:00 UTC who@example.com Console Sign-in failed — —",
        "1970-01-02 00:00 UTC Ann ann@example.com API key Admin valves changed alpha fields: api_key, priority",
    ]
    page = admin_client.get(URL).get_data(as_text=True)
    # Who and what link to the trail filtered on them.
    assert 'href="/admin/audit?function=alpha"' in page and 'href="/admin/audit?user=a1"' in page


@pytest.fixture
def spread(app, admin_id):
    add_entries(
        app,
        [
            {
                "at": 86_400 * 1,
                "action": "function.created",
                "target": "alpha",
                "actor_id": "a1",
                "email": "a@x.io",
            },
            {"at": 86_400 * 2, "action": "function.activated", "target": "alpha", "actor_id": "a1"},
            {"at": 86_400 * 2 + 9, "action": "function.created", "target": "beta", "actor_id": "b2"},
            {"at": 86_400 * 3, "action": "function.deleted", "target": "alpha", "actor_id": "b2"},
        ],
    )


@pytest.mark.parametrize(
    ("query", "expected"),
    [
        (
            "function=alpha",
            ["Function deleted alpha", "Function switched on alpha", "Function created alpha"],
        ),
        ("user=b2", ["Function deleted alpha", "Function created beta"]),
        ("user=a@x.io", ["Function created alpha"]),
        ("action=function.created", ["Function created beta", "Function created alpha"]),
        ("from=1970-01-03&to=1970-01-03", ["Function created beta", "Function switched on alpha"]),
        ("function=alpha&from=1970-01-03", ["Function deleted alpha", "Function switched on alpha"]),
    ],
)
def test_filters(admin_client, spread, query, expected):
    shown = rows(admin_client.get(f"{URL}?{query}"))
    assert [re.search(r"(Function [a-z ]+? (alpha|beta))", row).group(1) for row in shown] == expected


def test_the_filter_form_keeps_what_was_asked_and_offers_every_action(admin_client, spread):
    page = admin_client.get(URL + "?function=alpha&action=function.deleted&from=1970-01-02").get_data(
        as_text=True
    )
    assert 'id="function" name="function" type="text" value="alpha"' in page
    assert '<option value="function.deleted" selected>Function deleted</option>' in page
    assert 'id="from" name="from" type="date" value="1970-01-02"' in page
    assert page.count("<option value=") >= 19 + 1
    assert "Showing 1–1 of 1 matching" in page


def test_a_date_that_does_not_fit_is_named_beside_its_field(admin_client, spread):
    response = admin_client.get(URL + "?from=yesterday&to=1970-01-01&action=nope")
    assert response.status_code == 400
    page = response.get_data(as_text=True)
    assert '<p class="field-error" id="from-error" role="alert">Enter a date as YYYY-MM-DD.</p>' in page
    assert '<p class="field-error" id="action-error" role="alert">Choose an action from the list.</p>' in page
    reversed_range = admin_client.get(URL + "?from=1970-01-03&to=1970-01-02").get_data(as_text=True)
    assert "The end date is before the start date." in reversed_range


def test_pages_of_fifty_with_the_consoles_page_links(app, admin_client, admin_id):
    add_entries(app, [{"at": 1_000 + n, "action": "function.updated", "target": f"f{n}"} for n in range(120)])
    first = admin_client.get(URL + "?action=function.updated")
    assert len(rows(first)) == 50 and "f119" in rows(first)[0]
    page = first.get_data(as_text=True)
    assert 'data-testid="pagination"' in page and "Page 1 of 3" in page
    assert 'href="/admin/audit?action=function.updated&amp;page=2"' in page
    last = admin_client.get(URL + "?action=function.updated&page=3")
    assert [row.split()[-2] for row in rows(last)][-1] == "f0" and len(rows(last)) == 20
    assert "Showing 101–120 of 120 matching" in last.get_data(as_text=True)
    assert len(rows(admin_client.get(URL + "?action=function.updated&per_page=200"))) == 120
