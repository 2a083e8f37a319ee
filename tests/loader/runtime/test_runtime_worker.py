"""Running functions in warm workers (loader/runtime/worker.py, pool.py, client.py): through the loader's parent,
as the server does, with short limits so that hostile functions fail fast."""

from __future__ import annotations

import contextlib
import os
import socket
import threading
import time

import pytest

from tests.loader.support import unique

FILTER = """
import logging

class Filter:
    def inlet(self, body: dict, __user__: dict | None = None) -> dict:
        print("inlet saw", sorted(body))
        logging.getLogger("my.filter").info("logged from inlet")
        body["messages"].append({"role": "system", "content": "hello " + (__user__ or {}).get("name", "?")})
        return body
"""

COUNTER = """
from pydantic import BaseModel

class Pipe:
    class Valves(BaseModel):
        prefix: str = "n"

    def __init__(self):
        self.valves = self.Valves()
        self.calls = 0

    def pipe(self, body: dict) -> str:
        self.calls += 1
        return f"{self.valves.prefix}{self.calls}"
"""


@pytest.fixture(scope="module")
def runtime(loader_fast):
    """The loader with short run limits; the previous settings come back afterwards."""
    from loader import client

    before = client.settings()
    loader_fast.configure(run_timeout=3, run_idle_timeout=3, runtime_workers=4, busy_wait=0.5)
    yield loader_fast
    loader_fast.configure(
        run_timeout=before.run_timeout,
        run_idle_timeout=before.run_idle_timeout,
        runtime_workers=before.runtime_workers,
        busy_wait=before.busy_wait,
        memory_mb=before.memory_mb,
        output_cap=before.output_cap,
    )


def run(loader, content, method="pipe", body=None, **kwargs):
    kwargs.setdefault("function_id", "fn")
    return loader.run_function_collect(
        content, method=method, ctx={"body": body or {}, **kwargs.pop("ctx", {})}, **kwargs
    )


def test_a_filter_inlet_round_trip(runtime):
    body = {"model": "m", "messages": [{"role": "user", "content": "hi"}]}
    result = run(runtime, unique(FILTER), "inlet", body, ctx={"user": {"id": "u1", "name": "Ada"}})

    assert result.ok, result.error
    assert result.result["messages"][-1] == {"role": "system", "content": "hello Ada"}
    assert "inlet saw ['messages', 'model']" in result.output
    assert "logged from inlet" in result.output
    assert result.events == [] and result.ms > 0


def test_an_error_in_the_method_fails_the_call_with_its_line_and_the_worker_goes_on(runtime):
    code = unique(
        """
        class Filter:
            def __init__(self):
                self.calls = 0

            def inlet(self, body):
                self.calls += 1
                if body.get("fail"):
                    raise ValueError("no such model")
                return {"calls": self.calls}
        """
    )
    assert run(runtime, code, "inlet", {}).result == {"calls": 1}
    failed = run(runtime, code, "inlet", {"fail": True})
    assert not failed.ok
    assert failed.error["type"] == "ValueError" and failed.error["message"] == "no such model"
    assert failed.error["line"] == 8
    assert 'raise ValueError("no such model")' in failed.error["traceback"]
    assert "loader/runtime" not in failed.error["traceback"]
    assert run(runtime, code, "inlet", {}).result == {"calls": 3}  # the same instance


def test_code_that_does_not_load_answers_the_call_with_the_load_error(runtime):
    result = run(runtime, unique("class Pipe:\n    def pipe(self, body) return 1\n"))
    assert not result.ok and result.error["type"] == "SyntaxError" and result.error["line"] == 2


class Gate:
    """A TCP listener the function connects to: it waits until the test lets it go on (and shows that workers
    have the network)."""

    def __init__(self):
        self.server = socket.socket()
        self.server.bind(("127.0.0.1", 0))
        self.server.listen(4)
        self.port = self.server.getsockname()[1]
        self.connections: list[socket.socket] = []

    def accept(self) -> None:
        self.server.settimeout(10)
        connection, _ = self.server.accept()
        self.connections.append(connection)

    def release(self) -> None:
        for connection in self.connections:
            connection.sendall(b"go")

    def close(self) -> None:
        for item in [*self.connections, self.server]:
            item.close()


@pytest.fixture
def gate():
    found = Gate()
    yield found
    found.close()


STREAMING = {
    "async": """
        import socket

        class Pipe:
            async def pipe(self, body, __event_emitter__):
                await __event_emitter__({"type": "status", "data": {"description": "started"}})
                yield "first"
                link = socket.create_connection(("127.0.0.1", body["port"]))
                link.recv(2)  # the test lets us go on only once it has the first chunk
                yield {"choices": [{"delta": {"content": "second"}}]}
                await __event_emitter__({"type": "status", "data": {"description": "done", "done": True}})
                yield "data: {\\"x\\": 1}"
        """,
    "sync": """
        import asyncio, socket

        class Pipe:
            def pipe(self, body, __event_emitter__):
                asyncio.get_running_loop()  # a sync generator runs in the worker's loop thread, as in Open WebUI
                yield "first"
                link = socket.create_connection(("127.0.0.1", body["port"]))
                link.recv(2)
                yield {"choices": [{"delta": {"content": "second"}}]}
                yield "data: {\\"x\\": 1}"
        """,
}


@pytest.mark.parametrize("style", ["async", "sync"])
def test_a_generator_pipe_streams_chunks_in_order_as_they_happen(runtime, gate, style):
    call = runtime.run_function(
        unique(STREAMING[style]),
        function_id="stream",
        method="pipe",
        ctx={"body": {"port": gate.port}},
        stream=True,
    )
    frames = []
    with call:
        for frame in call:
            frames.append(frame)
            if frame.get("item") == ("text", "first"):
                gate.accept()  # the pipe is still running: it is waiting for us
                gate.release()

    kinds = [(frame["kind"], frame.get("item") or frame.get("event", {}).get("data")) for frame in frames]
    expected = [
        ("chunk", ("text", "first")),
        ("chunk", ("json", {"choices": [{"delta": {"content": "second"}}]})),
        ("chunk", ("json", {"x": 1})),
    ]
    if style == "async":
        expected.insert(0, ("event", {"description": "started"}))
        expected.insert(3, ("event", {"description": "done", "done": True}))
    assert kinds[:-1] == expected
    assert frames[-1]["kind"] == "done" and frames[-1]["result"] is None


def test_a_stream_forwards_what_the_code_prints_as_output_frames(runtime):
    code = unique(
        """
        class Pipe:
            def pipe(self, body):
                print("thinking")
                return "answer"
        """
    )
    frames = runtime.run_function(
        code, function_id="p", method="pipe", ctx={"body": {}}, stream=True
    ).collect()
    assert {"kind": "output", "text": "thinking\n"} in frames
    assert frames[-1]["kind"] == "done" and frames[-1]["output"] == "thinking\n"


def test_the_instance_is_reused_until_the_code_or_the_valves_change(runtime):
    code = unique(COUNTER)
    seen = [run(runtime, code).result for _ in range(3)]
    assert seen == [[("text", "n1")], [("text", "n2")], [("text", "n3")]]

    valves = {"prefix": "v"}
    assert run(runtime, code, admin_valves=valves).result == [("text", "v1")]
    assert run(runtime, code, admin_valves=valves).result == [("text", "v2")]
    changed = code + "\n# changed\n"
    assert run(runtime, changed, admin_valves=valves).result == [("text", "v1")]


def test_overlapping_calls_of_one_function_get_workers_of_their_own(runtime):
    code = unique(
        """
        import time

        class Pipe:
            def pipe(self, body):
                time.sleep(0.6)
                return "done"
        """
    )
    results = []
    threads = [threading.Thread(target=lambda: results.append(run(runtime, code))) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert [result.ok for result in results] == [True, True], [result.error for result in results]


HOSTILE = """
import ctypes, os, sys, time

class Pipe:
    def __init__(self):
        self.calls = 0

    def pipe(self, body):
        self.calls += 1
        mode = body.get("mode")
        if mode == "loop":
            while True:
                pass
        if mode == "sleep":
            time.sleep(10_000)
        if mode == "exit":
            os._exit(3)
        if mode == "sys.exit":
            sys.exit(2)
        if mode == "interrupt":
            raise KeyboardInterrupt
        if mode == "base":
            class Odd(BaseException):
                pass
            raise Odd("odd")
        if mode == "segfault":
            ctypes.string_at(0)
        if mode == "allocate":
            hoard = []
            while True:
                hoard.append(bytearray(16 * 1024 * 1024))
        if mode == "print":
            while True:
                print("spam " * 100)
        return f"call {self.calls}"
"""


@pytest.mark.parametrize(
    ("mode", "kind", "words"),
    [
        ("loop", "Timeout", "longer than 3 s"),
        ("sleep", "Timeout", "longer than 3 s"),
        ("exit", "Exit", "exit status 3"),
        ("sys.exit", "Exit", "sys.exit(2)"),
        ("interrupt", "KeyboardInterrupt", "ends a worker"),
        ("base", "Odd", "ends a worker"),
        ("segfault", "Crashed", "SIGSEGV"),
        ("print", "OutputLimit", "printed more than"),
    ],
)
def test_a_hostile_call_fails_clearly_and_the_next_call_works(runtime, mode, kind, words):
    code = unique(HOSTILE)
    assert run(runtime, code).result == [("text", "call 1")]
    started = time.monotonic()
    failed = run(runtime, code, body={"mode": mode})
    assert not failed.ok
    assert failed.error["type"] == kind, failed.error
    assert words in failed.error["message"]
    assert time.monotonic() - started < 8
    assert run(runtime, code).result == [("text", "call 1")]  # a fresh worker


def test_a_call_that_allocates_without_end_fails_with_memory_error(runtime):
    from loader import client

    before = client.settings().memory_mb
    runtime.configure(memory_mb=256)
    try:
        code = unique(HOSTILE)
        failed = run(runtime, code, body={"mode": "allocate"})
        assert not failed.ok and failed.error["type"] in ("MemoryError", "Crashed"), failed.error
        assert "256 MiB" in failed.error["message"] or "memory" in failed.error["message"]
        assert run(runtime, code).result == [("text", "call 1")]
    finally:
        runtime.configure(memory_mb=before)


def test_an_idle_stream_is_stopped(runtime):
    code = unique(
        """
        import time

        class Pipe:
            def pipe(self, body):
                yield "one"
                time.sleep(10_000)
        """
    )
    started = time.monotonic()
    frames = runtime.run_function(
        code, function_id="p", method="pipe", ctx={"body": {}}, stream=True, timeout=30
    ).collect()
    assert frames[0]["item"] == ("text", "one")
    assert frames[-1]["kind"] == "error" and frames[-1]["error"]["type"] == "Timeout"
    assert "sent nothing for 3 s" in frames[-1]["error"]["message"]
    assert time.monotonic() - started < 10


def test_closing_a_call_mid_stream_kills_its_worker(runtime):
    code = unique(
        """
        import time

        class Pipe:
            def __init__(self):
                self.calls = 0

            def pipe(self, body):
                self.calls += 1
                yield f"call {self.calls}"
                time.sleep(10_000)
        """
    )
    call = runtime.run_function(code, function_id="p", method="pipe", ctx={"body": {}}, stream=True)
    assert next(call)["item"] == ("text", "call 1")
    call.close()
    assert list(call) == []
    frames = runtime.run_function(code, function_id="p", method="pipe", ctx={"body": {}}, stream=True)
    with frames:
        assert next(frames)["item"] == ("text", "call 1")  # not "call 2": that worker is gone


def test_every_worker_busy_past_the_wait_answers_busy(runtime):
    from loader import client

    before = client.settings()
    runtime.configure(runtime_workers=1, busy_wait=0.3)
    slow = unique(
        """
        import time

        class Pipe:
            def pipe(self, body):
                yield "started"
                time.sleep(2)
        """
    )
    try:
        call = runtime.run_function(slow, function_id="slow", method="pipe", ctx={"body": {}}, stream=True)
        with call:
            assert next(call)["kind"] == "chunk"
            started = time.monotonic()
            busy = run(runtime, unique(COUNTER), function_id="other")
            assert not busy.ok and busy.error["type"] == "Busy", busy.error
            assert busy.error["retry_after"] >= 1
            assert 0.25 <= time.monotonic() - started < 3
    finally:
        runtime.configure(runtime_workers=before.runtime_workers, busy_wait=before.busy_wait)


def test_a_worker_runs_as_the_same_user_as_load_children(runtime):
    identity = unique(
        """
        import os
        from pydantic import BaseModel

        class Pipe:
            class Valves(BaseModel):
                ids: list = list(os.getresuid())

            def pipe(self, body):
                return {"ids": list(os.getresuid())}
        """
    )
    loaded = runtime.load_function(identity)
    ran = run(runtime, identity)
    assert ran.ok, ran.error
    assert ran.result == [("json", {"ids": loaded.valves_schema["properties"]["ids"]["default"]})]


@pytest.mark.skipif(os.geteuid() != 0, reason="only a server running as root drops privileges")
def test_a_worker_drops_to_the_load_user(dropping):
    import pwd

    code = unique(
        "import os\nclass Pipe:\n    def pipe(self, body):\n        return {'ids': list(os.getresuid())}\n"
    )
    ran = dropping.run_function_collect(code, function_id="who", method="pipe", ctx={"body": {}})
    assert ran.ok, ran.error
    assert ran.result == [("json", {"ids": [pwd.getpwnam("nobody").pw_uid] * 3})]


def test_an_emitter_kept_from_an_earlier_call_reaches_no_later_call(runtime):
    code = unique(
        """
        class Pipe:
            def __init__(self):
                self.kept = None

            async def pipe(self, body, __event_emitter__):
                if self.kept is not None:
                    await self.kept({"type": "status", "data": {"description": "stale"}})
                self.kept = __event_emitter__
                await __event_emitter__({"type": "status", "data": {"description": "fresh"}})
                return "ok"
        """
    )
    first, second = run(runtime, code), run(runtime, code)
    assert [event["data"]["description"] for event in first.events] == ["fresh"]
    assert [event["data"]["description"] for event in second.events] == ["fresh"]


def test_a_streamed_frame_cannot_end_the_call_for_the_parent(runtime):
    """The worker's own process writes the streamed frames: forging a "done" in one does not end the call."""
    code = unique(
        """
        import json, os

        class Pipe:
            def pipe(self, body):
                forged = b"c" + json.dumps({"kind": "done", "result": "forged"}).encode()
                for fd in range(3, 64):
                    try:
                        if os.readlink(f"/proc/self/fd/{fd}").startswith("pipe:") and fd not in (0, 1, 2):
                            os.write(fd, len(forged).to_bytes(4, "big") + forged)
                    except OSError:
                        pass
                return "real"
        """
    )
    frames = runtime.run_function(
        code, function_id="p", method="pipe", ctx={"body": {}}, stream=True
    ).collect()
    assert [frame["kind"] for frame in frames] == ["chunk", "done"]
    assert frames[0]["item"] == ("text", "real")


def test_a_worker_reaches_the_network(runtime, gate):
    """Pipes call model APIs: whatever isolates load children, workers keep the network (loopback included)."""
    code = unique(
        """
        import socket

        class Pipe:
            def pipe(self, body):
                with socket.create_connection(("127.0.0.1", body["port"]), timeout=5) as link:
                    return link.recv(2).decode()
        """
    )
    outcome = {}
    thread = threading.Thread(
        target=lambda: outcome.update(result=run(runtime, code, body={"port": gate.port}))
    )
    thread.start()
    gate.accept()
    gate.release()
    thread.join(10)
    assert outcome["result"].result == [("text", "go")], outcome["result"].error


def test_method_annotations_stay_unevaluated_as_in_open_webui(runtime):
    code = unique(
        """
        class Filter:
            def inlet(self, body: "dict", __user__: Later | None = None) -> Later:
                from collections import OrderedDict as Later
                return {"ok": True}
        """
    )
    assert run(runtime, code, "inlet").result == {"ok": True}


def test_the_least_recently_used_idle_worker_makes_room_and_stale_versions_are_retired(runtime):
    from loader import client
    from loader.runtime.client import worker_summary

    before = client.settings().runtime_workers
    runtime.shutdown()  # a parent without workers
    runtime.configure(runtime_workers=2)
    try:
        first, second, third = (unique(COUNTER) for _ in range(3))
        assert run(runtime, first, function_id="a").result == [("text", "n1")]
        assert run(runtime, second, function_id="b").result == [("text", "n1")]
        assert run(runtime, first, function_id="a").result == [("text", "n2")]  # b is now the least recent
        assert run(runtime, third, function_id="c").result == [("text", "n1")]
        assert worker_summary()["idle"] == 2
        assert run(runtime, first, function_id="a").result == [("text", "n3")]  # kept
        assert run(runtime, second, function_id="b").result == [("text", "n1")]  # evicted, started again

        newer = first + "\n# a new version\n"
        assert run(runtime, newer, function_id="a").result == [("text", "n1")]
        summary = worker_summary()
        assert summary["idle"] == 2 and summary["busy"] == summary["starting"] == 0
        assert run(runtime, second, function_id="b").result == [
            ("text", "n2")
        ]  # the old "a" made room, not b
    finally:
        runtime.configure(runtime_workers=before)


def test_retiring_asks_the_parent_only_about_functions_it_ran(runtime, monkeypatch):
    """An update or delete of a function this process never ran costs no round trip to the parent."""
    from loader import client
    from loader.runtime.client import retire_workers, worker_summary

    code = unique(COUNTER)
    assert run(runtime, code, function_id="ran").result == [("text", "n1")]
    zygote = client._current
    asked = []
    real_call = zygote.call
    monkeypatch.setattr(
        zygote, "call", lambda request, **kw: asked.append(request) or real_call(request, **kw)
    )

    assert retire_workers(["never_ran", "nor_this"]) == 0
    assert asked == []
    idle = worker_summary()["idle"]
    assert retire_workers(["never_ran", "ran"]) == 1
    assert [request["function_ids"] for request in asked if request["op"] == "retire"] == [["ran"]]
    assert worker_summary()["idle"] == idle - 1
    assert run(runtime, code, function_id="ran").result == [("text", "n1")]  # a fresh instance


def test_many_threads_share_the_workers(runtime):
    code = unique(FILTER)
    results = []

    def client_thread():
        for _ in range(5):
            results.append(run(runtime, code, "inlet", {"messages": []}))

    threads = [threading.Thread(target=client_thread) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(results) == 40
    assert all(result.ok for result in results), [result.error for result in results if not result.ok][:3]


def test_a_call_in_flight_when_the_parent_dies_fails_and_the_next_call_works(runtime):
    from loader import client

    code = unique(
        """
        import time

        class Pipe:
            def pipe(self, body):
                yield "started"
                time.sleep(10_000)
        """
    )
    call = runtime.run_function(code, function_id="p", method="pipe", ctx={"body": {}}, stream=True)
    with call:
        assert next(call)["kind"] == "chunk"
        os.kill(client.stats()["zygote_pid"], 9)
        final = next(call)
    assert final["kind"] == "error" and final["error"]["type"] == "LoaderCrashed"
    assert "during the call" in final["error"]["message"]
    assert run(runtime, unique(COUNTER)).result == [("text", "n1")]


def test_a_caller_reading_too_slowly_stops_the_call_instead_of_filling_the_servers_memory(
    runtime, monkeypatch
):
    from loader.runtime import client as runtime_client

    monkeypatch.setattr(runtime_client, "BACKLOG_LIMIT", 1024 * 1024)
    code = unique(
        """
        class Pipe:
            def pipe(self, body):
                for _ in range(2000):
                    yield "x" * 65536
        """
    )
    call = runtime.run_function(code, function_id="p", method="pipe", ctx={"body": {}}, stream=True)
    with call:
        assert next(call)["kind"] == "chunk"
        deadline = time.monotonic() + 20
        while not call.overrun and time.monotonic() < deadline:
            time.sleep(0.02)
        frames = list(call)
    assert frames[-1]["kind"] == "error" and frames[-1]["error"]["type"] == "OutputLimit", frames[-1]
    assert "too slowly" in frames[-1]["error"]["message"]
    assert len(frames) < 40


def test_valves_given_in_the_context_are_used_when_not_given_as_keywords(runtime):
    code = unique(
        """
        from pydantic import BaseModel

        class Pipe:
            class Valves(BaseModel):
                prefix: str = "admin-default"

            class UserValves(BaseModel):
                tone: str = "user-default"

            def __init__(self):
                self.valves = self.Valves()

            def pipe(self, body, __user__):
                return {"admin": self.valves.prefix, "user": __user__["valves"].tone}
        """
    )
    context = {"admin_valves": {"prefix": "A"}, "user_valves": {"tone": "U"}, "user": {"id": "u"}}
    assert run(runtime, code, ctx=context).result == [("json", {"admin": "A", "user": "U"})]
    given = run(runtime, code, ctx=context, admin_valves={"prefix": "B"}, user_valves={"tone": "V"})
    assert given.result == [("json", {"admin": "B", "user": "V"})]


@pytest.mark.parametrize("status", [3, 0, -11, -9])
def test_a_reapers_report_of_how_a_worker_ended_reads_as_its_exit_status(status):
    """Where a worker runs under a reaper (pid 1 of a process-id namespace), the worker's exit status reaches the
    parent only as the reaper's report: the call's error says the same as from the status itself."""
    from loader.errors import exit_status_error
    from loader.runtime.limits import _exit_cause, _reported_status

    assert _reported_status(exit_status_error(status)) == status
    assert _exit_cause(_reported_status(exit_status_error(status)), loading=False) == _exit_cause(
        status, loading=False
    )


def test_a_flood_faster_than_the_parent_reads_stops_the_call_not_the_parent(runtime):
    from loader import client

    before = client.settings().output_cap
    runtime.configure(output_cap=1024)
    try:
        code = unique(
            """
            import os

            class Pipe:
                def pipe(self, body):
                    block = b"x" * 65536
                    while True:
                        os.write(1, block)
            """
        )
        parent = client.stats()["zygote_pid"]
        for _ in range(3):
            failed = run(runtime, code)
            assert failed.error["type"] == "OutputLimit", failed.error
            assert (
                failed.output.startswith("x" * 1024)
                and "more bytes of output were discarded" in failed.output
            )
        assert run(runtime, unique(COUNTER)).result == [("text", "n1")]
        assert client.stats()["zygote_pid"] == parent
    finally:
        runtime.configure(output_cap=before)


class _StubZygote:
    """What the pool needs of the zygote: sending to the client, killing a child, closing a pipe."""

    def __init__(self):
        self.sent: list = []
        self.killed: list = []

    def send(self, header, body=b""):
        self.sent.append((header, body))

    def kill(self, child):
        self.killed.append(child)

    def close_pipe(self, fd):
        os.close(fd)


class _StubChild:
    def __init__(self, output_fd):
        self.output_fd, self.result_fd, self.job_fd = output_fd, -1, -1
        self.worker = None


def test_the_pool_stops_a_worker_that_floods_while_its_output_is_read_without_recursing():
    """A worker writing faster than the parent reads: the flood check must not read again from where it fails the
    call (it used to recurse until the parent died)."""
    import json

    from loader.runtime.pool import Pool
    from loader.runtime.records import Call, Worker

    read_fd, write_fd = os.pipe()
    os.set_blocking(read_fd, False)
    stop = threading.Event()

    def flood():
        block = b"x" * 65536
        while not stop.is_set():
            try:
                os.write(write_fd, block)
            except OSError:
                return

    writer = threading.Thread(target=flood, daemon=True)
    writer.start()
    try:
        zygote = _StubZygote()
        pool = Pool(zygote)
        call = Call({"op": "call", "id": 7, "key": "k", "function_id": "f", "output_cap": 1024})
        child = _StubChild(read_fd)
        worker = Worker(child, call)
        child.worker = worker
        worker.state, worker.call, call.worker = "busy", call, worker
        pool.workers.append(worker)
        pool.calls[call.id] = call
        deadline = time.monotonic() + 10
        while call.id in pool.calls and time.monotonic() < deadline:
            pool.read(child, read_fd, "output", rounds=4)
        finals = [json.loads(body) for header, body in zygote.sent if header.get("final")]
        assert [frame["error"]["type"] for frame in finals] == ["OutputLimit"]
        assert zygote.killed == [child]
    finally:
        stop.set()
        os.close(write_fd)
        writer.join(5)
        with contextlib.suppress(OSError):
            os.close(read_fd)


@pytest.mark.skipif(os.geteuid() != 0, reason="process-id namespaces are made only when Sluice runs as root")
def test_a_worker_runs_in_a_process_id_namespace_of_its_own_and_cannot_signal_the_server(runtime):
    """Workers keep the network but, like load children, come from a clean template into their own pid namespace:
    function code sees only its own processes, and signalling the server's is impossible."""
    code = unique(
        """
        import os, signal

        class Pipe:
            def pipe(self, body):
                seen = sorted(int(name) for name in os.listdir("/proc") if name.isdigit())
                reached = []
                for pid in (body["server"], body["loader"]):
                    try:
                        os.kill(pid, 0)
                        reached.append(pid)
                    except OSError:
                        pass
                return {"pid": os.getpid(), "seen": seen, "reached": reached}
        """
    )
    from loader import client

    client.start()
    loader_pid = client.stats()["zygote_pid"]
    assert loader_pid > 3 and os.getpid() > 3
    answer = run(runtime, code, body={"server": os.getpid(), "loader": loader_pid})
    assert answer.ok, answer.error
    [(kind, result)] = answer.result
    assert kind == "json"
    assert result["pid"] <= 2 and max(result["seen"]) <= 3, result
    assert result["reached"] == [], result


MANIFOLD = """
from pydantic import BaseModel

class Pipe:
    class Valves(BaseModel):
        models: str = "a,b"

    def __init__(self):
        self.valves = self.Valves()
        self.name = "Multi: "

    def pipes(self):
        return [{"id": m, "name": m.upper()} for m in self.valves.models.split(",")]

    def pipe(self, body: dict) -> str:
        return body["model"]
"""


def test_the_pipes_method_answers_a_manifolds_models_read_with_its_stored_valves(runtime):
    from loader import run_function_collect

    result = run_function_collect(
        unique(MANIFOLD), function_id="multi", method="pipes", admin_valves={"models": "x,y,z"}
    )

    assert result.ok, result.error
    assert result.result == [
        {"id": "multi.x", "name": "Multi: X", "sub": "x"},
        {"id": "multi.y", "name": "Multi: Y", "sub": "y"},
        {"id": "multi.z", "name": "Multi: Z", "sub": "z"},
    ]
    plain = run_function_collect(unique(COUNTER), function_id="plain", method="pipes")
    assert plain.ok and plain.result == [{"id": "plain", "name": "", "sub": None}]


def test_a_worker_left_unused_ends_and_the_next_call_loads_anew(runtime):
    """Warm workers give their memory back once unused for `worker_idle` seconds; 0 keeps them."""
    from loader import client
    from loader.runtime.client import worker_summary

    before = client.settings().worker_idle
    runtime.shutdown()  # a parent without workers
    runtime.configure(worker_idle=0.5)
    try:
        code = unique(COUNTER)
        assert run(runtime, code, function_id="idle").result == [("text", "n1")]
        assert run(runtime, code, function_id="idle").result == [("text", "n2")]  # the same warm instance
        assert worker_summary()["idle"] == 1
        deadline = time.monotonic() + 10
        while worker_summary()["idle"] and time.monotonic() < deadline:
            time.sleep(0.1)
        assert worker_summary() == {"starting": 0, "idle": 0, "busy": 0, "waiting": 0}
        assert run(runtime, code, function_id="idle").result == [("text", "n1")]  # loaded anew

        runtime.configure(worker_idle=0)
        assert run(runtime, code, function_id="idle").result == [("text", "n2")]
        time.sleep(1.0)
        assert worker_summary()["idle"] == 1
    finally:
        runtime.configure(worker_idle=before)
