"""The foundation: configuration, migrations, health, CLI and JSON errors."""

from __future__ import annotations

import subprocess
import sys
import uuid
from pathlib import Path

import pytest
from sqlalchemy import create_engine, inspect

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


@pytest.mark.parametrize("backend", BACKENDS)
def test_migrations_match_models(backend, tmp_path):
    """Migrating from empty to head gives exactly the models' schema, on each database."""
    from alembic.autogenerate import compare_metadata
    from alembic.migration import MigrationContext

    from database import upgrade_database
    from models import Base

    if backend == "sqlite":
        url = f"sqlite:///{tmp_path / 'm.sqlite3'}"
    else:
        from sqlalchemy import text

        schema = f"migration_check_{uuid.uuid4().hex[:8]}"
        engine = create_engine(PG_URL)
        with engine.begin() as conn:
            conn.execute(text(f"CREATE SCHEMA {schema}"))
        engine.dispose()
        url = PG_URL + ("&" if "?" in PG_URL else "?") + f"options=-csearch_path%3D{schema}"
    upgrade_database(url)
    upgrade_database(url)  # idempotent
    engine = create_engine(url)
    with engine.connect() as conn:
        diff = compare_metadata(MigrationContext.configure(conn), Base.metadata)
        tables = set(inspect(conn).get_table_names())
    engine.dispose()
    if backend != "sqlite":
        engine = create_engine(PG_URL)
        with engine.begin() as conn:
            conn.execute(text(f"DROP SCHEMA {schema} CASCADE"))
        engine.dispose()
    assert diff == []
    assert {"users", "api_keys", "functions", "function_versions", "user_valves"} <= tables


def test_sqlite_pragmas(app):
    from sqlalchemy import text

    from extensions import db

    if not app.config["SQLALCHEMY_DATABASE_URI"].startswith("sqlite"):
        pytest.skip("SQLite only")
    with app.app_context():
        assert db.session.execute(text("PRAGMA foreign_keys")).scalar() == 1
        assert db.session.execute(text("PRAGMA journal_mode")).scalar() == "wal"
        assert db.session.execute(text("PRAGMA busy_timeout")).scalar() >= 1000


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
