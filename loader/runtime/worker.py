"""A runtime worker: one function's module and instance, loaded once in a child forked like a load child, then
serving calls one at a time on an asyncio loop that keeps running between them.

The warm parent (loader/parent.py, with the bookkeeping in loader/runtime/pool.py) hands a spare child a `serve`
job instead of a load job; the child isolates itself, takes the job's limits and drops privileges exactly as for a
load (loader/child.py), then comes here. From then on the job pipe carries call requests and the result pipe
carries frames back, each a message (loader/protocol.py) whose first byte says what it is:

- ``r`` ready (the module ran and its instance exists), ``l`` the load failed (``{"error"}``), once, first;
- per call: ``e`` an event (``{"kind": "event", "event"}``), ``c`` a pipe's chunk (``{"kind": "chunk", "item"}``),
  as they happen, then exactly one of ``d`` done (``{"kind": "done", "result", "ms", "notes"}``) or ``x`` error
  (``{"kind": "error", "error", "ms", "retire"}``). ``retire`` asks the parent to end this worker: the code
  raised something that means "stop the process" (``SystemExit``, ``KeyboardInterrupt``, another
  ``BaseException``) or ran out of memory, after which the instance cannot be trusted.

What the code prints or logs goes to the child's stdout/stderr, the output pipe the parent reads: the parent counts
it against the call that is running. Nothing here enforces a time limit: a call that never returns is killed, with
its process group, by the parent.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import sys
import time
import traceback
from collections import deque

from loader import describe, protocol
from loader.errors import describe_exception, safe_str
from loader.runtime.calls import invoke, list_pipes
from loader.runtime.context import CallContext

TRACEBACK_LIMIT = 16 * 1024
LOADER_DIR = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

# Taken before any function code runs, so that code patching `os` or `json` cannot stop the worker from answering.
_exit = os._exit
_write = os.write
_read = os.read
_dumps = json.dumps
_loads = json.loads
_encode_message = protocol.encode_message


class ResultTooLarge(Exception):
    """A frame (a chunk, an event or the result) larger than the result cap."""


def serve(request: dict, job_fd: int, result_fd: int, workdir: str) -> None:
    """Load the function named by the `serve` request, answer ready, then serve calls until the job pipe closes.
    Never returns."""
    status = 0
    try:
        worker = Worker(request, job_fd, result_fd, workdir)
        worker.run()
    except BaseException:  # the worker must leave through _exit whatever happened
        status = 70
    finally:
        _exit(status)


def refuse(result_fd: int, error: dict) -> None:
    """Answer a `serve` job with a load error before any function code ran (e.g. privileges could not be dropped)."""
    payload = b"l" + _dumps({"error": error}, ensure_ascii=True).encode()
    view = memoryview(_encode_message(payload))
    while view:
        view = view[_write(result_fd, view) :]


class Worker:
    def __init__(self, request: dict, job_fd: int, result_fd: int, workdir: str):
        self.job_fd = job_fd
        self.result_fd = result_fd
        self.memory_mb = int(request.get("memory_mb") or 1024)
        self.result_cap = int(request.get("result_cap") or protocol.DEFAULT_RESULT_CAP)
        self.module_name, self.path = describe.module_path(workdir, request.get("function_id"))
        self.content = request.get("content") or ""
        self.instance = None
        self.inbox = bytearray()
        self.calls: deque[dict] = deque()
        self.task: asyncio.Task | None = None
        self.current: object | None = None  # the running call's token: its sink sends only while it runs
        self.stopping = False
        self.loop = asyncio.new_event_loop()
        # Released when a call runs out of memory, so that its error can still be described and sent; and the answer
        # sent when even that fails, encoded now.
        self.reserve: bytearray | None = bytearray(1024 * 1024)
        message = f"the call needed more than the {self.memory_mb} MiB of memory a function may use"
        fallback = {"kind": "error", "error": protocol.error("MemoryError", message), "retire": True}
        self.fallback = _encode_message(b"x" + _dumps(fallback).encode())

    def run(self) -> None:
        asyncio.set_event_loop(self.loop)
        _log_to_stderr()
        try:
            loaded = self.loop.run_until_complete(self._load())
        except MemoryError as exc:
            self.reserve = None
            loaded = describe.Loaded(describe_exception(exc, self.path, memory_mb=self.memory_mb))
        except BaseException as exc:  # SystemExit or the like escaping a task the code created at import
            loaded = describe.Loaded(describe_exception(exc, self.path, memory_mb=self.memory_mb))
        flush_std()
        if loaded.error is not None:
            self.send(b"l", {"error": loaded.error})
            return
        self.instance = loaded.instance
        self.send(b"r", {"type": loaded.kind})
        os.set_blocking(self.job_fd, False)
        self.loop.add_reader(self.job_fd, self._readable)
        self._readable()  # the first call may already be waiting (the parent sends it with the serve job)
        while not self.stopping:
            # SystemExit & co. raised by a task the code started stop the loop; the call's own task answers.
            with contextlib.suppress(BaseException):
                self.loop.run_forever()

    async def _load(self) -> describe.Loaded:
        # Run inside the loop, as Open WebUI runs function code inside its request handler.
        return describe.instantiate(self.content, self.module_name, self.path, self.memory_mb)

    # --- requests -------------------------------------------------------------------------------------------

    def _readable(self) -> None:
        try:
            data = _read(self.job_fd, protocol.READ_CHUNK)
        except BlockingIOError:
            return
        except OSError:
            data = b""
        if not data:  # the parent retired us, or is gone
            self.stopping = True
            self.loop.stop()
            return
        self.inbox += data
        while True:
            message = protocol.complete_message(self.inbox)
            if message is None:
                break
            del self.inbox[: protocol.MESSAGE_PREFIX + len(message)]
            with contextlib.suppress(ValueError):
                self.calls.append(_loads(message))
        self._next()

    def _next(self) -> None:
        if self.task is None and self.calls and not self.stopping:
            self.task = self.loop.create_task(self._call(self.calls.popleft()))
            self.task.add_done_callback(self._finished)

    def _finished(self, _task) -> None:
        self.task = None
        self._next()

    # --- one call -------------------------------------------------------------------------------------------

    async def _call(self, message: dict) -> None:
        """Serve one call; whatever happens, answer it."""
        try:
            await self._serve_call(message)
        except BaseException as exc:  # describing or sending the answer failed: out of memory, most likely
            self.current = None
            self.reserve = None
            with contextlib.suppress(BaseException):
                answer = self.fallback
                if not isinstance(exc, MemoryError):
                    message = (
                        f"the worker could not send the call's answer: {type(exc).__name__}: {safe_str(exc)}"
                    )
                    frame = {"kind": "error", "error": protocol.error("BadAnswer", message), "retire": True}
                    answer = _encode_message(b"x" + _dumps(frame).encode())
                view = memoryview(answer)
                while view:
                    view = view[_write(self.result_fd, view) :]

    async def _serve_call(self, message: dict) -> None:
        started = time.perf_counter()
        method = str(message.get("method") or "")
        stream = bool(message.get("stream"))
        retire = False
        ctx = None
        try:
            data = message.get("ctx") if isinstance(message.get("ctx"), dict) else {}
            ctx = CallContext.from_dict(
                {
                    **data,
                    "function_id": message.get("function_id") or data.get("function_id") or "function",
                    "method": method,
                    # The keywords of run_function win; a context that carries them itself keeps them otherwise.
                    "admin_valves": _given(message.get("admin_valves"), data.get("admin_valves")),
                    "user_valves": _given(message.get("user_valves"), data.get("user_valves")),
                }
            )

            token = self.current = object()

            def sink(kind, payload):
                if self.current is not token:  # an emitter kept from an earlier call: that call is over
                    return
                if kind == "event":
                    self.send(b"e", {"kind": "event", "event": payload})
                elif stream:
                    self.send(b"c", {"kind": "chunk", "item": list(payload)})

            if method == "pipes":  # the models a pipe offers (a manifold's `pipes`), read with its valves set
                result = await list_pipes(self.instance, ctx.function_id, "", valves=ctx.admin_valves)
            else:
                result = await invoke(self.instance, method, ctx, sink, collect=not stream)
            kind, frame = b"d", {"kind": "done", "result": result, "notes": ctx.notes}
        except BaseException as exc:  # the call's error, whatever it is; the worker itself goes on
            if isinstance(exc, MemoryError):
                self.reserve = None
            retire = not isinstance(exc, Exception) or isinstance(exc, MemoryError)
            kind, frame = b"x", {"kind": "error", "error": call_error(exc, self.path, self.memory_mb, method)}
        self.current = None
        frame["ms"] = round((time.perf_counter() - started) * 1000, 3)
        if kind == b"x":
            frame["retire"] = retire
            if ctx is not None and ctx.notes:
                frame["notes"] = ctx.notes
        flush_std()
        try:
            self.send(kind, frame)
        except ResultTooLarge as exc:
            error = protocol.error("ResultTooLarge", str(exc))
            self.send(b"x", {"kind": "error", "error": error, "ms": frame["ms"], "retire": False})

    def send(self, kind: bytes, frame: dict) -> None:
        payload = kind + _dumps(frame, ensure_ascii=True, separators=(",", ":"), default=str).encode()
        if len(payload) > self.result_cap:
            what = {b"c": "a chunk", b"e": "an event", b"d": "the result"}.get(kind, "an answer")
            raise ResultTooLarge(
                f"{what} of {len(payload) / 1048576:.1f} MiB is larger than the "
                f"{self.result_cap / 1048576:g} MiB a call may send at once"
            )
        view = memoryview(_encode_message(payload))
        while view:
            view = view[_write(self.result_fd, view) :]


def _given(value, fallback):
    return value if value is not None else fallback


def call_error(exc: BaseException, path: str, memory_mb: int, method: str) -> dict:
    """A call's error as the caller sees it: `{type, message, line, column, traceback}`, the line and column in the
    function's own source (the innermost frame there), the message one a user can act on."""
    described = describe_exception(exc, path, memory_mb=memory_mb)
    kind = type(exc).__name__
    text = safe_str(exc)
    stops = "which ends a worker: Sluice stopped this one and the next call starts a fresh one"
    if isinstance(exc, SystemExit):
        code = exc.code if exc.code is None or isinstance(exc.code, int) else safe_str(exc.code, 200)
        described["type"] = "Exit"
        described["message"] = f"{method}() called sys.exit({code!r}) (raised SystemExit), {stops}"
    elif isinstance(exc, MemoryError):
        described["message"] = (
            f"{method}() needed more than the {memory_mb} MiB of memory a function may use "
            f"(SLUICE_LOAD_MEMORY_MB); {stops}"
        )
    elif isinstance(exc, ResultTooLarge):
        described["type"] = "ResultTooLarge"
        described["message"] = text
    elif not isinstance(exc, Exception):
        described["message"] = f"{method}() raised {kind}{': ' + text if text else ''}, {stops}"
    elif not text:
        described["message"] = f"{method}() raised {kind}"
    else:
        described["message"] = text
    described["traceback"] = _traceback(exc)
    return described


def _traceback(exc: BaseException) -> str:
    """The traceback without the loader's own frames (the runtime calling the method), bounded."""
    try:
        frames = [
            frame
            for frame in traceback.extract_tb(exc.__traceback__)
            if not os.path.abspath(frame.filename).startswith(LOADER_DIR + os.sep)
        ]
        lines = ["Traceback (most recent call last):\n", *traceback.format_list(frames)]
        lines += traceback.format_exception_only(type(exc), exc)
        text = "".join(lines)
    except Exception:  # a broken __str__ or a strange traceback: the type alone
        text = f"{type(exc).__name__}\n"
    if len(text) > TRACEBACK_LIMIT:
        text = "…" + text[-TRACEBACK_LIMIT:]
    return text


def _log_to_stderr() -> None:
    """Function code's log lines reach the captured output, as they reach Open WebUI's log (level INFO)."""
    root = logging.getLogger()
    if not root.handlers:
        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(logging.Formatter("%(levelname)s %(name)s: %(message)s"))
        root.addHandler(handler)
        root.setLevel(logging.INFO)


def flush_std() -> None:
    """Flush what function code printed, whatever it did to sys.stdout and sys.stderr (load children use it too)."""
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except BaseException:  # the function may have replaced or closed them
            pass
