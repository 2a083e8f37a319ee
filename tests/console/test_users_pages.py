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
