"""Accounts: first run, sign-in/out, pending, redirects, API keys, roles and CSRF."""

from __future__ import annotations

import pytest
from sqlalchemy import select

from tests.conftest import PASSWORD, bearer, csrf_token, sign_in

NOT_AUTHENTICATED = "Not authenticated"
INVALID = "Your session has expired or the token is invalid. Please sign in again."
NO_PERMISSION = (
    "You do not have permission to access this resource. Please contact your administrator for assistance."
)


def test_first_visit_creates_the_first_admin(app, client):
    page = client.get("/auth")
    assert b"Set up Sluice" in page.data
    token = csrf_token(client)
    response = client.post(
        "/auth",
        data={
            "name": "Root",
            "email": "Root@Example.com",
            "password": "a good password",
            "csrf_token": token,
        },
    )
    assert response.status_code == 302
    from extensions import db
    from models import User

    with app.app_context():
        user = db.session.scalar(select(User))
        assert (user.email, user.role, user.name) == ("root@example.com", "admin", "Root")
        assert user.password_hash.startswith("$argon2")
        assert "a good password" not in user.password_hash
    # Signed in straight away.
    assert client.get("/api/v1/functions/").status_code == 200


def test_first_run_form_reports_each_field(client):
    token = csrf_token(client)
    response = client.post(
        "/auth", data={"name": "", "email": "bad", "password": "short", "csrf_token": token}
    )
    assert response.status_code == 400
    assert b"Enter a name." in response.data
    assert b"Enter a valid email address." in response.data
    assert b"at least 8 characters" in response.data


def test_first_run_is_refused_once_an_admin_exists(app, client, admin_id):
    page = client.get("/auth")
    assert b"Set up Sluice" not in page.data and b"Sign in" in page.data
    from services import accounts
    from services.errors import ServiceError

    with app.app_context():
        with pytest.raises(ServiceError):
            accounts.create_first_admin("Mallory", "m@example.com", "password123")
    token = csrf_token(client)
    response = client.post(
        "/auth", data={"name": "M", "email": "m@example.com", "password": "password123", "csrf_token": token}
    )
    assert response.status_code == 400  # treated as a failed sign-in, never as a set-up
    from extensions import db
    from models import User

    with app.app_context():
        assert db.session.scalar(select(User).where(User.email == "m@example.com")) is None


def test_sign_in_and_out(client, admin_id):
    response = sign_in(client, "admin@example.com")
    assert response.status_code == 302
    assert client.get("/api/v1/functions/").status_code == 200
    token = csrf_token(client, "/settings/keys")  # any page carries the token
    assert client.post("/auth/signout", data={"csrf_token": token}).status_code == 302
    assert client.get("/api/v1/functions/").get_json()["detail"] == NOT_AUTHENTICATED


def test_wrong_password_is_refused(client, admin_id):
    response = sign_in(client, "admin@example.com", "wrong password")
    assert response.status_code == 400
    assert b"The email or password is incorrect." in response.data
    response = sign_in(client, "nobody@example.com", "wrong password")
    assert b"The email or password is incorrect." in response.data


@pytest.mark.parametrize(
    "target, expected",
    [
        ("/settings/keys", "/settings/keys"),
        ("https://evil.example/", "/"),
        ("//evil.example/x", "/"),
        ("/\\evil.example", "/"),
        ("javascript:alert(1)", "/"),
        ("evil.example", "/"),
    ],
)
def test_next_redirect_is_kept_on_site(client, admin_id, target, expected):
    token = csrf_token(client)
    response = client.post(
        "/auth",
        data={"email": "admin@example.com", "password": PASSWORD, "csrf_token": token, "next": target},
    )
    assert response.status_code == 302
    assert response.headers["Location"] == expected


def test_pending_user_sees_only_the_waiting_page(client, pending_id):
    assert sign_in(client, "pending@example.com").status_code == 302
    response = client.get("/", follow_redirects=True)
    assert b"Waiting for approval" in response.data
    for path in ("/admin/functions", "/settings/valves", "/settings/keys", "/admin/users"):
        response = client.get(path)
        assert response.status_code == 302 and response.headers["Location"].endswith("/pending")
    assert client.get("/api/v1/functions/").get_json()["detail"] == NO_PERMISSION


def test_signup_is_off_by_default(client, admin_id):
    assert client.get("/auth/signup").status_code == 404


@pytest.mark.parametrize("app_config", [{"SLUICE_ENABLE_SIGNUP": True}])
def test_signup_creates_a_pending_account(app, client, admin_id, app_config):
    token = csrf_token(client, "/auth/signup")
    response = client.post(
        "/auth/signup",
        data={"name": "New", "email": "new@example.com", "password": "password123", "csrf_token": token},
    )
    assert response.status_code == 302 and response.headers["Location"].endswith("/pending")
    from extensions import db
    from models import User

    with app.app_context():
        assert db.session.scalar(select(User.role).where(User.email == "new@example.com")) == "pending"


def test_cookies_are_httponly_and_lax(client, admin_id):
    response = sign_in(client, "admin@example.com")
    cookie = response.headers["Set-Cookie"]
    assert "HttpOnly" in cookie and "SameSite=Lax" in cookie


# --- API keys -----------------------------------------------------------------------------------


def test_api_key_is_stored_only_as_a_hash(app, admin_key):
    from extensions import db
    from models import ApiKey

    with app.app_context():
        stored = db.session.scalar(select(ApiKey))
        assert admin_key not in (stored.key_hash, stored.prefix)
        assert len(stored.key_hash) == 64
        assert admin_key.startswith(stored.prefix)
    assert admin_key.startswith("sk-") and len(admin_key) >= 3 + 32


def test_api_key_authenticates_and_revoked_key_fails(app, client, admin_id, admin_key):
    assert client.get("/api/v1/functions/", headers=bearer(admin_key)).status_code == 200
    assert client.get("/api/v1/functions/", headers={"x-api-key": admin_key}).status_code == 200
    from extensions import db
    from models import ApiKey, User
    from services import accounts

    with app.app_context():
        key = db.session.scalar(select(ApiKey))
        accounts.revoke_api_key(db.session.get(User, admin_id), key.id)
    response = client.get("/api/v1/functions/", headers=bearer(admin_key))
    assert response.status_code == 401
    assert response.get_json()["detail"] == INVALID


@pytest.mark.parametrize(
    "headers, detail",
    [
        ({}, NOT_AUTHENTICATED),
        ({"Authorization": "Bearer sk-" + "a" * 40}, INVALID),
        ({"Authorization": "Bearer not-a-key"}, INVALID),
        ({"Authorization": "Basic dXNlcjpwYXNz"}, INVALID),
        ({"x-api-key": "sk-nope"}, INVALID),
    ],
)
def test_bad_credentials(client, headers, detail):
    response = client.get("/api/v1/functions/", headers=headers)
    assert response.status_code == 401
    assert response.get_json() == {"detail": detail}


def test_roles_on_an_admin_route(client, admin_key, user_key, pending_key):
    assert client.get("/api/v1/functions/export", headers=bearer(admin_key)).status_code == 200
    for key in (user_key, pending_key):
        response = client.get("/api/v1/functions/export", headers=bearer(key))
        assert response.status_code == 401
        assert response.get_json()["detail"] == NO_PERMISSION
    assert client.get("/api/v1/functions/", headers=bearer(user_key)).status_code == 200
    assert client.get("/api/v1/functions/", headers=bearer(pending_key)).get_json()["detail"] == NO_PERMISSION


def test_csrf_is_required_for_cookie_api_calls(admin_client):
    body = {"functions": []}
    response = admin_client.post("/api/v1/functions/sync", json=body)
    assert response.status_code == 403
    assert "CSRF" in response.get_json()["detail"]
    token = csrf_token(admin_client, "/auth/signup")
    response = admin_client.post("/api/v1/functions/sync", json=body, headers={"X-CSRFToken": token})
    assert response.status_code == 200


def test_csrf_not_required_with_an_api_key(client, admin_key):
    assert (
        client.post("/api/v1/functions/sync", json={"functions": []}, headers=bearer(admin_key)).status_code
        == 200
    )


def test_csrf_is_required_for_forms(client, admin_id):
    response = client.post("/auth", data={"email": "admin@example.com", "password": PASSWORD})
    assert response.status_code == 400
    assert b"This form has expired" in response.data


def test_a_user_sent_to_an_admin_page_lands_on_their_start_page(client, user_id):
    token = csrf_token(client, "/auth")
    response = client.post(
        "/auth",
        data={
            "email": "user@example.com",
            "password": PASSWORD,
            "csrf_token": token,
            "next": "/admin/functions",
        },
    )
    assert response.status_code == 302
    assert response.headers["Location"] == "/"
    assert b"That page is for administrators" in client.get("/", follow_redirects=True).data


def test_an_admin_sent_to_an_admin_page_goes_there(client, admin_id):
    token = csrf_token(client, "/auth")
    response = client.post(
        "/auth",
        data={
            "email": "admin@example.com",
            "password": PASSWORD,
            "csrf_token": token,
            "next": "/admin/users",
        },
    )
    assert response.headers["Location"] == "/admin/users"


def test_signing_out_ends_the_session_even_for_a_copy_of_the_cookie(app, client, admin_id):
    assert sign_in(client, "admin@example.com").status_code == 302
    copied = client.get_cookie("session").value
    assert client.get("/api/v1/functions/").status_code == 200
    client.post("/auth/signout", data={"csrf_token": csrf_token(client, "/admin/functions")})

    thief = app.test_client()
    thief.set_cookie("session", copied)
    assert thief.get("/api/v1/functions/").status_code == 401
    assert thief.get("/admin/users").status_code == 302  # to the sign-in page

    # Signing in again works, and API keys were never sessions: they keep working.
    assert sign_in(client, "admin@example.com").status_code == 302
    assert client.get("/api/v1/functions/").status_code == 200


def test_a_session_from_before_the_epoch_upgrade_must_sign_in_again(app, admin_id):
    client = app.test_client()
    with client.session_transaction() as session:
        session["_user_id"] = admin_id  # no epoch, as written by earlier versions
        session["_fresh"] = True
    assert client.get("/api/v1/functions/").status_code == 401


def test_a_connection_key_is_made_by_the_cli_for_admins_only_and_refused_by_the_json_api(
    app, client, runner, admin_id, user_id
):
    made = runner.invoke(args=["create-api-key", "--email", "admin@example.com", "--connection"])
    assert made.exit_code == 0, made.output
    assert made.output.startswith("Connection key for admin@example.com")
    key = made.output.strip().splitlines()[-1]

    response = client.get("/api/v1/functions/", headers=bearer(key))
    assert response.status_code == 401
    assert response.get_json()["detail"] == INVALID
    assert client.get("/v1/models", headers=bearer(key)).status_code == 200

    refused = runner.invoke(args=["create-api-key", "--email", "user@example.com", "--connection"])
    assert refused.exit_code != 0
    assert "Only an administrator" in refused.output


def test_an_unknown_email_costs_a_full_password_check():
    """The dummy hash checked for an unknown email is written out in the source, not hashed at start-up: it must
    carry the parameters of the hasher the server uses, or a miss would answer faster than a wrong password."""
    from argon2 import PasswordHasher
    from argon2.exceptions import VerifyMismatchError

    from services import accounts

    server_hasher = PasswordHasher()  # as services/accounts.py makes it (the suite swaps in a cheap one)
    assert not server_hasher.check_needs_rehash(accounts._DUMMY_HASH)
    with pytest.raises(VerifyMismatchError):  # a well-formed hash: the full check runs, and fails
        server_hasher.verify(accounts._DUMMY_HASH, "x")
