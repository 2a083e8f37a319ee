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
