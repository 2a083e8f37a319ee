"""Who may call what: every API route, under both prefixes, for each kind of caller."""

from __future__ import annotations

import shutil

import pytest

from tests.api.conftest import INVALID, NO_PERMISSION, NOT_AUTHENTICATED, PREFIXES, Api
from tests.conftest import PASSWORD, bearer, make_app

# The SPEC's routes (§3, §3.1) and the requirements routes: (method, path after the prefix, who).
EXPECTED_ROUTES = {
    ("GET", "/", "user"),
    ("GET", "/list", "admin"),
    ("GET", "/export", "admin"),
    ("POST", "/create", "admin"),
    ("GET", "/id/{id}", "admin"),
    ("POST", "/id/{id}/update", "admin"),
    ("POST", "/id/{id}/toggle", "admin"),
    ("POST", "/id/{id}/toggle/global", "admin"),
    ("DELETE", "/id/{id}/delete", "admin"),
    ("GET", "/id/{id}/valves", "admin"),
    ("GET", "/id/{id}/valves/spec", "admin"),
    ("POST", "/id/{id}/valves/update", "admin"),
    ("GET", "/id/{id}/valves/user", "user"),
    ("GET", "/id/{id}/valves/user/spec", "user"),
    ("POST", "/id/{id}/valves/user/update", "user"),
    ("POST", "/load/url", "admin"),
    ("POST", "/sync", "admin"),
    ("GET", "/id/{id}/history", "admin"),
    ("GET", "/id/{id}/history/{version_id}", "admin"),
    ("GET", "/id/{id}/history/diff", "admin"),
    ("POST", "/id/{id}/update/version", "admin"),
    ("DELETE", "/id/{id}/history/{version_id}", "admin"),
    ("GET", "/id/{id}/requirements", "admin"),
    ("POST", "/id/{id}/requirements/install", "admin"),
    ("POST", "/requirements/install", "admin"),
    ("GET", "/requirements/jobs/{job_id}", "admin"),
    ("POST", "/id/{id}/run", "user"),
}

# A body of the right shape for each POST route, so that an allowed caller gets past parsing.
BODIES = {
    "/create": {"id": "x", "name": "X", "content": "", "meta": {}},
    "/id/{id}/update": {"name": "X", "content": "", "meta": {}},
    "/id/{id}/valves/update": {},
    "/id/{id}/valves/user/update": {},
    "/load/url": {"url": "ftp://example.com/x.py"},
    "/sync": {"functions": [{"id": "bad id!", "name": "X", "content": "x"}]},
    "/id/{id}/update/version": {"version_id": "nope"},
    "/requirements/install": {"content": ""},
    "/id/{id}/run": {"method": "inlet", "body": {}},
}


def _routes():
    from blueprints.api import api
    from web.openapi import openapi_path

    found = set()
    for route in api.routes:
        path = openapi_path(route.rule)
        found.add((route.method, path, route.auth))
    return found


def test_every_route_of_the_spec_is_registered_with_its_access_level():
    assert _routes() == EXPECTED_ROUTES


@pytest.fixture(scope="module")
def shared(tmp_path_factory, sqlite_template):
    """One app and one account per role for the whole module: these tests only read."""
    path = tmp_path_factory.mktemp("access") / "sluice.sqlite3"
    shutil.copy(sqlite_template, path)
    app = make_app(f"sqlite:///{path}")
    from extensions import db
    from models import User
    from services import accounts

    keys = {}
    with app.app_context():
        for role in ("admin", "user", "pending"):
            user = accounts.create_user(role.title(), f"{role}@example.com", PASSWORD, role=role)
            keys[role] = accounts.create_api_key(db.session.get(User, user.id), "t")[1]
    yield app, keys
    with app.app_context():
        db.session.remove()
        db.engine.dispose()


def _call(client, method, url, headers, body):
    if method == "GET":
        return client.get(url, headers=headers)
    if method == "DELETE":
        return client.delete(url, headers=headers)
    return client.post(url, json=body, headers=headers)


CALLERS = ["nobody", "bad key", "malformed header", "pending", "user", "admin"]


@pytest.mark.parametrize("prefix", PREFIXES)
@pytest.mark.parametrize("method, path, who", sorted(EXPECTED_ROUTES))
def test_access_matrix(shared, prefix, method, path, who):
    app, keys = shared
    client = app.test_client()
    url = prefix + path.format(id="no_such_function", version_id="v", job_id="20260101T000000-abcdef12")
    if path == "/id/{id}/history/diff":
        url += "?from_id=a&to_id=b"
    body = BODIES.get(path)
    headers_for = {
        "nobody": {},
        "bad key": bearer("sk-" + "x" * 40),
        "malformed header": {"Authorization": "Bearer"},
        "pending": bearer(keys["pending"]),
        "user": bearer(keys["user"]),
        "admin": bearer(keys["admin"]),
    }
    for caller in CALLERS:
        response = _call(client, method, url, headers_for[caller], body)
        assert response.is_json, (caller, response.status_code, response.data[:200])
        detail = response.get_json().get("detail") if isinstance(response.get_json(), dict) else None
        if caller == "nobody":
            assert (response.status_code, detail) == (401, NOT_AUTHENTICATED)
        elif caller in ("bad key", "malformed header"):
            assert (response.status_code, detail) == (401, INVALID)
        elif caller == "pending" or (caller == "user" and who == "admin"):
            assert (response.status_code, detail) == (401, NO_PERMISSION), caller
        else:
            # Allowed: the answer is about the request itself (not found, refused input, ...), never about access.
            assert response.status_code != 401, (caller, response.get_json())
            assert detail not in (NOT_AUTHENTICATED, INVALID, NO_PERMISSION)


@pytest.mark.parametrize("prefix", PREFIXES)
def test_list_answers_with_and_without_trailing_slash(shared, prefix):
    app, keys = shared
    client = app.test_client()
    for url in (prefix, prefix + "/"):
        response = client.get(url, headers=bearer(keys["user"]))
        assert response.status_code == 200, url
        assert response.get_json() == []


@pytest.mark.parametrize("prefix", PREFIXES)
def test_unknown_api_path_is_a_json_404(shared, prefix):
    app, keys = shared
    response = app.test_client().get(prefix + "/nothing/here", headers=bearer(keys["admin"]))
    assert response.status_code == 404 and response.is_json
    assert response.get_json()["detail"]


def test_wrong_method_is_a_json_405(shared):
    app, keys = shared
    response = app.test_client().get("/api/v1/functions/create", headers=bearer(keys["admin"]))
    assert response.status_code == 405 and response.is_json


def test_cookie_session_works_and_needs_csrf_for_writes(admin_client):
    from tests.conftest import csrf_token

    assert admin_client.get("/api/v1/functions/").status_code == 200
    response = admin_client.post("/api/v1/functions/id/x/toggle")
    assert response.status_code == 403 and "CSRF" in response.get_json()["detail"]
    token = csrf_token(admin_client, "/auth/signup")
    response = admin_client.post("/api/v1/functions/id/x/toggle", headers={"X-CSRFToken": token})
    assert response.status_code == 404


def _session_cookie(client) -> str:
    cookie = client.get_cookie("session")
    assert cookie is not None and cookie.value
    return cookie.value


@pytest.mark.parametrize("tamper", ["garbage", "signature", "other secret"])
def test_a_session_cookie_that_does_not_verify_is_invalid(app, admin_client, tamper):
    from itsdangerous import URLSafeTimedSerializer

    valid = _session_cookie(admin_client)
    forged = {
        "garbage": "not-a-session",
        "signature": valid[:-2] + ("AA" if not valid.endswith("AA") else "BB"),
        "other secret": URLSafeTimedSerializer("another-secret", salt="cookie-session").dumps(
            {"_user_id": "someone", "_fresh": True}
        ),
    }[tamper]
    client = app.test_client()
    client.set_cookie("session", forged)
    for url in ("/api/v1/functions/", "/api/functions/export"):
        response = client.get(url)
        assert response.status_code == 401
        assert response.get_json() == {"detail": INVALID}


def test_a_session_without_an_account_is_not_authenticated(client):
    # A browser that only opened the sign-in page holds a valid session with a CSRF token and no user.
    assert client.get("/auth").status_code == 200
    _session_cookie(client)
    response = client.get("/api/v1/functions/")
    assert response.status_code == 401
    assert response.get_json() == {"detail": NOT_AUTHENTICATED}


def test_an_empty_session_cookie_is_no_credential(client):
    client.set_cookie("session", "")
    response = client.get("/api/v1/functions/")
    assert (response.status_code, response.get_json()) == (401, {"detail": NOT_AUTHENTICATED})


def test_only_reads_authenticate_in_their_own_query():
    """A route without a guard before its view must change nothing: its read runs before the caller is known."""
    from blueprints.api import api

    unguarded = sorted((route.method, route.rule) for route in api.routes if route.authenticated_by_view)
    assert unguarded == [("GET", "/"), ("GET", "/id/<id>")]


@pytest.mark.parametrize("path", ["/", "/id/sample_filter", "/id/no_such_function"])
def test_a_read_joined_to_its_key_turns_away_what_the_guard_would(app, client, admin_key, path):
    """Revoked keys, connection keys, unknown keys, pending owners and users on an admin read get the guard's
    answers, and an allowed caller's answer is the same as with a session cookie."""
    from extensions import db
    from models import ApiKey, User
    from services import accounts
    from tests.conftest import sign_in

    Api(client, admin_key).create("sample_filter")
    with app.app_context():
        admin = db.session.scalar(db.select(User).where(User.role == "admin"))
        _connection_key, connection = accounts.create_api_key(admin, "c", connection=True)
        revoked_record, revoked = accounts.create_api_key(admin, "r")
        accounts.revoke_api_key(admin, revoked_record.id)
        user = accounts.create_user("U", "u@example.com", PASSWORD, role="user")
        user_key = accounts.create_api_key(db.session.get(User, user.id), "u")[1]
        pending = accounts.create_user("P", "p@example.com", PASSWORD, role="pending")
        pending_key = accounts.create_api_key(db.session.get(User, pending.id), "p")[1]
        assert db.session.get(ApiKey, revoked_record.id).revoked_at is not None
    url = "/api/v1/functions" + path
    for key in (connection, revoked, "sk-" + "0" * 48, "sk-short"):
        response = client.get(url, headers=bearer(key))
        assert (response.status_code, response.get_json()["detail"]) == (401, INVALID), key
    response = client.get(url, headers=bearer(pending_key))
    assert (response.status_code, response.get_json()["detail"]) == (401, NO_PERMISSION)
    by_user = client.get(url, headers=bearer(user_key))
    if path == "/":
        assert by_user.status_code == 200 and by_user.get_json() == []  # the sample is not active
    else:
        assert (by_user.status_code, by_user.get_json()["detail"]) == (401, NO_PERMISSION)
    by_key = client.get(url, headers=bearer(admin_key))
    browser = app.test_client()
    sign_in(browser, "admin@example.com")
    by_cookie = browser.get(url)
    assert (by_key.status_code, by_key.get_json()) == (by_cookie.status_code, by_cookie.get_json())
    assert by_key.status_code == (404 if path == "/id/no_such_function" else 200)
