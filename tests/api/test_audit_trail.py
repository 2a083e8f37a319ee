"""The audit trail records every change with who, when, what and through which face, and never a valve's value.

Each kind of change is made the way a person would make it (console form, API key, CLI) and the trail is read back
from the database. Recording commits with the change: a change that fails leaves no entry, and an entry that cannot
be written undoes its change.
"""

from __future__ import annotations

import json

import pytest

from tests import factories as F
from tests.conftest import PASSWORD, csrf_token, sign_in
from tests.console.html_forms import read_form

SECRET = "sk-AUDIT-SECRET-9876543210"


def trail(app) -> list[dict]:
    """Every entry, oldest first, as the API answers it."""
    from sqlalchemy import select

    from extensions import db
    from models import AuditEntry
    from services import audit

    with app.app_context():
        return [
            audit.entry_response(e) for e in db.session.scalars(select(AuditEntry).order_by(AuditEntry.id))
        ]


def recorded(app, prefix: str = "") -> list[tuple[str, str, str | None]]:
    """(action, face, target id) of the entries whose action starts with ``prefix``, oldest first."""
    return [(e["action"], e["face"], e["target_id"]) for e in trail(app) if e["action"].startswith(prefix)]


def only(app, action: str) -> dict:
    found = [e for e in trail(app) if e["action"] == action]
    assert len(found) == 1, found
    return found[0]


def post_form(client, path: str, data: dict | None = None, token_from: str = "/admin/functions", **kw):
    data = dict(data or {})
    data.setdefault("csrf_token", csrf_token(client, token_from))
    return client.post(path, data=data, **kw)


# --- functions ---------------------------------------------------------------------------------------------------


def test_function_changes_through_an_api_key_are_recorded_with_the_key_face(app, admin_api, admin_id):
    admin_api.create()
    assert admin_api.post("/id/sample_filter/update", F.form(name="Renamed")).status_code == 200
    for path in ("/toggle", "/toggle", "/toggle/global", "/toggle/global"):
        assert admin_api.post("/id/sample_filter" + path).status_code == 200
    versions = admin_api.get("/id/sample_filter/history").get_json()
    first, second = versions[-1]["id"], versions[0]["id"]
    assert admin_api.post("/id/sample_filter/update/version", {"version_id": first}).status_code == 200
    assert admin_api.delete(f"/id/sample_filter/history/{second}").status_code == 200
    assert admin_api.delete("/id/sample_filter/delete").status_code == 200

    assert recorded(app, "function.") == [
        (action, "api_key", "sample_filter")
        for action in (
            "function.created",
            "function.updated",
            "function.activated",
            "function.deactivated",
            "function.made_global",
            "function.made_not_global",
            "function.restored",
            "function.version_deleted",
            "function.deleted",
        )
    ]
    entries = {e["action"]: e for e in trail(app)}
    assert entries["function.created"]["user"] == {
        "id": admin_id,
        "email": "admin@example.com",
        "name": "Ada Admin",
    }
    assert entries["function.created"]["details"] == {"name": "Sample Filter"}
    assert entries["function.updated"]["details"] == {"changed": ["name"]}
    assert entries["function.restored"]["details"] == {"changed": ["name"], "version_id": first}
    assert entries["function.version_deleted"]["details"] == {"version_id": second}
    assert entries["function.deleted"]["details"] == {"name": "Sample Filter"}
    assert all(e["created_at"] > 0 for e in entries.values())


def test_function_changes_in_the_console_are_recorded_with_the_console_face(app, admin_client, admin_id):
    created = post_form(
        admin_client,
        "/admin/functions/create",
        {"name": "Sample Filter", "id": "", "description": "", "content": F.FILTER, "commit_message": ""},
    )
    assert created.status_code == 302
    assert post_form(
        admin_client, "/admin/functions/toggle", {"id": "sample_filter", "state": "on"}
    ).status_code
    # The console's scripts call the API with the session cookie: that is still the console.
    token = csrf_token(admin_client, "/admin/functions")
    toggled = admin_client.post("/api/v1/functions/id/sample_filter/toggle", headers={"X-CSRFToken": token})
    assert toggled.status_code == 200
    deleted = post_form(admin_client, "/admin/functions/delete?id=sample_filter", {"id": "sample_filter"})
    assert deleted.status_code == 302

    assert recorded(app, "function.") == [
        ("function.created", "console", "sample_filter"),
        ("function.activated", "console", "sample_filter"),
        ("function.deactivated", "console", "sample_filter"),
        ("function.deleted", "console", "sample_filter"),
    ]
    assert {e["user"]["id"] for e in trail(app) if e["action"].startswith("function.")} == {admin_id}


def test_sync_records_what_it_created_updated_and_deleted(app, admin_api, admin_id):
    F.make_function(app, admin_id, "keep", F.FILTER)
    F.make_function(app, admin_id, "same", F.ACTION)
    F.make_function(app, admin_id, "drop", F.PIPE)
    same = admin_api.get("/id/same").get_json()
    items = [
        {"id": "keep", "name": "Kept", "content": F.FILTER, "valves": {"api_key": SECRET}, "is_active": True},
        {"id": "same", "name": same["name"], "content": same["content"], "meta": same["meta"]},
        {"id": "fresh", "name": "Fresh", "content": F.TOGGLE_FILTER},
    ]
    assert admin_api.post("/sync", {"functions": items}).status_code == 200

    assert sorted(entry for entry in recorded(app, "function.") if entry[1] != "system") == [
        ("function.created", "api_key", "fresh"),
        ("function.deleted", "api_key", "drop"),
        ("function.updated", "api_key", "keep"),
    ]
    assert only(app, "function.updated")["details"] == {  # "same" changed nothing: not recorded
        "changed": ["is_active", "name", "valves"],
        "via": "sync",
        "valves": ["api_key"],
    }
    assert SECRET not in json.dumps(trail(app))


# --- valves ------------------------------------------------------------------------------------------------------


def test_admin_valves_record_which_fields_changed_never_their_values(app, admin_api, admin_client):
    admin_api.create()
    assert (
        admin_api.post("/id/sample_filter/valves/update", {"api_key": SECRET, "priority": 2}).status_code
        == 200
    )
    assert (
        admin_api.post("/id/sample_filter/valves/update", {"api_key": SECRET, "priority": 3}).status_code
        == 200
    )
    url = "/admin/functions/valves?id=sample_filter"
    reset = admin_client.post(url, data={"csrf_token": csrf_token(admin_client, url), "action": "reset_all"})
    assert reset.status_code == 302

    changes = [e for e in trail(app) if e["action"] == "function.valves_changed"]
    assert [(e["face"], e["target_id"], e["details"]) for e in changes] == [
        ("api_key", "sample_filter", {"fields": ["api_key", "priority"]}),
        ("api_key", "sample_filter", {"fields": ["priority"]}),
        ("console", "sample_filter", {"fields": ["api_key", "priority"]}),
    ]
    assert SECRET not in json.dumps(trail(app))


def test_a_users_valves_are_recorded_as_that_users_change(app, admin_api, user_api, user_client, user_id):
    admin_api.create()
    admin_api.post("/id/sample_filter/toggle")
    assert user_api.post("/id/sample_filter/valves/user/update", {"max_turns": 7}).status_code == 200
    url = "/settings/valves?id=sample_filter"
    form = read_form(user_client.get(url).data, "valves-form")
    form.setlist("valve-max_turns", ["9"])
    form.setlist("valve-enabled", ["off"])
    saved = user_client.post(url, data=form)
    assert saved.status_code == 302, saved.data

    changes = [e for e in trail(app) if e["action"] == "function.user_valves_changed"]
    assert [(e["face"], e["user"]["id"], e["target_id"]) for e in changes] == [
        ("api_key", user_id, "sample_filter"),
        ("console", user_id, "sample_filter"),
    ]
    assert changes[0]["details"] == {"fields": ["max_turns"]}
    assert changes[1]["details"] == {"fields": ["enabled", "max_turns"]}


# --- API keys ----------------------------------------------------------------------------------------------------


def test_api_keys_created_and_revoked_are_recorded_by_face_without_the_key(app, user_client, user_id, runner):
    token = csrf_token(user_client, "/settings/keys")
    page = user_client.post("/settings/keys", data={"csrf_token": token, "name": "laptop"})
    assert page.status_code == 200
    created = only(app, "api_key.created")
    assert (created["face"], created["user"]["id"]) == ("console", user_id)
    assert created["details"] == {"name": "laptop", "owner": "user@example.com", "connection": False}
    revoked = user_client.post(
        f"/settings/keys/{created['target_id']}/revoke",
        data={"csrf_token": csrf_token(user_client, "/settings/keys")},
    )
    assert revoked.status_code == 302
    assert only(app, "api_key.revoked")["target_id"] == created["target_id"]

    made = runner.invoke(args=["create-api-key", "--email", "user@example.com"])
    assert made.exit_code == 0, made.output
    plain = made.output.strip().splitlines()[-1]
    by_cli = [e for e in trail(app) if e["action"] == "api_key.created"][-1]
    assert by_cli["face"] == "cli" and by_cli["user"]["id"] is None
    assert by_cli["details"]["owner"] == "user@example.com"
    assert plain not in json.dumps(trail(app)) and plain[:12] not in json.dumps(trail(app))


# --- accounts and sign-ins ---------------------------------------------------------------------------------------


def _user_id(app, email):
    from sqlalchemy import select

    from extensions import db
    from models import User

    with app.app_context():
        return db.session.scalar(select(User.id).where(User.email == email))


def test_account_changes_are_recorded(app, admin_client, admin_id, pending_id, runner):
    created = post_form(
        admin_client,
        "/admin/users",
        {"name": "Nia New", "email": "nia@example.com", "password": PASSWORD, "role": "user"},
        token_from="/admin/users",
    )
    assert created.status_code == 302
    nia = _user_id(app, "nia@example.com")
    post_form(admin_client, f"/admin/users/{pending_id}/approve", token_from="/admin/users")
    post_form(admin_client, f"/admin/users/{nia}/role", {"role": "admin"}, token_from="/admin/users")
    post_form(
        admin_client, f"/admin/users/{nia}/role", {"role": "admin"}, token_from="/admin/users"
    )  # no change
    post_form(admin_client, f"/admin/users/{nia}/delete", token_from="/admin/users")
    made = runner.invoke(
        args=["create-user", "--email", "op@example.com", "--name", "Op", "--password", PASSWORD]
    )
    assert made.exit_code == 0, made.output

    assert [(a, f, t) for a, f, t in recorded(app, "user.") if a != "user.signed_in"][-5:] == [
        ("user.created", "console", nia),
        ("user.approved", "console", pending_id),
        ("user.role_changed", "console", nia),
        ("user.deleted", "console", nia),
        ("user.created", "cli", _user_id(app, "op@example.com")),
    ]
    entries = [e for e in trail(app) if e["face"] == "console" and e["action"] != "user.signed_in"]
    assert all(e["user"]["id"] == admin_id for e in entries)
    details = [e["details"] for e in entries]
    assert details == [
        {"role": "user"},
        {"from": "pending", "to": "user"},
        {"from": "user", "to": "admin"},
        {"email": "nia@example.com", "name": "Nia New"},
    ]
    assert PASSWORD not in json.dumps(trail(app))


@pytest.mark.parametrize("app_config", [{"SLUICE_ENABLE_SIGNUP": True}])
def test_the_first_admin_and_a_sign_up_are_recorded_as_made_by_the_new_account(app, client, app_config):
    token = csrf_token(client, "/auth")
    first = client.post(
        "/auth", data={"name": "Ada", "email": "ada@example.com", "password": PASSWORD, "csrf_token": token}
    )
    assert first.status_code == 302
    visitor = app.test_client()
    token = csrf_token(visitor, "/auth/signup")
    visitor.post(
        "/auth/signup",
        data={"name": "Sam", "email": "sam@example.com", "password": PASSWORD, "csrf_token": token},
    )
    created = [e for e in trail(app) if e["action"] == "user.created"]
    assert [(e["face"], e["user"]["email"], e["target_id"]) for e in created] == [
        ("console", "ada@example.com", _user_id(app, "ada@example.com")),
        ("console", "sam@example.com", _user_id(app, "sam@example.com")),
    ]
    assert [e["details"] for e in created] == [{"role": "admin"}, {"role": "pending"}]


@pytest.mark.parametrize("app_config", [{"SLUICE_SIGNIN_MAX_FAILURES": 2}])
def test_sign_ins_and_failed_sign_ins_are_recorded_without_the_password(app, user_id, app_config):
    client = app.test_client()
    assert sign_in(client, "user@example.com").status_code == 302
    signed_in = only(app, "user.signed_in")
    assert (signed_in["face"], signed_in["user"]["id"], signed_in["target_id"]) == (
        "console",
        user_id,
        user_id,
    )

    other = app.test_client()
    sign_in(other, "User@Example.com", "wrong password 1")
    sign_in(other, "nobody@example.com", "wrong password 2")
    # This client has used its free misses: it is made to wait, its password unchecked, even the right one.
    sign_in(other, "user@example.com", "wrong password 3")
    sign_in(other, "user@example.com", PASSWORD)
    failed = [e for e in trail(app) if e["action"] == "user.sign_in_failed"]
    assert [(e["user"], e["target_id"], e["details"]) for e in failed] == [
        ({"id": None, "email": "user@example.com", "name": None}, None, {"reason": "incorrect"}),
        ({"id": None, "email": "nobody@example.com", "name": None}, None, {"reason": "incorrect"}),
        ({"id": None, "email": "user@example.com", "name": None}, None, {"reason": "throttled"}),
        ({"id": None, "email": "user@example.com", "name": None}, None, {"reason": "throttled"}),
    ]
    assert "wrong password" not in json.dumps(trail(app)) and PASSWORD not in json.dumps(trail(app))


# --- all or nothing ----------------------------------------------------------------------------------------------


def test_refused_changes_record_nothing(app, admin_api, admin_client, admin_id):
    admin_api.create()
    before = trail(app)
    assert admin_api.post("/id/sample_filter/update", F.form(content=F.SYNTAX_ERROR)).status_code == 400
    assert admin_api.post("/id/nope/toggle").status_code != 200
    assert admin_api.post("/id/sample_filter/valves/update", {"priority": "x"}).status_code == 400
    assert admin_api.post("/create", F.form()).status_code == 400  # the id is taken
    bad_sync = {"functions": [{"id": "sample_filter", "name": "x", "content": F.SYNTAX_ERROR}]}
    assert admin_api.post("/sync", bad_sync).status_code == 400
    post_form(admin_client, f"/admin/users/{admin_id}/role", {"role": "user"}, token_from="/admin/users")
    post_form(admin_client, f"/admin/users/{admin_id}/delete", token_from="/admin/users")
    after = [e for e in trail(app) if e["action"] != "user.signed_in"]
    assert after == [e for e in before if e["action"] != "user.signed_in"]


def test_a_change_that_fails_at_its_commit_leaves_no_entry(app, admin_api, monkeypatch):
    from services import function_reads

    admin_api.create()
    # Two saves of one new id that both pass the check: the database refuses the second at the commit.
    monkeypatch.setattr(function_reads, "function_exists", lambda function_id: False)
    assert admin_api.post("/create", F.form()).status_code in (400, 500)
    assert [a for a, _f, _t in recorded(app, "function.")] == ["function.created"]


def test_an_entry_that_cannot_be_written_undoes_its_change(app, admin_api, monkeypatch):
    from models import AuditEntry
    from services import audit

    admin_api.create()

    def unwritable(**values):
        return AuditEntry(**{**values, "face": None})  # NOT NULL: the insert fails at the commit

    monkeypatch.setattr(audit, "AuditEntry", unwritable)
    assert admin_api.post("/id/sample_filter/toggle").status_code == 500
    assert admin_api.post("/id/sample_filter/valves/update", {"priority": 5}).status_code == 500
    monkeypatch.undo()
    stored = admin_api.get("/id/sample_filter").get_json()
    assert stored["is_active"] is False
    assert admin_api.get("/id/sample_filter/valves").get_json() == {}
    assert [a for a, _f, _t in recorded(app, "function.")] == ["function.created"]


def test_changes_outside_any_request_are_recorded_as_the_system(app, admin_id):
    F.make_function(app, admin_id)
    entry = only(app, "function.created")
    assert entry["face"] == "system" and entry["user"]["id"] is None


def test_valves_set_by_open_webui_through_a_connection_key_are_the_key_face(app, client, admin_id):
    from extensions import db
    from models import User
    from services import accounts

    F.make_function(app, admin_id, active=True)
    with app.app_context():
        _key, plain = accounts.create_api_key(db.session.get(User, admin_id), "owui", connection=True)
    answer = client.post(
        "/v1/sample_filter/valves/update",
        json={"api_key": SECRET},
        headers={"Authorization": f"Bearer {plain}"},
    )
    assert answer.status_code == 200, answer.get_json()
    entry = only(app, "function.valves_changed")
    assert (entry["face"], entry["user"]["id"], entry["details"]) == (
        "api_key",
        admin_id,
        {"fields": ["api_key"]},
    )
    assert SECRET not in json.dumps(trail(app))
