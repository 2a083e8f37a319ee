"""The one connection from the server to the warm parent: starting it (from a thread that lives as long as the
process), writing requests under a lock, and a reader thread that hands each answer to the caller waiting for it.

`loader.client` (loads) and `loader.runtime.client` (calls) keep the current connection and start a new one when
it dies; this module holds no settings and no cache.
"""

from __future__ import annotations

import itertools
import logging
import os
import queue
import re
import subprocess
import tempfile
import threading

from loader import confinement, seed
from loader.protocol import encode_frame, error, read_frame

log = logging.getLogger(__name__)

PACKAGE_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
COMPAT_DIR = os.path.join(os.path.dirname(os.path.abspath(__file__)), "compat")
STARTUP_LIMIT = 60.0

# The zygote is started in isolated mode (-I: no PYTHON* variables, no user site, no script directory on sys.path)
# and takes the repository root off sys.path once the loader is imported, so function code cannot import Sluice.
_BOOTSTRAP = (
    "import sys; root = sys.argv[1]; sys.path.insert(0, root); from loader import startup; "
    "sys.path.remove(root); startup.main(sys.argv[2:])"
)

# Names of environment variables that must not reach function code: Sluice's own settings and anything that looks
# like a credential (which would otherwise surface as a valve's `os.getenv` default in a form).
_SECRET_NAME = re.compile(
    r"SECRET|PASSWORD|PASSWD|TOKEN|CREDENTIAL|PRIVATE|API_?KEY|ACCESS_KEY|_KEY$|^KEY$|DATABASE|_DSN$",
    re.IGNORECASE,
)


class Unavailable(Exception):
    """The warm parent could not be started."""


class Waiter:
    """One answer awaited by a caller. A streaming call (loader/runtime/client.py) has its own kind of waiter with
    the same two methods, which takes every frame of its call until the final one."""

    __slots__ = ("done", "header", "body")

    def __init__(self):
        self.done = threading.Event()
        self.header: dict = {}
        self.body = b""

    def deliver(self, header: dict, body: bytes) -> None:
        self.header, self.body = header, body
        self.done.set()

    def fail(self, load_error: dict) -> None:
        self.header = {"error": load_error}
        self.done.set()


class ZygoteProcess:
    """One running zygote, its request pipe (written under a lock) and the thread that reads its answers.

    The reader never takes the write lock: a caller writing a large request must not stop the answers from being
    read, or the zygote, blocked writing an answer, would stop reading requests and both would wait forever.
    """

    def __init__(self, settings):
        self.write_lock = threading.Lock()
        self.pending_lock = threading.Lock()
        self.pending: dict[int, Waiter] = {}
        self.ids = itertools.count(1)
        # The function ids this zygote was asked to run, so may hold warm workers of (see `may_have_workers`).
        self.called: set[str] = set()
        self.alive = True
        self.ready: dict = {}
        self.started = threading.Event()
        compat = COMPAT_DIR if os.path.isdir(COMPAT_DIR) else ""
        zygote_argv = [
            str(settings.max_jobs),
            str(settings.spares),
            str(os.getpid()),
            settings.drop_privileges if os.geteuid() == 0 else "off",
            settings.load_user,
            str(settings.spare_idle),
        ]
        # Forked by the master's loader seed where there is one (loader/seed.py), else exec'd as our own child.
        self.proc = seed.spawn(settings.python, zygote_argv, STARTUP_LIMIT) or launcher.run(
            subprocess.Popen,
            [settings.python, "-I", "-B", "-c", _BOOTSTRAP, PACKAGE_ROOT, compat, *zygote_argv],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            env=child_environment(os.environ),
            cwd=tempfile.gettempdir(),
            close_fds=True,
            start_new_session=True,
            bufsize=0,
        )
        self.pid = self.proc.pid
        self.reader = threading.Thread(target=self._read_answers, name="sluice-loader-reader", daemon=True)
        self.reader.start()
        if not self.started.wait(STARTUP_LIMIT) or not self.alive:
            self.close()
            raise Unavailable("the loader process did not start")

    def call(self, request: dict, *, wait: float, during=None) -> tuple[dict, bytes]:
        """Send `request` and wait for its answer; `during` (if given) is called once the request is sent, before
        waiting: its exception propagates, and the answer is then dropped."""
        waiter = Waiter()
        stopped = {"error": error("LoaderCrashed", "the loader process stopped; try again")}, b""
        request_id = self.open(request, waiter)
        if during is not None:
            try:
                during()
            except BaseException:
                if request_id is not None:
                    self.forget_waiter(request_id)
                raise
        if request_id is None:
            return stopped
        if not waiter.done.wait(wait):
            with self.pending_lock:
                self.pending.pop(request_id, None)
            log.error("the loader process did not answer within %.0f s; restarting it", wait)
            self.close()
            return {"error": error("LoaderUnavailable", "the loader process did not answer in time")}, b""
        return waiter.header, waiter.body

    def open(self, request: dict, waiter) -> int | None:
        """Send `request` with a new id, its answers going to `waiter` (`deliver`, or `fail` if the zygote dies);
        the id, or None if the zygote is gone."""
        with self.pending_lock:
            if not self.alive:
                return None
            request_id = next(self.ids)
            self.pending[request_id] = waiter
        if not self.post({**request, "id": request_id}):
            with self.pending_lock:
                self.pending.pop(request_id, None)
            self._died()
            return None
        return request_id

    def post(self, request: dict) -> bool:
        """Send a request that has no answer (or whose waiter is registered); False if the pipe is closed."""
        frame = memoryview(encode_frame(request))
        try:
            with self.write_lock:
                while frame:
                    frame = frame[self.proc.stdin.write(frame) :]
        except (OSError, ValueError):
            return False
        return True

    def note_call(self, function_id: str) -> None:
        """Before posting a call of `function_id`: it may have warm workers in this zygote from now on."""
        with self.pending_lock:
            self.called.add(function_id)

    def may_have_workers(self, function_ids) -> list[str]:
        """Those of `function_ids` this zygote was ever asked to run: only they can have workers here (workers
        start only for calls). Never forgotten, so a call racing a retire is never missed."""
        with self.pending_lock:
            return [function_id for function_id in function_ids if function_id in self.called]

    def forget_waiter(self, request_id) -> None:
        with self.pending_lock:
            self.pending.pop(request_id, None)

    def _read_answers(self) -> None:
        stream = self.proc.stdout
        try:
            while True:
                header, body = read_frame(stream.read)
                if header.get("kind") == "ready":
                    self.ready = header
                    _note_privileges(header.get("privileges"))
                    _note_confinement(header.get("confinement"))
                    # Every load then answers LoaderUnavailable with this (loader/environment.py).
                    if header.get("refused"):
                        _log_once(f"function code cannot be loaded: {header['refused']}")
                    self.started.set()
                    continue
                for notice in header.get("notices") or ():
                    _log_once(str(notice))
                with self.pending_lock:
                    if header.get("kind") == "run" and not header.get("final"):  # a call's frame: more follow
                        waiter = self.pending.get(header.get("id"))
                    else:
                        waiter = self.pending.pop(header.get("id"), None)
                if waiter is not None:
                    waiter.deliver(header, body)
        except (EOFError, OSError, ValueError):
            pass
        finally:
            self._died()

    def _died(self) -> None:
        """Mark this zygote dead and fail every call still waiting on it."""
        with self.pending_lock:
            was_alive, self.alive = self.alive, False
            pending, self.pending = self.pending, {}
        for waiter in pending.values():
            waiter.fail(error("LoaderCrashed", "the loader process stopped while loading; try again"))
        self.started.set()
        if was_alive:
            self._stop_process()

    def _stop_process(self) -> None:
        for stream in (self.proc.stdin, self.proc.stdout):
            try:
                stream.close()
            except (OSError, ValueError):
                pass
        try:
            self.proc.wait(timeout=2)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()

    def close(self) -> None:
        """Stop the zygote: closing its request pipe makes it kill its children and exit."""
        if self.proc.poll() is None:
            try:
                self.proc.stdin.close()
            except (OSError, ValueError):
                pass
            try:
                self.proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
        self._died()

    def forget(self) -> None:
        """In a forked copy of this process: drop our copies of the pipes without touching the zygote."""
        self.alive = False
        for stream in (self.proc.stdin, self.proc.stdout):
            try:
                stream.close()
            except (OSError, ValueError):
                pass


_logged: set[str] = set()


def _log_once(message: str) -> None:
    """Warn about a lasting condition once per process, not on every zygote start or load."""
    if message not in _logged:
        _logged.add(message)
        log.warning("%s", message)


def _note_privileges(privileges) -> None:
    if isinstance(privileges, dict) and not privileges.get("drop") and privileges.get("reason"):
        _log_once(
            f"function code is loaded as root, not as {privileges.get('user')!r}: {privileges['reason']} "
            "(SLUICE_LOAD_DROP_PRIVILEGES=always switches anyway, =off silences this)"
        )


def _note_confinement(confined) -> None:
    if isinstance(confined, dict) and confined.get("reason"):
        hidden = " nor hidden from the server's files" if not confined.get("mounts") else ""
        _log_once(
            f"load children that keep root cannot be fully confined{hidden}: {confined['reason']} "
            "(they still run; see loader/confinement.py)"
        )


def protect_server_process() -> bool:
    """Make the calling (server) process non-dumpable: another process of the same user without CAP_SYS_PTRACE,
    such as a load child that keeps root, can then neither read its /proc/<pid>/environ nor its memory. Linux only;
    False (logged once) where it is not possible. Dumpability comes back with execve or a change of user."""
    if confinement.make_undumpable():
        return True
    _log_once("could not make the server process non-dumpable (prctl PR_SET_DUMPABLE)")
    return False


class Launcher:
    """Starts zygotes from one thread that lives as long as this process.

    A zygote asks the kernel for a signal when its parent dies (loader.startup._die_with_parent), and Linux ties
    that signal to the *thread* that forked it: a zygote started from a short-lived thread (the app's warm-up
    thread, a request thread that a server retires) would be stopped when that thread ends.
    """

    def __init__(self):
        self.lock = threading.Lock()
        self.jobs: queue.SimpleQueue = queue.SimpleQueue()
        self.thread: threading.Thread | None = None

    def run(self, function, *args, **kwargs):
        """`function(*args, **kwargs)` called in the launcher thread; its result, or its exception raised here."""
        with self.lock:
            if self.thread is None or not self.thread.is_alive():
                self.thread = threading.Thread(target=self._serve, name="sluice-loader-launcher", daemon=True)
                self.thread.start()
        done, outcome = threading.Event(), {}
        self.jobs.put((function, args, kwargs, done, outcome))
        done.wait()
        if "error" in outcome:
            raise outcome["error"]
        return outcome["result"]

    def _serve(self) -> None:
        while True:
            function, args, kwargs, done, outcome = self.jobs.get()
            try:
                outcome["result"] = function(*args, **kwargs)
            except BaseException as exc:  # handed to the caller
                outcome["error"] = exc
            finally:
                done.set()
                del function, args, kwargs, done, outcome


def child_environment(environ) -> dict:
    """The environment for the zygote and its children: the caller's, minus Sluice's settings and credentials."""
    env = {
        name: value
        for name, value in environ.items()
        if not name.upper().startswith("SLUICE_") and not _SECRET_NAME.search(name)
    }
    # Numeric libraries would otherwise start thread pools, and the zygote must stay single-threaded to fork.
    for name in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
        env[name] = "1"
    return env


launcher = Launcher()


def _after_fork_in_child() -> None:
    global launcher
    launcher = Launcher()  # its thread was not copied


os.register_at_fork(after_in_child=_after_fork_in_child)
