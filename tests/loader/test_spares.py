"""When the zygote warms its spares up (loader/spares.py `_replenish`): as soon as no job is in flight, even when a
request came a moment ago, so that saves made one after the other each find a warm spare; never while a job runs.

A Zygote installs signal handlers and makes its process a subreaper, so each case runs in a Python of its own.
"""

from __future__ import annotations

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
