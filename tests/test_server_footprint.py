"""What a server process holds before its first request: gunicorn builds the app once in its master and every
worker shares it, so what the app imports at start is paid once; what it need not import (migrations, the URL
fetcher) is not paid at all until used. Each check runs in a fresh interpreter."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

BUILD_APP = """
import sys, threading
from app import create_app
create_app({"TESTING": sys.argv[2] == "testing", "SQLALCHEMY_DATABASE_URI": sys.argv[1], "SECRET_KEY": "test"})
print(" ".join(sorted(name for name in sys.modules if "." not in name)))
print(" ".join(thread.name for thread in threading.enumerate()))
"""


def build_app(tmp_path, mode: str = "testing") -> tuple[set[str], list[str]]:
    """The top-level modules imported and the threads running once ``create_app`` has returned."""
    completed = subprocess.run(
        [sys.executable, "-c", BUILD_APP, f"sqlite:///{tmp_path / 'db.sqlite3'}", mode],
        cwd=ROOT,
        env={**os.environ, "SECRET_KEY": "test"},
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert completed.returncode == 0, completed.stderr
    modules, threads = completed.stdout.splitlines()
    return set(modules.split()), threads.split()


def test_the_app_imports_neither_alembic_nor_requests_until_it_needs_them(tmp_path):
    imported, _threads = build_app(tmp_path)
    assert "flask" in imported  # the check sees what the app imported
    assert not {"alembic", "requests", "urllib3"} & imported


def test_building_the_app_starts_no_thread_and_no_loader(tmp_path):
    """gunicorn's master builds the app and forks its workers (threads do not survive a fork), and a command such
    as `flask init-db` builds it too: the loader is warmed by a worker, or by a first request, never here."""
    _modules, threads = build_app(tmp_path, "server")
    assert threads == ["MainThread"]
