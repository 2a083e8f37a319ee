"""Every limit on a runtime call, and how a worker ends: a part of `Pool` (loader/runtime/pool.py), whose
`__init__` sets up the state these methods share.

A worker left idle for `worker_idle` seconds ends too, so that warm workers do not hold their memory for good.
Limits, all enforced here by killing the worker's process group (the next call starts a fresh worker): the load
timeout while a worker loads, `run_timeout` per call, `idle_timeout` between a streaming call's frames, an output
flood (`FLOOD_FACTOR` times the output cap in one call, loader/runtime/answers.py), and the caller's cancel. A
worker that dies during a call (os._exit, a crash, the kernel's OOM killer) answers that call "Crashed" or "Exit".
"""

from __future__ import annotations

import contextlib
import re
import signal
import time
import traceback

from loader.protocol import error, keep_within, read_available
from loader.runtime.records import Call, Worker

# How often a worker's pending writes are retried when its pipe is full.
OUTBOX_RETRY = 0.005


class Limits:
    """Deadlines, failing and killing workers, and their ends (a part of `Pool`, loader/runtime/pool.py)."""

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
            if worker.state == "idle" and self.worker_idle and worker.last_used + self.worker_idle <= now:
                # Unused for `worker_idle` seconds: its memory goes back, and the next call loads anew.
                self._kill(worker)
            elif worker.state == "starting" and worker.load_deadline <= now:
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
            elif worker.state == "idle" and self.worker_idle:
                moments.append(worker.last_used + self.worker_idle)
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
