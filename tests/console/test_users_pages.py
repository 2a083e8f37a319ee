"""User management for admins (`/admin/users`): list, create, change role, approve, delete, self-protection."""

from __future__ import annotations

import re

import pytest
from sqlalchemy import func, select

from tests.conftest import PASSWORD, bearer, csrf_token, sign_in
from tests.factories import make_function, source

URL = "/admin/users"

WITH_USER_VALVES = source(
    """
    from pydantic import BaseModel


    class Filter:
        class UserValves(BaseModel):
            nickname: str = ""

        def inlet(self, body: dict) -> dict:
            return body
    """
)


def user_row(page: bytes, email: str) -> str:
    match = re.search(rf'<tr data-testid="user-row-{re.escape(email)}".*?</tr>', page.decode(), re.S)
    assert match, f"no row for {email}"
    return match.group(0)


def role_of(app, email):
    from extensions import db
    from models import User

    with app.app_context():
        return db.session.scalar(select(User.role).where(User.email == email))


def post(client, path, **data):
    data["csrf_token"] = csrf_token(client, URL)
    return client.post(path, data=data, follow_redirects=True)


# --- access ---------------------------------------------------------------------------------------------------


def test_anonymous_is_sent_to_sign_in(client):
    response = client.get(URL)
    assert response.status_code == 302 and response.headers["Location"].startswith("/auth")


def test_a_user_gets_403_everywhere(user_client, admin_id):
    assert user_client.get(URL).status_code == 403
    token = csrf_token(user_client, "/settings/keys")
    for path in (URL, f"{URL}/{admin_id}/role", f"{URL}/{admin_id}/approve", f"{URL}/{admin_id}/delete"):
        assert user_client.post(path, data={"csrf_token": token, "role": "user"}).status_code == 403


# --- list -----------------------------------------------------------------------------------------------------


def test_the_list_shows_roles_and_highlights_pending(admin_client, user_id, pending_id):
    page = admin_client.get(URL)
    assert page.status_code == 200
    assert b'data-testid="pending-count">1 waiting for approval' in page.data
    pending = user_row(page.data, "pending@example.com")
    assert 'class="is-pending"' in pending and ">Pending</span>" in pending
    assert 'data-testid="approve-pending@example.com"' in pending
    assert ">User</span>" in user_row(page.data, "user@example.com")
    mine = user_row(page.data, "admin@example.com")
    assert "(you)" in mine and "delete-admin@example.com" not in mine and "role-select" not in mine
    # Pending accounts come first: they are waiting for someone to act.
    assert page.data.index(b"user-row-pending@example.com") < page.data.index(b"user-row-admin@example.com")


# --- create ---------------------------------------------------------------------------------------------------


def test_create_an_account(app, admin_client):
    response = post(
        admin_client, URL, name="Nina New", email="Nina@Example.com", password=PASSWORD, role="admin"
    )
    assert response.status_code == 200
    assert b"Account created for Nina New (nina@example.com) as Admin." in response.data
    assert role_of(app, "nina@example.com") == "admin"
    client = app.test_client()
    assert sign_in(client, "nina@example.com").status_code == 302


def test_create_reports_each_field_and_keeps_what_was_typed(app, admin_client, user_id):
    response = post(admin_client, URL, name="", email="user@example.com", password="short", role="user")
    assert response.status_code == 400
    assert b"Enter a name." in response.data
    assert b"Use at least 8 characters." in response.data
    response = post(admin_client, URL, name="Dup", email="user@example.com", password=PASSWORD, role="user")
    assert response.status_code == 400
    assert b"An account with this email already exists." in response.data
    assert b'value="Dup"' in response.data
    assert PASSWORD.encode() not in response.data  # a typed password is never echoed
    response = post(admin_client, URL, name="Odd", email="odd@example.com", password=PASSWORD, role="owner")
    assert response.status_code == 400 and b"The role must be one of" in response.data
    assert role_of(app, "odd@example.com") is None


def test_create_needs_the_csrf_token(app, admin_client):
    response = admin_client.post(URL, data={"name": "X", "email": "x@example.com", "password": PASSWORD})
    assert response.status_code == 400
    assert role_of(app, "x@example.com") is None


# --- roles and approval ---------------------------------------------------------------------------------------


def test_change_a_role(app, admin_client, user_id):
    response = post(admin_client, f"{URL}/{user_id}/role", role="admin")
    assert b"Uma User is now admin." in response.data
    assert role_of(app, "user@example.com") == "admin"
    post(admin_client, f"{URL}/{user_id}/role", role="pending")
    assert role_of(app, "user@example.com") == "pending"


def test_approve_a_pending_account_in_one_click(app, admin_client, pending_id, pending_key):
    assert app.test_client().get("/api/v1/functions/", headers=bearer(pending_key)).status_code == 401
    response = post(admin_client, f"{URL}/{pending_id}/approve")
    assert b"Pat Pending is approved" in response.data
    assert role_of(app, "pending@example.com") == "user"
    assert app.test_client().get("/api/v1/functions/", headers=bearer(pending_key)).status_code == 200


def test_an_admin_cannot_demote_themselves(app, admin_client, admin_id):
    response = post(admin_client, f"{URL}/{admin_id}/role", role="user")
    assert b"You cannot remove your own admin role." in response.data
    assert role_of(app, "admin@example.com") == "admin"


def test_role_change_needs_the_csrf_token(app, admin_client, user_id):
    assert admin_client.post(f"{URL}/{user_id}/role", data={"role": "admin"}).status_code == 400
    assert role_of(app, "user@example.com") == "user"


def test_unknown_account(admin_client):
    response = post(admin_client, f"{URL}/no-such-id/role", role="user")
    assert b"This user does not exist." in response.data


# --- delete ---------------------------------------------------------------------------------------------------


def test_delete_removes_the_account_with_its_keys_and_personal_valves(
    app, admin_id, admin_client, user_id, user_key
):
    make_function(app, admin_id, id="personal", content=WITH_USER_VALVES, active=True)
    answer = app.test_client().post(
        "/api/v1/functions/id/personal/valves/user/update", json={"nickname": "Uma"}, headers=bearer(user_key)
    )
    assert answer.status_code == 200
    response = post(admin_client, f"{URL}/{user_id}/delete")
    assert b"Deleted Uma User (user@example.com), with their API keys and personal valves." in response.data
    assert b"user-row-user@example.com" not in response.data
    assert app.test_client().get("/api/v1/functions/", headers=bearer(user_key)).status_code == 401

    from extensions import db
    from models import ApiKey, UserValves

    with app.app_context():
        assert (
            db.session.scalar(select(func.count()).select_from(ApiKey).where(ApiKey.user_id == user_id)) == 0
        )
        assert db.session.scalar(select(func.count()).select_from(UserValves)) == 0


def test_an_admin_cannot_delete_themselves(app, admin_client, admin_id):
    response = post(admin_client, f"{URL}/{admin_id}/delete")
    assert b"You cannot delete your own account." in response.data
    assert role_of(app, "admin@example.com") == "admin"


def test_delete_needs_the_csrf_token(app, admin_client, user_id):
    assert admin_client.post(f"{URL}/{user_id}/delete").status_code == 400
    assert role_of(app, "user@example.com") == "user"


@pytest.mark.parametrize("action", ["role", "approve", "delete"])
def test_actions_only_accept_post(admin_client, user_id, action):
    assert admin_client.get(f"{URL}/{user_id}/{action}").status_code == 405


# --- many accounts: a page at a time, searched, filtered ------------------------------------------------------


def add_accounts(app, count: int, pending_every: int = 0) -> list[str]:
    """``count`` accounts written directly (no password hashing), created one second apart; every
    ``pending_every``-th one waits for approval. Their emails, in creation order."""
    from extensions import db
    from models import User

    emails = []
    with app.app_context():
        for n in range(count):
            pending = pending_every and n % pending_every == 0
            email = f"member{n:03d}@{'waiting' if pending else 'team'}.example.org"
            db.session.add(
                User(
                    name=f"Member {n:03d}",
                    email=email,
                    role="pending" if pending else "user",
                    password_hash="not a hash",
                    created_at=2_000_000_000 + n,
                )
            )
            emails.append(email)
        db.session.commit()
    return emails


def listed(page: bytes) -> list[str]:
    return re.findall(r'data-testid="user-row-([^"]+)"', page.decode())


def test_many_accounts_are_listed_a_page_at_a_time_pending_first(app, admin_client, admin_id):
    emails = add_accounts(app, 120, pending_every=40)  # members 0, 40 and 80 wait
    waiting = [emails[0], emails[40], emails[80]]
    first = admin_client.get(URL)
    rows = listed(first.data)
    assert len(rows) == 50 and rows[:3] == waiting  # those waiting first, oldest first
    assert rows[3] == "admin@example.com"  # then everyone else by creation
    assert b"Showing 1\xe2\x80\x9350 of 121" in first.data and b"3 waiting for approval" in first.data
    assert b'data-testid="pagination"' in first.data and b'href="/admin/users?page=2"' in first.data
    every = (
        rows + listed(admin_client.get(f"{URL}?page=2").data) + listed(admin_client.get(f"{URL}?page=3").data)
    )
    assert len(every) == 121 and len(set(every)) == 121  # each account once, none skipped across the seam
    others = [email for email in emails if email not in waiting]
    assert every == waiting + ["admin@example.com"] + others
    last = admin_client.get(f"{URL}?page=3")
    assert b"Showing 101\xe2\x80\x93121 of 121" in last.data


def test_pages_split_the_waiting_accounts_too(app, admin_client, admin_id):
    emails = add_accounts(app, 12, pending_every=2)  # six wait
    waiting = emails[::2]
    assert listed(admin_client.get(f"{URL}?per_page=4").data) == waiting[:4]
    assert listed(admin_client.get(f"{URL}?per_page=4&page=2").data) == waiting[4:] + [
        "admin@example.com",
        emails[1],
    ]


def test_search_finds_every_word_in_a_name_or_email_and_keeps_the_filter_across_pages(
    app, admin_client, admin_id
):
    add_accounts(app, 70, pending_every=10)
    page = admin_client.get(f"{URL}?q=MEMBER+team")
    rows = listed(page.data)
    assert len(rows) == 50 and all("team" in row for row in rows)
    assert b"of 63 matching" in page.data and b'href="/admin/users?q=MEMBER+team&amp;page=2"' in page.data
    assert len(listed(admin_client.get(f"{URL}?q=MEMBER+team&page=2").data)) == 13
    assert listed(admin_client.get(f"{URL}?q=member+007").data) == ["member007@team.example.org"]
    assert listed(admin_client.get(f"{URL}?q=Admin").data) == ["admin@example.com"]  # by name
    # LIKE's own characters are searched for as they are
    nothing = admin_client.get(f"{URL}?q=%25")
    assert listed(nothing.data) == [] and b"No account matches." in nothing.data
    assert listed(admin_client.get(f"{URL}?q=member_07").data) == []


def test_the_role_filter_shows_one_role(app, admin_client, admin_id, user_id):
    emails = add_accounts(app, 30, pending_every=3)
    waiting = listed(admin_client.get(f"{URL}?role=pending").data)
    assert waiting == emails[::3]
    assert listed(admin_client.get(f"{URL}?role=admin").data) == ["admin@example.com"]
    users = listed(admin_client.get(f"{URL}?role=user&q=example.com").data)
    assert users == ["user@example.com"]
    # The lede always counts every account, whatever the filter.
    assert b"32 accounts" in admin_client.get(f"{URL}?role=admin").data


def test_odd_page_arguments_fall_back_rather_than_fail(app, admin_client, admin_id):
    add_accounts(app, 5)
    for query in ("?page=abc", "?page=-3", "?per_page=0", "?role=superuser", "?page=1&per_page=x"):
        page = admin_client.get(URL + query)
        assert page.status_code == 200 and len(listed(page.data)) == 6, query
    beyond = admin_client.get(f"{URL}?page=99")
    assert (
        beyond.status_code == 200 and listed(beyond.data) == [] and b"Nothing on page 99 of 1" in beyond.data
    )
    huge = admin_client.get(f"{URL}?page=99999999999999999999")
    assert huge.status_code == 200
