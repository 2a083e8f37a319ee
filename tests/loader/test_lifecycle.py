"""No loader process outlives its owner: shutting down, or the caller dying, leaves no zygote, spare or child behind.

These tests start the loader in a separate Python process (so that it can be killed) and watch the processes it
leaves through /proc.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import threading
import time

import pytest

from loader import client

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def alive(pid: int) -> bool:
    """Whether `pid` runs (a zombie waiting to be reaped has finished)."""
    try:
        with open(f"/proc/{pid}/stat") as stat:
            return stat.read().rsplit(")", 1)[1].split()[0] not in ("Z", "X")
    except (FileNotFoundError, ProcessLookupError):
        return False


def all_gone(pids, within: float) -> list[int]:
    """The pids still running after `within` seconds (an empty list when all are gone)."""
    deadline = time.monotonic() + within
    while True:
        left = [pid for pid in pids if alive(pid)]
        if not left or time.monotonic() > deadline:
            return left
        time.sleep(0.02)


def children(pid: int) -> list[int]:
    try:
        with open(f"/proc/{pid}/task/{pid}/children") as listing:
            return [int(item) for item in listing.read().split()]
    except OSError:
        return []


def kill_all(pids) -> None:
    for pid in pids:
        try:
            os.kill(pid, signal.SIGKILL)
        except OSError:
            pass


def python(script: str, *args: str, **kwargs) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-c", textwrap.dedent(script), *args],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        text=True,
        **kwargs,
    )


# A caller of the loader: it starts the zygote with two spares, loads once, waits until both spares are forked,
# prints the pids, then idles until it is told (by a line on its stdin, or a signal) to go.
CALLER = """
import json, os, sys, subprocess, time
sys.path.insert(0, os.getcwd())
import loader
from loader import client

loader.configure(spares=2)
loader.start()
assert loader.load_function("class Filter:\\n    pass\\n").ok
zygote = loader.stats()["zygote_pid"]
ready = loader.start()
# The clean processes children are forked from, if any: one for load children, one for runtime workers.
templates = [pid for pid in (ready.get("template_pid"), ready.get("worker_template_pid")) if pid]

def running_children():
    found = []
    for pid in open(f"/proc/{zygote}/task/{zygote}/children").read().split():
        if int(pid) in templates:
            continue
        try:
            if open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()[0] != "Z":
                found.append(int(pid))
        except OSError:
            pass
    return found

# The child that ran the load is killed once it answered, but may still be running for a moment: wait until
# the same two children have been seen running for a while, so that they are the spares.
deadline = time.monotonic() + 10
seen, steady = None, 0
while steady < 10 and time.monotonic() < deadline:
    now = sorted(running_children())
    steady = steady + 1 if len(now) == 2 and now == seen else 0
    seen = now
    time.sleep(0.02)
holder = None
if "--leak-pipe" in sys.argv:  # another process keeps the zygote's request pipe open: no end of file on death
    holder = subprocess.Popen(["sleep", "60"], pass_fds=[client._current.proc.stdin.fileno()])
spares = running_children()
report = {"zygote": zygote, "templates": templates, "spares": spares, "holder": holder and holder.pid}
print(json.dumps(report), flush=True)
sys.stdin.readline()
"""


def processes(report: dict) -> list[int]:
    """The zygote, its spares and the templates they are forked from (if any), from CALLER's report."""
    return [report["zygote"], *report["spares"], *report["templates"]]


@pytest.mark.parametrize("ending", ["SIGKILL", "SIGTERM", "exit"])
def test_the_zygote_and_its_spares_go_when_the_caller_does(ending):
    caller = python(CALLER, stdin=subprocess.PIPE)
    pids = []
    try:
        report = json.loads(caller.stdout.readline())
        pids = processes(report)
        assert len(report["spares"]) == 2
        assert all(alive(pid) for pid in pids)

        if ending == "exit":
            caller.stdin.close()
        else:
            caller.send_signal(getattr(signal, ending))
        caller.wait(5)

        assert all_gone(pids, within=2) == []
    finally:
        caller.kill()
        caller.wait()
        kill_all(pids)


def test_the_zygote_goes_when_the_caller_is_killed_even_if_its_request_pipe_stays_open():
    """The parent-death signal: end of file on the request pipe is not enough if another process holds it."""
    caller = python(CALLER, "--leak-pipe", stdin=subprocess.PIPE)
    pids, holder = [], None
    try:
        report = json.loads(caller.stdout.readline())
        pids, holder = processes(report), report["holder"]
        assert holder and alive(holder)

        caller.kill()
        caller.wait(5)

        assert all_gone(pids, within=2) == []
    finally:
        caller.kill()
        caller.wait()
        kill_all(pids + ([holder] if holder else []))


def test_spares_go_when_the_zygote_is_killed():
    caller = python(CALLER, stdin=subprocess.PIPE)
    pids = []
    try:
        report = json.loads(caller.stdout.readline())
        pids = processes(report)

        os.kill(report["zygote"], signal.SIGKILL)

        assert all_gone(pids, within=2) == []
    finally:
        caller.kill()
        caller.wait()
        kill_all(pids)


# A zygote whose children are slow to start: each sleeps before it isolates itself (setsid), as a spare forked just
# before shutdown may be, so shutdown meets a child that is not yet the leader of its own process group.
SLOW_START = """
import os, sys, time
sys.path.insert(0, os.getcwd())
from loader import child, parent

real_run = child.run

def slow_run(**arguments):
    time.sleep(0.5)
    real_run(**arguments)

child.run = slow_run
request_r, request_w = os.pipe()
answer_r, answer_w = os.pipe()
keeper = parent.Zygote(
    request_r, answer_w, os.open(os.devnull, os.O_RDWR), max_jobs=1, spares=0, ready={}
)
arguments = parent.run_until_forked(keeper, lambda: print(keeper._spawn().pid, flush=True))
if arguments is not None:
    parent.become_child(arguments)
keeper.shutdown()
print("done", flush=True)
"""


def test_shutdown_right_after_a_spare_was_forked_leaves_nothing_behind():
    zygote = python(SLOW_START)
    spare = None
    try:
        spare = int(zygote.stdout.readline())
        try:
            output, _ = zygote.communicate(timeout=3)
        except subprocess.TimeoutExpired:
            pytest.fail("shutdown hung waiting for a spare that had not yet isolated itself")

        assert output.strip() == "done"
        assert all_gone([spare], within=1) == []
    finally:
        zygote.kill()
        zygote.wait()
        if spare:
            kill_all([spare])


def test_a_zygote_started_from_a_short_lived_thread_outlives_the_thread(loader_fast):
    """The zygote's parent-death signal is tied to the thread that forked it: that must not be the caller's thread."""
    loader_fast.shutdown()
    thread = threading.Thread(target=loader_fast.start)
    thread.start()
    thread.join(30)
    zygote = loader_fast.stats()["zygote_pid"]
    time.sleep(0.3)

    assert alive(zygote)
    assert loader_fast.load_function("class Filter:\n    pass\n# short-lived thread\n").ok
    assert loader_fast.stats()["zygote_pid"] == zygote


def test_shutdown_stops_the_zygote_and_every_spare(loader_fast):
    loader_fast.configure(spares=2)
    assert loader_fast.load_function("class Filter:\n    pass\n# shutdown\n").ok
    zygote = loader_fast.stats()["zygote_pid"]
    deadline = time.monotonic() + 5
    while len(children(zygote)) < 2 and time.monotonic() < deadline:
        time.sleep(0.02)
    pids = [zygote, *children(zygote)]

    started = time.monotonic()
    client.shutdown()

    assert time.monotonic() - started < 2
    assert all_gone(pids, within=1) == []
    loader_fast.start()


def test_an_idle_loader_ends_its_spares_and_the_next_load_brings_them_back(loader_fast):
    from loader import client

    before = client.settings().spare_idle
    loader_fast.configure(spare_idle=0.5)  # restarts the zygote with that setting
    try:

        def spares() -> int:
            header, _body = client._current.call({"op": "ping"}, wait=5)
            return header["spares"]

        assert loader_fast.load_function("class Filter:\n    pass\n# idle 1\n").ok
        deadline = time.monotonic() + 10
        while spares() < 2 and time.monotonic() < deadline:
            time.sleep(0.05)
        assert spares() == 2
        time.sleep(1.0)
        assert spares() == 0
        assert loader_fast.load_function("class Filter:\n    pass\n# idle 2\n").ok  # forked for it
        deadline = time.monotonic() + 10
        while spares() < 2 and time.monotonic() < deadline:
            time.sleep(0.05)
        assert spares() == 2
    finally:
        loader_fast.configure(spare_idle=before)
