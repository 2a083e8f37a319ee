"""The warm parent's loop (the zygote): one single-threaded process that forks a child per job. Starting it
(preloading, privileges, templates, the ready report) is loader/startup.py's `main`.

`Zygote` is one state machine whose state is all set up in `Zygote.__init__`, here; its methods are split by job
into the parts it is made of: this module is the loop (reading requests, routing them, the poll timeout, forgetting
other jobs in a child just forked), loader/spares.py forks children and hands them jobs, loader/replies.py reads
what they send and answers the caller, loader/reaping.py kills, times out and reaps them and shuts it all down.

It speaks frames (loader/protocol.py) on its stdin/stdout with the caller (`loader.client`).
Requests carry an `id`; answers carry the same `id`, in whatever order the jobs finish. A poll loop watches the
request pipe, every child's result and output pipes, and a self-pipe woken by SIGCHLD, so a hanging job never
delays another one. Children are killed as a whole process group when they answer, time out or overrun a cap;
because the zygote is a child subreaper, grandchildren that escaped into their own session come back to it and are
killed too.

Nothing outlives the caller: end of file on the request pipe (the caller closed it or died), SIGTERM, or the
caller's death (a parent-death signal, in case another process holds the request pipe open) make the zygote kill
every child and exit within about a second. Each child has a parent-death signal too, so even a SIGKILLed zygote
takes its children with it.

Children's scratch directories are loader/scratch.py's; the load user and what children may reach,
loader/privileges.py's; what a child does with its job, loader/child.py's; runtime workers' calls,
loader/runtime/pool.py's.
"""

from __future__ import annotations

import contextlib
import ctypes
import gc
import json
import os
import select
import signal
import time
from collections import deque

from loader import child, namespaces, scratch
from loader.privileges import identity_of, needed_folders, plan_secrets
from loader.protocol import PREFIX, frame_sizes, read_available
from loader.reaping import Reaping
from loader.replies import Replies
from loader.runtime.pool import Pool
from loader.spares import SPARE_DELAY, Child, Forked, Spares

PR_SET_CHILD_SUBREAPER = 36


def run_until_forked(zygote: Zygote, loop=None) -> dict | None:
    """Run `loop` (the zygote's `serve`): None when the zygote is done; in a child it forked, the child's arguments
    for `child.run`, once this copy has forgotten every other job (`Zygote.forget_jobs`) and its frames are gone."""
    try:
        (loop or zygote.serve)()
    except Forked as forked:
        zygote.forget_jobs()
        return forked.arguments
    return None


def become_child(arguments: dict) -> None:
    """In a freshly forked child whose zygote frames are gone: free what is left of them, then serve one job."""
    gc.collect()  # what refers to itself is only freed by a collection; function code could list it (gc)
    child.run(**arguments)


class Zygote(Spares, Replies, Reaping):
    """The warm parent: its state, and the loop that drives it (its other jobs are the parts it is made of)."""

    def __init__(
        self,
        request_fd: int,
        answer_fd: int,
        devnull_fd: int,
        *,
        max_jobs: int,
        spares: int,
        ready: dict,
        spare_idle: float = 0.0,
        privileges: dict | None = None,
        confined: dict | None = None,
        template: namespaces.Template | None = None,
        worker_template: namespaces.Template | None = None,
        lifeline: int = -1,
    ):
        self.request_fd = request_fd
        self.answer_fd = answer_fd
        self.devnull_fd = devnull_fd
        self.max_jobs = max(1, max_jobs)
        self.spare_count = max(0, spares)
        # Spares end once no load came for this many seconds (0: never); `last_load` is when the last one came.
        self.spare_idle = max(0.0, spare_idle)
        self.last_load = time.monotonic()
        self.pid = os.getpid()
        self.children: dict[int, Child] = {}
        self.spares: deque[Child] = deque()
        # One child forked from the warm template ahead of the loads routed there (loader/spares.py `_wants_warm`).
        self.warm_spare: Child | None = None
        self.pipes: dict[int, tuple[Child, str]] = {}
        self.queue: deque[dict] = deque()
        self.inbox = bytearray()
        self.forks = 0
        self.last_spawn_error = ""
        self.stopping = False
        # The load user's identity when children drop root before running function code, else None.
        self.identity = identity_of(privileges) if privileges and privileges.get("drop") else None
        self.package_access: dict[tuple[str, int], str | None] = {}
        self.workdirs = scratch.make_workdir_parent(self.pid)
        # Whether children can have mount namespaces of their own, and so hide the folders a request names.
        self.confine = bool(confined and confined.get("mounts"))
        self.needed = needed_folders(self.workdirs) if self.confine else []
        # The system's secrets children hide while they wait as spares (what function code needs in them excepted).
        self.secrets = plan_secrets(self.needed) if self.confine else None
        # Children are forked by the template (loader/namespaces.py) when there is one; the write end of
        # `lifeline`, held here only, tells them whether we are still there.
        self.template = template
        # Runtime workers come from a second clean template that keeps the network (their pipes call model APIs).
        self.worker_template = worker_template
        # Warm imports go to a third, forked by the first when the first modules are wanted (loader/spares.py).
        self.warm_template: namespaces.Template | None = None
        self.lifeline = lifeline
        # Children wait nicer than jobs run when we are root (namespaces.SPARE_NICENESS): the niceness to hand back.
        self.niceness = os.getpriority(os.PRIO_PROCESS, 0) if os.geteuid() == 0 else None
        # Why function code must not run here at all (loader/environment.py), or None.
        self.refused = ready.get("refused")
        self.hidden_plans: dict[tuple, tuple[list[str], str]] = {}
        # Modules the caller's loads named, for the template to import while nothing waits (loader/warm_imports.py):
        # how many loads named each, those named by a second load and not yet asked for, and the template's memory
        # budget for them (0: none are).
        self.import_seen: dict[str, int] = {}
        self.import_wanted: dict[str, None] = {}
        self.import_asked: set[str] = set()
        self.import_budget = 0
        # Runtime workers: children serving one function's calls (op "call"/"cancel"), loader/runtime/pool.py.
        self.pool = Pool(self)
        self.poller = select.poll()
        self.prctl = load_prctl()
        if self.prctl is not None:
            self.prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0)

        self.wake_r, wake_w = os.pipe()
        os.set_blocking(self.wake_r, False)
        os.set_blocking(wake_w, False)
        signal.set_wakeup_fd(wake_w, warn_on_full_buffer=False)
        signal.signal(signal.SIGCHLD, lambda *_: None)
        # SIGTERM (sent by anyone, or as the parent-death signal) stops the loop, which then kills the children.
        signal.signal(signal.SIGTERM, self._stop)
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        signal.signal(signal.SIGPIPE, signal.SIG_IGN)

        os.set_blocking(request_fd, False)
        self.poller.register(request_fd, select.POLLIN)
        self.poller.register(self.wake_r, select.POLLIN)
        self._send({**ready, "kind": "ready", "pid": self.pid})

    # --- the loop --------------------------------------------------------------------------------------------

    def serve(self) -> None:
        while True:
            if self.stopping:
                return self.shutdown()
            for fd, _events in self.poller.poll(self._poll_timeout()):
                if fd == self.request_fd:
                    if not self._read_requests():
                        return self.shutdown()
                elif fd == self.wake_r:
                    with contextlib.suppress(OSError):
                        while os.read(self.wake_r, 4096):
                            pass
                elif fd in self.pipes:
                    self._read_pipe(fd)
                elif self.warm_template is not None and fd == self.warm_template.sock.fileno():
                    self._imported()
            if self.stopping:
                continue
            self._reap()
            self._expire()
            while self.queue and self._busy() < self.max_jobs:
                self._dispatch(self.queue.popleft())
            self._replenish()

    def _stop(self, *_signal) -> None:
        self.stopping = True

    def forget_jobs(self) -> None:
        """In a child just forked: drop this copy's knowledge of every other job before any function code runs.

        Requests, answers and output of the jobs in flight and queued, and the unread bytes from the caller, are
        dropped (the buffers that can be overwritten are zeroed first). Memory copied at fork is not otherwise
        wiped: the freed objects' bytes may linger until reused (see loader/CONTRACT.md).
        """
        signal.signal(signal.SIGTERM, signal.SIG_DFL)  # the handler is a bound method: it would keep us alive
        for item in self.children.values():
            item.request = None
            for buffer in (item.result, item.output):
                buffer[:] = bytes(len(buffer))
                del buffer[:]
        self.inbox[:] = bytes(len(self.inbox))
        self.inbox = bytearray()
        self.children.clear()
        self.spares.clear()
        self.warm_spare = None
        self.pipes.clear()
        self.queue.clear()
        self.package_access.clear()
        self.import_wanted.clear()
        self.import_seen.clear()
        self.pool.forget()

    def _poll_timeout(self) -> int:
        now = time.monotonic()
        waiting = self._waiting()
        moments = [item.deadline for item in waiting] + self.pool.deadlines()
        moments += [item.ending for item in self.children.values() if item.ending]
        if len(self.spares) < self.spare_count and waiting:
            moments.append(max(item.started for item in waiting) + SPARE_DELAY)
        if not waiting and any(not item.warmed for item in self._all_spares()):
            moments.append(now)
        if self._all_spares() and self.spare_idle:
            moments.append(self.last_load + self.spare_idle)
        if self._may_warm_imports():
            moments.append(now)
        if not moments:
            return -1
        return max(0, int((min(moments) - now) * 1000) + 1)

    def _read_requests(self) -> bool:
        data = read_available(self.request_fd)
        if data is None:
            return True
        if not data:
            return False  # the caller went away
        self.inbox += data
        while len(self.inbox) >= PREFIX:
            head, body = frame_sizes(self.inbox)
            if len(self.inbox) < PREFIX + head + body:
                break
            raw = bytes(self.inbox[PREFIX : PREFIX + head])
            del self.inbox[: PREFIX + head + body]
            try:
                request = json.loads(raw)
            except ValueError:
                continue
            self._accept(request)
        return True

    def _accept(self, request: dict) -> None:
        try:
            self._route(request)
        except Exception as exc:  # a malformed request fails alone; the zygote keeps serving the others
            self._fail_request(
                request, "LoaderUnavailable", f"the loader could not run this request: {exc!r}"
            )

    def _route(self, request: dict) -> None:
        if not isinstance(request, dict):
            raise TypeError("a request must be a JSON object")
        for key in ("timeout", "memory_mb", "output_cap", "output_limit", "result_cap"):
            if request.get(key) is not None:
                request[key] = float(request[key]) if key == "timeout" else int(request[key])
        if self.refused and request.get("op") != "ping":
            self._fail_request(request, "LoaderUnavailable", self.refused)
        elif request.get("op") == "ping":
            warm = self.warm_template
            self._send(
                {
                    "kind": "answer",
                    "id": request.get("id"),
                    "pid": self.pid,
                    "forks": self.forks,
                    "running": self._busy(),
                    "spares": len(self.spares),
                    "warm_spare_pid": self.warm_spare.pid if self.warm_spare is not None else None,
                    "workers": self.pool.summary(),
                    "warm_imports": list(warm.warm) if warm is not None else [],
                    "importing": bool(warm is not None and warm.importing),
                    "warm_refused": dict(warm.refused) if warm is not None else {},
                    "warm_template_pid": warm.pid if warm is not None else None,
                    "times": list(os.times())[:4],
                }
            )
        elif request.get("op") == "imports":  # no answer: names for the template (loader/warm_imports.py)
            self._want_imports(request.get("names"), request.get("budget"))
        elif request.get("op") == "retire":
            retired = self.pool.retire(request.get("function_ids"))
            self._send({"kind": "answer", "id": request.get("id"), "retired": retired})
        elif request.get("op") in ("call", "cancel"):
            self.pool.handle(request)
        elif self._busy() < self.max_jobs:
            self._dispatch(request)
        else:
            self.queue.append(request)


def load_prctl():
    """libc's `prctl`, ready to call, or None where it cannot be found."""
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        prctl = libc.prctl
        prctl.argtypes = [ctypes.c_int, ctypes.c_ulong, ctypes.c_ulong, ctypes.c_ulong, ctypes.c_ulong]
        prctl.restype = ctypes.c_int
        return prctl
    except (OSError, AttributeError):
        return None
