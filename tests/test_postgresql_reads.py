"""Reads on PostgreSQL: a request's prepared reads run in autocommit on a borrowed connection, which goes back to the
pool as the pool lent it; a connection the server closed is replaced at checkout without a ping on every request."""

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
        assert pooled.driver_connection.autocommit is True
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


def test_autocommit_that_cannot_be_restored_invalidates_rather_than_returning(app, stored):
    from extensions import db

    with app.app_context():
        engine = db.engine
        NAME.first(id="plain")
        pooled = _borrowed()[0]
        connection = pooled.driver_connection
        connection.execute("BEGIN")  # a state psycopg refuses to switch autocommit in
    assert connection.closed  # invalidated at teardown, not handed back in a transaction
    assert engine.pool.checkedout() == 0
    assert connection not in _idle_connections(app)


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
