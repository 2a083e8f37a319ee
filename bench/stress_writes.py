"""Sixteen clients writing at once for a minute (or SLUICE_STRESS_SECONDS) on SQLite and PostgreSQL: runs the
suite's concurrency test (tests/reliability/test_concurrent_writes.py) longer and prints what the clients did."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

if __name__ == "__main__":
    env = {**os.environ, "SLUICE_STRESS_SECONDS": os.environ.get("SLUICE_STRESS_SECONDS", "60")}
    test = "tests/reliability/test_concurrent_writes.py"
    command = [sys.executable, "-m", "pytest", "-q", "-s", "-p", "no:cacheprovider", test, *sys.argv[1:]]
    sys.exit(subprocess.call(command, cwd=ROOT, env=env))
