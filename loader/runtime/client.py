"""Running a function's method from the server: the calling side of the runtime (what `loader.run_function` is).

A call goes to the loader's warm parent (the same process and pipe as loads, loader/client.py), which gives it to
a warm worker holding that function's instance (loader/runtime/pool.py, loader/runtime/worker.py) and passes the
worker's frames back as they come. `RunCall` is an iterator over those frames, ending with exactly one `done` or
`error` frame; closing it early (the HTTP client went away) cancels the call, and the parent kills the worker if
it is in the middle of it. Thread-safe: any number of threads may run calls at once.
"""

from __future__ import annotations

import dataclasses
import functools
import hashlib
import json
import queue
import threading
import time
from typing import Any

from loader import client
from loader.connection import Unavailable
from loader.protocol import error

# The parent enforces every limit; this margin only covers a parent that stopped answering altogether.
SAFETY_MARGIN = 10.0
# Frames a caller has not read yet are held in the server's memory; past this many bytes the call is cancelled.
BACKLOG_LIMIT = 32 * 1024 * 1024
FINAL = ("done", "error")
STREAMED = ("event", "chunk", "output")


@dataclasses.dataclass
class RunResult:
    """A whole call: `result` is the method's return value (for a pipe: its items, see `run_function`), `events`
    the events it emitted in order, `output` what it printed or logged (bounded), `ms` the time it took, `error`
    `{type, message, line, column, traceback}` when it failed (then `ok` is False)."""

    ok: bool
    result: Any = None
    events: list = dataclasses.field(default_factory=list)
    output: str = ""
    ms: float = 0.0
    error: dict | None = None

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)


def run_function(
    content: str,
    *,
    function_id: str,
    method: str,
    ctx: dict | None = None,
    admin_valves: dict | None = None,
    user_valves: dict | None = None,
    stream: bool = False,
    timeout: float | None = None,
) -> RunCall:
    """Call `method` of the function whose code is `content` (already import-rewritten) in a warm worker.

    `ctx`: the call's context as loader.runtime.CallContext's fields (body, user, model, metadata, chat_id, ...).
    The frames, as dicts: `{"kind": "event", "event": {type, data}}` as emitted; `{"kind": "chunk", "item":
    (type, value)}` for each item a pipe produces ("text", "json" or "sse"), only when `stream` is true;
    `{"kind": "output", "text"}` as the code prints, only when `stream` is true; then `{"kind": "done", "result",
    "ms", "output", "notes"}` or `{"kind": "error", "error": {type, message, line, column, traceback?}, "ms",
    "output"}`. Without `stream`, a pipe's result is the list of its items. `timeout` replaces the run_timeout
    setting for this call. Error types of the runtime itself: Busy (every worker busy past busy_wait: answer 503
    with Retry-After, `error["retry_after"]` seconds), Timeout, Crashed, Exit, OutputLimit, MemoryError,
    ResultTooLarge, LoaderUnavailable, LoaderCrashed; anything else is the exception the function raised.
    """
    settings = client.settings()
    run_timeout = float(timeout) if timeout else settings.run_timeout
    ctx = ctx or {}
    if admin_valves is None:  # a context may carry them itself (CallContext has the field)
        admin_valves = ctx.get("admin_valves") if isinstance(ctx.get("admin_valves"), dict) else {}
    request = {
        "op": "call",
        "key": _key(content, function_id, admin_valves, settings),
        "content": content,
        "function_id": function_id,
        "method": method,
        "ctx": ctx,
        "admin_valves": admin_valves,
        "user_valves": user_valves,
        "stream": bool(stream),
        "timeout": settings.timeout,
        "run_timeout": run_timeout,
        "idle_timeout": settings.run_idle_timeout,
        "busy_wait": settings.busy_wait,
        "worker_idle": settings.worker_idle,
        "workers": settings.runtime_workers,
        "memory_mb": settings.memory_mb,
        "output_cap": settings.output_cap,
        "result_cap": settings.result_cap,
        "packages_dir": settings.packages_dir,
        "homes_dir": settings.homes_dir,
        "hidden_paths": list(settings.hidden_paths),
    }
    wait = settings.busy_wait + settings.timeout + run_timeout + SAFETY_MARGIN
    return RunCall(request, wait)


def run_function_collect(content: str, **kwargs) -> RunResult:
    """`run_function`, waited for: the whole call as a RunResult. With `stream=True` the result is the list of
    items streamed."""
    result = RunResult(ok=False)
    chunks: list = []
    with run_function(content, **kwargs) as call:
        for frame in call:
            kind = frame.get("kind")
            if kind == "event":
                result.events.append(frame.get("event"))
            elif kind == "chunk":
                chunks.append(frame.get("item"))
            elif kind == "done":
                result.ok = True
                result.result = chunks if kwargs.get("stream") else frame.get("result")
            elif kind == "error":
                result.error = frame.get("error")
            if kind in FINAL:
                result.output = frame.get("output") or ""
                result.ms = frame.get("ms") or 0.0
    return result


class RunCall:
    """The frames of one call as they arrive (see `run_function`); `close()` cancels it. Also a context manager."""

    def __init__(self, request: dict, wait: float):
        self.method = request.get("method")
        self.frames: queue.SimpleQueue = queue.SimpleQueue()
        self.lock = threading.Lock()
        self.finished = False
        self.deadline = time.monotonic() + wait
        self.backlog = 0  # bytes of frames received and not yet read by the caller
        self.overrun = False
        self.zygote = None
        self.id = None
        try:
            zygote = client._zygote()
        except Unavailable as exc:
            self.fail(error("LoaderUnavailable", str(exc)))
            return
        self.zygote = zygote
        zygote.note_call(str(request.get("function_id") or "function"))  # as the pool names its workers
        self.id = zygote.open(request, self)
        if self.id is None:
            self.fail(error("LoaderCrashed", "the loader process stopped; try again"))

    # --- the waiter's side (the client's reader thread) -------------------------------------------------------

    def deliver(self, header: dict, body: bytes) -> None:
        """A frame from the parent. Only the parent's header says which frame is the last: the body of a streamed
        frame comes from the function's own process, which could write anything there."""
        final = header.get("kind") != "run" or bool(header.get("final"))
        if header.get("kind") != "run" and isinstance(header.get("error"), dict):  # refused before any worker
            self.fail(header["error"])
            return
        try:
            frame = json.loads(body)
        except ValueError:
            frame = None
        kind = frame.get("kind") if isinstance(frame, dict) else None
        if final and kind not in FINAL:
            frame = {"kind": "error", "error": error("BadAnswer", "the loader gave an unreadable answer")}
        elif not final and kind not in STREAMED:
            return  # not a frame a worker streams: dropped
        if self.overrun:
            return
        if not final:
            with self.lock:
                self.backlog += len(body)
                overrun = self.backlog > BACKLOG_LIMIT
            if overrun:
                self._overrun()
                return
        self.frames.put((frame, len(body)))

    def _overrun(self) -> None:
        """The caller reads too slowly (a slow HTTP client): stop the call rather than hold its frames here."""
        self.overrun = True
        message = (
            f"the caller read the stream too slowly: more than {BACKLOG_LIMIT // 1048576} MiB of it waited; "
            "Sluice stopped the call"
        )
        self.frames.put(
            ({"kind": "error", "error": error("OutputLimit", message), "ms": 0.0, "output": ""}, 0)
        )
        zygote, request_id = self.zygote, self.id
        if zygote is not None and request_id is not None:
            zygote.forget_waiter(request_id)
            # Not from this (the reader) thread: it must never wait on the request pipe (see _ZygoteProcess).
            threading.Thread(
                target=zygote.post, args=({"op": "cancel", "target": request_id},), daemon=True
            ).start()

    def fail(self, run_error: dict) -> None:
        if run_error.get("type") == "LoaderCrashed":
            run_error = {**run_error, "message": "the loader process stopped during the call; try again"}
        self.frames.put(({"kind": "error", "error": run_error, "ms": 0.0, "output": ""}, 0))

    # --- the caller's side ------------------------------------------------------------------------------------

    def __iter__(self):
        return self

    def __next__(self) -> dict:
        if self.finished:
            raise StopIteration
        try:
            frame, size = self.frames.get(timeout=max(0.0, self.deadline - time.monotonic()))
            with self.lock:
                self.backlog -= size
        except queue.Empty:
            self.close()
            message = "the loader did not answer in time; try again"
            return {"kind": "error", "error": error("LoaderUnavailable", message), "ms": 0.0, "output": ""}
        kind = frame.get("kind")
        if kind == "chunk":
            frame["item"] = _item(frame.get("item"))
        elif kind in FINAL:
            with self.lock:
                self.finished = True
            self._finish(frame)
        return frame

    def _finish(self, frame: dict) -> None:
        dropped = frame.pop("dropped", 0)
        output = frame.get("output") if isinstance(frame.get("output"), str) else ""
        if isinstance(dropped, int) and dropped > 0:
            output += f"\n[{dropped} more bytes of output were discarded]"
        frame["output"] = output
        if frame.get("kind") == "done" and self.method == "pipe" and isinstance(frame.get("result"), list):
            frame["result"] = [_item(item) for item in frame["result"]]

    def close(self) -> None:
        """Stop waiting; if the call is still running, the parent kills its worker. Safe to call twice."""
        with self.lock:
            if self.finished:
                return
            self.finished = True
        zygote, request_id = self.zygote, self.id
        if zygote is not None and request_id is not None:
            zygote.forget_waiter(request_id)
            zygote.post({"op": "cancel", "target": request_id})

    def collect(self) -> list[dict]:
        """Every remaining frame, the final one last."""
        return list(self)

    def __enter__(self) -> RunCall:
        return self

    def __exit__(self, *_exc) -> None:
        self.close()

    def __del__(self):
        try:
            self.close()
        except Exception:  # the interpreter may be shutting down
            pass


def _item(item) -> Any:
    if isinstance(item, list) and len(item) == 2 and isinstance(item[0], str):
        return (item[0], item[1])
    return item


@functools.lru_cache(maxsize=128)
def _content_hash(content: str) -> str:
    return hashlib.sha256(content.encode("utf-8", "surrogatepass")).hexdigest()


def _key(content: str, function_id: str, admin_valves, settings) -> str:
    """What a worker's instance depends on: the function's id, code and admin valves, and how it was loaded."""
    loaded = [
        _content_hash(content),
        admin_valves or {},
        settings.memory_mb,
        settings.packages_dir,
        settings.homes_dir,
        list(settings.hidden_paths),
        settings.result_cap,
    ]
    text = json.dumps(loaded, sort_keys=True, separators=(",", ":"), default=str)
    return f"{function_id}:{hashlib.sha256(text.encode('utf-8', 'surrogatepass')).hexdigest()}"


def worker_summary() -> dict:
    """The parent's workers right now: `{"starting", "idle", "busy", "waiting"}` (counts); {} if it is not running."""
    zygote = client._current
    if zygote is None or not zygote.alive:
        return {}
    header, _ = zygote.call({"op": "ping"}, wait=10)
    return header.get("workers") or {}


def retire_workers(function_ids) -> int:
    """End the warm workers of these functions (deleted, or their code replaced), so that nothing their code left
    running (a thread, a process it forked) outlives them; a worker in a call ends after it. How many were found;
    0 when the loader is not running (then it has no workers)."""
    zygote = client._current
    if zygote is None or not zygote.alive:
        return 0
    # A function this zygote never ran has no worker here: no round trip (an update or delete waited ~3 ms for it).
    wanted = zygote.may_have_workers([str(function_id) for function_id in function_ids])
    if not wanted:
        return 0
    header, _ = zygote.call({"op": "retire", "function_ids": wanted}, wait=10)
    return int(header.get("retired") or 0)
