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
import sys
from app import create_app
create_app({"TESTING": True, "SQLALCHEMY_DATABASE_URI": sys.argv[1], "SECRET_KEY": "test"})
print(" ".join(sorted(name for name in sys.modules if "." not in name)))
"""


def modules_after_create_app(tmp_path) -> set[str]:
    completed = subprocess.run(
        [sys.executable, "-c", BUILD_APP, f"sqlite:///{tmp_path / 'db.sqlite3'}"],
        cwd=ROOT,
        env={**os.environ, "SECRET_KEY": "test"},
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert completed.returncode == 0, completed.stderr
    return set(completed.stdout.split())


def test_the_app_imports_neither_alembic_nor_requests_until_it_needs_them(tmp_path):
    imported = modules_after_create_app(tmp_path)
    assert "flask" in imported  # the check sees what the app imported
    assert not {"alembic", "requests", "urllib3"} & imported
