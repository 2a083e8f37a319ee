"""How a load child ends once it has answered: it waits, and the zygote kills it a moment after passing the answer
on, so that its teardown does not delay the answer (loader/child.py `ANSWERED_WAIT`, loader/spares.py
`ANSWERED_GRACE`).

A Zygote installs signal handlers and makes its process a subreaper, and a child isolates itself (setsid, its own
descriptors closed), so each case runs in a Python of its own.
"""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]

# The zygote with one job in flight whose child (a real process, sleeping) has just written its whole answer.
ZYGOTE = """
import json, os, signal, sys, time
from loader import parent, protocol, spares

request_r, request_w = os.pipe()
answer_r, answer_w = os.pipe()
zygote = parent.Zygote(request_r, answer_w, os.open(os.devnull, os.O_RDWR), max_jobs=1, spares=0, ready={})
pid = os.fork()
if pid == 0:
    time.sleep(30)
    os._exit(0)
item = parent.Child()
item.pid, item.id = pid, 7
item.request, item.started, item.deadline = {"op": "load", "id": 7}, time.monotonic(), time.monotonic() + 10
result_r, result_w = os.pipe()
os.set_blocking(result_r, False)
item.result_fd = result_r
zygote.children[pid] = item
zygote.pipes[result_r] = (item, "result")
os.write(result_w, protocol.encode_message(b'{"ok": true}'))

zygote._read_pipe(result_r)
header = {}
while header.get("kind") != "answer":  # the zygote said it was ready first
    header, body = protocol.read_frame(lambda size: os.read(answer_r, size))
report = {
    "answer": [header.get("id"), body.decode()],
    "alive_after_answer": os.waitpid(pid, os.WNOHANG) == (0, 0),
    "busy": zygote._busy(),
    "poll_timeout_ms": zygote._poll_timeout(),
    "grace_ms": spares.ANSWERED_GRACE * 1000,
}
zygote._expire()  # before the grace: nothing happens
report["alive_before_grace"] = os.waitpid(pid, os.WNOHANG) == (0, 0)
time.sleep(spares.ANSWERED_GRACE + 0.01)
zygote._expire()
deadline = time.monotonic() + 5
while True:
    done, status = os.waitpid(pid, os.WNOHANG)
    if done or time.monotonic() > deadline:
        break
    time.sleep(0.01)
report["killed"] = bool(done) and os.WIFSIGNALED(status) and os.WTERMSIG(status) == signal.SIGKILL
report["ending_cleared"] = item.ending == 0.0
zygote.children.clear()
zygote.shutdown()
print(json.dumps(report))
"""

# A load child run as the zygote runs it (no confinement): it answers, then waits to be ended, and leaves by itself
# after ANSWERED_WAIT when no one ends it.
CHILD = """
import functools, json, os, sys, time
from loader import child, protocol

child.ANSWERED_WAIT = 0.5
workdir = sys.argv[1]
job_r, job_w = os.pipe()
result_r, result_w = os.pipe()
output_r, output_w = os.pipe()
devnull = os.open(os.devnull, os.O_RDWR)
zygote_pid = os.getpid()
pid = os.fork()
if pid == 0:
    child.run(job_fd=job_r, result_fd=result_w, output_fd=output_w, devnull_fd=devnull, workdir=workdir,
              zygote_pid=zygote_pid)
for fd in (job_r, result_w, output_w):
    os.close(fd)
job = {"op": "load", "id": 1, "content": "class Filter:\\n    pass\\n", "function_id": "answered", "timeout": 10}
os.write(job_w, protocol.encode_message(json.dumps(job).encode()))
answer = json.loads(protocol.read_message(functools.partial(os.read, result_r)))
answered = time.monotonic()
time.sleep(0.1)
alive = os.waitpid(pid, os.WNOHANG) == (0, 0)
if alive:
    os.waitpid(pid, 0)
print(json.dumps({"ok": answer.get("ok"), "alive_after_answer": alive, "left_after": time.monotonic() - answered}))
"""


def run(script: str, *args: str) -> dict:
    done = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(script), *args],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout.strip().splitlines()[-1])


def test_the_zygote_passes_the_answer_on_then_kills_the_child_a_moment_later():
    report = run(ZYGOTE)

    assert report["answer"] == [7, '{"ok": true}']
    # Not killed at once, and its place is free for the next job meanwhile.
    assert report["alive_after_answer"]
    assert report["alive_before_grace"]
    assert report["busy"] == 0
    # The loop wakes up to end it, rather than waiting for some other event.
    assert report["poll_timeout_ms"] <= report["grace_ms"] + 1
    assert report["killed"]
    assert report["ending_cleared"]


def test_a_child_waits_after_answering_and_leaves_by_itself_if_no_one_ends_it(tmp_path):
    report = run(CHILD, str(tmp_path))

    assert report["ok"] is True
    assert report["alive_after_answer"]
    assert 0.3 < report["left_after"] < 5
