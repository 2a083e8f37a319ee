"""The warm parent's pool of runtime workers: which worker serves which call. `Pool` is one state machine over its
workers and their calls, driven by the zygote's loop; its methods are split by job into the parts it is made of:
this module takes the client's requests and assigns calls to workers, loader/runtime/answers.py reads what workers
send and answers the calls, loader/runtime/limits.py enforces every limit on a call and sees workers end. What it
keeps of each call and each worker is loader/runtime/records.py's.

A worker (loader/runtime/worker.py) is a child the zygote forked like a load child (same confinement, privileges,
memory cap, captured output and scratch directory) that was handed a `serve` job: it loads one function's code
once and then serves calls one at a time. Workers are keyed by what their instance depends on: the function's id,
its code, its admin valves and the loader settings it was loaded with (the client computes the key). A call goes
to an idle worker of its key; otherwise a new worker is started while there is room (`workers`, from the call),
evicting the least recently used idle worker of another key when there is none; otherwise it waits at most
`busy_wait` seconds for a worker to come free and then fails with "Busy". A call for a function whose code or
valves changed retires that function's other workers (at once when idle, else after their call).

Nothing here blocks: writes to a worker that cannot take them yet wait in its outbox.
"""

from __future__ import annotations

import contextlib
import os
import time
from collections import deque

from loader.protocol import encode_message, error
from loader.runtime.answers import Answers, compact_json
from loader.runtime.limits import Limits
from loader.runtime.records import Call, Worker


class Pool(Answers, Limits):
    """The pool of runtime workers: its state, the client's requests and assigning calls to workers."""

    def __init__(self, zygote):
        self.zygote = zygote
        self.workers: list[Worker] = []
        self.queue: deque[Call] = deque()
        self.calls: dict = {}  # id -> Call, for every call not yet answered
        self.limit = 4
        # Seconds an idle worker is kept (0: until it must make room), as each call says; workers start for calls.
        self.worker_idle = 0.0

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
        self.worker_idle = call.settings["worker_idle"]
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


def _message(data: dict) -> bytes:
    return encode_message(compact_json(data))
