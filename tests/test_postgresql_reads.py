"""Reads on PostgreSQL: a request's prepared reads go to libpq on a borrowed connection, which runs them in autocommit
(no BEGIN is sent) and goes back to the pool as the pool lent it; each statement is prepared once per connection;
a connection the server closed is replaced at checkout without a ping on every request."""

from __future__ import annotations

import time

import psycopg
import pytest
from sqlalchemy import bindparam, event, literal_column, select

from models import Function
from services.prepared import PreparedSelect
from tests.conftest import POSTGRES, _truncate_postgres, bearer

pytestmark = pytest.mark.skipif(not POSTGRES, reason="PostgreSQL does not answer")

NAME = PreparedSelect(select(Function.name).where(Function.id == bindparam("id")))


@pytest.fixture
def database_url(postgres_url):
    """PostgreSQL only: these are its connections' states."""
    yield postgres_url
    _truncate_postgres(postgres_url)


@pytest.fixture
def observer(postgres_url):
    """A connection of the test's own, outside the app's pool, to watch and change what the app's see."""
    dsn = postgres_url.replace("postgresql+psycopg://", "postgresql://")
    with psycopg.connect(dsn, autocommit=True) as connection:
        yield connection


@pytest.fixture
def stored(app):
    from extensions import db

    with app.app_context():
        db.session.add(
            Function(
                id="plain",
                user_id="someone",
                name="before",
                type="filter",
                content="class Filter: pass",
                meta={"description": "d"},
                valves={},
                is_active=True,
            )
        )
        db.session.commit()


def _state(observer, pid: int) -> str:
    return observer.execute("SELECT state FROM pg_stat_activity WHERE pid = %s", (pid,)).fetchone()[0]


def _borrowed():
    from flask import g

    from services.prepared import _BORROWED

    return g.get(_BORROWED)


def _idle_connections(app) -> list:
    from extensions import db

    with app.app_context():
        pool = db.engine.pool
    return [
        record.dbapi_connection for record in list(pool._pool.queue) if record.dbapi_connection is not None
    ]


def test_reads_run_in_autocommit_see_committed_data_and_leave_no_transaction_open(app, stored, observer):
    with app.app_context():
        assert list(NAME.first(id="plain")) == ["before"]
        pooled = _borrowed()[0]
        # Not switched to autocommit, and yet no transaction: libpq sent the statement without a BEGIN.
        assert pooled.driver_connection.autocommit is False
        assert pooled.driver_connection.info.transaction_status == psycopg.pq.TransactionStatus.IDLE
        pid = pooled.driver_connection.info.backend_pid
        assert _state(observer, pid) == "idle"  # not "idle in transaction": nothing to roll back later
        observer.execute("UPDATE functions SET name = 'after' WHERE id = 'plain'")
        assert list(NAME.first(id="plain")) == ["after"]  # the next statement sees what was committed since
        assert _state(observer, pid) == "idle"


def test_the_connection_goes_back_with_autocommit_off_and_nothing_to_roll_back(
    app, client, admin_key, stored
):
    """The pool's reset on return rolls back; psycopg sends nothing for it when no transaction is open."""
    from extensions import db

    with app.app_context():
        engine = db.engine
    at_reset: list[tuple[bool, object]] = []

    def on_reset(dbapi_connection, _record, _state):
        at_reset.append((dbapi_connection.autocommit, dbapi_connection.info.transaction_status))

    client.get("/api/v1/functions/", headers=bearer(admin_key))  # records the key's last use beforehand
    event.listen(engine, "reset", on_reset)
    try:
        for path in ("/api/v1/functions/", "/api/v1/functions/id/plain"):
            assert client.get(path, headers=bearer(admin_key)).status_code == 200
    finally:
        event.remove(engine, "reset", on_reset)
    assert at_reset == [(False, psycopg.pq.TransactionStatus.IDLE)] * 2
    idle = _idle_connections(app)
    assert idle and all(connection.autocommit is False for connection in idle)


def test_a_failed_read_invalidates_the_borrowed_connection(app, stored):
    from extensions import db

    failing = PreparedSelect(select(literal_column("1 / 0").label("x")))
    invalidated: list[object] = []
    with app.app_context():
        engine = db.engine

    def on_invalidate(connection, _record, _error):
        invalidated.append(connection)

    event.listen(engine, "invalidate", on_invalidate)
    try:
        with app.app_context():
            assert list(NAME.first(id="plain")) == ["before"]
            first = _borrowed()[0].driver_connection
            with pytest.raises(psycopg.errors.DivisionByZero):
                failing.rows()
            assert _borrowed() is None and invalidated == [first] and first.closed
            assert list(NAME.first(id="plain")) == ["before"]  # on a connection of its own
            assert _borrowed()[0].driver_connection is not first
        assert engine.pool.checkedout() == 0
    finally:
        event.remove(engine, "invalidate", on_invalidate)
    assert all(connection.autocommit is False for connection in _idle_connections(app))


def _prepared_reads(connection) -> list[tuple[str, object, int]]:
    """Sluice's prepared reads on ``connection``'s backend, asked on that connection: (name, when it was prepared,
    how many times it ran)."""
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT name, prepare_time, generic_plans + custom_plans FROM pg_prepared_statements"
            " WHERE name LIKE 'sluice_read_%' ORDER BY name"
        )
        found = cursor.fetchall()
    connection.rollback()  # psycopg began a transaction for this; the pool must get it back idle
    return found


def test_each_statement_is_prepared_once_per_connection(app, stored, observer):
    """Later reads of a statement only execute it: the server parsed and planned it once on this connection."""
    with app.app_context():
        assert list(NAME.first(id="plain")) == ["before"]
        connection = _borrowed()[0].driver_connection
        [(name, prepared_at, runs)] = _prepared_reads(connection)
        assert runs == 1
        observer.execute("UPDATE functions SET name = 'after' WHERE id = 'plain'")
        assert list(NAME.first(id="plain")) == ["after"]
        assert NAME.first(id="missing") is None
        assert _prepared_reads(connection) == [(name, prepared_at, 3)]


def test_a_statement_the_server_forgot_is_prepared_again(app, stored):
    """A pooler in between, or DEALLOCATE ALL: the read prepares its statement again instead of failing."""
    with app.app_context():
        assert list(NAME.first(id="plain")) == ["before"]
        connection = _borrowed()[0].driver_connection
        connection.execute("DEALLOCATE ALL")
        connection.rollback()
        assert _prepared_reads(connection) == []
        assert list(NAME.first(id="plain")) == ["before"]
        assert _borrowed()[0].driver_connection is connection  # the same connection, not an invalidated one
        assert [runs for _name, _at, runs in _prepared_reads(connection)] == [1]


def test_a_statement_forgotten_inside_a_transaction_fails_that_read_only(app, stored):
    """Inside a transaction the failure has spoilt it, so the read is not retried there; but the name is forgotten,
    so the next read on the connection prepares the statement again rather than failing in turn."""
    from extensions import db

    with app.app_context():
        db.session.get(Function, "plain")  # the session's transaction and its connection
        connection = db.session.connection().connection.driver_connection
        assert list(NAME.first(id="plain")) == ["before"]
        connection.execute("DEALLOCATE ALL")
        with pytest.raises(psycopg.errors.InvalidSqlStatementName):
            NAME.first(id="plain")
        db.session.rollback()
        # A transaction again, begun by psycopg for this statement.
        db.session.execute(select(Function.id)).all()
        assert db.session.connection().connection.driver_connection is connection
        assert connection.info.transaction_status == psycopg.pq.TransactionStatus.INTRANS
        assert list(NAME.first(id="plain")) == ["before"]
        db.session.rollback()


def test_a_read_in_the_sessions_transaction_runs_inside_it(app, stored, observer):
    """Within a transaction the read goes to libpq on the session's connection and sees its uncommitted change."""
    from extensions import db

    with app.app_context():
        function = db.session.get(Function, "plain")
        function.name = "uncommitted"
        db.session.flush()
        assert list(NAME.first(id="plain")) == ["uncommitted"]
        connection = db.session.connection().connection.driver_connection
        assert connection.info.transaction_status == psycopg.pq.TransactionStatus.INTRANS
        db.session.rollback()
        assert list(NAME.first(id="plain")) == ["before"]
    committed = observer.execute("SELECT name FROM functions WHERE id = 'plain'").fetchone()[0]
    assert committed == "before"


def _terminate_every_idle_backend(app, observer) -> list[int]:
    pids = [connection.info.backend_pid for connection in _idle_connections(app)]
    assert pids
    for pid in pids:
        observer.execute("SELECT pg_terminate_backend(%s)", (pid,))
    for _ in range(500):  # the backends exit on their own schedule; wait until they have
        left = observer.execute("SELECT count(*) FROM pg_stat_activity WHERE pid = ANY(%s)", (pids,))
        if left.fetchone()[0] == 0:
            break
        time.sleep(0.01)
    return pids


def test_a_terminated_backend_is_replaced_without_an_error(app, client, admin_key, stored, observer):
    from extensions import db

    with app.app_context():
        engine = db.engine
    assert client.get("/api/v1/functions/", headers=bearer(admin_key)).status_code == 200
    gone = _terminate_every_idle_backend(app, observer)
    answer = client.get("/api/v1/functions/id/plain", headers=bearer(admin_key))
    assert answer.status_code == 200 and answer.get_json()["name"] == "before"
    assert not set(gone) & {c.info.backend_pid for c in _idle_connections(app)}

    # A request that writes, on a connection that was terminated meanwhile.
    _terminate_every_idle_backend(app, observer)
    answer = client.post("/api/v1/functions/id/plain/toggle", headers=bearer(admin_key))
    assert answer.status_code == 200 and answer.get_json()["is_active"] is False
    assert engine.pool.checkedout() == 0


def test_a_connection_idle_for_long_is_pinged_a_fresh_one_is_not(app, client, admin_key, stored):
    from database import _CHECKED_IN
    from extensions import db

    with app.app_context():
        engine = db.engine
    pings: list[object] = []
    ping = engine.dialect.do_ping
    engine.dialect.do_ping = lambda connection: pings.append(connection) or ping(connection)
    try:
        assert client.get("/api/v1/functions/", headers=bearer(admin_key)).status_code == 200
        assert pings == []
        for record in list(engine.pool._pool.queue):
            record.info[_CHECKED_IN] -= 60  # as if it had waited a minute in the pool
        assert client.get("/api/v1/functions/", headers=bearer(admin_key)).status_code == 200
        assert len(pings) == 1
    finally:
        del engine.dialect.do_ping
    # The ping ran in autocommit and left no transaction behind for the reads to trip over.
    assert all(connection.autocommit is False for connection in _idle_connections(app))


def test_a_request_that_writes_after_reading_does_so_in_one_transaction(
    app, client, admin_key, stored, observer
):
    """The key is read on the borrowed autocommit connection; the toggle's session then takes a connection in a
    transaction of its own (the borrowed one is given back first), and commits its writes once."""
    from extensions import db

    with app.app_context():
        engine = db.engine
    client.get("/api/v1/functions/", headers=bearer(admin_key))  # records the key's last use beforehand
    seen: list[str] = []
    listeners = {
        "begin": lambda _connection: seen.append("begin"),
        "commit": lambda _connection: seen.append("commit"),
        "rollback": lambda _connection: seen.append("rollback"),
    }
    for name, listener in listeners.items():
        event.listen(engine, name, listener)
    try:
        answer = client.post("/api/v1/functions/id/plain/toggle", headers=bearer(admin_key))
    finally:
        for name, listener in listeners.items():
            event.remove(engine, name, listener)
    assert answer.status_code == 200 and answer.get_json()["is_active"] is False
    assert seen[:2] == ["begin", "commit"] and seen.count("commit") == 1
    active = observer.execute("SELECT is_active FROM functions WHERE id = 'plain'").fetchone()[0]
    assert active is False
    assert engine.pool.checkedout() == 0
    assert all(connection.autocommit is False for connection in _idle_connections(app))
