"""Engine settings and schema migrations (Alembic), applied by the run command and `init-db`."""

from __future__ import annotations

import json
import os
import select
import time
from pathlib import Path

from sqlalchemy import event, exc, make_url
from sqlalchemy.engine import Engine

MIGRATIONS = Path(__file__).resolve().parent / "migrations"


SYNCHRONOUS_LEVELS = ("OFF", "NORMAL", "FULL", "EXTRA")

_JSON_DECODER = json.JSONDecoder()


def read_json(data: str | bytes):
    """The engine's JSON decoder (`json_deserializer`): `json.loads` without its per-call checks.

    psycopg hands each JSON value over as UTF-8 bytes, on which `json.loads` first sniffs for UTF-16 and UTF-32
    before decoding: ~5.0 µs a small `meta` against ~3.3 µs here, for every JSON value of every row read.
    """
    if type(data) is not str:
        data = bytes(data).decode()
    return _JSON_DECODER.decode(data)


def install_sqlite_pragmas(engine: Engine, synchronous: str = "NORMAL") -> None:
    """Foreign keys on, WAL so readers never wait for a writer, and a busy timeout instead of errors.

    `synchronous=NORMAL`, SQLite's advice for WAL: a commit is written to the log before it returns, but the log is
    synced to disk at checkpoints rather than at every commit (each sync cost a create or update 3-5 ms, a third of
    its time). The database cannot be corrupted either way. A committed change survives the server or any process
    crashing or being killed (it is in the operating system's cache); only a power cut or a kernel crash can undo
    the last commits before the next checkpoint, leaving the database as it was a moment earlier. An operator who
    needs every commit on disk before it is answered sets SLUICE_SQLITE_SYNCHRONOUS=FULL.
    """
    if engine.dialect.name != "sqlite":
        return

    _private_files(engine.url.database)
    synchronous = synchronous.upper()
    if synchronous not in SYNCHRONOUS_LEVELS:  # it goes into SQL text: only SQLite's own words
        raise ValueError(
            f"SQLite synchronous must be one of {', '.join(SYNCHRONOUS_LEVELS)}, not {synchronous!r}"
        )

    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_connection, _record):
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute("PRAGMA busy_timeout=10000")
        cursor.execute(f"PRAGMA synchronous={synchronous}")
        cursor.close()


IDLE_PING_SECONDS = 10.0
_CHECKED_IN = "sluice_checked_in"


def install_postgresql_liveness(engine: Engine, idle_ping_seconds: float = IDLE_PING_SECONDS) -> None:
    """Make sure a PostgreSQL connection taken from the pool is alive, without a round trip in the common case.

    SQLAlchemy's `pool_pre_ping` sends a `SELECT 1` at every checkout, a round trip on every request. A connection
    the server closed (a restart, `pg_terminate_backend`, an idle timeout) has almost always said so: the server
    sends a termination notice and closes the socket, which then polls readable. So a checkout looks at the socket
    (no wait, no traffic) and pings only when something arrived there, or when the connection sat idle long
    enough that a connection dropped silently on the way (a firewall, a host gone) is worth ruling out. A failed
    ping raises `DisconnectionError`, on which the pool discards the connection and checks out another.
    """
    if engine.dialect.name != "postgresql":
        return

    @event.listens_for(engine, "checkin")
    def _on_checkin(_dbapi_connection, record):
        if record is not None:
            record.info[_CHECKED_IN] = time.monotonic()

    @event.listens_for(engine, "checkout")
    def _on_checkout(dbapi_connection, record, _proxy):
        checked_in = record.info.get(_CHECKED_IN)
        if checked_in is None:
            return  # opened for this checkout
        if (
            not dbapi_connection.closed
            and time.monotonic() - checked_in < idle_ping_seconds
            and not _socket_readable(dbapi_connection)
        ):
            return
        try:
            _ping(engine, dbapi_connection)
        except Exception as error:
            raise exc.DisconnectionError(f"the database connection is gone: {error}") from error


def _socket_readable(dbapi_connection) -> bool:
    """Whether the server has sent anything to an idle connection (outside a query it has nothing to say but
    goodbye), or closed it: a zero-timeout poll of its socket."""
    try:
        fileno = dbapi_connection.fileno()
    except Exception:
        return True  # no socket left: let the ping tell
    poller = select.poll()
    poller.register(fileno, select.POLLIN | select.POLLPRI)
    return bool(poller.poll(0))


def _ping(engine: Engine, dbapi_connection) -> None:
    """A `SELECT 1` in autocommit, so that it leaves no transaction open behind it."""
    dbapi_connection.autocommit = True
    try:
        engine.dialect.do_ping(dbapi_connection)
    finally:
        if not dbapi_connection.closed:
            dbapi_connection.autocommit = False


def _private_files(database: str | None) -> None:
    """Make the SQLite database (and its WAL and shared-memory files) readable by this account only.

    It holds password hashes and every valve, secrets included; function code runs as another account where it
    can, and must not be able to read it. SQLite gives the -wal and -shm files the database file's mode.
    """
    if not database or database == ":memory:" or database.startswith("file:"):
        return
    path = Path(database)
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        os.close(os.open(path, os.O_WRONLY | os.O_CREAT, 0o600))  # SQLite fills an empty file in
    for candidate in (path, Path(f"{path}-wal"), Path(f"{path}-shm")):
        try:
            if candidate.exists() and candidate.stat().st_mode & 0o077:
                os.chmod(candidate, 0o600)
        except OSError:
            pass  # not ours to change: leave it


def alembic_config(url: str):
    # Alembic is imported here, not at the top: a server process never migrates (bin/serve runs `init-db` before
    # it starts), and importing it cost every server start about 0.3 s and every worker its pages.
    from alembic.config import Config

    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    config.set_main_option("sqlalchemy.url", url.replace("%", "%%"))
    return config


def upgrade_database(url: str, revision: str = "head") -> None:
    """Apply migrations up to ``revision``; running it again does nothing."""
    parsed = make_url(url)
    if parsed.get_backend_name() == "sqlite":
        _private_files(parsed.database)
    from alembic import command

    command.upgrade(alembic_config(url), revision)
