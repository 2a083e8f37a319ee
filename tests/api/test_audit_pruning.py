"""Keeping the audit trail bounded: `audit.prune`, `flask prune-audit`, and the workers' pruning now and then."""

from __future__ import annotations

import time

import pytest
from sqlalchemy import func, select

DAY = 24 * 60 * 60


def add_entries(app, ages_in_days: list[float]) -> None:
    """Entries made that many days ago (written directly, as a long-running server would have)."""
    from extensions import db
    from models import AuditEntry, now

    with app.app_context():
        for n, age in enumerate(ages_in_days):
            db.session.add(
                AuditEntry(
                    created_at=now() - int(age * DAY),
                    face="system",
                    action="user.signed_in",
                    target_kind="user",
                    target_id=f"user-{n}",
                    details={},
                )
            )
        db.session.commit()


def ages_left(app) -> list[int]:
    from extensions import db
    from models import AuditEntry, now

    with app.app_context():
        stamps = db.session.scalars(select(AuditEntry.created_at))
        return sorted(round((now() - stamp) / DAY) for stamp in stamps)


def entry_count(app) -> int:
    from extensions import db
    from models import AuditEntry

    with app.app_context():
        return db.session.scalar(select(func.count()).select_from(AuditEntry))


def test_prune_removes_only_what_is_older_in_batches(app):
    from services import audit

    add_entries(app, [400, 366, 200, 31, 29, 1, 0, 500, 367])
    with app.app_context():
        assert audit.prune(365, dry_run=True) == 4
        assert entry_count(app) == 9  # a dry run changes nothing
        assert audit.prune(365, batch=2) == 4  # two full batches, then an empty one
        assert ages_left(app) == [0, 1, 29, 31, 200]
        assert audit.prune(30) == 2
        assert ages_left(app) == [0, 1, 29]
        assert audit.prune(30) == 0
        with pytest.raises(ValueError):
            audit.prune(0)


def test_the_command_uses_the_setting_or_its_option(app, runner):
    add_entries(app, [100, 50, 10])
    answer = runner.invoke(args=["prune-audit"])
    assert answer.exit_code != 0 and "SLUICE_AUDIT_KEEP_DAYS" in answer.output  # 0 keeps everything
    assert entry_count(app) == 3
    answer = runner.invoke(args=["prune-audit", "--older-than", "40", "--dry-run"])
    assert answer.exit_code == 0 and "Would remove 2 audit entries older than 40 days." in answer.output
    assert entry_count(app) == 3
    answer = runner.invoke(args=["prune-audit", "--older-than", "0"])
    assert answer.exit_code != 0 and entry_count(app) == 3
    app.config["SLUICE_AUDIT_KEEP_DAYS"] = 60
    answer = runner.invoke(args=["prune-audit"])
    assert answer.exit_code == 0 and "Removed 1 audit entry older than 60 days." in answer.output
    assert ages_left(app) == [10, 50]


def test_a_worker_prunes_now_and_then(app):
    from app import prune_audit_in_background

    add_entries(app, [90, 20, 5])
    app.config["SLUICE_AUDIT_KEEP_DAYS"] = 30
    stop = prune_audit_in_background(app, interval=0.05, first=0.01)
    try:
        deadline = time.monotonic() + 10
        while ages_left(app) != [5, 20] and time.monotonic() < deadline:
            time.sleep(0.05)
        assert ages_left(app) == [5, 20]
        add_entries(app, [45])  # the next round takes it too
        while ages_left(app) != [5, 20] and time.monotonic() < deadline:
            time.sleep(0.05)
        assert ages_left(app) == [5, 20]
    finally:
        stop.set()


def test_the_setting_is_checked(app):
    from settings import SettingError, read_settings

    with pytest.raises(SettingError, match="SLUICE_AUDIT_KEEP_DAYS"):
        read_settings(app.instance_path, {}, {"SLUICE_AUDIT_KEEP_DAYS": "-1"}, None)
    assert (
        read_settings(app.instance_path, {}, {"SLUICE_AUDIT_KEEP_DAYS": "90"}, None)["SLUICE_AUDIT_KEEP_DAYS"]
        == 90
    )


def test_the_audit_page_says_how_long_entries_are_kept(app, admin_client):
    assert b"Every entry is kept" in admin_client.get("/admin/audit").data
    app.config["SLUICE_AUDIT_KEEP_DAYS"] = 180
    assert b"Entries older than 180 days are removed" in admin_client.get("/admin/audit").data
