"""The warm parent's pool of runtime workers: which worker serves which call, and every limit on a call. Over 450
lines because `Pool` is one state machine over its workers and their calls, driven by the zygote's loop.

A worker (loader/runtime/worker.py) is a child the zygote forked like a load child (same confinement, privileges,
memory cap, captured output and scratch directory) that was handed a `serve` job: it loads one function's code
once and then serves calls one at a time. Workers are keyed by what their instance depends on: the function's id,
its code, its admin valves and the loader settings it was loaded with (the client computes the key). A call goes
to an idle worker of its key; otherwise a new worker is started while there is room (`workers`, from the call),
evicting the least recently used idle worker of another key when there is none; otherwise it waits at most
`busy_wait` seconds for a worker to come free and then fails with "Busy". A call for a function whose code or
valves changed retires that function's other workers (at once when idle, else after their call).

Limits, all enforced here by killing the worker's process group (the next call starts a fresh worker): the load
timeout while a worker loads, `run_timeout` per call, `idle_timeout` between a streaming call's frames, an output
flood (`FLOOD_FACTOR` times the output cap in one call), and the caller's cancel. A worker that dies during a call
(os._exit, a crash, the kernel's OOM killer) answers that call "Crashed" or "Exit".

Answers go to the client as frames `{"kind": "run", "id", "final"?}` whose body is the frame's JSON, exactly one
final frame per call. Nothing here blocks: writes to a worker that cannot take them yet wait in its outbox.
"""

from __future__ import annotations

import codecs
import contextlib
import json
import os
import re
import signal
import time
import traceback
from collections import deque

from loader.protocol import (
    MESSAGE_PREFIX,
    complete_message,
    encode_message,
    error,
    keep_within,
    message_size,
    read_available,
)

DEFAULT_OUTPUT_CAP = 64 * 1024
DEFAULT_RESULT_CAP = 2 * 1024 * 1024
# A call that prints more than this many times the output cap is stopped: it floods the pipe, nobody reads it.
FLOOD_FACTOR = 16
# How often a worker's pending writes are retried when its pipe is full.
OUTBOX_RETRY = 0.005
FINAL = (b"d", b"x")
STREAMED = (b"e", b"c")


class Call:
    __slots__ = (
        "id",
        "key",
        "function_id",
        "message",
        "stream",
        "settings",
        "worker",
        "queued_until",
        "sent",
        "deadline",
        "idle_deadline",
        "output",
        "dropped",
        "total",
        "decoder",
        "notices",
    )

    def __init__(self, request: dict):
        self.id = request.get("id")
        self.key = str(request.get("key") or "")
        self.function_id = str(request.get("function_id") or "function")
        self.stream = bool(request.get("stream"))
        self.message = {
            "op": "call",
            "function_id": self.function_id,
            "method": request.get("method"),
            "ctx": request.get("ctx") or {},
            "admin_valves": request.get("admin_valves"),
            "user_valves": request.get("user_valves"),
            "stream": self.stream,
        }
        self.settings = {
            "content": request.get("content") or "",
            "timeout": _number(request.get("timeout"), 10.0),
            "run_timeout": _number(request.get("run_timeout"), 60.0),
            "idle_timeout": _number(request.get("idle_timeout"), 30.0),
            "busy_wait": _number(request.get("busy_wait"), 2.0, minimum=0.0),
            "workers": max(1, int(_number(request.get("workers"), 4))),
            "memory_mb": int(_number(request.get("memory_mb"), 1024)),
            "output_cap": int(_number(request.get("output_cap"), DEFAULT_OUTPUT_CAP, minimum=0)),
            "result_cap": int(_number(request.get("result_cap"), DEFAULT_RESULT_CAP)),
            "packages_dir": request.get("packages_dir"),
            "homes_dir": request.get("homes_dir"),
            "hidden_paths": request.get("hidden_paths") or [],
        }
        self.worker: Worker | None = None
        self.queued_until = 0.0
        self.sent = 0.0
        self.deadline = 0.0
        self.idle_deadline = 0.0
        self.output = bytearray()
        self.dropped = 0
        self.total = 0
        self.decoder = codecs.getincrementaldecoder("utf-8")("replace")
        self.notices: list[str] = []


class Worker:
    __slots__ = (
        "child",
        "key",
        "function_id",
        "state",
        "call",
        "last_used",
        "buffer",
        "outbox",
        "load_deadline",
        "load_output",
        "load_timeout",
        "stale",
        "exit_error",
        "result_cap",
    )

    def __init__(self, child, call: Call):
        self.child = child
        self.key = call.key
        self.function_id = call.function_id
        self.state = "starting"  # then "idle" or "busy"; "dead" once killed or gone
        self.call: Call | None = None
        self.last_used = time.monotonic()
        self.buffer = bytearray()
        self.outbox = bytearray()
        self.load_timeout = call.settings["timeout"]
        self.load_deadline = self.last_used + self.load_timeout
        self.load_output = bytearray()
        self.stale = False
        self.exit_error: dict | None = None
        self.result_cap = call.settings["result_cap"]


class Pool:
    def __init__(self, zygote):
        self.zygote = zygote
        self.workers: list[Worker] = []
        self.queue: deque[Call] = deque()
        self.calls: dict = {}  # id -> Call, for every call not yet answered
        self.limit = 4

    # --- requests from the client ------------------------------------------------------------------------------

    def handle(self, request: dict) -> None:
        with self._guard():
            self._handle(request)

    def _handle(self, request: dict) -> None:
        if request.get("op") == "cancel":
            self.cancel(request.get("target"))
            return
        call = Call(request)
        self.limit = call.settings["workers"]
        self.calls[call.id] = call
        self._retire_stale(call)
        self._trim()
        if not self._assign(call):
            call.queued_until = time.monotonic() + call.settings["busy_wait"]
            self.queue.append(call)

    def cancel(self, call_id) -> None:
        """The caller went away: forget its call; a worker running it (or loading for it) is killed."""
        call = self.calls.pop(call_id, None)
        if call is None:
            return
        with contextlib.suppress(ValueError):
            self.queue.remove(call)
        worker = call.worker
        if worker is not None and worker.call is call:
            worker.call = None
            self._kill(worker)
            self._drain_queue()

    def summary(self) -> dict:
        """How many workers are loading, idle and busy, and how many calls wait (the parent's ping reports it)."""
        found = {"starting": 0, "idle": 0, "busy": 0}
        for worker in self._live():
            found[worker.state] += 1
        return {**found, "waiting": len(self.queue)}

    # --- assigning calls to workers ----------------------------------------------------------------------------

    def _live(self) -> list[Worker]:
        return [worker for worker in self.workers if worker.state != "dead"]

    def _assign(self, call: Call) -> bool:
        """Give `call` a worker now if possible: an idle one of its key, else a new one; False if none is free."""
        idle = [w for w in self._live() if w.state == "idle" and w.key == call.key and not w.stale]
        if idle:
            worker = max(idle, key=lambda w: w.last_used)
            self._send_call(worker, call)
            return True
        live = self._live()
        if len(live) >= self.limit:
            evictable = [w for w in live if w.state == "idle"]
            if not evictable:
                return False
            self._kill(min(evictable, key=lambda w: w.last_used))
        self._start(call)
        return True

    def _retire_stale(self, call: Call) -> None:
        """Other versions (code or valves) of this call's function are retired: now when idle, else when done."""
        for worker in self._live():
            if worker.function_id == call.function_id and worker.key != call.key:
                if worker.state == "idle":
                    self._kill(worker)
                else:
                    worker.stale = True

    def retire(self, function_ids) -> int:
        """These functions were deleted or changed: end their workers (now when idle, else after their call), and
        with them whatever their code left running (threads, processes it started). How many were found."""
        wanted = {str(function_id) for function_id in function_ids or ()}
        found = 0
        with self._guard():
            for worker in self._live():
                if worker.function_id in wanted:
                    found += 1
                    if worker.state == "idle":
                        self._kill(worker)
                    else:
                        worker.stale = True
        return found

    def _trim(self) -> None:
        """Fewer workers allowed than there are (the setting went down): end idle ones, oldest first."""
        idle = sorted((w for w in self._live() if w.state == "idle"), key=lambda w: w.last_used)
        while idle and len(self._live()) > self.limit:
            self._kill(idle.pop(0))

    def _drain_queue(self) -> None:
        """Give waiting calls the workers that came free, in the order they came."""
        waiting, self.queue = self.queue, deque()
        while waiting:
            call = waiting.popleft()
            if call.id not in self.calls:
                continue
            if not self._assign(call):
                self.queue.append(call)
                self.queue.extend(waiting)
                return

    def _start(self, call: Call) -> None:
        """A new worker for `call`'s key, loading its code; the call is sent right behind the serve job."""
        settings = call.settings
        serve = {
            "op": "serve",
            "function_id": call.function_id,
            "content": settings["content"],
            "timeout": settings["timeout"],
            "memory_mb": settings["memory_mb"],
            "result_cap": settings["result_cap"],
            "packages_dir": settings["packages_dir"],
            "homes_dir": settings["homes_dir"],
            "hidden_paths": list(settings["hidden_paths"]),
        }
        call.notices = self.zygote.confine_request(serve)
        for _attempt in range(3):
            child = self.zygote.worker_child()
            if child is None:
                break
            worker = Worker(child, call)
            child.worker = worker
            child.request, child.answered, child.started = None, True, time.monotonic()
            self.workers.append(worker)
            os.set_blocking(child.job_fd, False)
            worker.outbox += _message(serve)
            if self._flush(worker):
                self._send_call(worker, call)
                return
        reason = self.zygote.last_spawn_error or "could not start a worker"
        self._final(call, {"kind": "error", "error": error("LoaderUnavailable", reason)})

    def _send_call(self, worker: Worker, call: Call) -> None:
        """Send `call` to `worker` (idle, or loading: then the call's clock starts when it is ready)."""
        call.worker = worker
        worker.call = call
        worker.last_used = call.sent = time.monotonic()
        if worker.state == "idle":
            worker.state = "busy"
            self._arm(call)
        worker.outbox += _message(call.message)
        self._flush(worker)

    def _arm(self, call: Call) -> None:
        now = time.monotonic()
        call.sent = now
        call.deadline = now + call.settings["run_timeout"]
        call.idle_deadline = now + call.settings["idle_timeout"] if call.stream else 0.0

    def _flush(self, worker: Worker) -> bool:
        """Write what the worker's pipe takes now; False (and the worker killed) if the worker is gone."""
        job_fd = worker.child.job_fd
        while worker.outbox:
            try:
                written = os.write(job_fd, worker.outbox)
            except BlockingIOError:
                return True
            except OSError:
                call = worker.call
                self._kill(worker)
                if call is not None and call.worker is worker:
                    call.worker = None
                return False
            del worker.outbox[:written]
        return True

    # --- what workers send ------------------------------------------------------------------------------------

    def read(self, child, fd: int, which: str, rounds: int = 1) -> None:
        """Data on a worker's result or output pipe (called by the zygote's loop)."""
        with self._guard(child.worker):
            self._read(child, fd, which, rounds)

    def _read(self, child, fd: int, which: str, rounds: int = 1) -> None:
        worker = child.worker
        for _ in range(rounds):
            if fd not in (
                child.result_fd,
                child.output_fd,
            ):  # closed meanwhile (end of file read further down)
                return
            data = read_available(fd)
            if data is None:
                return
            if not data:
                self.zygote.close_pipe(fd)
                return
            if worker.state == "dead":
                continue
            if which == "output":
                self._output(worker, data)
            else:
                worker.buffer += data
                self._messages(worker)

    def _messages(self, worker: Worker) -> None:
        while worker.state != "dead":
            size = message_size(worker.buffer)
            if size is not None and size > worker.result_cap + 65536:
                self._fail_worker(
                    worker, "ResultTooLarge", "the function sent more than the result cap at once"
                )
                return
            message = complete_message(worker.buffer)
            if message is None:
                return
            del worker.buffer[: MESSAGE_PREFIX + len(message)]
            self._message(worker, message)

    def _message(self, worker: Worker, message: bytes) -> None:
        kind, payload = message[:1], message[1:]
        call = worker.call
        if kind in STREAMED:
            if call is not None:
                if call.stream:
                    call.idle_deadline = time.monotonic() + call.settings["idle_timeout"]
                self.zygote.send({"kind": "run", "id": call.id}, payload)
        elif kind == b"r":
            worker.load_output.clear()
            if call is not None:
                worker.state = "busy"
                self._arm(call)
            else:
                self._idle(worker)
        elif kind == b"l":
            answer = _parse(payload)
            load_error = answer.get("error") if isinstance(answer.get("error"), dict) else None
            load_error = load_error or error("BadAnswer", "the worker could not load the function")
            self._drain_output(worker)
            if call is not None:
                output = worker.load_output
                self._final(call, {"kind": "error", "error": load_error}, output=bytes(output))
            self._kill(worker)
        elif kind in FINAL:
            self._drain_output(worker)
            if worker.state == "dead":  # it flooded its output before answering: answered OutputLimit
                return
            frame = _parse(payload)
            if not frame:
                frame = {"kind": "error", "error": error("BadAnswer", "the worker gave an unreadable answer")}
            retire = bool(frame.pop("retire", False))
            if call is not None:
                self._final(call, frame)
            worker.call = None
            if retire or worker.stale:
                self._kill(worker)
            else:
                self._idle(worker)
        elif (
            message[:1] == b"{"
        ):  # a reaper's report of how the worker ended (a process-id namespace's pid 1)
            answer = _parse(message)
            if isinstance(answer.get("error"), dict):
                worker.exit_error = answer["error"]

    def _idle(self, worker: Worker) -> None:
        worker.state = "idle"
        worker.last_used = time.monotonic()
        self._drain_queue()

    def _output(self, worker: Worker, data: bytes) -> None:
        call = worker.call
        if worker.state == "starting":
            keep_within(worker.load_output, data, DEFAULT_OUTPUT_CAP)
            return
        if call is None or worker.state != "busy":
            return  # printed between calls (a task the code left running): nobody's
        cap = call.settings["output_cap"]
        dropped = keep_within(call.output, data, cap)
        kept = data[: len(data) - dropped]
        call.dropped += dropped
        call.total += len(data)
        if call.stream and kept:
            text = call.decoder.decode(kept)
            if text:
                self.zygote.send({"kind": "run", "id": call.id}, _json({"kind": "output", "text": text}))
        if call.total > max(cap, 4096) * FLOOD_FACTOR:
            limit = max(cap, 4096) * FLOOD_FACTOR
            message = (
                f"the call printed more than {_size(limit)} of output; Sluice stopped it (output is kept up to "
                f"{_size(cap)} per call)"
            )
            self._fail_worker(worker, "OutputLimit", message)

    def _drain_output(self, worker: Worker) -> None:
        """Read what the worker printed before it sent its answer (written before the answer, on another pipe)."""
        fd = worker.child.output_fd
        if fd >= 0:
            self.read(worker.child, fd, "output", rounds=16)

    # --- ends ---------------------------------------------------------------------------------------------------

    def finished(self, child, returncode: int) -> None:
        """The worker's process is gone (reaped by the zygote): fail its call, if it had one, with the reason."""
        with self._guard(child.worker):
            self._finished(child, returncode)

    def _finished(self, child, returncode: int) -> None:
        worker = child.worker
        if worker is None:
            return
        for fd, which in ((child.result_fd, "result"), (child.output_fd, "output")):
            if fd >= 0 and worker.state != "dead":
                self.read(child, fd, which, rounds=16)
        call = worker.call
        if worker.state != "dead" and call is not None:
            self._final(call, {"kind": "error", "error": self._ended(worker, returncode)})
        worker.state = "dead"
        worker.call = None
        with contextlib.suppress(ValueError):
            self.workers.remove(worker)
        self._drain_queue()

    def _ended(self, worker: Worker, returncode: int) -> dict:
        """Why a worker ended by itself: its exit status, or the report of the reaper it ran under (whose
        exit status then says nothing), which speaks of loading."""
        loading = worker.state == "starting"
        found = worker.exit_error
        if found is None:
            return _exit_cause(returncode, loading=loading)
        if loading:
            return found
        return _exit_cause(_reported_status(found), loading=False)

    def expire(self, now: float) -> None:
        """Enforce the deadlines (called by the zygote's loop), and retry writes that did not fit."""
        with self._guard():
            self._expire(now)

    def _expire(self, now: float) -> None:
        for worker in self._live():
            if worker.outbox:
                self._flush(worker)
            call = worker.call
            if worker.state == "starting" and worker.load_deadline <= now:
                message = (
                    f"loading the function took longer than {worker.load_timeout:g} s (SLUICE_LOAD_TIMEOUT)"
                )
                self._fail_worker(worker, "Timeout", message)
            elif worker.state == "busy" and call is not None:
                if call.deadline <= now:
                    limit = call.settings["run_timeout"]
                    message = (
                        f"the call took longer than {limit:g} s (SLUICE_RUN_TIMEOUT); Sluice stopped it "
                        "and the next call starts a fresh worker"
                    )
                    self._fail_worker(worker, "Timeout", message)
                elif call.idle_deadline and call.idle_deadline <= now:
                    limit = call.settings["idle_timeout"]
                    message = (
                        f"the stream sent nothing for {limit:g} s (SLUICE_RUN_IDLE_TIMEOUT); Sluice stopped it "
                        "and the next call starts a fresh worker"
                    )
                    self._fail_worker(worker, "Timeout", message)
        while self.queue and self.queue[0].queued_until <= now:
            call = self.queue.popleft()
            if call.id not in self.calls:
                continue
            message = (
                f"all {self.limit} function workers are busy (SLUICE_RUNTIME_WORKERS); try again in a moment"
            )
            self._final(call, {"kind": "error", "error": {**error("Busy", message), "retry_after": 1}})

    def deadlines(self) -> list[float]:
        moments = []
        for worker in self._live():
            if worker.outbox:
                moments.append(time.monotonic() + OUTBOX_RETRY)
            if worker.state == "starting":
                moments.append(worker.load_deadline)
            elif worker.state == "busy" and worker.call is not None:
                moments.append(worker.call.deadline)
                if worker.call.idle_deadline:
                    moments.append(worker.call.idle_deadline)
        if self.queue:
            moments.append(min(call.queued_until for call in self.queue))
        return moments

    @contextlib.contextmanager
    def _guard(self, worker: Worker | None = None):
        """A bug in this bookkeeping must not stop the zygote, which serves every load: it is printed (the zygote's
        stderr is the server's), and the worker concerned is stopped with its call answered."""
        try:
            yield
        except Exception:
            traceback.print_exc()
            if worker is not None and worker.state != "dead":
                with contextlib.suppress(Exception):
                    self._fail_worker(
                        worker, "LoaderUnavailable", "the loader failed to run this call; try again"
                    )

    def _fail_worker(self, worker: Worker, kind: str, message: str) -> None:
        call = worker.call
        if call is not None:
            worker.call = None  # what it prints from now on is nobody's
            self._keep_output(worker, call)
            self._final(call, {"kind": "error", "error": error(kind, message)})
        self._kill(worker)

    def _keep_output(self, worker: Worker, call: Call) -> None:
        """Add what is already in the worker's output pipe to the call's output, as far as the cap allows; a bounded
        number of reads, and nothing else happens on the way (the worker may be flooding the pipe)."""
        fd = worker.child.output_fd
        cap = call.settings["output_cap"]
        for _ in range(16):
            if fd < 0 or fd != worker.child.output_fd:
                return
            data = read_available(fd)
            if not data:
                return
            call.dropped += keep_within(call.output, data, cap)

    def _kill(self, worker: Worker) -> None:
        """End the worker's process group now; the zygote reaps it and its slot is free at once."""
        worker.state = "dead"
        worker.call = None
        worker.outbox.clear()
        with contextlib.suppress(ValueError):
            self.workers.remove(worker)
        self.zygote.kill(worker.child)

    def _final(self, call: Call, frame: dict, *, output: bytes | None = None) -> None:
        """Answer `call` once with its final frame, its captured output added."""
        if self.calls.pop(call.id, None) is None:
            return
        if call.worker is not None and call.worker.call is call:
            call.worker.call = None
        kept = bytes(call.output) if output is None else output
        frame["output"] = kept.decode("utf-8", "replace")
        frame["dropped"] = call.dropped
        if "ms" not in frame:
            frame["ms"] = round((time.monotonic() - call.sent) * 1000, 3) if call.sent else 0.0
        header = {"kind": "run", "id": call.id, "final": True}
        if call.notices:
            header["notices"] = call.notices
        self.zygote.send(header, _json(frame))

    def forget(self) -> None:
        """In a child just forked: drop every call (code, valves, users) this copy of the parent holds."""
        for worker in self.workers:
            for buffer in (worker.buffer, worker.outbox, worker.load_output):
                buffer[:] = bytes(len(buffer))
                del buffer[:]
        for call in self.calls.values():
            call.output[:] = bytes(len(call.output))
            call.message = call.settings = None
        self.workers.clear()
        self.queue.clear()
        self.calls.clear()


def _exit_cause(returncode: int, *, loading: bool) -> dict:
    during = "while loading" if loading else "during the call"
    fresh = "" if loading else "; the next call starts a fresh worker"
    if returncode < 0:
        try:
            name = signal.Signals(-returncode).name
        except ValueError:
            name = f"signal {-returncode}"
        hint = " (out of memory?)" if -returncode in (signal.SIGKILL, signal.SIGABRT) else ""
        return error("Crashed", f"the function's process was killed by {name}{hint} {during}{fresh}")
    return error("Exit", f"the function's code ended its process (exit status {returncode}) {during}{fresh}")


def _reported_status(report: dict) -> int:
    """The exit status (negative: the signal) a reaper's report (`loader.errors.exit_status_error`) speaks of."""
    text = str(report.get("message") or "")
    found = re.search(r"killed by (SIG[A-Z0-9]+)", text)
    if found and found.group(1) in signal.Signals.__members__:
        return -signal.Signals[found.group(1)].value
    if report.get("type") == "CPULimit":
        return -signal.SIGXCPU
    found = re.search(r"status (-?\d+)", text)
    return int(found.group(1)) if found else 1


def _number(value, default: float, minimum: float | None = None) -> float:
    try:
        number = float(value)
    except (TypeError, ValueError):
        return default
    if minimum is None:
        return number if number > 0 else default
    return max(number, minimum)


def _size(count: int) -> str:
    return f"{count / 1048576:g} MiB" if count >= 1048576 else f"{count / 1024:g} KiB"


def _message(data: dict) -> bytes:
    return encode_message(_json(data))


def _json(data) -> bytes:
    return json.dumps(data, ensure_ascii=True, separators=(",", ":"), default=str).encode()


def _parse(payload: bytes) -> dict:
    try:
        found = json.loads(payload)
    except ValueError:
        return {}
    return found if isinstance(found, dict) else {}
