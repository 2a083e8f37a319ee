"""No list costs a query per row, and an API key costs one query: counted on the engine, with few rows and with many."""

from __future__ import annotations

from contextlib import contextmanager

import pytest
from sqlalchemy import event

from tests.conftest import bearer

ADMIN_LISTS = [
    "/api/v1/functions/",
    "/api/v1/functions/list",
    "/api/v1/functions/export",
    "/api/v1/functions/export?include_valves=true",
    "/api/v1/functions/id/fn_00/history",
]
PAGES = [
    "/admin/functions",
    "/admin/functions?q=filter&sort=name",
    "/admin/users",
    "/admin/users?q=example&page=2&per_page=5",
    "/admin/users?role=user",
    "/settings/valves",
    "/settings/keys",
]


@contextmanager
def counted(app):
    """Count the statements the app sends to its database inside the block."""
    from extensions import db

    statements: list[str] = []

    def count(_conn, _cursor, statement, *_args):
        statements.append(statement)

    with app.app_context():
        engine = db.engine
    event.listen(engine, "before_cursor_execute", count)
    try:
        yield statements
    finally:
        event.remove(engine, "before_cursor_execute", count)


def add_rows(app, admin_id, user_id, first: int, count: int) -> None:
    """Functions (each with a version and a user's valves) and accounts, written directly: no loader needed."""
    from extensions import db
    from models import Function, FunctionVersion, User, UserValves

    schema = {"type": "object", "properties": {"shout": {"type": "boolean", "default": False}}}
    with app.app_context():
        for n in range(first, first + count):
            fid = f"fn_{n:02d}"
            db.session.add(
                Function(
                    id=fid,
                    user_id=admin_id if n % 2 else f"gone-{n}",  # some creators no longer exist
                    name=f"Function {n}",
                    type="filter",
                    content=f"class Filter:\n    pass  # {n}\n",
                    meta={"description": f"number {n}", "manifest": {"author": "Ada"}},
                    valves={},
                    is_active=True,
                    user_valves_schema=schema,
                )
            )
            db.session.flush()
            db.session.add(FunctionVersion(function_id="fn_00", user_id=admin_id, name=f"v{n}", content="x"))
            db.session.add(UserValves(user_id=user_id, function_id=fid, valves={"shout": True}))
            db.session.add(User(name=f"U{n}", email=f"u{n}@example.com", role="user", password_hash="x"))
        db.session.commit()


def statements_for(app, client, path: str, headers=None) -> int:
    client.get(path, headers=headers)  # warm: first-use statements and the key's last-used write
    with counted(app) as statements:
        response = client.get(path, headers=headers)
    assert response.status_code == 200, (path, response.status_code)
    return len(statements)


@pytest.mark.parametrize("path", ADMIN_LISTS)
def test_an_api_list_costs_the_same_queries_for_two_rows_as_for_twenty(
    app, client, admin_id, user_id, admin_key, path
):
    add_rows(app, admin_id, user_id, 0, 2)
    few = statements_for(app, client, path, bearer(admin_key))
    add_rows(app, admin_id, user_id, 2, 18)
    assert statements_for(app, client, path, bearer(admin_key)) == few


@pytest.mark.parametrize("path", PAGES)
def test_a_console_list_costs_the_same_queries_for_two_rows_as_for_twenty(
    app, admin_client, admin_id, user_id, path
):
    add_rows(app, admin_id, user_id, 0, 2)
    few = statements_for(app, admin_client, path)
    add_rows(app, admin_id, user_id, 2, 18)
    assert statements_for(app, admin_client, path) == few


def test_a_users_valves_list_costs_the_same_queries_for_two_rows_as_for_twenty(
    app, admin_id, user_id, user_key
):
    client = app.test_client()
    add_rows(app, admin_id, user_id, 0, 2)
    few = statements_for(app, client, "/api/v1/functions/", bearer(user_key))
    add_rows(app, admin_id, user_id, 2, 18)
    assert statements_for(app, client, "/api/v1/functions/", bearer(user_key)) == few


def test_an_api_key_and_its_owner_come_in_one_query(app, client, admin_key):
    """The key was used a moment ago, so nothing is written: one statement finds the key and its owner."""
    from extensions import db
    from services import accounts

    client.get("/api/v1/functions/", headers=bearer(admin_key))  # records last use
    with app.test_request_context():
        with counted(app) as statements:
            user = accounts.user_for_api_key(admin_key)
            assert user.email == "admin@example.com"
        db.session.remove()
    assert len(statements) == 1, statements


def test_no_request_pings_the_database_before_its_statements(app, client, admin_key):
    """A `SELECT 1` before each request was a round trip on every one. SQLite cannot drop a connection;
    PostgreSQL's connections are checked at checkout by polling their socket (tests/test_postgresql_reads.py)."""
    from extensions import db

    with app.app_context():
        engine = db.engine
    assert engine.pool._pre_ping is False
    pings: list[object] = []
    ping = engine.dialect.do_ping
    engine.dialect.do_ping = lambda connection: pings.append(connection) or ping(connection)
    try:
        for _ in range(3):
            assert client.get("/api/v1/functions/", headers=bearer(admin_key)).status_code == 200
    finally:
        del engine.dialect.do_ping
    assert pings == []


@pytest.mark.parametrize(
    ("path", "values", "most"),
    [
        # The key and its owner, the function, the audit entry, the write.
        ("/valves/update", {"priority": "7", "prefix": "$ "}, 4),
        # The same and the caller's stored user valves, written in one upsert.
        ("/valves/user/update", {"enabled": "false", "max_turns": 3}, 5),
    ],
)
def test_a_valves_update_costs_a_few_statements_and_no_load_once_the_class_is_known(
    app, client, admin_key, path, values, most
):
    """Plain valves classes are checked in the server after one check in a child (loader/plain_valves.py)."""
    import loader
    from tests.factories import FILTER, form

    base = "/api/v1/functions"
    created = client.post(f"{base}/create", json=form(id="valved", name="Valved", content=FILTER), headers=bearer(admin_key))  # fmt: skip
    assert created.status_code == 200, created.get_json()
    assert client.post(f"{base}/id/valved{path}", json={}, headers=bearer(admin_key)).status_code == 200
    jobs = loader.stats()["jobs"]
    with counted(app) as statements:
        response = client.post(f"{base}/id/valved{path}", json=values, headers=bearer(admin_key))
    assert response.status_code == 200, response.get_json()
    assert loader.stats()["jobs"] == jobs, "the function's code ran again only to check its valves"
    assert len(statements) <= most, statements


def test_a_create_and_an_update_answer_what_they_wrote_without_reading_the_function_back(
    app, client, admin_key
):
    """The answer is built from the function as the request wrote it (services.functions.detach_written): nothing
    reads the functions table after the commit, and the answer still shows every field, defaults included."""
    from tests.factories import FILTER, form

    base = "/api/v1/functions"
    with counted(app) as statements:
        created = client.post(f"{base}/create", json=form(id="fresh", name="Fresh", content=FILTER), headers=bearer(admin_key))  # fmt: skip
    assert created.status_code == 200, created.get_json()
    answer = created.get_json()
    assert answer["id"] == "fresh" and answer["type"] == "filter" and answer["is_active"] is False
    assert answer["created_at"] == answer["updated_at"] and answer["meta"]["manifest"]

    def reads_after_commit(statements):
        written = max(
            i for i, s in enumerate(statements) if s.lstrip().upper().startswith(("INSERT", "UPDATE"))
        )
        return [s for s in statements[written + 1 :] if "FROM functions" in s]

    assert reads_after_commit(statements) == []
    with counted(app) as statements:
        updated = client.post(f"{base}/id/fresh/update", json=form(id="fresh", name="Renamed", content=FILTER), headers=bearer(admin_key))  # fmt: skip
    assert updated.status_code == 200, updated.get_json()
    assert updated.get_json()["name"] == "Renamed" and updated.get_json()["content"] == FILTER
    assert reads_after_commit(statements) == []
