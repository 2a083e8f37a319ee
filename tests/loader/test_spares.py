"""When the zygote warms its spares up (loader/spares.py `_replenish`): as soon as no job is in flight, even when a
request came a moment ago, so that saves made one after the other each find a warm spare; never while a job runs.

A Zygote installs signal handlers and makes its process a subreaper, so each case runs in a Python of its own.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]

# A zygote with one spare that has not been warmed up (its job pipe is ours to read), just after a request came
# and was answered (a ping); WAITING says whether a job is still in flight. Prints the messages the spare was sent.
SCRIPT = """
import os, sys, time
from loader import parent, protocol

waiting = sys.argv[1] == "1"
request_r, request_w = os.pipe()
answer_r, answer_w = os.pipe()
zygote = parent.Zygote(request_r, answer_w, os.open(os.devnull, os.O_RDWR), max_jobs=2, spares=1, ready={})
spare = parent.Child()
job_r, spare.job_fd = os.pipe()
zygote.spares.append(spare)
if waiting:
    job = parent.Child()
    job.request, job.started = {"op": "load"}, time.monotonic() - 1  # old enough for a spare to be forked
    zygote.children[-1] = job
os.write(request_w, protocol.encode_frame({"op": "ping", "id": 1}))  # a request that came just now
zygote._read_requests()
zygote._replenish()
os.set_blocking(job_r, False)
try:
    sent = os.read(job_r, 4096)
except BlockingIOError:
    sent = b""
zygote.children.clear()
zygote.spares.clear()
zygote.shutdown()
print(repr(sent))
"""


def sent_to_spare(waiting: bool) -> bytes:
    done = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(SCRIPT), "1" if waiting else "0"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert done.returncode == 0, done.stderr
    return eval(done.stdout.strip())  # noqa: S307 - the repr of bytes our own script printed


def test_a_spare_is_warmed_up_as_soon_as_no_job_is_in_flight():
    assert b'"op":"warm"' in sent_to_spare(waiting=False)


def test_no_spare_is_warmed_up_while_a_job_runs():
    assert sent_to_spare(waiting=True) == b""


# --- priority: spares wait nicer than jobs run (as root) ----------------------------------------------------------

NICENESS_PROBE = """
import os
from pydantic import BaseModel

NICENESS = os.getpriority(os.PRIO_PROCESS, 0)


class Filter:
    class Valves(BaseModel):
        niceness: int = NICENESS
"""


def niceness(pid: int) -> int:
    return int(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[16])


def zygote_children(zygote: int) -> list[int]:
    return [int(pid) for pid in Path(f"/proc/{zygote}/task/{zygote}/children").read_text().split()]


def own_pid_namespace(pid: int) -> bool:
    status = Path(f"/proc/{pid}/status").read_text()
    return len(next(line for line in status.splitlines() if line.startswith("NSpid:")).split()) > 2


def spare_processes(zygote: int) -> list[int]:
    """The zygote's children in a process-id namespace of their own (load children), and their children."""
    found = []
    for pid in zygote_children(zygote):
        if own_pid_namespace(pid):
            found += [pid, *zygote_children(pid)]
    return found


needs_root = pytest.mark.skipif(os.geteuid() != 0, reason="only root can take a lower niceness back")


@needs_root
def test_spares_wait_nicer_and_a_job_runs_at_the_zygotes_priority(loader_fast, source):
    from loader import namespaces

    loader_fast.shutdown()  # a zygote of our own: no runtime worker of another test (those run at its priority)
    loader_fast.load_function(source(NICENESS_PROBE))  # spares are forked after a first load
    zygote = loader_fast.stats()["zygote_pid"]
    base = niceness(zygote)
    nicer = min(19, base + namespaces.SPARE_NICENESS)
    # The spares (each the first process of a process-id namespace of its own, and the process under it), once the
    # job's child is gone (it is reaped just after it answers); the templates keep the zygote's priority.
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        spares = spare_processes(zygote)
        if spares and {niceness(pid) for pid in spares} == {nicer}:
            break
        time.sleep(0.05)
    assert spares and {niceness(pid) for pid in spare_processes(zygote)} == {nicer}
    templates = [pid for pid in zygote_children(zygote) if not own_pid_namespace(pid)]
    assert templates and {niceness(pid) for pid in templates} == {base}

    result = loader_fast.load_function(source(NICENESS_PROBE))
    assert result.ok, result.error
    assert result.valves_schema["properties"]["niceness"]["default"] == base


def test_not_root_leaves_the_priority_alone():
    """A process that is not root neither tries nor claims to lower its priority.

    Checked in a forked child that gives up root itself (when the suite runs as root): a child started as another
    user would need to reach this checkout's interpreter, which a private temporary folder does not allow."""
    from loader import namespaces

    reading, writing = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: never returns into pytest
        try:
            os.close(reading)
            if os.geteuid() == 0:
                os.setgroups([])
                os.setgid(65534)
                os.setuid(65534)
            namespaces._job_niceness = None
            before = os.getpriority(os.PRIO_PROCESS, 0)
            answer = f"{namespaces.lower_priority()} {before} {os.getpriority(os.PRIO_PROCESS, 0)}"
            os.write(writing, answer.encode())
        finally:
            os._exit(0)
    os.close(writing)
    with os.fdopen(reading) as pipe:
        said = pipe.read().split()
    os.waitpid(pid, 0)
    assert said[0] == "False"
    assert said[1] == said[2]  # niceness unchanged


# A zygote with two spares (stand-ins forked here, leaving on end of file) whose last load came IDLE seconds ago, with
# spare_idle 60; after one turn of `_replenish` prints the spares left, each one's job pipe (-1: closed), how many
# children it forked and its poll timeout.
IDLE_SCRIPT = """
import json, os, sys, time
from loader import parent

idle = float(sys.argv[1])
request_r, request_w = os.pipe()
answer_r, answer_w = os.pipe()
zygote = parent.Zygote(
    request_r, answer_w, os.open(os.devnull, os.O_RDWR), max_jobs=2, spares=2, ready={}, spare_idle=60
)
ends = []
for _ in range(2):
    spare = parent.Child()
    read_end, spare.job_fd = os.pipe()
    spare.pid = os.fork()
    if spare.pid == 0:
        os.close(spare.job_fd)
        os.read(read_end, 1)  # waits like a spare, leaves on end of file
        os._exit(0)
    os.close(read_end)
    zygote.children[spare.pid] = spare
    zygote.spares.append(spare)
    ends.append(spare)
zygote.last_load = time.monotonic() - idle
spawned = []
zygote._spawn = lambda network=False: spawned.append(network) or None
zygote._replenish()
print(json.dumps([len(zygote.spares), [spare.job_fd for spare in ends], len(spawned), zygote._poll_timeout()]))
zygote.children.clear()
zygote.spares.clear()
zygote.shutdown()
"""


def replenished_after(idle: float) -> list:
    done = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(IDLE_SCRIPT), str(idle)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout.strip().splitlines()[-1])


def test_spares_end_once_no_load_came_for_spare_idle_seconds():
    """An idle server gives the spares' memory back: after spare_idle seconds without a load every spare's job pipe
    is closed (it leaves on end of file) and none is forked again until a load comes."""
    left, job_fds, forked, _timeout = replenished_after(61)
    assert left == 0 and job_fds == [-1, -1] and forked == 0


def test_spares_stay_while_loads_come_and_the_loop_wakes_to_end_them():
    left, job_fds, forked, timeout = replenished_after(1)
    assert left == 2 and all(fd >= 0 for fd in job_fds) and forked == 0
    assert 58_000 <= timeout <= 60_000  # the loop wakes when they are due to end
