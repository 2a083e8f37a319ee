"""Shared fixtures: an app on each database (SQLite always, PostgreSQL when it answers), clients and accounts."""

from __future__ import annotations

import os
import re
import shutil
import uuid

import pytest

PG_URL = os.environ.get("TEST_DATABASE_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test")
IN_CI = os.environ.get("CI", "").lower() in ("1", "true", "yes")
PASSWORD = "correct horse battery"


def _postgres_answers() -> bool:
    try:
        import psycopg

        dsn = PG_URL.replace("postgresql+psycopg://", "postgresql://")
        with psycopg.connect(dsn, connect_timeout=3):
            return True
    except Exception:
        return False


POSTGRES = _postgres_answers()
if IN_CI and not POSTGRES:
    raise RuntimeError(f"CI must run the suite on PostgreSQL too, but {PG_URL} does not answer")
BACKENDS = ["sqlite"] + (["postgresql"] if POSTGRES else [])


@pytest.fixture(scope="session", autouse=True)
def fast_password_hashing():
    """Argon2 at its cheapest: the suite creates thousands of accounts, and the cost is not what it tests."""
    from argon2 import PasswordHasher

    from services import accounts

    saved = accounts._hasher
    accounts._hasher = PasswordHasher(time_cost=1, memory_cost=1024, parallelism=1)
    yield
    accounts._hasher = saved


@pytest.fixture(scope="session")
def sqlite_template(tmp_path_factory):
    """A migrated SQLite file, copied for each test so that every test starts from an empty schema."""
    from database import upgrade_database

    path = tmp_path_factory.mktemp("db") / "template.sqlite3"
    upgrade_database(f"sqlite:///{path}")
    return path


@pytest.fixture(scope="session")
def postgres_url():
    """A PostgreSQL database for this test session, migrated once.

    Without ``TEST_DATABASE_URL`` each session creates its own database beside ``test`` and drops it at the
    end, so that several suites (two checkouts, or pytest-xdist workers) never clobber each other.
    """
    from sqlalchemy import create_engine, text
    from sqlalchemy.engine import make_url

    from database import upgrade_database

    if "TEST_DATABASE_URL" in os.environ:
        engine = create_engine(PG_URL)
        with engine.begin() as conn:
            conn.execute(text("DROP SCHEMA public CASCADE"))
            conn.execute(text("CREATE SCHEMA public"))
        engine.dispose()
        upgrade_database(PG_URL)
        yield PG_URL
        return
    name = f"sluice_test_{os.getpid()}_{uuid.uuid4().hex[:8]}"
    admin = create_engine(PG_URL, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f'CREATE DATABASE "{name}"'))
    url = make_url(PG_URL).set(database=name).render_as_string(hide_password=False)
    try:
        upgrade_database(url)
        yield url
    finally:
        with admin.connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


def _truncate_postgres(url: str) -> None:
    from sqlalchemy import create_engine, text

    from models import Base

    engine = create_engine(url)
    tables = ", ".join(table.name for table in Base.metadata.sorted_tables)
    with engine.begin() as conn:
        conn.execute(text(f"TRUNCATE {tables} CASCADE"))
    engine.dispose()


def make_app(database_url: str, **overrides):
    from app import create_app

    config = {
        "TESTING": True,
        "SQLALCHEMY_DATABASE_URI": database_url,
        "SECRET_KEY": "test-secret-key",
        "SLUICE_LOAD_TIMEOUT": 5.0,
        # The loader's template importing what loaded functions import would make one test's loads depend on the
        # ones before it: only tests/loader/test_warm_imports.py turns it on.
        "SLUICE_LOAD_WARM_IMPORTS_MB": 0,
        "SLUICE_ALLOW_PRIVATE_URLS": False,
    }
    config.update(overrides)
    return create_app(config)


@pytest.fixture(params=BACKENDS)
def database_url(request, tmp_path):
    if request.param == "sqlite":
        path = tmp_path / "sluice.sqlite3"
        shutil.copy(request.getfixturevalue("sqlite_template"), path)
        yield f"sqlite:///{path}"
    else:
        url = request.getfixturevalue("postgres_url")
        yield url
        _truncate_postgres(url)


@pytest.fixture
def app_config():
    """Overrides for the app under test; a test module may redefine this fixture."""
    return {}


@pytest.fixture
def app(database_url, app_config):
    from extensions import db

    app = make_app(database_url, **app_config)
    yield app
    with app.app_context():
        db.session.remove()
        db.engine.dispose()


@pytest.fixture
def client(app):
    return app.test_client()


@pytest.fixture
def runner(app):
    return app.test_cli_runner()


def _make_user(app, email, name, role):
    from services import accounts

    with app.app_context():
        user = accounts.create_user(name, email, PASSWORD, role=role)
        return user.id


@pytest.fixture
def admin_id(app):
    return _make_user(app, "admin@example.com", "Ada Admin", "admin")


@pytest.fixture
def user_id(app, admin_id):
    return _make_user(app, "user@example.com", "Uma User", "user")


@pytest.fixture
def other_user_id(app, admin_id):
    return _make_user(app, "other@example.com", "Otto Other", "user")


@pytest.fixture
def pending_id(app, admin_id):
    return _make_user(app, "pending@example.com", "Pat Pending", "pending")


def _make_key(app, user_id):
    from extensions import db
    from models import User
    from services import accounts

    with app.app_context():
        _key, plain = accounts.create_api_key(db.session.get(User, user_id), "test")
        return plain


@pytest.fixture
def admin_key(app, admin_id):
    return _make_key(app, admin_id)


@pytest.fixture
def user_key(app, user_id):
    return _make_key(app, user_id)


@pytest.fixture
def other_user_key(app, other_user_id):
    return _make_key(app, other_user_id)


@pytest.fixture
def pending_key(app, pending_id):
    return _make_key(app, pending_id)


def bearer(key: str) -> dict:
    return {"Authorization": f"Bearer {key}"}


def sign_in(client, email: str, password: str = PASSWORD, follow_redirects=False):
    token = csrf_token(client, "/auth")
    return client.post(
        "/auth",
        data={"email": email, "password": password, "csrf_token": token},
        follow_redirects=follow_redirects,
    )


def csrf_token(client, path: str = "/auth") -> str:
    """The CSRF token of the client's session, read from a page's meta tag as the console's scripts do."""
    page = client.get(path)
    match = re.search(rb'name="csrf-token" content="([^"]+)"', page.data)
    assert match, f"no CSRF token on {path} ({page.status_code})"
    return match.group(1).decode()


@pytest.fixture
def admin_client(app, admin_id):
    client = app.test_client()
    assert sign_in(client, "admin@example.com").status_code == 302
    return client


@pytest.fixture
def user_client(app, user_id):
    client = app.test_client()
    assert sign_in(client, "user@example.com").status_code == 302
    return client
