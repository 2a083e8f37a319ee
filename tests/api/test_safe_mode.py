"""SLUICE_SAFE_MODE: no function code is loaded or run, every function is treated as inactive, what would need the
loader is refused with a clear 503, and what needs no code (switching off, deleting) still works."""

from __future__ import annotations

import pytest

import loader
from tests import factories as F
from tests.conftest import bearer, make_app, sign_in
from tests.factories import stored_function

CHAT = {"messages": [{"role": "user", "content": "hi"}]}


@pytest.fixture
def safe_app(app, database_url, admin_id, user_id, monkeypatch):
    """The same database, served in safe mode, after a filter and a pipe were saved and switched on."""
    F.make_function(app, admin_id, id="sample_filter", active=True, is_global=True)
    F.make_function(app, admin_id, id="echo", content=F.PIPE, active=True)
    safe = make_app(database_url, SLUICE_SAFE_MODE=True)

    def no_code(*args, **kwargs):
        raise AssertionError("function code was loaded or run in safe mode")

    for name in ("load_function", "validate_valves", "run_function", "run_function_collect"):
        monkeypatch.setattr(loader, name, no_code)
    return safe


@pytest.fixture
def safe(safe_app):
    return safe_app.test_client()


def test_running_a_function_is_refused_with_a_clear_503(safe, admin_key, user_key):
    for key in (admin_key, user_key):
        answer = safe.post(
            "/api/v1/functions/id/echo/run", json={"method": "pipe", "body": CHAT}, headers=bearer(key)
        )
        assert answer.status_code == 503
        assert answer.get_json()["detail"].startswith("Safe mode is on (SLUICE_SAFE_MODE)")


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("get", "/v1/models"),
        ("post", "/v1/chat/completions"),
        ("post", "/v1/sample_filter/filter/inlet"),
        ("get", "/v1/sample_filter/valves"),
    ],
)
def test_the_gateway_answers_that_safe_mode_is_on(safe, admin_key, method, path):
    kwargs = {"json": {"model": "echo", "body": CHAT, **CHAT}} if method == "post" else {}
    answer = getattr(safe, method)(path, headers=bearer(admin_key), **kwargs)
    assert answer.status_code == 503
    assert "Safe mode is on" in answer.get_json()["detail"]


def test_the_gateway_still_needs_a_key_in_safe_mode(safe):
    assert safe.get("/v1/models").status_code == 401


def test_saving_code_or_valves_is_refused_and_nothing_changes(safe_app, safe, admin_key):
    answer = safe.post("/api/v1/functions/create", json=F.form(id="new_one"), headers=bearer(admin_key))
    assert answer.status_code == 503 and "Safe mode is on" in answer.get_json()["detail"]
    assert stored_function(safe_app, "new_one") is None

    before = stored_function(safe_app, "sample_filter")
    answer = safe.post(
        "/api/v1/functions/id/sample_filter/update",
        json=F.form(content=F.FILTER + "\n# changed\n"),
        headers=bearer(admin_key),
    )
    assert answer.status_code == 503
    answer = safe.post(
        "/api/v1/functions/id/sample_filter/valves/update", json={"prefix": "!"}, headers=bearer(admin_key)
    )
    assert answer.status_code == 503
    after = stored_function(safe_app, "sample_filter")
    assert (after.content, after.valves, after.version_id) == (
        before.content,
        before.valves,
        before.version_id,
    )


def test_switching_off_and_deleting_still_work(safe_app, safe, admin_key):
    answer = safe.post("/api/v1/functions/id/echo/toggle", headers=bearer(admin_key))
    assert answer.status_code == 200 and answer.get_json()["is_active"] is False
    answer = safe.delete("/api/v1/functions/id/sample_filter/delete", headers=bearer(admin_key))
    assert answer.status_code == 200
    assert stored_function(safe_app, "sample_filter") is None


def test_users_see_every_function_as_inactive(safe, admin_key, user_key):
    assert safe.get("/api/v1/functions/", headers=bearer(user_key)).get_json() == []
    assert (
        safe.get("/api/v1/functions/id/sample_filter/valves/user", headers=bearer(user_key)).status_code
        == 404
    )
    # Admins still see what is stored, switches as they were, to choose what to switch off.
    listed = safe.get("/api/v1/functions/", headers=bearer(admin_key)).get_json()
    assert {f["id"]: f["is_active"] for f in listed} == {"sample_filter": True, "echo": True}


def test_the_console_says_safe_mode_is_on(app, safe_app, admin_id, user_id):
    for email in ("admin@example.com", "user@example.com"):
        client = safe_app.test_client()
        assert sign_in(client, email).status_code == 302
        page = client.get("/", follow_redirects=True)
        assert page.status_code == 200
        assert b"Safe mode is on." in page.data
    normal = app.test_client()
    assert sign_in(normal, "admin@example.com").status_code == 302
    assert b"Safe mode is on." not in normal.get("/", follow_redirects=True).data


def test_the_valves_pages_open_without_loading_code(safe_app, admin_id):
    client = safe_app.test_client()
    assert sign_in(client, "admin@example.com").status_code == 302
    page = client.get("/admin/functions/valves", query_string={"id": "sample_filter"})
    assert page.status_code == 200 and b"valve-prefix" in page.data


def test_a_pipes_page_lists_no_sub_pipes_in_safe_mode(safe_app, admin_id):
    """Reading a manifold's `pipes` for "Try it" runs its code: not in safe mode."""
    client = safe_app.test_client()
    assert sign_in(client, "admin@example.com").status_code == 302

    page = client.get("/admin/functions/edit?id=echo")

    assert page.status_code == 200
    assert b"try-sub-choices" not in page.data
