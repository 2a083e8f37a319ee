"""Accounts: first run, sign-in/out, lockout, pending, redirects, API keys, roles and CSRF."""

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


def test_repeated_failures_lock_the_account(app, client, admin_id):
    for _ in range(app.config["SLUICE_SIGNIN_MAX_FAILURES"]):
        sign_in(client, "admin@example.com", "wrong password")
    # Even the right password is refused while the lock lasts.
    response = sign_in(client, "admin@example.com", PASSWORD)
    assert response.status_code == 400
    assert b"Too many failed sign-ins" in response.data
    expire_locks(app)
    assert sign_in(client, "admin@example.com", PASSWORD).status_code == 302


def expire_locks(app):
    from sqlalchemy import update

    from extensions import db
    from models import SignInFailures

    with app.app_context():
        db.session.execute(update(SignInFailures).values(locked_until=1))
        db.session.commit()


def test_an_address_without_an_account_locks_the_same_way(app, client, admin_id):
    """Otherwise the lockout message would tell a guesser which addresses have accounts."""
    limit = app.config["SLUICE_SIGNIN_MAX_FAILURES"]
    answers = {}
    for address in ("admin@example.com", "nobody@example.com"):
        pages = [sign_in(client, address, "wrong password") for _ in range(limit + 1)]
        answers[address] = [
            (page.status_code, page.data.count(b"Too many failed sign-ins")) for page in pages
        ]
    assert answers["admin@example.com"] == answers["nobody@example.com"]
    assert answers["nobody@example.com"][-1] == (400, 1)
    assert b"Too many failed sign-ins" not in pages[limit - 1].data  # the limit-th miss still says incorrect


def test_misses_are_counted_per_address_and_forgotten_on_success(app, client, admin_id, user_id):
    limit = app.config["SLUICE_SIGNIN_MAX_FAILURES"]
    for _ in range(limit - 1):
        sign_in(client, "admin@example.com", "wrong password")
    assert sign_in(client, "admin@example.com", PASSWORD).status_code == 302
    client.post("/auth/signout", data={"csrf_token": csrf_token(client, "/admin/functions")})
    # The success wiped the count: as many misses again do not lock.
    for _ in range(limit - 1):
        sign_in(client, "ADMIN@example.com ", "wrong password")  # the same address, however typed
    assert sign_in(client, "admin@example.com", PASSWORD).status_code == 302
    client.post("/auth/signout", data={"csrf_token": csrf_token(client, "/admin/functions")})
    # Another account's misses lock only that account.
    for _ in range(limit):
        sign_in(client, "admin@example.com", "wrong password")
    assert b"Too many failed sign-ins" in sign_in(client, "admin@example.com", PASSWORD).data
    assert sign_in(client, "user@example.com", PASSWORD).status_code == 302


def test_misses_sent_at_once_are_all_counted(app, admin_id):
    from concurrent.futures import ThreadPoolExecutor

    from extensions import db
    from models import SignInFailures
    from services import accounts

    def miss(_):
        with app.app_context():
            accounts.authenticate("admin@example.com", "wrong password", 1000, 60)

    with ThreadPoolExecutor(4) as pool:
        list(pool.map(miss, range(12)))
    with app.app_context():
        assert db.session.scalars(select(SignInFailures.failures)).one() == 12
        stored = db.session.scalars(select(SignInFailures.email_hash)).one()
    assert "admin" not in stored and len(stored) == 64  # the address is not kept in clear


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


def test_attempts_sent_all_at_once_check_no_more_passwords_than_the_limit(app, admin_id, monkeypatch):
    import threading
    import time
    from concurrent.futures import ThreadPoolExecutor

    from services import accounts

    checked = []
    lock = threading.Lock()
    real_check = accounts.check_password

    def slow_check(user, password):
        with lock:
            checked.append(password)
        time.sleep(0.05)  # as slow as a real hash: every attempt is in flight at once
        return real_check(user, password)

    monkeypatch.setattr(accounts, "check_password", slow_check)

    def guess(number):
        with app.app_context():
            return accounts.authenticate("admin@example.com", f"guess-{number}", 5, 60).error

    with ThreadPoolExecutor(8) as pool:
        answers = list(pool.map(guess, range(40)))
    assert len(checked) <= 5
    assert sum("Too many failed sign-ins" in answer for answer in answers) >= 35


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
