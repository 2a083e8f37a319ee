"""Engine settings and schema migrations (Alembic), applied by the run command and `init-db`."""

from __future__ import annotations

import os
from pathlib import Path

from sqlalchemy import event, make_url
from sqlalchemy.engine import Engine

MIGRATIONS = Path(__file__).resolve().parent / "migrations"


SYNCHRONOUS_LEVELS = ("OFF", "NORMAL", "FULL", "EXTRA")


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
