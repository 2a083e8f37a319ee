"""The foundation: configuration, migrations, health, CLI and JSON errors."""

from __future__ import annotations

import os
import subprocess
import sys
import uuid
import warnings
from pathlib import Path

import pytest
from sqlalchemy import Column, create_engine, inspect, text
from sqlalchemy.schema import CreateIndex

from tests.conftest import BACKENDS, PG_URL, bearer

ROOT = Path(__file__).resolve().parent.parent


def test_config_precedence(tmp_path, monkeypatch):
    """Defaults, then instance/config.py, then the environment, then the test's mapping."""
    from flask import Flask

    from settings import load_config

    (tmp_path / "config.py").write_text(
        "SLUICE_LOAD_TIMEOUT = 3\nSLUICE_MAX_REQUEST_MB = 7\nSLUICE_ENABLE_SIGNUP = True\n"
    )
    monkeypatch.setenv("SLUICE_MAX_REQUEST_MB", "9")
    monkeypatch.setenv("SLUICE_ENABLE_SIGNUP", "false")
    monkeypatch.delenv("SECRET_KEY", raising=False)
    monkeypatch.delenv("DATABASE_URL", raising=False)
    app = Flask("t", instance_path=str(tmp_path), instance_relative_config=True)
    load_config(app, {"SLUICE_ALLOW_PIP_INSTALL": True})
    assert app.config["SLUICE_LOAD_TIMEOUT"] == 3  # instance file over default
    assert app.config["SLUICE_MAX_REQUEST_MB"] == 9  # environment over instance file
    assert app.config["MAX_CONTENT_LENGTH"] == 9 * 1024 * 1024
    assert app.config["SLUICE_ENABLE_SIGNUP"] is False
    assert app.config["SLUICE_ALLOW_PIP_INSTALL"] is True  # test mapping last
    assert app.config["SQLALCHEMY_DATABASE_URI"] == f"sqlite:///{tmp_path / 'sluice.sqlite3'}"
    assert app.config["SESSION_COOKIE_HTTPONLY"] and app.config["SESSION_COOKIE_SAMESITE"] == "Lax"


def test_secret_key_is_generated_once_and_reused(tmp_path, monkeypatch):
    from flask import Flask

    from settings import load_config

    monkeypatch.delenv("SECRET_KEY", raising=False)
    first = Flask("a", instance_path=str(tmp_path))
    load_config(first)
    second = Flask("b", instance_path=str(tmp_path))
    load_config(second)
    assert len(first.config["SECRET_KEY"]) >= 32
    assert first.config["SECRET_KEY"] == second.config["SECRET_KEY"]
    monkeypatch.setenv("SECRET_KEY", "from-environment")
    third = Flask("c", instance_path=str(tmp_path))
    load_config(third)
    assert third.config["SECRET_KEY"] == "from-environment"


def test_database_url_from_environment(tmp_path, monkeypatch):
    from flask import Flask

    from settings import load_config

    monkeypatch.setenv("DATABASE_URL", "postgresql://u@h/db")
    app = Flask("t", instance_path=str(tmp_path))
    load_config(app)
    assert app.config["SQLALCHEMY_DATABASE_URI"] == "postgresql+psycopg://u@h/db"


@pytest.fixture(params=BACKENDS)
def empty_database(request, tmp_path):
    """The URL of an empty database: a SQLite file, or a PostgreSQL schema of its own (dropped afterwards)."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'm.sqlite3'}"
        return
    schema = f"migration_check_{uuid.uuid4().hex[:8]}"
    engine = create_engine(PG_URL)
    with engine.begin() as conn:
        conn.execute(text(f"CREATE SCHEMA {schema}"))
    engine.dispose()
    yield PG_URL + ("&" if "?" in PG_URL else "?") + f"options=-csearch_path%3D{schema}"
    engine = create_engine(PG_URL)
    with engine.begin() as conn:
        conn.execute(text(f"DROP SCHEMA {schema} CASCADE"))
    engine.dispose()


def test_migrations_match_models(empty_database):
    """Migrating from empty to head gives exactly the models' schema, on each database."""
    from alembic.autogenerate import compare_metadata
    from alembic.migration import MigrationContext

    from database import upgrade_database
    from models import Base

    upgrade_database(empty_database)
    upgrade_database(empty_database)  # idempotent
    engine = create_engine(empty_database)
    with engine.connect() as conn, warnings.catch_warnings():
        if conn.dialect.name == "sqlite":
            # SQLite's reflection cannot read an index on an expression, so Alembic skips those (saying so):
            # they are compared below by the SQL SQLite keeps for them.
            warnings.filterwarnings("ignore", "Skipped unsupported reflection of expression-based index")
            warnings.filterwarnings(
                "ignore", "autogenerate skipping metadata-specified expression-based index"
            )
            expression_indexes = {
                index.name: str(CreateIndex(index).compile(dialect=conn.dialect)).strip()
                for table in Base.metadata.tables.values()
                for index in table.indexes
                if any(not isinstance(part, Column) for part in index.expressions)
            }
            stored = dict(
                conn.exec_driver_sql("SELECT name, sql FROM sqlite_master WHERE type = 'index'").all()
            )
            assert expression_indexes and all(
                stored.get(name) == sql for name, sql in expression_indexes.items()
            )
        diff = compare_metadata(MigrationContext.configure(conn), Base.metadata)
        tables = set(inspect(conn).get_table_names())
    engine.dispose()
    assert diff == []
    assert {
        "users",
        "api_keys",
        "functions",
        "function_versions",
        "user_valves",
        "sign_in_failures",
    } <= tables


def test_upgrading_keeps_every_account_key_function_and_valve(empty_database):
    """Each migration after the first runs on a database in use: nothing stored may be lost on the way."""
    from alembic import command

    from database import alembic_config, install_sqlite_pragmas, upgrade_database

    upgrade_database(empty_database, "0001")
    engine = create_engine(empty_database)
    install_sqlite_pragmas(engine)  # foreign keys on, as the application runs
    rows = {
        "users": (
            "INSERT INTO users (id, name, email, role, password_hash, failed_sign_ins, locked_until, created_at,"
            " updated_at) VALUES ('u1', 'Ann', 'ann@example.com', 'admin', 'hash', 2, NULL, 1, 1)"
        ),
        "api_keys": (
            "INSERT INTO api_keys (id, user_id, name, key_hash, prefix, created_at)"
            " VALUES ('k1', 'u1', 'ci', 'h1', 'sk-abc', 1)"
        ),
        "functions": (
            "INSERT INTO functions (id, version_id, user_id, name, type, content, meta, valves, is_active,"
            " is_global, content_hash, load_status, created_at, updated_at)"
            " VALUES ('f1', NULL, 'u1', 'F', 'filter', 'class Filter: pass', '{}', '{\"a\": 1}', true, false,"
            " 'x', 'ok', 1, 1)"
        ),
        "user_valves": (
            "INSERT INTO user_valves (user_id, function_id, valves, updated_at) VALUES ('u1', 'f1', '{\"b\": 2}', 1)"
        ),
    }
    with engine.begin() as conn:
        for statement in rows.values():
            conn.execute(text(statement))
    upgrade_database(empty_database)
    command.downgrade(alembic_config(empty_database), "0001")
    upgrade_database(empty_database)
    with engine.connect() as conn:
        counts = {table: conn.execute(text(f"SELECT count(*) FROM {table}")).scalar() for table in rows}
        valves = conn.execute(text("SELECT valves FROM functions")).scalar()
    engine.dispose()
    assert counts == dict.fromkeys(rows, 1)
    assert "1" in str(valves)


def test_upgrading_to_0008_gives_stored_functions_an_empty_icon_and_keeps_them(empty_database):
    """Functions stored before 0008 keep everything and have no icon until their code is next saved."""
    from alembic import command

    from database import alembic_config, upgrade_database

    upgrade_database(empty_database, "0007")
    engine = create_engine(empty_database)
    with engine.begin() as conn:
        conn.execute(
            text(
                "INSERT INTO functions (id, version_id, user_id, name, type, content, meta, valves, is_active,"
                " is_global, content_hash, load_status, created_at, updated_at)"
                " VALUES ('f1', NULL, 'u1', 'F', 'filter', 'class Filter: pass', '{}', '{}', true, false,"
                " 'x', 'ok', 1, 1)"
            )
        )
    upgrade_database(empty_database, "0008")
    with engine.connect() as conn:
        assert conn.execute(text("SELECT id, name, icon FROM functions")).all() == [("f1", "F", None)]
    with engine.begin() as conn:
        conn.execute(text("UPDATE functions SET icon = 'data:image/png;base64,AA=='"))
    command.downgrade(alembic_config(empty_database), "0007")
    with engine.connect() as conn:
        columns = {column["name"] for column in inspect(conn).get_columns("functions")}
        names = conn.execute(text("SELECT name FROM functions")).scalars().all()
    engine.dispose()
    assert "icon" not in columns and names == ["F"]


def test_sqlite_pragmas(app):
    from sqlalchemy import text

    from extensions import db

    if not app.config["SQLALCHEMY_DATABASE_URI"].startswith("sqlite"):
        pytest.skip("SQLite only")
    with app.app_context():
        assert db.session.execute(text("PRAGMA foreign_keys")).scalar() == 1
        assert db.session.execute(text("PRAGMA journal_mode")).scalar() == "wal"
        assert db.session.execute(text("PRAGMA busy_timeout")).scalar() >= 1000
        # NORMAL (1): under WAL a commit is not synced to disk on its own, only at checkpoints (database.py says
        # what that risks); FULL is 2.
        assert db.session.execute(text("PRAGMA synchronous")).scalar() == 1


def test_sqlite_synchronous_full_when_the_operator_asks(database_url):
    from sqlalchemy import text

    from extensions import db
    from tests.conftest import make_app

    if not database_url.startswith("sqlite"):
        pytest.skip("SQLite only")
    app = make_app(database_url, SLUICE_SQLITE_SYNCHRONOUS="full")
    with app.app_context():
        assert db.session.execute(text("PRAGMA synchronous")).scalar() == 2
        db.session.remove()
        db.engine.dispose()


def test_health(client):
    response = client.get("/health")
    assert response.status_code == 200
    assert response.get_json() == {"status": True}


def test_cli_init_db_is_idempotent(runner):
    assert runner.invoke(args=["init-db"]).exit_code == 0
    result = runner.invoke(args=["init-db"])
    assert result.exit_code == 0, result.output


def test_cli_create_user_and_api_key(app, runner, client):
    result = runner.invoke(
        args=[
            "create-user",
            "--email",
            "Ops@Example.com",
            "--name",
            "Ops",
            "--password",
            "long enough pw",
            "--role",
            "admin",
        ]
    )
    assert result.exit_code == 0, result.output
    result = runner.invoke(args=["create-api-key", "--email", "ops@example.com"])
    assert result.exit_code == 0, result.output
    key = result.output.strip().splitlines()[-1]
    assert key.startswith("sk-") and len(key) >= 35
    assert client.get("/api/v1/functions/", headers=bearer(key)).status_code == 200


def test_cli_refuses_bad_input(runner):
    result = runner.invoke(
        args=["create-user", "--email", "nope", "--name", "X", "--password", "short", "--role", "user"]
    )
    assert result.exit_code != 0
    assert "email" in result.output.lower()
    result = runner.invoke(args=["create-api-key", "--email", "ghost@example.com"])
    assert result.exit_code != 0


def test_cli_as_operators_run_it(tmp_path):
    """The exact command line of the README works in a fresh process."""
    env = {
        "PATH": "/usr/bin:/bin",
        "DATABASE_URL": f"sqlite:///{tmp_path / 'cli.sqlite3'}",
        "SECRET_KEY": "x" * 40,
    }
    flask = [sys.executable, "-m", "flask", "--app", "app"]
    for args in (
        ["init-db"],
        ["create-user", "--email", "a@b.co", "--name", "A", "--password", "password123", "--role", "admin"],
    ):
        done = subprocess.run(flask + args, cwd=ROOT, env=env, capture_output=True, text=True, timeout=60)
        assert done.returncode == 0, done.stderr
    done = subprocess.run(
        flask + ["create-api-key", "--email", "a@b.co"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip().splitlines()[-1].startswith("sk-")


@pytest.mark.parametrize(
    "method, path, status",
    [
        ("GET", "/api/v1/functions/", 401),
        ("GET", "/api/v1/no-such-route", 404),
        ("GET", "/api/nothing/here", 404),
        ("PUT", "/api/v1/functions/", 405),
        ("DELETE", "/health", 405),
    ],
)
def test_api_errors_are_json(client, admin_key, method, path, status):
    headers = bearer(admin_key) if status != 401 else {}
    response = client.open(path, method=method, headers=headers)
    assert response.status_code == status
    if path.startswith("/api/"):
        body = response.get_json()
        assert isinstance(body["detail"], str) and body["detail"]


def test_api_413_is_json(app, client, admin_key):
    app.config["MAX_CONTENT_LENGTH"] = 1000
    response = client.post(
        "/api/v1/functions/create",
        data="x" * 5000,
        headers={**bearer(admin_key), "Content-Type": "application/json"},
    )
    assert response.status_code == 413
    assert "large" in response.get_json()["detail"]


def test_api_500_is_json_without_traceback(app, client, admin_key):
    @app.get("/api/boom")
    def boom():
        raise RuntimeError("secret internals")

    app.config["PROPAGATE_EXCEPTIONS"] = False
    response = client.get("/api/boom", headers=bearer(admin_key))
    assert response.status_code == 500
    assert response.get_json()["detail"]
    assert b"secret internals" not in response.data and b"Traceback" not in response.data


def test_page_errors_are_html(app, client):
    response = client.get("/no-such-page")
    assert response.status_code == 404
    assert response.mimetype == "text/html"
    assert b"Page not found" in response.data


def test_the_instance_folder_and_database_are_private(tmp_path, monkeypatch):
    """Function code runs as another account where it can: it must not read the secret key or the database."""
    import stat

    from app import create_app

    instance = tmp_path / "instance"
    monkeypatch.delenv("DATABASE_URL", raising=False)
    monkeypatch.delenv("SECRET_KEY", raising=False)
    monkeypatch.setattr("flask.Flask.auto_find_instance_path", lambda self: str(instance))
    app = create_app({"TESTING": True})
    database = instance / "sluice.sqlite3"
    assert app.config["SQLALCHEMY_DATABASE_URI"] == f"sqlite:///{database}"
    from database import upgrade_database

    upgrade_database(app.config["SQLALCHEMY_DATABASE_URI"])
    mode = lambda path: stat.S_IMODE(path.stat().st_mode)  # noqa: E731
    assert mode(instance) == 0o711  # others may pass through (to installed packages), not list it
    assert mode(instance / "secret_key") == 0o600
    assert mode(database) == 0o600


@pytest.mark.parametrize("path", ["/auth", "/health", "/api/v1/functions/", "/no-such-page"])
def test_every_answer_forbids_framing_and_sniffing(client, path):
    response = client.get(path)
    assert response.headers["X-Frame-Options"] == "DENY"
    assert response.headers["X-Content-Type-Options"] == "nosniff"
    assert response.headers["Referrer-Policy"] == "same-origin"
    policy = response.headers["Content-Security-Policy"]
    assert "frame-ancestors 'none'" in policy and "script-src 'self'" in policy
    assert "Strict-Transport-Security" not in response.headers  # only when served over HTTPS


@pytest.mark.parametrize("app_config", [{"SESSION_COOKIE_SECURE": True}])
def test_https_deployments_get_hsts(client, app_config):
    assert client.get("/auth").headers["Strict-Transport-Security"].startswith("max-age=")


def test_templates_get_the_function_id_rule_and_the_time_helpers_from_one_place(app):
    """A page's `pattern=` attribute is the services' own id rule, not a copy; every page can show times."""
    import re

    from flask import render_template_string

    from models import ID_PATTERN

    with app.test_request_context():
        pattern = render_template_string("{{ function_id_pattern }}")
        shown = render_template_string("{{ absolute_time(0) }}|{{ absolute_time(86400) }}|{{ iso_time(60) }}")
    assert pattern == ID_PATTERN.pattern
    # A browser's `pattern` matches the whole value, as the services' fullmatch does.
    assert re.fullmatch(pattern, "My_Filter_1") and not re.fullmatch(pattern, "my-filter")
    assert shown == "|1970-01-02 00:00 UTC|1970-01-01T00:01:00+00:00"


def test_importing_the_test_modules_leaves_no_temporary_files(tmp_path):
    """Temporary folders belong in fixtures, which pytest removes; one made at import time outlives the run."""
    root = Path(__file__).resolve().parent.parent
    modules = [
        ".".join(path.relative_to(root).with_suffix("").parts)
        for path in sorted((root / "tests").rglob("test_*.py"))
    ]
    private_tmp = tmp_path / "tmp"
    private_tmp.mkdir()
    script = "import importlib, sys\nfor name in sys.argv[1:]:\n    importlib.import_module(name)\n"
    result = subprocess.run(
        [sys.executable, "-c", script, *modules],
        cwd=root,
        env={**os.environ, "TMPDIR": str(private_tmp)},
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    assert list(private_tmp.iterdir()) == []
