"""The warm zygote: one single-threaded process that imports the heavy packages once and forks a child per job.

It speaks length-prefixed JSON frames on its stdin/stdout with the caller (`loader.runner`). Each frame is an
8-byte prefix (header length, body length, both 4-byte big-endian) followed by a JSON header and a raw body.
Requests carry an `id`; answers carry the same `id`, in whatever order the jobs finish. A poll loop watches the
request pipe, every child's result and output pipes, and a self-pipe woken by SIGCHLD, so a hanging job never
delays another one. Children are killed as a whole process group when they answer, time out or overrun a cap;
because the zygote is a child subreaper, grandchildren that escaped into their own session come back to it and are
killed too.

Nothing outlives the caller: end of file on the request pipe (the caller closed it or died), SIGTERM, or the
caller's death (a parent-death signal, in case another process holds the request pipe open) make the zygote kill
every child and exit within about a second. Each child has a parent-death signal too, so even a SIGKILLed zygote
takes its children with it.
"""

from __future__ import annotations

import contextlib
import ctypes
import errno
import fcntl
import gc
import importlib
import json
import os
import pwd
import select
import signal
import stat
import sys
import tempfile
import time
from collections import deque

from loader import child, confinement
from loader.errors import exit_status_error

PREFIX = 8
# Each zygote keeps its children's scratch directories (`sluice-load-*`) in one folder of its own in the temporary
# directory, `sluice-zygote-<pid>-*`: owned by the zygote's user and not writable by anyone else (0711), so the load
# user can reach its own scratch directory by name but cannot rename it or put anything beside it.
WORKDIR_PREFIX = "sluice-load-"
PARENT_PREFIX = "sluice-zygote-"
PARENT_MODE = 0o711
PR_SET_PDEATHSIG = 1
PR_SET_CHILD_SUBREAPER = 36
F_SETPIPE_SZ = 1031
READ_CHUNK = 1 << 20
DEFAULT_OUTPUT_CAP = 64 * 1024
DEFAULT_RESULT_CAP = 2 * 1024 * 1024
# A spare is not forked while a job younger than this runs: the fork would stall the loop just as it answers.
SPARE_DELAY = 0.02
# Spares are warmed up only after this long without a request.
QUIET = 0.05
# The user load children run as when the zygote runs as root (SLUICE_LOAD_USER), and its ids when it has no entry.
DEFAULT_LOAD_USER = "nobody"
NOBODY = 65534
# At most this many packages directories' access checks are remembered.
ACCESS_CACHE = 64
# Shutting down waits this long for the children to be reaped; a process that outlives it is left SIGKILLed.
SHUTDOWN_WAIT = 1.0
# The last resort when shutting down somehow stalls: SIGALRM (default action: terminate) after this many seconds.
SHUTDOWN_ALARM = 10

# Imported once here so that children start with them in memory: pydantic, the packages community functions import
# most at module level (REAL-FUNCTIONS.md), and the Open WebUI compatibility layer. Heavier, rarer ones (openai,
# sqlalchemy and `open_webui.internal.db` with it) are left to the few functions that import them: every module
# preloaded here makes each fork and each child's exit slower for all functions.
PRELOAD = (
    "pydantic",
    "pydantic_core",
    "typing_extensions",
    "fastapi",
    "starlette",
    "requests",
    "aiohttp",
    "httpx",
    "cryptography",
    "cryptography.fernet",
    "loguru",
    "aiofiles",
    "open_webui",
    "open_webui.env",
    "open_webui.constants",
    "open_webui.config",
    "open_webui.main",
    "open_webui.models.users",
    "open_webui.models.files",
    "open_webui.models.chats",
    "open_webui.models.models",
    "open_webui.models.functions",
    "open_webui.utils.misc",
    "open_webui.utils.chat",
    "open_webui.storage.provider",
)


def encode_frame(header: dict, body: bytes = b"") -> bytes:
    head = json.dumps(header, ensure_ascii=True, separators=(",", ":"), default=str).encode()
    return len(head).to_bytes(4, "big") + len(body).to_bytes(4, "big") + head + body


def preload(names=PRELOAD) -> tuple[list[str], list[str]]:
    """Import what children will most likely need; a name that cannot be imported is skipped."""
    loaded, missing = [], []
    for name in names:
        try:
            importlib.import_module(name)
            loaded.append(name)
        except Exception:  # a missing optional package only costs children time
            missing.append(name)
    _warm_up()
    return loaded, missing


def _warm_up() -> None:
    """Load a throwaway function once, so that every lazy import on a load's path happens before any fork."""
    with tempfile.TemporaryDirectory(prefix="sluice-warm-") as workdir:
        child.warm_up(workdir)


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
        "answered",
        "started",
        "warmed",
        "notice",
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
        self.answered = False
        self.started = 0.0
        self.warmed = False
        self.notice: list[str] = []


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
        self.last_request = 0.0
        self.last_spawn_error = ""
        self.stopping = False
        # The load user's identity when children drop root before running function code, else None.
        self.identity = _identity(privileges) if privileges and privileges.get("drop") else None
        self.package_access: dict[tuple[str, int], str | None] = {}
        self.workdirs = make_workdir_parent(self.pid)
        # Whether children can have mount namespaces of their own, and so hide the folders a request names.
        self.confine = bool(confined and confined.get("mounts"))
        self.needed = _needed_folders(self.workdirs) if self.confine else []
        self.hidden_plans: dict[tuple, tuple[list[str], str]] = {}
        self.poller = select.poll()
        self.prctl = _prctl()
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

    def _busy(self) -> int:
        return sum(1 for item in self.children.values() if item.request is not None)

    def _waiting(self) -> list[Child]:
        return [item for item in self.children.values() if item.request is not None and not item.answered]

    def _poll_timeout(self) -> int:
        now = time.monotonic()
        waiting = self._waiting()
        moments = [item.deadline for item in waiting]
        if len(self.spares) < self.spare_count and waiting:
            moments.append(max(item.started for item in waiting) + SPARE_DELAY)
        if not waiting and any(not item.warmed for item in self.spares):
            moments.append(self.last_request + QUIET)
        if not moments:
            return -1
        return max(0, int((min(moments) - now) * 1000) + 1)

    def _read_requests(self) -> bool:
        try:
            data = os.read(self.request_fd, READ_CHUNK)
        except BlockingIOError:
            return True
        except OSError:
            return False
        if not data:
            return False  # the caller went away
        self.inbox += data
        while len(self.inbox) >= PREFIX:
            head = int.from_bytes(self.inbox[:4], "big")
            body = int.from_bytes(self.inbox[4:8], "big")
            if len(self.inbox) < PREFIX + head + body:
                break
            raw = bytes(self.inbox[PREFIX : PREFIX + head])
            del self.inbox[: PREFIX + head + body]
            try:
                request = json.loads(raw)
            except ValueError:
                continue
            self.last_request = time.monotonic()
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
        for key in ("timeout", "memory_mb", "output_cap", "result_cap"):
            if request.get(key) is not None:
                request[key] = float(request[key]) if key == "timeout" else int(request[key])
        if request.get("op") == "ping":
            self._send(
                {
                    "kind": "answer",
                    "id": request.get("id"),
                    "pid": self.pid,
                    "forks": self.forks,
                    "running": self._busy(),
                    "spares": len(self.spares),
                    "times": list(os.times())[:4],
                }
            )
        elif self._busy() < self.max_jobs:
            self._dispatch(request)
        else:
            self.queue.append(request)

    # --- children --------------------------------------------------------------------------------------------

    def _spawn(self) -> Child | None:
        """Fork a child that waits for its job on a pipe; None (and the reason logged) if that is impossible."""
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
            pid = os.fork()
        except OSError as exc:
            for fd in fds:
                os.close(fd)
            _remove_tree(item.workdir)
            self.last_spawn_error = f"could not start a child: {exc}"
            return None
        if pid == 0:  # pragma: no cover - runs in the child: leave every frame of the loop (see Forked)
            raise Forked(
                {
                    "job_fd": job_r,
                    "result_fd": result_w,
                    "output_fd": output_w,
                    "devnull_fd": self.devnull_fd,
                    "workdir": item.workdir,
                    "zygote_pid": self.pid,
                    "prctl": self.prctl,
                    "confine": self.confine,
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
            return tempfile.mkdtemp(prefix=WORKDIR_PREFIX, dir=self.workdirs)
        except FileNotFoundError:
            self.workdirs = make_workdir_parent(self.pid)
            return tempfile.mkdtemp(prefix=WORKDIR_PREFIX, dir=self.workdirs)

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
        notices = []
        if self.identity is not None:
            request["privileges"], notice = self._identity_for(request)
            notices.append(notice)
        request["hidden_paths"], notice = self._hidden_for(request)
        notices.append(notice)
        item.notice = [notice for notice in notices if notice]
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
            self.package_access[key] = probe(self.identity, _package_paths(packages_dir))
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
        view = memoryview(len(payload).to_bytes(4, "big") + payload)
        while view:
            view = view[os.write(item.job_fd, view) :]

    def _replenish(self) -> None:
        """Keep spares forked, and warm them up once the zygote is idle.

        Forking and warming cost CPU, so neither happens while a young job may be about to answer, and warming
        (which roughly doubles a load's CPU time) waits until no request came for a moment: under a steady stream
        of loads the spares only save the fork, when idle they also save most page copies.
        """
        now = time.monotonic()
        waiting = self._waiting()
        if any(now - item.started < SPARE_DELAY for item in waiting):
            return
        if len(self.spares) < self.spare_count:
            item = self._spawn()
            if item is not None:
                self.spares.append(item)
            return
        if waiting or now - self.last_request < QUIET:
            return
        for item in self.spares:
            if not item.warmed:
                item.warmed = True
                try:
                    self._message(item, {"op": "warm"})
                except OSError:
                    self._kill(item)

    def _read_pipe(self, fd: int, rounds: int = 1) -> None:
        item, which = self.pipes[fd]
        for _ in range(rounds):
            try:
                data = os.read(fd, READ_CHUNK)
            except BlockingIOError:
                return
            except OSError:
                data = b""
            if not data:
                self._close_pipe(fd)
                return
            if which == "output":
                cap = int((item.request or {}).get("output_cap") or DEFAULT_OUTPUT_CAP)
                room = max(0, cap - len(item.output))
                item.output += data[:room]
                item.dropped += len(data) - min(room, len(data))
                continue
            if item.answered or item.request is None:
                continue  # already answered (or refused), or a spare writing before its job: discarded
            item.result += data
            cap = int(item.request.get("result_cap") or DEFAULT_RESULT_CAP) + 65536
            size = int.from_bytes(item.result[:4], "big") if len(item.result) >= 4 else 0
            if size > cap or len(item.result) > cap + 4:
                self._fail(item, "ResultTooLarge", "the answer is too large: is the valves schema huge?")
                self._kill(item)
            elif len(item.result) >= 4 and len(item.result) >= 4 + size:
                self._answer_from_child(item)
                self._kill(item)
                return

    def _answer_from_child(self, item: Child) -> None:
        if item.output_fd >= 0:
            self._read_pipe(item.output_fd, rounds=8)
        size = int.from_bytes(item.result[:4], "big")
        self._reply(item, None, bytes(item.result[4 : 4 + size]))

    def _fail(self, item: Child, kind: str, message: str) -> None:
        self._reply(item, {"type": kind, "message": message, "line": None, "column": None})

    def _fail_request(self, request, kind: str, message: str) -> None:
        error = {"type": kind, "message": message, "line": None, "column": None}
        request_id = request.get("id") if isinstance(request, dict) else None
        self._send({"kind": "answer", "id": request_id, "error": error, "output": "", "dropped": 0})

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
        if item.request is not None and not item.answered:
            for fd in (item.result_fd, item.output_fd):
                if fd in self.pipes:
                    self._read_pipe(fd, rounds=8)
        if item.request is not None and not item.answered:
            size = int.from_bytes(item.result[:4], "big") if len(item.result) >= 4 else -1
            if size >= 0 and len(item.result) >= 4 + size:
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
        _remove_tree(item.workdir)

    def _close_pipe(self, fd: int) -> None:
        item, which = self.pipes.pop(fd)
        with contextlib.suppress(KeyError, ValueError):
            self.poller.unregister(fd)
        os.close(fd)
        if which == "result":
            item.result_fd = -1
        else:
            item.output_fd = -1

    def _sweep(self) -> None:
        """Kill processes that are our children but not ones we forked: grandchildren orphaned to the subreaper."""
        for pid in _children(self.pid):
            if pid not in self.children:
                with contextlib.suppress(OSError):
                    os.kill(pid, signal.SIGKILL)

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
            _remove_tree(item.workdir)
        self.children.clear()
        self.spares.clear()
        self._sweep()
        _remove_tree(self.workdirs)


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


def _prctl():
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        prctl = libc.prctl
        prctl.argtypes = [ctypes.c_int, ctypes.c_ulong, ctypes.c_ulong, ctypes.c_ulong, ctypes.c_ulong]
        prctl.restype = ctypes.c_int
        return prctl
    except (OSError, AttributeError):
        return None


def make_workdir_parent(pid: int) -> str:
    """This zygote's folder for its children's scratch directories: new, ours, 0711 (see PARENT_PREFIX)."""
    # 0700 and ours, under a name nobody could guess; in the sticky temporary directory nobody else can rename it.
    path = tempfile.mkdtemp(prefix=f"{PARENT_PREFIX}{pid}-")
    os.chmod(path, PARENT_MODE)
    return path


# Removing a tree that the function's code could still be changing (a grandchild not yet killed, a scratch
# directory handed to the load user): every step goes through a descriptor of a directory we opened without
# following links, so no name can be swapped for a symbolic link to somewhere else.
_DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
# Folders deeper than this are moved up to the top of the tree before they are emptied: neither the recursion nor
# the number of open descriptors grows with a tree built to be deep.
REMOVE_DEPTH = 32
# At most this many entries are looked at per tree; what is left after that stays behind.
REMOVE_BUDGET = 1_000_000


def _remove_tree(path: str, owners: set[int] | None = None) -> None:
    """Remove `path` and everything in it without ever following a symbolic link.

    A link (where `path` itself was replaced by one, or anywhere inside) is unlinked, never entered, and nothing
    is changed through it. With `owners`, `path` is removed only if it is a real directory owned by one of them
    (checked on the directory opened, not on its name). Permissions are changed only where we are not root (root
    needs no permission to remove), only on directories inside the tree, and only through their descriptors.
    """
    if not path:
        return
    parent, name = os.path.split(os.path.normpath(os.path.abspath(path)))
    try:
        parent_fd = os.open(parent, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    except OSError:
        return
    try:
        _remove_entry(parent_fd, name, owners)
    finally:
        os.close(parent_fd)


def _remove_entry(dir_fd: int, name: str, owners: set[int] | None = None) -> None:
    try:
        info = os.stat(name, dir_fd=dir_fd, follow_symlinks=False)
    except OSError:
        return
    if not stat.S_ISDIR(info.st_mode):
        if owners is None:  # a scratch directory the code replaced by a link or a file: remove just that
            with contextlib.suppress(OSError):
                os.unlink(name, dir_fd=dir_fd)
        return
    fd = _open_directory(dir_fd, name)
    if fd is None:
        return
    try:
        if owners is not None and os.fstat(fd).st_uid not in owners:
            return
        budget = [REMOVE_BUDGET]
        while _empty_directory(fd, fd, 0, budget) and budget[0] > 0:
            pass  # another round for the folders that were moved up
    finally:
        os.close(fd)
    with contextlib.suppress(OSError):
        os.rmdir(name, dir_fd=dir_fd)


def _open_directory(dir_fd: int, name: str) -> int | None:
    """The directory `name` in `dir_fd`, opened without following a link; None if it is not one (any more)."""
    try:
        return os.open(name, _DIR_FLAGS, dir_fd=dir_fd)
    except PermissionError:
        if os.geteuid() == 0:
            return None
    except OSError:
        return None
    # Not root, and the code made one of its folders unreadable: make it ours to read, through a descriptor that
    # stands for that very directory (a path-only one: opening it needs no permission).
    try:
        handle = os.open(name, os.O_PATH | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC, dir_fd=dir_fd)
    except OSError:
        return None
    try:
        if os.fstat(handle).st_uid != os.geteuid():
            return None
        os.chmod(f"/proc/self/fd/{handle}", stat.S_IRWXU)
        return os.open(name, _DIR_FLAGS, dir_fd=dir_fd)
    except OSError:
        return None
    finally:
        os.close(handle)


def _empty_directory(fd: int, top_fd: int, depth: int, budget: list[int]) -> bool:
    """Remove what is in the directory open as `fd`; True if folders too deep were moved up to `top_fd` instead."""
    if os.geteuid() != 0:  # the code may have made its folders read-only; root needs no permission
        with contextlib.suppress(OSError):
            info = os.fstat(fd)
            if info.st_uid == os.geteuid() and info.st_mode & stat.S_IRWXU != stat.S_IRWXU:
                os.chmod(fd, stat.S_IMODE(info.st_mode) | stat.S_IRWXU)
    try:
        names = os.listdir(fd)
    except OSError:
        return False
    moved = False
    for name in names:
        budget[0] -= 1
        if budget[0] < 0:
            return False
        try:
            info = os.stat(name, dir_fd=fd, follow_symlinks=False)
        except OSError:
            continue
        if not stat.S_ISDIR(info.st_mode):
            with contextlib.suppress(OSError):
                os.unlink(name, dir_fd=fd)
            continue
        if depth >= REMOVE_DEPTH:
            with contextlib.suppress(OSError):
                os.rename(name, f".sluice-deep-{budget[0]}", src_dir_fd=fd, dst_dir_fd=top_fd)
                moved = True
            continue
        sub = _open_directory(fd, name)
        if sub is None:
            continue
        try:
            moved = _empty_directory(sub, top_fd, depth + 1, budget) or moved
        finally:
            os.close(sub)
        with contextlib.suppress(OSError):
            os.rmdir(name, dir_fd=fd)
    return moved


MADV_COLLAPSE = 25
HUGE_PAGE = 2 * 1024 * 1024


def _collapse_into_huge_pages() -> int:
    """Back the zygote's anonymous memory with huge pages where the kernel can (Linux 6.1+, MADV_COLLAPSE).

    Every fork copies, and every child's exit tears down, one page-table entry per 4 KiB page the zygote maps;
    with 2 MiB pages there are 512 times fewer. A child writing to such memory still copies only 4 KiB (the
    kernels that have MADV_COLLAPSE split the huge page's mapping on a copy-on-write fault). Best effort:
    returns how many bytes were collapsed, 0 where unsupported.
    """
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        madvise = libc.madvise
        madvise.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int]
        madvise.restype = ctypes.c_int
        with open("/proc/self/maps") as maps:
            regions = maps.read().splitlines()
    except (OSError, AttributeError):
        return 0
    collapsed = 0
    for region in regions:
        fields = region.split()
        if len(fields) < 2 or not fields[1].startswith("rw") or (len(fields) > 5 and fields[5] != "[heap]"):
            continue
        low, high = (int(value, 16) for value in fields[0].split("-"))
        start = -(-low // HUGE_PAGE) * HUGE_PAGE
        end = high // HUGE_PAGE * HUGE_PAGE
        if end <= start:
            continue
        if madvise(start, end - start, MADV_COLLAPSE) != 0:
            if ctypes.get_errno() == errno.EINVAL and not collapsed:
                return 0  # a kernel without MADV_COLLAPSE
            continue
        collapsed += end - start
    return collapsed


def _remove_stale_workdirs(owners: set[int]) -> None:
    """Remove scratch folders left by zygotes that were killed before they could clean up.

    A zygote's folder (`sluice-zygote-<pid>-*`) is removed only if it is a real directory owned by our uid, the
    scratch directories of older versions (`sluice-load-<pid>-*`, straight in the temporary directory) only if
    they are real directories owned by `owners` (our uid and the load user's, to whom children handed theirs).
    Anyone can put a name like these in the temporary directory: a link is never followed, nothing is done by name.
    """
    base = tempfile.gettempdir()
    try:
        names = os.listdir(base)
    except OSError:
        return
    for name in names:
        if name.startswith(PARENT_PREFIX):
            rest, allowed = name[len(PARENT_PREFIX) :], {os.geteuid()}
        elif name.startswith(WORKDIR_PREFIX):
            rest, allowed = name[len(WORKDIR_PREFIX) :], owners
        else:
            continue
        owner = rest.split("-", 1)[0]
        if not owner.isdigit() or os.path.exists(f"/proc/{owner}"):
            continue
        _remove_tree(os.path.join(base, name), owners=allowed)


# --- dropping root in load children -----------------------------------------------------------------------------


def resolve_user(spec: str) -> dict:
    """`name`, `uid` or `uid:gid` as the ids a load child takes; LookupError if the name is unknown."""
    identity = _resolve_user(spec)
    if not all(0 <= value < 0xFFFFFFFF for value in [identity["uid"], identity["gid"], *identity["groups"]]):
        raise LookupError(f"{spec!r} is not a usable user")  # (uid_t) -1 would mean "leave the id unchanged"
    return identity


def _resolve_user(spec: str) -> dict:
    spec = (spec or "").strip() or DEFAULT_LOAD_USER
    if spec.split(":", 1)[0].isdigit():
        uid_text, _, gid_text = spec.partition(":")
        uid = int(uid_text)
        try:
            entry = pwd.getpwuid(uid)
        except KeyError:
            entry = None
        gid = int(gid_text) if gid_text.isdigit() else (entry.pw_gid if entry else uid)
        groups = os.getgrouplist(entry.pw_name, gid) if entry and not gid_text else [gid]
        return {"user": spec, "uid": uid, "gid": gid, "groups": sorted(set(groups))}
    try:
        entry = pwd.getpwnam(spec)
    except KeyError:
        if spec != DEFAULT_LOAD_USER:
            raise LookupError(f"there is no user {spec!r}") from None
        return {"user": spec, "uid": NOBODY, "gid": NOBODY, "groups": [NOBODY]}
    groups = os.getgrouplist(entry.pw_name, entry.pw_gid)
    return {"user": spec, "uid": entry.pw_uid, "gid": entry.pw_gid, "groups": sorted(set(groups))}


def _identity(plan: dict) -> dict:
    return {"uid": plan["uid"], "gid": plan["gid"], "groups": plan["groups"]}


def plan_privileges(mode: str, user: str) -> dict:
    """Whether load children drop root for the load user, and if not, why: the `privileges` of the ready report.

    mode "off": never. "auto": when the zygote runs as root, the user can be taken, and it can read everything
    function code needs (sys.path, the modules loaded here, the temporary directory, DATA_DIR). "always": when
    running as root and the user can be taken, whatever it can read.
    """
    plan: dict = {"mode": mode, "user": user or DEFAULT_LOAD_USER, "drop": False, "reason": None}
    if mode not in ("auto", "always") or os.geteuid() != 0:
        return plan
    try:
        plan.update(resolve_user(user))
    except LookupError as exc:
        plan["reason"] = str(exc)
        return plan
    if plan["uid"] == 0:
        plan["reason"] = "the load user is root"
        return plan
    _hand_over_data_dir(plan["uid"], plan["gid"])
    plan["reason"] = probe(_identity(plan), [] if mode == "always" else _needed_paths())
    plan["drop"] = plan["reason"] is None
    return plan


def _data_dir() -> str | None:
    env = sys.modules.get("open_webui.env")
    path = getattr(env, "DATA_DIR", None)
    return str(path) if path is not None else None


# The data folder's layout once handed over: root's (or the zygote user's) folders, in the load user's group with
# group write, set-group-id so that what is made in them stays in that group; DATA_DIR itself also sticky.
HAND_OVER_DEPTH = 32


def _hand_over_data_dir(uid: int, gid: int, limit: int = 10_000) -> None:
    """Let the load user keep files in the compatibility layer's private DATA_DIR, as function code could as root.

    The folders stay ours (the zygote's user, root) and get the load user's group with group write and set-group-id;
    DATA_DIR is also sticky. So the load user can make and remove its own files there, children that keep root can
    write there without overriding permissions, and the load user cannot rename DATA_DIR (it is ours, in the sticky
    temporary directory) nor its folders (it is sticky), so nothing can be swapped for a link to somewhere else.
    Folders the load user owns (made by an older version, or by function code) become ours the same way.

    The walk goes through descriptors of directories opened without following links (`os.fwalk`), and each folder
    is changed through its own descriptor: a folder renamed or replaced by a link while we walk changes nothing
    elsewhere. Only the default folder; a DATA_DIR set in the environment is the operator's and is left alone.
    """
    path = _data_dir()
    if not path or "DATA_DIR" in os.environ:
        return
    ours = os.geteuid()
    walker = os.fwalk(path, follow_symlinks=False)
    try:
        for seen, (folder, folders, _files, fd) in enumerate(walker):
            if seen >= limit:
                return
            info = os.fstat(fd)
            if info.st_uid not in (ours, uid):
                folders.clear()  # someone else's: neither changed nor entered
                continue
            if os.path.relpath(folder, path).count(os.sep) >= HAND_OVER_DEPTH:
                folders.clear()
            wanted = (stat.S_IMODE(info.st_mode) & ~stat.S_IWOTH) | stat.S_IRWXG | stat.S_ISGID
            if folder == path:
                wanted |= stat.S_ISVTX
            with contextlib.suppress(OSError):
                if (info.st_uid, info.st_gid) != (ours, gid):
                    os.chown(fd, ours, gid)  # fchown: the folder opened, whatever its name is now
                if stat.S_IMODE(os.fstat(fd).st_mode) != wanted:
                    os.chmod(fd, wanted)  # fchmod, after chown (which may clear set-group-id)
    except (OSError, RecursionError):
        return
    finally:
        walker.close()


def _needed_paths() -> list[tuple[str, str]]:
    """What function code needs to reach, as (path, "list"|"read"|"search"|"write") checks."""
    checks: list[tuple[str, str]] = []
    for entry in sys.path:
        if entry and os.path.isdir(entry):
            checks.append((entry, "list"))
        elif entry and os.path.isfile(entry):
            checks.append((entry, "read"))
    checks.append((tempfile.gettempdir(), "search"))
    data_dir = _data_dir()
    if data_dir and os.path.isdir(data_dir):
        checks.append((data_dir, "write"))
    # The files of the modules loaded here stand for the files of those that will be imported lazily.
    for module in list(sys.modules.values()):
        path = getattr(module, "__file__", None)
        if isinstance(path, str) and os.path.isfile(path):
            checks.append((path, "read"))
    return checks


def _package_paths(packages_dir: str) -> list[tuple[str, str]]:
    checks = [(packages_dir, "list")]
    with contextlib.suppress(OSError):
        for entry in os.scandir(packages_dir):
            checks.append((entry.path, "list" if entry.is_dir() else "read"))
    return checks


_ACCESS = {
    "list": os.R_OK | os.X_OK,
    "read": os.R_OK,
    "search": os.X_OK,
    "write": os.W_OK | os.X_OK,
}


def _first_denied(checks: list[tuple[str, str]]) -> str | None:
    denied = [(path, kind) for path, kind in checks if not os.access(path, _ACCESS[kind])]
    if not denied:
        return None
    path, kind = denied[0]
    more = f" (and {len(denied) - 1} more paths)" if len(denied) > 1 else ""
    verb = {"list": "list", "read": "read", "search": "reach files in", "write": "write to"}[kind]
    return f"the load user cannot {verb} {path}{more}"


def probe(identity: dict, checks: list[tuple[str, str]], limit: float = 5.0) -> str | None:
    """Take `identity` in a forked process and try `checks` there: None if all passed, else the first problem.

    The real thing rather than a reading of mode bits: it tells whether the ids can be taken at all (a user
    namespace may not map them) and sees ACLs and every directory on the way.
    """

    def check() -> str:
        try:
            child.become(identity["uid"], identity["gid"], identity["groups"])
        except child.PrivilegeError as exc:
            return f"the load user's ids cannot be taken: {exc}"
        return _first_denied(checks) or ""

    return _in_forked_process(check, "could not check the load user", limit) or None


def check_confinement(limit: float = 5.0) -> dict:
    """What loader/confinement.py can do for children that run as root here, tried once in a forked process:
    {"mounts": bool, "capabilities": bool, "reason": str | None}. Nothing to do (and no reason) when not root."""
    report = {"mounts": False, "capabilities": False, "reason": None}
    if os.geteuid() != 0:
        return report
    try:
        scratch = tempfile.mkdtemp(prefix="sluice-check-")
    except OSError as exc:
        return {**report, "reason": f"could not check: {exc}"}
    try:
        answer = _in_forked_process(
            lambda: json.dumps(confinement.check(scratch)),
            "could not check how children can be confined",
            limit,
        )
    finally:
        with contextlib.suppress(OSError):
            os.rmdir(scratch)
    try:
        found = json.loads(answer)
        return {key: found[key] for key in report}
    except (ValueError, TypeError, KeyError):
        return {**report, "reason": answer or "could not check how children can be confined"}


def _in_forked_process(work, failure: str, limit: float) -> str:
    """Run `work` (returning a string) in a forked process that then exits; its string, or what went wrong."""
    read_fd, write_fd = os.pipe()
    try:
        pid = os.fork()
    except OSError as exc:
        os.close(read_fd)
        os.close(write_fd)
        return f"{failure}: {exc}"
    if pid == 0:  # pragma: no cover - runs in the forked process
        message = ""
        try:
            os.close(read_fd)
            message = work()
        except BaseException as exc:
            message = f"{failure}: {exc!r}"
        finally:
            with contextlib.suppress(BaseException):
                os.write(write_fd, message.encode("utf-8", "replace")[:4000])
            os._exit(0)
    os.close(write_fd)
    chunks = []
    deadline = time.monotonic() + limit
    poller = select.poll()
    poller.register(read_fd, select.POLLIN)
    try:
        while True:
            left = deadline - time.monotonic()
            if left <= 0 or not poller.poll(int(left * 1000) + 1):
                chunks = [f"{failure}: the check took too long".encode()]
                break
            chunk = os.read(read_fd, 4096)
            if not chunk:
                break
            chunks.append(chunk)
    finally:
        os.close(read_fd)
        with contextlib.suppress(OSError):
            os.kill(pid, signal.SIGKILL)
        with contextlib.suppress(ChildProcessError):
            os.waitpid(pid, 0)
    return b"".join(chunks).decode("utf-8", "replace")


def plan_hidden_paths(paths, needed: list[str]) -> tuple[list[str], str]:
    """The folders (or files) among `paths` that children may hide, and a notice naming those they may not.

    A path inside another one is covered by it; a path that holds something function code needs (`needed`: the
    Python installation, sys.path, the temporary directory, DATA_DIR, /dev, /proc) is not hidden.
    """
    chosen: list[str] = []
    refused: list[str] = []
    wanted = {os.path.realpath(path) for path in paths if isinstance(path, str) and os.path.isabs(path)}
    for path in sorted(wanted, key=len):  # a folder before what is in it
        if any(confinement.inside(path, folder) for folder in chosen):
            continue
        holds = next((item for item in needed if confinement.inside(item, path)), None)
        if holds is not None:
            refused.append(f"{path} (it holds {holds})")
        else:
            chosen.append(path)
    notice = f"function code is not kept from {'; '.join(refused)}: it needs what is there" if refused else ""
    return chosen, notice


def _needed_folders(workdirs: str) -> list[str]:
    """What function code needs and must never be hidden: see plan_hidden_paths."""
    found = {
        sys.prefix,
        sys.base_prefix,
        sys.exec_prefix,
        sys.base_exec_prefix,
        tempfile.gettempdir(),
        workdirs,
    }
    found.update(entry for entry in sys.path if entry)
    found.update(("/dev", "/proc", os.path.dirname(os.path.abspath(child.__file__))))
    data_dir = _data_dir()
    if data_dir:
        found.add(data_dir)
    return sorted({os.path.realpath(path) for path in found if os.path.exists(path)})


def _die_with_parent(parent_pid: int) -> None:
    """Have the kernel send SIGTERM when our parent (the caller) dies, even if it is SIGKILLed.

    End of file on the request pipe normally says the same, but not if another process holds the pipe's write end.
    The signal is tied to the thread that started us, which is why `loader.runner` starts zygotes from a thread
    that lives as long as its process. SIGTERM, not SIGKILL: the zygote then kills its children and their escaped
    descendants before it exits (until the loop runs, SIGTERM's default action ends the zygote, which has no
    children yet).
    """
    prctl = _prctl()
    if prctl is None or not parent_pid:
        return
    prctl(PR_SET_PDEATHSIG, signal.SIGTERM, 0, 0, 0)
    if os.getppid() != parent_pid and not os.path.exists(f"/proc/{parent_pid}"):
        os._exit(0)  # the caller died before the signal was armed


def main(argv: list[str]) -> None:
    """Entry point: `python -m loader.zygote [compat_dir] [max_jobs] [spares] [parent_pid] [drop_privileges]
    [load_user]`, started by `loader.runner`. drop_privileges is "auto", "always" or "off" (see plan_privileges)."""
    compat_dir = argv[0] if argv else ""
    max_jobs = int(argv[1]) if len(argv) > 1 else 8
    spares = int(argv[2]) if len(argv) > 2 else 2
    _die_with_parent(int(argv[3]) if len(argv) > 3 else 0)
    # The jobs in flight are in our memory: a process of our user without CAP_SYS_PTRACE (a load child, where the
    # server does not run as root and children keep its user) must neither read it (/proc/<pid>/mem) nor trace us.
    non_dumpable = confinement.make_undumpable()
    drop_mode = argv[4] if len(argv) > 4 else "off"
    load_user = argv[5] if len(argv) > 5 else DEFAULT_LOAD_USER
    # Keep the caller's pipes away from descriptors 0 and 1, so nothing printed by imports can corrupt them.
    request_fd, answer_fd = os.dup(0), os.dup(1)
    devnull_fd = os.open(os.devnull, os.O_RDWR)
    os.dup2(devnull_fd, 0)
    os.dup2(devnull_fd, 1)
    if compat_dir and os.path.isdir(compat_dir):
        sys.path.insert(0, compat_dir)
    owners = {os.getuid()}
    if drop_mode != "off" and os.geteuid() == 0:
        with contextlib.suppress(LookupError):
            owners.add(resolve_user(load_user)["uid"])
    _remove_stale_workdirs(owners)
    started = time.monotonic()
    loaded, missing = preload()
    privileges = plan_privileges(drop_mode, load_user)
    confined = check_confinement()
    gc.collect()
    gc.freeze()  # children inherit the heap without touching (and copying) it on every collection
    huge = _collapse_into_huge_pages()
    with open("/proc/self/statm", "rb") as statm:
        mapped = int(statm.read().split()[0]) * os.sysconf("SC_PAGE_SIZE")
    ready = {
        "preloaded": loaded,
        "missing": missing,
        "mapped_bytes": mapped,
        "huge_page_bytes": huge,
        "startup": round(time.monotonic() - started, 3),
        "python": sys.version.split()[0],
        "privileges": privileges,
        "confinement": confined,
        "non_dumpable": non_dumpable,
    }
    arguments = run_until_forked(
        Zygote(
            request_fd,
            answer_fd,
            devnull_fd,
            max_jobs=max_jobs,
            spares=spares,
            ready=ready,
            privileges=privileges,
            confined=confined,
        )
    )
    if arguments is not None:  # pragma: no cover - a child forked by the loop
        become_child(arguments)


if __name__ == "__main__":
    main(sys.argv[1:])
