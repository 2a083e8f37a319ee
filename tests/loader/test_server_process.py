"""The server's own processes are non-dumpable: a load child that keeps root but has no CAP_SYS_PTRACE can then
read neither their /proc/<pid>/environ (DATABASE_URL, SECRET_KEY) nor their memory.

Each check runs in a fresh interpreter, so that the test process keeps its own state.
"""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

DUMPABLE = """
import ctypes
libc = ctypes.CDLL(None, use_errno=True)
libc.prctl.argtypes = [ctypes.c_int, ctypes.c_ulong, ctypes.c_ulong, ctypes.c_ulong, ctypes.c_ulong]
def dumpable():
    return libc.prctl(3, 0, 0, 0, 0)  # PR_GET_DUMPABLE
"""


def run(script: str) -> list[str]:
    completed = subprocess.run(
        [sys.executable, "-c", DUMPABLE + textwrap.dedent(script)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert completed.returncode == 0, completed.stderr
    return completed.stdout.split()


def test_protect_server_process_makes_the_caller_non_dumpable():
    before, result, after = run("""
        import loader
        print(dumpable(), loader.protect_server_process(), dumpable())
    """)

    assert (before, result, after) == ("1", "True", "0")


def test_gunicorn_started_in_the_repository_root_makes_its_master_non_dumpable():
    """bin/serve starts gunicorn in the repository root, where gunicorn reads gunicorn.conf.py by itself."""
    with open(os.path.join(ROOT, "bin", "serve")) as serve:
        assert 'cd "$(dirname "$0")/.."' in serve.read()
    before, after, hook, after_hook = run("""
        import sys
        sys.argv = ["gunicorn", "--bind", "127.0.0.1:0", "app:create_app()"]
        before = dumpable()
        from gunicorn.app.wsgiapp import WSGIApplication
        application = WSGIApplication("%(prog)s [OPTIONS] [APP_MODULE]")  # reads the configuration, starts nothing
        after = dumpable()
        libc.prctl(4, 1, 0, 0, 0)  # dumpable again, as a worker that changed user would be
        application.cfg.post_worker_init(None)
        print(before, after, application.cfg.post_worker_init.__module__, dumpable())
    """)

    assert (before, after, after_hook) == ("1", "0", "0")
    assert hook != "gunicorn.config"  # ours, not gunicorn's empty default


def test_create_app_makes_the_process_non_dumpable_and_hides_the_instance_folder_and_database(tmp_path):
    database = tmp_path / "elsewhere" / "sluice.sqlite3"
    database.parent.mkdir()
    jobs = tmp_path / "jobs"
    before, after, instance, *hidden = run(f"""
        before = dumpable()
        from app import create_app
        from loader import client
        app = create_app({{
            "TESTING": True,
            "SECRET_KEY": "test-secret-key",  # else the instance folder would get a key of its own
            "SQLALCHEMY_DATABASE_URI": "sqlite:///{database}",
            "SLUICE_INSTALL_JOBS_DIR": "{jobs}",
        }})
        print(before, dumpable(), app.instance_path, *client.settings().hidden_paths)
    """)

    assert (before, after) == ("1", "0")
    assert hidden[0] == os.path.realpath(instance)
    assert set(hidden[1:]) >= {str(database.parent), str(database), f"{database}-wal", str(jobs)}


def test_the_zygote_is_non_dumpable(loader_fast):
    """It holds every job in flight; where the server does not run as root, children have its user and no more
    capabilities than it has, and only this keeps them from reading its memory or tracing it."""
    assert loader_fast.start()["non_dumpable"] is True
