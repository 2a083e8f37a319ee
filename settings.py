"""Configuration: defaults, then ``instance/config.py``, then the environment.

Every Sluice-specific setting is read from a ``SLUICE_*`` environment variable; the README lists them.
"""

from __future__ import annotations

import os
import secrets
from pathlib import Path

from flask import Flask

MIB = 1024 * 1024

# (environment variable, config key, parser). Order of precedence is applied in ``load_config``.
ENVIRONMENT = [
    ("DATABASE_URL", "SQLALCHEMY_DATABASE_URI", str),
    ("SECRET_KEY", "SECRET_KEY", str),
    ("SLUICE_ENABLE_SIGNUP", "SLUICE_ENABLE_SIGNUP", "bool"),
    ("SLUICE_LOAD_TIMEOUT", "SLUICE_LOAD_TIMEOUT", float),
    ("SLUICE_LOAD_MEMORY_MB", "SLUICE_LOAD_MEMORY_MB", int),
    ("SLUICE_MAX_CONCURRENT_LOADS", "SLUICE_MAX_CONCURRENT_LOADS", int),
    ("SLUICE_ALLOW_PRIVATE_URLS", "SLUICE_ALLOW_PRIVATE_URLS", "bool"),
    ("SLUICE_URL_FETCH_TIMEOUT", "SLUICE_URL_FETCH_TIMEOUT", float),
    ("SLUICE_ALLOW_PIP_INSTALL", "SLUICE_ALLOW_PIP_INSTALL", "bool"),
    ("SLUICE_FUNCTION_PACKAGES_DIR", "SLUICE_FUNCTION_PACKAGES_DIR", str),
    ("SLUICE_INSTALL_JOBS_DIR", "SLUICE_INSTALL_JOBS_DIR", str),
    ("SLUICE_MAX_REQUEST_MB", "SLUICE_MAX_REQUEST_MB", int),
    ("SLUICE_SIGNIN_MAX_FAILURES", "SLUICE_SIGNIN_MAX_FAILURES", int),
    ("SLUICE_SIGNIN_LOCK_SECONDS", "SLUICE_SIGNIN_LOCK_SECONDS", int),
    ("SLUICE_SECURE_COOKIES", "SESSION_COOKIE_SECURE", "bool"),
]


def defaults(instance_path: str) -> dict:
    db_path = Path(instance_path) / "sluice.sqlite3"
    return {
        "SQLALCHEMY_DATABASE_URI": f"sqlite:///{db_path}",
        "SLUICE_ENABLE_SIGNUP": False,
        "SLUICE_LOAD_TIMEOUT": 10.0,
        "SLUICE_LOAD_MEMORY_MB": 1024,
        "SLUICE_MAX_CONCURRENT_LOADS": default_concurrent_loads(),
        "SLUICE_ALLOW_PRIVATE_URLS": False,
        "SLUICE_URL_FETCH_TIMEOUT": 20.0,
        "SLUICE_ALLOW_PIP_INSTALL": False,
        "SLUICE_FUNCTION_PACKAGES_DIR": str(Path(instance_path) / "function-packages"),
        "SLUICE_MAX_REQUEST_MB": 32,
        "SLUICE_SIGNIN_MAX_FAILURES": 5,
        "SLUICE_SIGNIN_LOCK_SECONDS": 300,
        "SESSION_COOKIE_HTTPONLY": True,
        "SESSION_COOKIE_SAMESITE": "Lax",
        "REMEMBER_COOKIE_HTTPONLY": True,
        "REMEMBER_COOKIE_SAMESITE": "Lax",
        "SESSION_COOKIE_SECURE": False,
        # CSRF is enforced by our own hook so that API-key calls are exempt and cookie calls are not.
        "WTF_CSRF_CHECK_DEFAULT": False,
        "WTF_CSRF_TIME_LIMIT": None,
        "SQLALCHEMY_ENGINE_OPTIONS": {"pool_pre_ping": True},
        "JSON_SORT_KEYS": False,
    }


def default_concurrent_loads() -> int:
    """Half the threads `bin/serve` gives each process (`SLUICE_THREADS`, 8), at least 2: the rest stay free."""
    try:
        threads = int(os.environ.get("SLUICE_THREADS") or 8)
    except ValueError:
        threads = 8
    return max(2, threads // 2)


def _parse(value: str, kind):
    if kind == "bool":
        return value.strip().lower() in ("1", "true", "yes", "on")
    return kind(value)


def load_config(app: Flask, test_config: dict | None = None) -> None:
    app.config.from_mapping(defaults(app.instance_path))
    app.config.from_pyfile("config.py", silent=True)
    for env_name, key, kind in ENVIRONMENT:
        value = os.environ.get(env_name)
        if value is not None and value != "":
            try:
                app.config[key] = _parse(value, kind)
            except ValueError as exc:
                raise RuntimeError(f"{env_name}={value!r} is not valid: {exc}") from None
    if test_config:
        app.config.from_mapping(test_config)

    app.json.sort_keys = False
    app.config["MAX_CONTENT_LENGTH"] = app.config["SLUICE_MAX_REQUEST_MB"] * MIB
    uri = app.config["SQLALCHEMY_DATABASE_URI"]
    # Heroku-style URLs name the old driver; Sluice ships psycopg 3.
    if uri.startswith("postgres://"):
        uri = "postgresql+psycopg://" + uri[len("postgres://") :]
    elif uri.startswith("postgresql://"):
        uri = "postgresql+psycopg://" + uri[len("postgresql://") :]
    app.config["SQLALCHEMY_DATABASE_URI"] = uri
    if not app.config.get("SECRET_KEY"):
        app.config["SECRET_KEY"] = instance_secret_key(app.instance_path)


def loader_hidden_paths(app: Flask) -> list[str]:
    """What function code must never read, for ``loader.configure(hidden_paths=...)``: the instance folder (secret
    key, config.py, SQLite database, install jobs), and the SQLite database and install jobs when they are elsewhere
    (the database's folder, and its files in case that folder also holds what function code needs)."""
    paths = [app.instance_path]
    uri = app.config.get("SQLALCHEMY_DATABASE_URI") or ""
    if uri.startswith("sqlite:"):
        from sqlalchemy.engine import make_url

        database = make_url(uri).database
        if database and database != ":memory:" and not database.startswith("file:"):
            database = os.path.join(app.instance_path, database)  # Flask-SQLAlchemy's rule for relative paths
            paths.append(os.path.dirname(database))
            paths.extend(database + suffix for suffix in ("", "-wal", "-shm", "-journal"))
    if app.config.get("SLUICE_INSTALL_JOBS_DIR"):
        paths.append(app.config["SLUICE_INSTALL_JOBS_DIR"])
    return paths


def instance_secret_key(instance_path: str) -> str:
    """Read the key kept in the instance folder, creating it once; several workers agree on it."""
    path = Path(instance_path) / "secret_key"
    if not path.exists():
        candidate = secrets.token_hex(32)
        try:
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        except FileExistsError:
            pass  # another worker won the race; read what it wrote
        else:
            with os.fdopen(fd, "w") as handle:
                handle.write(candidate)
            return candidate
    for _ in range(50):
        key = path.read_text().strip()
        if key:
            return key
        import time

        time.sleep(0.01)
    raise RuntimeError(f"{path} is empty; delete it to generate a new secret key")
