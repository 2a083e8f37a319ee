"""`flask backup FILE` / `flask restore FILE`: an exact round trip between SQLite and PostgreSQL both ways, and a
restore that refuses a damaged or foreign file, a non-empty database (without --replace) or secrets it cannot open,
changing nothing."""

from __future__ import annotations

import json
import shutil
import stat

import pytest
from cryptography.fernet import Fernet
from sqlalchemy import Column, ForeignKey, Integer, String, Table

from tests import factories as F
from tests.api.test_secret_valves import SECRET, SECRET_FILTER, USER_SECRET
from tests.conftest import BACKENDS, PASSWORD, bearer, make_app, sign_in


@pytest.fixture
def databases(tmp_path, request):
    """Two empty databases by backend name: ``sqlite`` and ``sqlite2`` always, ``postgresql`` when it answers."""
    from tests.conftest import _truncate_postgres

    made = {}
    for name in ("sqlite", "sqlite2"):
        path = tmp_path / f"{name}.sqlite3"
        shutil.copy(request.getfixturevalue("sqlite_template"), path)
        made[name] = f"sqlite:///{path}"
    if "postgresql" in BACKENDS:
        made["postgresql"] = request.getfixturevalue("postgres_url")
        _truncate_postgres(made["postgresql"])
    apps = []

    def app_for(name, **config):
        app = make_app(made[name], **config)
        apps.append(app)
        return app

    yield app_for
    from extensions import db

    for app in apps:
        with app.app_context():
            db.session.remove()
            db.engine.dispose()
    if "postgresql" in made:
        _truncate_postgres(made["postgresql"])


def fill(app) -> None:
    """Accounts, keys, a function with two versions, admin and user valves (secret ones too)."""
    from extensions import db
    from models import User
    from services import accounts, functions, valves

    with app.app_context():
        admin = accounts.create_user("Ada Admin", "admin@example.com", PASSWORD, role="admin")
        user = accounts.create_user("Uma Üser", "user@example.com", PASSWORD, role="user")
        accounts.create_user("Pat Pending", "pending@example.com", PASSWORD, role="pending")
        accounts.create_api_key(admin, "admin key")
        accounts.create_api_key(user, "user key", connection=False)
        f = functions.create_function(
            admin, id="secret_filter", name="Secret", content=SECRET_FILTER, meta={"description": "ünï"}
        )
        functions.update_function(
            admin,
            f.id,
            name="Secret v2",
            content=SECRET_FILTER + "\n# two\n",
            meta=None,
            commit_message="two",
        )
        # Its code names its icon (`self.icon`), kept in a column of its own.
        functions.create_function(admin, id="icon_filter", name="Icon", content=F.ICON_FILTER, meta={})
        functions.toggle_active("secret_filter")
        valves.update_valves("secret_filter", {"api_key": SECRET, "plain": "shown"})
        valves.update_user_valves(db.session.get(User, user.id), "secret_filter", {"personal": USER_SECRET})


def tables_of(app) -> dict:
    from services import backup

    with app.app_context():
        return backup.make_backup()["tables"]


def cli(app, *args):
    return app.test_cli_runner().invoke(args=list(args))


DIRECTIONS = [("sqlite", "sqlite2")] + (
    [("sqlite", "postgresql"), ("postgresql", "sqlite")] if "postgresql" in BACKENDS else []
)


@pytest.mark.parametrize(("source", "target"), DIRECTIONS, ids=["->".join(d) for d in DIRECTIONS])
def test_a_backup_restores_exactly_into_another_database(databases, tmp_path, source, target):
    source_app = databases(source)
    fill(source_app)
    path = tmp_path / "sluice.backup"
    made = cli(source_app, "backup", str(path))
    assert made.exit_code == 0, made.output
    assert "3 users" in made.output and "2 functions" in made.output
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert SECRET not in path.read_text() and USER_SECRET not in path.read_text()

    target_app = databases(target)
    restored = cli(target_app, "restore", str(path))
    assert restored.exit_code == 0, restored.output
    assert tables_of(target_app) == tables_of(source_app)
    icons = {row["id"]: row["icon"] for row in tables_of(target_app)["functions"]}
    assert icons == {"secret_filter": None, "icon_filter": F.SVG_ICON}

    # What the restored instance does with it: sign-in, keys, secrets opened, new rows after the restored ones.
    client = target_app.test_client()
    assert sign_in(client, "user@example.com").status_code == 302
    with target_app.app_context():
        from extensions import db
        from models import User
        from services import accounts, valves

        admin = db.session.query(User).filter_by(email="admin@example.com").one()
        _key, plain = accounts.create_api_key(admin, "after restore")
    answer = client.get("/api/v1/functions/id/secret_filter/valves", headers=bearer(plain))
    assert answer.get_json() == {"api_key": SECRET, "plain": "shown"}
    with target_app.app_context():
        other = db.session.query(User).filter_by(email="admin@example.com").one()
        valves.update_user_valves(other, "secret_filter", {"personal": "admin's own"})  # a new user_valves id


def test_a_backup_made_before_functions_kept_their_icon_still_restores(databases, tmp_path):
    from services import backup

    source_app = databases("sqlite")
    fill(source_app)
    path = tmp_path / "sluice.backup"
    assert cli(source_app, "backup", str(path)).exit_code == 0
    document = json.loads(path.read_text())
    for row in document["tables"]["functions"]:
        del row["icon"]  # as Sluice wrote it at schema 0007
    document["schema"] = "0007"
    document["checksum"] = backup.checksum(document["tables"])
    path.write_text(json.dumps(document))

    target_app = databases("sqlite2")
    restored = cli(target_app, "restore", str(path))
    assert restored.exit_code == 0, restored.output
    assert {row["id"]: row["icon"] for row in tables_of(target_app)["functions"]} == {
        "secret_filter": None,
        "icon_filter": None,  # learnt again when its code is next saved
    }


def test_restore_refuses_a_damaged_file_and_changes_nothing(databases, tmp_path):
    source_app = databases("sqlite")
    fill(source_app)
    path = tmp_path / "sluice.backup"
    assert cli(source_app, "backup", str(path)).exit_code == 0
    document = json.loads(path.read_text())
    document["tables"]["users"][0]["role"] = (
        "admin" if document["tables"]["users"][0]["role"] != "admin" else "user"
    )
    path.write_text(json.dumps(document))
    target_app = databases("sqlite2")
    result = cli(target_app, "restore", str(path))
    assert result.exit_code != 0
    assert "is damaged: its checksum does not match" in result.output
    assert all(rows == [] for rows in tables_of(target_app).values())

    path.write_text(path.read_text()[:-200])  # cut short
    result = cli(target_app, "restore", str(path))
    assert result.exit_code != 0 and "not valid JSON" in result.output


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ('{"functions": []}', "is not a Sluice backup"),
        ('[{"id": "x"}]', "is not a Sluice backup"),
        ('{"format": "sluice-backup", "version": 2, "tables": {}}', "this Sluice reads version 1 only"),
    ],
)
def test_restore_refuses_a_foreign_file(databases, tmp_path, content, message):
    target_app = databases("sqlite")
    path = tmp_path / "foreign.json"
    path.write_text(content)
    result = cli(target_app, "restore", str(path))
    assert result.exit_code != 0 and message in result.output


def test_restore_into_a_database_with_data_needs_replace(databases, tmp_path):
    source_app = databases("sqlite")
    fill(source_app)
    path = tmp_path / "sluice.backup"
    assert cli(source_app, "backup", str(path)).exit_code == 0

    target_app = databases("sqlite2")
    with target_app.app_context():
        from services import accounts

        accounts.create_user("Someone", "someone@example.com", PASSWORD, role="admin")
    before = tables_of(target_app)
    refused = cli(target_app, "restore", str(path))
    assert refused.exit_code != 0 and "--replace" in refused.output
    assert tables_of(target_app) == before

    replaced = cli(target_app, "restore", "--replace", str(path))
    assert replaced.exit_code == 0, replaced.output
    assert tables_of(target_app) == tables_of(source_app)


def test_a_restore_that_fails_half_way_changes_nothing(databases, tmp_path):
    from services import backup

    source_app = databases("sqlite")
    fill(source_app)
    with source_app.app_context():
        document = backup.make_backup()
    # Well-formed and checksummed, but the database refuses it (a second row for one user and function) last.
    document["tables"]["user_valves"].append({**document["tables"]["user_valves"][0], "id": 999})
    document["checksum"] = backup.checksum(document["tables"])
    path = tmp_path / "bad.backup"
    path.write_text(json.dumps(document))
    target_app = databases("sqlite2")
    result = cli(target_app, "restore", str(path))
    assert result.exit_code != 0 and "The database refused the backup's rows" in result.output
    assert all(rows == [] for rows in tables_of(target_app).values())


def test_restore_refuses_secrets_it_cannot_open(databases, tmp_path):
    source_app = databases("sqlite")
    fill(source_app)
    path = tmp_path / "sluice.backup"
    assert cli(source_app, "backup", str(path)).exit_code == 0
    stranger = databases(
        "sqlite2", SECRET_KEY="another-instance", SLUICE_VALVES_KEY=Fernet.generate_key().decode()
    )
    result = cli(stranger, "restore", str(path))
    assert result.exit_code != 0 and "SLUICE_VALVES_KEY" in result.output
    assert all(rows == [] for rows in tables_of(stranger).values())


def test_restore_refuses_a_table_this_sluice_does_not_have(databases, tmp_path):
    from services import backup

    source_app = databases("sqlite")
    fill(source_app)
    with source_app.app_context():
        document = backup.make_backup()
    document["tables"]["future_things"] = [{"id": 1}]
    document["checksum"] = backup.checksum(document["tables"])
    path = tmp_path / "newer.backup"
    path.write_text(json.dumps(document))
    result = cli(databases("sqlite2"), "restore", str(path))
    assert result.exit_code != 0 and "no table for the backup's future_things" in result.output


@pytest.fixture
def audit_table():
    """A table registered as a later model would be (say, the audit log), removed again afterwards."""
    from models import Base

    table = Table(
        "audit_log_example",
        Base.metadata,
        Column("id", Integer, primary_key=True, autoincrement=True),
        Column("user_id", String(36), ForeignKey("users.id", ondelete="SET NULL"), nullable=True),
        Column("action", String(64)),
    )
    yield table
    Base.metadata.remove(table)


def test_a_table_a_later_model_adds_is_backed_up_and_restored(databases, tmp_path, audit_table):
    from extensions import db

    source_app, target_app = databases("sqlite"), databases("sqlite2")
    for app in (source_app, target_app):
        with app.app_context():
            audit_table.create(db.engine)
    fill(source_app)
    with source_app.app_context():
        db.session.execute(audit_table.insert(), [{"action": "function.create"}, {"action": "valves.update"}])
        db.session.commit()
    path = tmp_path / "sluice.backup"
    assert cli(source_app, "backup", str(path)).exit_code == 0
    assert len(json.loads(path.read_text())["tables"]["audit_log_example"]) == 2
    assert cli(target_app, "restore", str(path)).exit_code == 0
    assert tables_of(target_app)["audit_log_example"] == tables_of(source_app)["audit_log_example"]
