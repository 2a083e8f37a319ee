"""Hostile function code, end to end through the served app: loading it (the JSON API's create and the console's
create form), running it (a filter's inlet and a pipe's generator, through the run route), and its valves.

Each case gets a clear answer within its limit, stores nothing when it fails, leaves none of its processes running,
and other requests keep being answered meanwhile (a probe asks ``GET /health`` and keeps the worst latency).
The isolation itself is tested at the loader's level (tests/loader/test_isolation.py, tests/loader/runtime/).
"""

from __future__ import annotations

import re
import textwrap
import threading
import time
from pathlib import Path

import pytest

from services.valves_form.field import INPUT_PREFIX
from tests.console.html_forms import read_form
from tests.reliability.conftest import (
    PROBE_BOUND,
    Probe,
    named,
    new_tag,
    page_text,
    serve,
    still_running,
    tagged,
)

LOAD_TIMEOUT = 2.0
RUN_TIMEOUT = 2.0
# How much longer than its limit a case may take to be answered: a bound on "it ends", not a measure of speed.
SLACK = 8.0
LIMITS = {
    "SLUICE_LOAD_TIMEOUT": LOAD_TIMEOUT,
    "SLUICE_RUN_TIMEOUT": RUN_TIMEOUT,
    "SLUICE_RUN_IDLE_TIMEOUT": RUN_TIMEOUT,
    "SLUICE_LOAD_MEMORY_MB": 256,
    "SLUICE_RUNTIME_WORKERS": 2,
    "SLUICE_RUN_BUSY_WAIT": 1.0,
    "SLUICE_MAX_CONCURRENT_LOADS": 2,
    # A request waiting on the loader keeps its pooled database connection. gunicorn runs SLUICE_THREADS (8)
    # requests per process, fewer than the pool's 15; werkzeug's test server runs any number, and twenty at once
    # would leave /health waiting for a connection. The pool is sized as gunicorn's bound would make it.
    "SQLALCHEMY_ENGINE_OPTIONS": {"pool_pre_ping": True, "pool_size": 30},
}
REPO = Path(__file__).resolve().parents[2]

# What function code does, as the body of `misbehave()`; ESCAPE is a path outside its scratch directory.
MISBEHAVIOUR = {
    "infinite_loop": "while True:\n    pass",
    "sleep_forever": "time.sleep(10 ** 6)",
    "os_exit": "os._exit(3)",
    "sys_exit": "sys.exit(2)",
    "base_exception": "raise BaseException('odd')",
    "keyboard_interrupt": "raise KeyboardInterrupt",
    "allocate_16_gib": "return bytearray(16 * 1024 ** 3)",
    "deep_recursion": "sys.setrecursionlimit(10 ** 7)\n\ndef down(n):\n    return down(n + 1)\n\ndown(0)",
    # 2 ** 8 processes, each of which then sleeps: bounded, so that a failure of the confinement stays survivable.
    "fork_bomb": (
        "root = os.getpid()\nfor _ in range(8):\n    os.fork()\n"
        "if os.getpid() != root:\n    time.sleep(600)\n    os._exit(0)"
    ),
    "segfault": "ctypes.string_at(0)",
    "output_flood": "for _ in range(20):\n    sys.stdout.write('x' * 1024 * 1024)",
    "thread_left_running": "def spin():\n    while True:\n        pass\n\nthreading.Thread(target=spin).start()",
    "write_outside_scratch": "with open(ESCAPE, 'w') as escaped:\n    escaped.write('out')",
}

# Loading: None when the code loads, else a pattern the 400's detail (the console's page) must match.
LOAD_ERRORS = {
    "infinite_loop": rf"Timeout: loading took longer than {LOAD_TIMEOUT:g} s",
    "sleep_forever": rf"Timeout: loading took longer than {LOAD_TIMEOUT:g} s",
    "os_exit": r"Exit: the code exited \(status 3\) while loading",
    "sys_exit": r"Exit: the code exited \(status 2\) while loading",
    "base_exception": r"BaseException: odd",
    "keyboard_interrupt": r"KeyboardInterrupt: the code raised KeyboardInterrupt while loading",
    "allocate_16_gib": r"MemoryError: the code needed more than the 256 MiB .*SLUICE_LOAD_MEMORY_MB",
    "deep_recursion": r"(Timeout|Killed|RecursionError|MemoryError): ",
    "fork_bomb": r"Timeout: loading took longer than|BlockingIOError",
    "segfault": r"Killed: the code was killed by SIGSEGV while loading",
    "output_flood": r"OutputLimit: .*SLUICE_LOAD_OUTPUT_MB",
    "thread_left_running": None,
    "write_outside_scratch": r"(OSError|PermissionError): .*Read-only file system|Permission denied",
}

# Cases whose code may also end well, when the machine is quick enough: a fork bomb may finish within the limit.
MAY_LOAD = {"fork_bomb"}
MAY_RUN = {"fork_bomb"}

# Running: None when the call succeeds, else a pattern for the run's `error` as "type: message".
RUN_ERRORS = {
    "infinite_loop": rf"Timeout: the call took longer than {RUN_TIMEOUT:g} s \(SLUICE_RUN_TIMEOUT\)",
    "sleep_forever": rf"Timeout: the call took longer than {RUN_TIMEOUT:g} s \(SLUICE_RUN_TIMEOUT\)",
    "os_exit": r"Exit: the function's code ended its process \(exit status 3\)",
    "sys_exit": r"Exit: \w+\(\) called sys.exit\(2\)",
    "base_exception": r"BaseException: \w+\(\) raised BaseException: odd, which ends a worker",
    "keyboard_interrupt": r"KeyboardInterrupt: \w+\(\) raised KeyboardInterrupt, which ends a worker",
    "allocate_16_gib": r"MemoryError: \w+\(\) needed more than the 256 MiB",
    "deep_recursion": r"(Timeout|Crashed|RecursionError|MemoryError): ",
    "fork_bomb": r"Timeout: the call took longer than|BlockingIOError",
    "segfault": r"Crashed: the function's process was killed by SIGSEGV during the call",
    "output_flood": r"OutputLimit: the call printed more than",
    "thread_left_running": None,
    "write_outside_scratch": r"(OSError|PermissionError): .*(Read-only file system|Permission denied)",
}

HEADER = "import ctypes, os, sys, threading, time\n\nESCAPE = {escape!r}\n\n\ndef misbehave():\n{body}\n\n\n"
FILTER_CALLING = (
    "class Filter:\n    def inlet(self, body: dict) -> dict:\n        misbehave()\n        return body\n"
)
PIPE_CALLING = "class Pipe:\n    def pipe(self, body: dict):\n        yield 'first '\n        misbehave()\n        yield 'last'\n"


def hostile(case: str, tag: str, escape: Path, at: str) -> str:
    """Code that misbehaves as ``case`` says: at import (``load``), in a filter's inlet or in a pipe's generator."""
    code = HEADER.format(escape=str(escape), body=textwrap.indent(MISBEHAVIOUR[case], "    "))
    code += {
        "load": "misbehave()\n\n\nclass Filter:\n    pass\n",
        "inlet": FILTER_CALLING,
        "pipe": PIPE_CALLING,
    }[at]
    return tagged(tag, code)


@pytest.fixture(scope="module")
def served(sqlite_template, tmp_path_factory):
    import shutil

    path = tmp_path_factory.mktemp("hostile") / "sluice.sqlite3"
    shutil.copy(sqlite_template, path)
    with serve(f"sqlite:///{path}", **LIMITS) as served:
        served.api("GET", "/").raise_for_status()
        import loader

        loader.start()  # so that no case's time includes the loader's start
        yield served


@pytest.fixture
def escape():
    path = REPO / f"escaped-{new_tag()}.txt"
    yield path
    assert not path.exists(), "function code wrote outside its scratch directory"


def assert_gone(tag: str) -> None:
    left = still_running(tag)
    assert not left, f"processes of the function still running: {left}"


def assert_not_stored(served, function_id: str) -> None:
    assert served.api("GET", f"/id/{function_id}").status_code == 404


def create_by_api(served, function_id: str, content: str):
    """(ok, detail) of a create through the JSON API."""
    body = {"id": function_id, "name": function_id, "content": content, "meta": {}}
    answer = served.api("POST", "/create", json=body)
    assert answer.status_code in (200, 400), answer.text[:300]
    assert answer.headers["Content-Type"].startswith("application/json")
    return answer.status_code == 200, answer.json().get("detail", "")


def create_by_console(served, function_id: str, content: str):
    """(ok, page text) of a create through the console's form."""
    console = served.console()
    form = {
        "id": function_id,
        "name": function_id,
        "description": "",
        "content": content,
        "commit_message": "",
    }
    answer = console.post("/admin/functions/create", form)
    assert answer.status_code in (302, 400), answer.text[:300]
    return answer.status_code == 302, page_text(answer)


@pytest.mark.parametrize("face", ["api", "console"])
@pytest.mark.parametrize("case", sorted(MISBEHAVIOUR))
def test_loading_hostile_code(served, escape, case, face):
    tag, function_id = new_tag(), f"load_{case}"
    expected = LOAD_ERRORS[case]
    create = create_by_api if face == "api" else create_by_console
    with Probe(served.url) as probe:
        started = time.monotonic()
        ok, said = create(served, function_id, hostile(case, tag, escape, "load"))
        elapsed = time.monotonic() - started

    assert elapsed < LOAD_TIMEOUT + SLACK
    if expected is None or (ok and case in MAY_LOAD):
        assert ok, said[:500]
        assert served.api("DELETE", f"/id/{function_id}/delete").json() is True
    else:
        assert not ok
        assert re.search(expected, said), said[:2000]
        assert_not_stored(served, function_id)
    assert_gone(tag)
    assert not probe.failures and probe.worst < PROBE_BOUND, (probe.worst, probe.failures)


@pytest.mark.parametrize("at", ["inlet", "pipe"])
@pytest.mark.parametrize("case", sorted(MISBEHAVIOUR))
def test_running_hostile_code(served, escape, case, at):
    tag, function_id = new_tag(), f"run_{at}_{case}"
    ok, said = create_by_api(served, function_id, hostile(case, tag, escape, at))
    assert ok, said
    expected = RUN_ERRORS[case]
    with Probe(served.url) as probe:
        started = time.monotonic()
        answer = served.api(
            "POST", f"/id/{function_id}/run", json={"method": at, "body": {"messages": [], "model": "m"}}
        )
        elapsed = time.monotonic() - started

    assert answer.status_code == 200, answer.text[:300]
    # The first call starts a worker, which loads the code within the load timeout.
    assert elapsed < LOAD_TIMEOUT + RUN_TIMEOUT + SLACK
    error = answer.json()["error"]
    if expected is None or (error is None and case in MAY_RUN):
        assert error is None, error
    else:
        assert error is not None
        assert re.search(expected, f"{error['type']}: {error['message']}"), error
    # The function's code is as it was; once it is deleted, nothing of it runs on (no warm worker, no thread,
    # no child it forked).
    assert served.api("GET", f"/id/{function_id}").json()["content"].startswith("import ctypes")
    assert served.api("DELETE", f"/id/{function_id}/delete").json() is True
    assert_gone(tag)
    assert not probe.failures and probe.worst < PROBE_BOUND, (probe.worst, probe.failures)


HANGING_VALIDATOR = """
from pydantic import BaseModel, field_validator


class Filter:
    class Valves(BaseModel):
        level: int = 1

        @field_validator("level")
        @classmethod
        def never_answers(cls, value):
            while True:
                pass
"""


@pytest.mark.parametrize("face", ["api", "console"])
def test_a_valves_validator_that_hangs(served, face):
    tag, function_id = new_tag(), f"hanging_validator_{face}"
    assert create_by_api(served, function_id, tagged(tag, HANGING_VALIDATOR))[0]
    with Probe(served.url) as probe:
        started = time.monotonic()
        if face == "api":
            answer = served.api("POST", f"/id/{function_id}/valves/update", json={"level": 5})
            assert answer.status_code == 400, answer.text[:300]
            said = answer.json()["detail"]
        else:
            console = served.console()
            path = f"/admin/functions/valves?id={function_id}"
            form = read_form(console.get(path).text, testid="valves-form").to_dict()
            answer = console.post(path, {**form, INPUT_PREFIX + "level": "5"})
            assert answer.status_code == 400, answer.text[:300]
            said = page_text(answer)
        elapsed = time.monotonic() - started

    assert elapsed < LOAD_TIMEOUT + SLACK
    assert re.search(rf"Timeout: loading took longer than {LOAD_TIMEOUT:g} s", said), said[:2000]
    assert served.api("GET", f"/id/{function_id}/valves").json() in ({}, None)
    assert_gone(tag)
    assert not probe.failures and probe.worst < PROBE_BOUND, (probe.worst, probe.failures)


HUGE_VALVES = """
from pydantic import Field, create_model

# About 3 MiB of schema: beyond what a load may answer.
Valves = create_model("Valves", **{f"field_{n}": (str, Field("x" * 10_000)) for n in range(300)})


class Filter:
    Valves = Valves
"""

SELF_REFERENTIAL_VALVES = """
from pydantic import BaseModel


class Node(BaseModel):
    name: str = "root"
    children: list["Node"] = []


class Filter:
    class Valves(BaseModel):
        tree: Node = Node()
        parent: Node | None = None
"""


@pytest.mark.parametrize("face", ["api", "console"])
def test_a_huge_valves_schema_is_refused(served, face):
    tag, function_id = new_tag(), f"huge_valves_{face}"
    create = create_by_api if face == "api" else create_by_console
    with Probe(served.url) as probe:
        ok, said = create(served, function_id, tagged(tag, HUGE_VALVES))
    assert not ok
    assert re.search(r"(too large|larger than|Timeout)", said), said[:2000]
    assert_not_stored(served, function_id)
    assert_gone(tag)
    assert not probe.failures and probe.worst < PROBE_BOUND, (probe.worst, probe.failures)


def test_a_self_referential_valves_schema_is_stored_and_its_pages_answer(served):
    tag, function_id = new_tag(), "self_referential"
    with Probe(served.url) as probe:
        ok, said = create_by_api(served, function_id, tagged(tag, SELF_REFERENTIAL_VALVES))
        assert ok, said
        spec = served.api("GET", f"/id/{function_id}/valves/spec")
        assert spec.status_code == 200 and "$defs" in spec.json()
        page = served.console().get(f"/admin/functions/valves?id={function_id}")
        assert page.status_code == 200
        saved = served.api(
            "POST",
            f"/id/{function_id}/valves/update",
            json={"tree": {"name": "a", "children": [{"name": "b"}]}},
        )
        assert saved.status_code == 200, saved.text[:300]
    assert served.api("GET", f"/id/{function_id}/valves").json()["tree"]["children"][0]["name"] == "b"
    assert_gone(tag)
    assert not probe.failures and probe.worst < PROBE_BOUND, (probe.worst, probe.failures)


SLEEPING_PIPE = (
    "import time\n\n\nclass Pipe:\n    def pipe(self, body: dict) -> str:\n        time.sleep(10 ** 6)\n"
)


def test_twenty_hostile_requests_at_once(served):
    """Ten loads and ten runs of code that never ends, all at once: each answered (400, or 503 with Retry-After
    when every slot stays taken; a run's own timeout is its 200 answer's error), none left hanging."""
    tag = new_tag()
    assert create_by_api(served, "sleeper", tagged(tag, SLEEPING_PIPE))[0]
    answers: dict[int, object] = {}

    def load(n: int) -> None:
        code = tagged(tag, f"import time\n\ntime.sleep(10 ** 6)  # {n}\n\nclass Filter:\n    pass\n")
        answers[n] = served.api("POST", "/create", json={"id": f"crowd_{n}", "name": "c", "content": code})

    def run(n: int) -> None:
        answers[n] = served.api("POST", "/id/sleeper/run", json={"method": "pipe", "body": {"messages": []}})

    threads = [threading.Thread(target=load if n < 10 else run, args=(n,)) for n in range(20)]
    with Probe(served.url) as probe:
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(LOAD_TIMEOUT + RUN_TIMEOUT + 30)
    assert not any(thread.is_alive() for thread in threads)

    busy = [answer for answer in answers.values() if answer.status_code == 503]
    assert busy, "twenty at once should overrun the slots"
    for answer in busy:
        assert int(answer.headers["Retry-After"]) >= 1
        assert "busy" in answer.json()["detail"]
    for n in range(10):
        assert answers[n].status_code in (400, 503), answers[n].text[:300]
        assert_not_stored(served, f"crowd_{n}")
    for n in range(10, 20):
        assert answers[n].status_code in (200, 503), answers[n].text[:300]
        if answers[n].status_code == 200:
            assert answers[n].json()["error"]["type"] == "Timeout"
    assert served.api("DELETE", "/id/sleeper/delete").json() is True
    assert_gone(tag)
    assert not probe.failures and probe.worst < PROBE_BOUND, (probe.worst, probe.failures)


@pytest.mark.parametrize("change", ["update", "sync"])
def test_replacing_code_ends_what_the_old_code_left_running(served, escape, change):
    tag, function_id = new_tag(), f"replaced_by_{change}"
    assert create_by_api(served, function_id, hostile("thread_left_running", tag, escape, "inlet"))[0]
    answer = served.api("POST", f"/id/{function_id}/run", json={"method": "inlet", "body": {"messages": []}})
    assert answer.json()["error"] is None
    assert named(tag), "the warm worker holds the function's thread"
    plain = "class Filter:\n    def inlet(self, body: dict) -> dict:\n        return body\n"
    if change == "update":
        body = {"id": function_id, "name": function_id, "content": plain, "meta": {}}
        assert served.api("POST", f"/id/{function_id}/update", json=body).status_code == 200
    else:  # everything else this module stored is gone with it: a sync lists all that stays
        item = {"id": function_id, "name": function_id, "content": plain, "meta": {}}
        assert served.api("POST", "/sync", json={"functions": [item]}).status_code == 200
    assert_gone(tag)
