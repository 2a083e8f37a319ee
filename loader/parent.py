"""The warm parent's loop (the zygote): one single-threaded process that forks a child per job. Over 450 lines
because its poll loop (`Zygote`) and the children it keeps (`Child`) are one state machine whose methods share
its state; starting it (preloading, privileges, templates, the ready report) is loader/startup.py's `main`.

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
import fcntl
import gc
import json
import os
import select
import signal
import time
from collections import deque

from loader import child, homes, namespaces, scratch
from loader.errors import exit_status_error
from loader.privileges import (
    identity_of,
    needed_folders,
    package_paths,
    plan_hidden_paths,
    plan_secrets,
    probe,
)
from loader.protocol import (
    MESSAGE_PREFIX,
    PREFIX,
    READ_CHUNK,
    complete_message,
    encode_frame,
    encode_message,
    error,
    frame_sizes,
    keep_within,
    message_size,
    read_available,
)
from loader.runtime.pool import Pool

PR_SET_CHILD_SUBREAPER = 36
F_SETPIPE_SZ = 1031
DEFAULT_OUTPUT_CAP = 64 * 1024
DEFAULT_RESULT_CAP = 2 * 1024 * 1024
# A spare is not forked while a job younger than this runs: the fork would stall the loop just as it answers.
SPARE_DELAY = 0.02
# At most this many packages directories' access checks are remembered.
ACCESS_CACHE = 64
# Shutting down waits this long for the children to be reaped; a process that outlives it is left SIGKILLed.
SHUTDOWN_WAIT = 1.0
# The last resort when shutting down somehow stalls: SIGALRM (default action: terminate) after this many seconds.
SHUTDOWN_ALARM = 10


class Child:
    """A forked child: a spare waiting for its job, or a job in progress (then `request` is set)."""

    __slots__ = (
        "id",
        "request",
        "pid",
        "job_fd",
        "result_fd",
        "output_fd",
        "workdir",
        "deadline",
        "result",
        "output",
        "dropped",
        "printed",
        "answered",
        "started",
        "warmed",
        "notice",
        "worker",
    )

    def __init__(self):
        self.id = None
        self.request: dict | None = None
        self.pid = 0
        self.job_fd = self.result_fd = self.output_fd = -1
        self.workdir = ""
        self.deadline = 0.0
        self.result = bytearray()
        self.output = bytearray()
        self.dropped = 0
        self.printed = 0  # bytes of output in all, kept or dropped
        self.answered = False
        self.started = 0.0
        self.warmed = False
        self.notice: list[str] = []
        self.worker = (
            None  # a runtime worker's bookkeeping (loader/runtime/pool.py); its `request` stays None
        )


class Forked(BaseException):
    """Raised in a child just forked by the loop, and caught where the loop was entered (`run_until_forked`).

    The child is a copy of the zygote, and the frames the fork happened in (and their callers') hold the zygote,
    other jobs' requests (code, valves values, users) and the bytes last read from the caller, which may include
    the next requests. Unwinding to the base of the loop drops those frames before any function code could walk
    up to them (`sys._getframe().f_back`). A BaseException, so that no `except Exception` on the way stops it.
    """

    def __init__(self, arguments: dict):
        super().__init__()
        self.arguments = arguments


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


class Zygote:
    def __init__(
        self,
        request_fd: int,
        answer_fd: int,
        devnull_fd: int,
        *,
        max_jobs: int,
        spares: int,
        ready: dict,
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
        self.pid = os.getpid()
        self.children: dict[int, Child] = {}
        self.spares: deque[Child] = deque()
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
        self.lifeline = lifeline
        # Children wait nicer than jobs run when we are root (namespaces.SPARE_NICENESS): the niceness to hand back.
        self.niceness = os.getpriority(os.PRIO_PROCESS, 0) if os.geteuid() == 0 else None
        # Why function code must not run here at all (loader/environment.py), or None.
        self.refused = ready.get("refused")
        self.hidden_plans: dict[tuple, tuple[list[str], str]] = {}
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
        self.pipes.clear()
        self.queue.clear()
        self.package_access.clear()
        self.pool.forget()

    def _busy(self) -> int:
        return sum(1 for item in self.children.values() if item.request is not None)

    def _waiting(self) -> list[Child]:
        return [item for item in self.children.values() if item.request is not None and not item.answered]

    def _poll_timeout(self) -> int:
        now = time.monotonic()
        waiting = self._waiting()
        moments = [item.deadline for item in waiting] + self.pool.deadlines()
        if len(self.spares) < self.spare_count and waiting:
            moments.append(max(item.started for item in waiting) + SPARE_DELAY)
        if not waiting and any(not item.warmed for item in self.spares):
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
            self._send(
                {
                    "kind": "answer",
                    "id": request.get("id"),
                    "pid": self.pid,
                    "forks": self.forks,
                    "running": self._busy(),
                    "spares": len(self.spares),
                    "workers": self.pool.summary(),
                    "times": list(os.times())[:4],
                }
            )
        elif request.get("op") == "retire":
            retired = self.pool.retire(request.get("function_ids"))
            self._send({"kind": "answer", "id": request.get("id"), "retired": retired})
        elif request.get("op") in ("call", "cancel"):
            self.pool.handle(request)
        elif self._busy() < self.max_jobs:
            self._dispatch(request)
        else:
            self.queue.append(request)

    # --- children --------------------------------------------------------------------------------------------

    def _spawn(self, *, network: bool = False) -> Child | None:
        """Fork a child that waits for its job on a pipe; None (and the reason logged) if that is impossible.
        `network`: a runtime worker's child, forked by the template that keeps the network (or by this process where
        there is none, never by the load children's template, whose network namespace has no interface)."""
        try:
            threads = len(os.listdir("/proc/self/task"))
        except OSError:
            threads = 1
        if (
            threads > 1
        ):  # forking a multi-threaded process could copy a lock held by a thread that is not there
            self.last_spawn_error = "the loader process is multi-threaded and cannot fork safely"
            return None
        item = Child()
        fds: list[int] = []
        try:
            item.workdir = self._new_workdir()
            for _ in range(3):
                fds.extend(os.pipe())
            job_r, job_w, result_r, result_w, output_r, output_w = fds
            for fd in (job_w, result_w):
                with contextlib.suppress(OSError):
                    fcntl.fcntl(fd, F_SETPIPE_SZ, READ_CHUNK)
            arguments = {
                "devnull_fd": self.devnull_fd,
                "workdir": item.workdir,
                "confine": self.confine,
                "secrets": self.secrets,
            }
            template = self.worker_template if network else self.template
            if template is not None:
                pid = template.spawn(arguments, [job_r, result_w, output_w])
            else:
                pid = os.fork()
        except OSError as exc:
            for fd in fds:
                os.close(fd)
            scratch.remove_tree(item.workdir)
            self.last_spawn_error = f"could not start a child: {exc}"
            return None
        if pid == 0:  # pragma: no cover - runs in the child: leave every frame of the loop (see Forked)
            raise Forked(
                {
                    **arguments,
                    "job_fd": job_r,
                    "result_fd": result_w,
                    "output_fd": output_w,
                    "zygote_pid": self.pid,
                    "prctl": self.prctl,
                }
            )
        self.forks += 1
        for fd in (job_r, result_w, output_w):
            os.close(fd)
        item.pid, item.job_fd, item.result_fd, item.output_fd = pid, job_w, result_r, output_r
        self.children[pid] = item
        for fd, which in ((result_r, "result"), (output_r, "output")):
            os.set_blocking(fd, False)
            self.pipes[fd] = (item, which)
            self.poller.register(fd, select.POLLIN)
        return item

    def _new_workdir(self) -> str:
        """A fresh scratch directory in this zygote's own folder (made again if something removed it)."""
        try:
            return scratch.make_workdir(self.workdirs)
        except FileNotFoundError:
            self.workdirs = scratch.make_workdir_parent(self.pid)
            return scratch.make_workdir(self.workdirs)

    def _dispatch(self, request: dict) -> None:
        while self.spares:
            if self._hand(self.spares.popleft(), request):
                return
        item = self._spawn()
        if item is None:
            self._fail_request(request, "LoaderUnavailable", self.last_spawn_error)
        elif not self._hand(item, request):
            self._fail_request(request, "LoaderUnavailable", "a child died before it was given its job")

    def _hand(self, item: Child, request: dict) -> bool:
        """Give `request` to a waiting child; False if the child is gone."""
        item.request, item.id = request, request.get("id")
        item.started = time.monotonic()
        item.deadline = item.started + float(request.get("timeout") or 10)
        item.notice = self.confine_request(request)
        if self.niceness is not None:
            namespaces.hurry(item.pid, self.niceness)
        try:
            self._message(item, request)
        except OSError:
            item.request = None
            item.answered = True
            self._kill(item)
            return False
        finally:
            os.close(item.job_fd)
            item.job_fd = -1
        return True

    def confine_request(self, request: dict) -> list[str]:
        """Add to a job the identity its child takes and the folders it hides; the notices to pass on."""
        notices = []
        if self.identity is not None:
            request["privileges"], notice = self._identity_for(request)
            notices.append(notice)
        request["hidden_paths"], notice = self._hidden_for(request)
        notices.append(notice)
        # Here, not in the child: the child's mounts are all read-only but the temporary folders (loader/homes.py).
        homes.make(request)
        return [notice for notice in notices if notice]

    def worker_child(self) -> Child | None:
        """A child to become a runtime worker (loader/runtime/pool.py): a spare, else a new one; None if none can
        be forked. Workers run pipes that call model APIs: whatever forks them must leave them the network."""
        return self._spawn(network=True)

    def _identity_for(self, request: dict) -> tuple[dict | None, str]:
        """The identity this job's child takes, or None (stays root) with the reason when the load user cannot read
        the packages directory the job uses. Checked once per version (modification time) of that directory."""
        packages_dir = request.get("packages_dir")
        if not isinstance(packages_dir, str) or not packages_dir:
            return self.identity, ""
        try:
            version = os.stat(packages_dir).st_mtime_ns
        except OSError:  # not there: the child does not use it
            return self.identity, ""
        key = (packages_dir, version)
        if key not in self.package_access:
            if len(self.package_access) >= ACCESS_CACHE:
                self.package_access.clear()
            self.package_access[key] = probe(self.identity, package_paths(packages_dir))
        problem = self.package_access[key]
        if problem:
            return None, f"function code is loaded as root: {problem}"
        return self.identity, ""

    def _hidden_for(self, request: dict) -> tuple[list[str], str]:
        """The folders this job's child hides (see plan_hidden_paths), worked out once per list."""
        paths = request.get("hidden_paths")
        if not self.confine or not isinstance(paths, list) or not paths:
            return [], ""
        key = tuple(path for path in paths if isinstance(path, str))
        if key not in self.hidden_plans:
            if len(self.hidden_plans) >= ACCESS_CACHE:
                self.hidden_plans.clear()
            self.hidden_plans[key] = plan_hidden_paths(key, self.needed)
        return self.hidden_plans[key]

    def _message(self, item: Child, message: dict) -> None:
        payload = json.dumps(message, ensure_ascii=True, separators=(",", ":")).encode()
        view = memoryview(encode_message(payload))
        while view:
            view = view[os.write(item.job_fd, view) :]

    def _replenish(self) -> None:
        """Keep spares forked, and warm them up once the zygote is idle.

        Forking and warming cost CPU, so neither happens while a young job may be about to answer, and warming
        (which roughly doubles a load's CPU time) waits until no job is in flight: under many loads at once the
        spares only save the fork. It does not wait for a pause in the requests: saves that come one after the
        other (an admin, a sync, a script) each find a spare warmed in the gap since the last answer, and a warm
        spare halves the time the code takes to load (its pages were copied before the caller waited).
        """
        now = time.monotonic()
        waiting = self._waiting()
        if any(now - item.started < SPARE_DELAY for item in waiting):
            return
        # The spares there are are warmed before another is forked (we wait for the fork): the next job takes the
        # oldest spare, and saves that come one after the other give it only the gap between them to warm up in.
        if not waiting:
            self._warm_spares()
        if len(self.spares) < self.spare_count:
            item = self._spawn()
            if item is not None:
                self.spares.append(item)

    def _warm_spares(self) -> None:
        for item in self.spares:
            if not item.warmed:
                item.warmed = True
                try:
                    self._message(item, {"op": "warm"})
                except OSError:
                    self._kill(item)

    def _read_pipe(self, fd: int, rounds: int = 1) -> None:
        item, which = self.pipes[fd]
        if item.worker is not None:
            return self.pool.read(item, fd, which, rounds)
        for _ in range(rounds):
            data = read_available(fd)
            if data is None:
                return
            if not data:
                self._close_pipe(fd)
                return
            if which == "output":
                cap = int((item.request or {}).get("output_cap") or DEFAULT_OUTPUT_CAP)
                item.dropped += keep_within(item.output, data, cap)
                item.printed += len(data)
                limit = (item.request or {}).get("output_limit")
                if limit and item.printed > limit and not item.answered:
                    self._fail(
                        item,
                        "OutputLimit",
                        f"the code printed more than {limit / (1024 * 1024):g} MB of output while loading, the most "
                        "a load may print (SLUICE_LOAD_OUTPUT_MB); Sluice stopped it",
                    )
                    self._kill(item)
                    return
                continue
            if item.answered or item.request is None:
                continue  # already answered (or refused), or a spare writing before its job: discarded
            item.result += data
            cap = int(item.request.get("result_cap") or DEFAULT_RESULT_CAP) + 65536
            if (message_size(item.result) or 0) > cap or len(item.result) > cap + MESSAGE_PREFIX:
                self._fail(item, "ResultTooLarge", "the answer is too large: is the valves schema huge?")
                self._kill(item)
            elif complete_message(item.result) is not None:
                self._answer_from_child(item)
                self._kill(item)
                return

    def _answer_from_child(self, item: Child) -> None:
        if item.output_fd >= 0:
            self._read_pipe(item.output_fd, rounds=8)
        self._reply(item, None, complete_message(item.result))

    def _fail(self, item: Child, kind: str, message: str) -> None:
        self._reply(item, error(kind, message))

    def _fail_request(self, request, kind: str, message: str) -> None:
        request_id = request.get("id") if isinstance(request, dict) else None
        self._send(
            {"kind": "answer", "id": request_id, "error": error(kind, message), "output": "", "dropped": 0}
        )

    def _reply(self, item: Child, error: dict | None, body: bytes = b"") -> None:
        if item.answered:
            return
        item.answered = True
        header = {
            "kind": "answer",
            "id": item.id,
            "error": error,
            "output": item.output.decode("utf-8", "replace"),
            "dropped": item.dropped,
            "elapsed": round(time.monotonic() - item.started, 6),
        }
        if item.notice:
            header["notices"] = item.notice
        self._send(header, body)

    def kill(self, item: Child) -> None:
        self._kill(item)

    def _kill(self, item: Child) -> None:
        """SIGKILL the child's process group and the child itself.

        The group takes the child's descendants with it. The pid covers a child forked so recently that it has not
        yet made itself a group leader (`setsid` in child.run): there is no such group yet, and killpg fails, but
        such a child has not run anything nor forked either.
        """
        with contextlib.suppress(OSError):
            os.killpg(item.pid, signal.SIGKILL)
        with contextlib.suppress(OSError):
            os.kill(item.pid, signal.SIGKILL)

    def _expire(self) -> None:
        now = time.monotonic()
        for item in self._waiting():
            if item.deadline <= now:
                timeout = float(item.request.get("timeout") or 10)
                self._fail(item, "Timeout", f"loading took longer than {timeout:g} s")
                self._kill(item)
        self.pool.expire(now)

    def _reap(self) -> None:
        reaped = False
        while True:
            try:
                info = os.waitid(os.P_ALL, 0, os.WEXITED | os.WNOHANG | os.WNOWAIT)
            except ChildProcessError:
                break
            if info is None or info.si_pid == 0:
                break
            pid = info.si_pid
            if pid in self._template_pids():
                # Children come only from the templates, which cannot be made again from here (this process has
                # held jobs): stop, and the client starts a new loader at its next load.
                self.template = self.worker_template = None
                self.stopping = True
            item = self.children.get(pid)
            if item is not None:  # kill what is left of its group while the leader's pid still pins the group
                self._kill(item)
            try:
                _, status = os.waitpid(pid, 0)
            except ChildProcessError:
                status = 0
            reaped = True
            if item is not None:
                self._finish(item, os.waitstatus_to_exitcode(status))
        if reaped:
            self._sweep()

    def _finish(self, item: Child, returncode: int) -> None:
        if item.worker is not None:
            self.pool.finished(item, returncode)
        if item.request is not None and not item.answered:
            for fd in (item.result_fd, item.output_fd):
                if fd in self.pipes:
                    self._read_pipe(fd, rounds=8)
        if item.request is not None and not item.answered:
            if complete_message(item.result) is not None:
                self._answer_from_child(item)
            else:
                self._reply(item, exit_status_error(returncode))
        for fd in (item.result_fd, item.output_fd):
            if fd in self.pipes:
                self._close_pipe(fd)
        if item.job_fd >= 0:
            os.close(item.job_fd)
            item.job_fd = -1
        with contextlib.suppress(ValueError):
            self.spares.remove(item)
        del self.children[item.pid]
        scratch.remove_tree(item.workdir)

    def close_pipe(self, fd: int) -> None:
        self._close_pipe(fd)

    def _close_pipe(self, fd: int) -> None:
        item, which = self.pipes.pop(fd)
        with contextlib.suppress(KeyError, ValueError):
            self.poller.unregister(fd)
        os.close(fd)
        if which == "result":
            item.result_fd = -1
        else:
            item.output_fd = -1

    def _template_pids(self) -> set[int]:
        return {template.pid for template in (self.template, self.worker_template) if template is not None}

    def _sweep(self) -> None:
        """Kill processes that are our children but not ones we forked: grandchildren orphaned to the subreaper."""
        for pid in _children(self.pid):
            if pid not in self.children and pid not in self._template_pids():
                with contextlib.suppress(OSError):
                    os.kill(pid, signal.SIGKILL)

    def send(self, header: dict, body: bytes = b"") -> None:
        self._send(header, body)

    def _send(self, header: dict, body: bytes = b"") -> None:
        view = memoryview(encode_frame(header, body))
        while view:
            try:
                written = os.write(self.answer_fd, view)
            except InterruptedError:
                continue
            except OSError:
                self.shutdown()
                os._exit(0)
            view = view[written:]

    def shutdown(self) -> None:
        """Kill every child and reap them, waiting at most SHUTDOWN_WAIT: this must never block for good."""
        self.stopping = True
        signal.alarm(SHUTDOWN_ALARM)
        items = list(self.children.values())
        for item in items:
            if item.job_fd >= 0:  # a spare still waiting for its job reads end of file and leaves by itself
                with contextlib.suppress(OSError):
                    os.close(item.job_fd)
                item.job_fd = -1
            self._kill(item)
        waiting = {item.pid for item in items}
        deadline = time.monotonic() + SHUTDOWN_WAIT
        while waiting:
            for pid in list(waiting):
                try:
                    done, _ = os.waitpid(pid, os.WNOHANG)
                except ChildProcessError:
                    done = pid
                if done:
                    waiting.discard(pid)
            if not waiting or time.monotonic() > deadline:
                break
            time.sleep(0.005)
        for item in items:
            if item.pid in waiting:  # not reaped in time: SIGKILLed again, left to init
                self._kill(item)
            scratch.remove_tree(item.workdir)
        self.children.clear()
        self.spares.clear()
        for template in (self.template, self.worker_template):
            if template is not None:
                template.stop()
        self._sweep()
        scratch.remove_tree(self.workdirs)


def _children(pid: int) -> list[int]:
    try:
        with open(f"/proc/{pid}/task/{pid}/children") as listing:
            return [int(item) for item in listing.read().split()]
    except OSError:
        pass
    found = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/stat") as stat_file:
                    fields = stat_file.read().rsplit(")", 1)[1].split()
            except (OSError, IndexError):
                continue
            if int(fields[1]) == pid:
                found.append(int(entry))
    return found


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
