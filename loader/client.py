"""Loading a function's code without running it in the caller: the client the server uses. Over 450 lines because
settings, cache, single flight and the one connection to the warm parent share its locks and state.

`load_function` and `validate_valves` hand the code to a warm zygote process (`loader.parent`), which forks one
child per job with a wall-clock timeout, a memory cap and captured output. Calls are thread-safe: a reader thread
dispatches the zygote's answers to the waiting callers by request id. Identical loads are answered from a bounded
cache in this process. If the zygote dies, the calls in flight get a clear error and the next call starts a new one.
"""

from __future__ import annotations

import copy
import hashlib
import itertools
import json
import logging
import os
import queue
import re
import subprocess
import sys
import tempfile
import threading
from collections import OrderedDict
from dataclasses import dataclass, replace

from loader import confinement
from loader.protocol import encode_frame, error, read_frame
from loader.results import LoadError, LoadResult, ValvesResult

log = logging.getLogger(__name__)

PACKAGE_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
COMPAT_DIR = os.path.join(os.path.dirname(os.path.abspath(__file__)), "compat")
STARTUP_LIMIT = 60.0

# The zygote is started in isolated mode (-I: no PYTHON* variables, no user site, no script directory on sys.path)
# and takes the repository root off sys.path once the loader is imported, so function code cannot import Sluice.
_BOOTSTRAP = (
    "import sys; root = sys.argv[1]; sys.path.insert(0, root); from loader import parent; "
    "sys.path.remove(root); parent.main(sys.argv[2:])"
)

# Names of environment variables that must not reach function code: Sluice's own settings and anything that looks
# like a credential (which would otherwise surface as a valve's `os.getenv` default in a form).
_SECRET_NAME = re.compile(
    r"SECRET|PASSWORD|PASSWD|TOKEN|CREDENTIAL|PRIVATE|API_?KEY|ACCESS_KEY|_KEY$|^KEY$|DATABASE|_DSN$",
    re.IGNORECASE,
)

# Errors that depend on the moment (load, installed packages) rather than on the code alone are not cached.
_UNCACHED = {
    "Timeout",
    "Killed",
    "CPULimit",
    "MemoryError",
    "LoaderUnavailable",
    "LoaderCrashed",
    "BadAnswer",
    "ModuleNotFoundError",
    "ImportError",
}


def _drop_mode(value: str | None) -> str:
    """The drop_privileges setting: "auto" (the default, also 1/true/yes/on), "off" (0/false/no) or "always"."""
    text = (value or "auto").strip().lower()
    if text in ("auto", "1", "true", "yes", "on", ""):
        return "auto"
    if text in ("off", "0", "false", "no", "never"):
        return "off"
    if text in ("always", "force"):
        return "always"
    log.warning("ignoring drop_privileges=%r: expected auto, off or always", value)
    return "auto"


def _paths(value) -> tuple[str, ...]:
    """Absolute, resolved paths without repeats, from a list or a string of paths separated by os.pathsep."""
    if isinstance(value, str):
        value = value.split(os.pathsep)
    return tuple(dict.fromkeys(os.path.realpath(os.path.abspath(path)) for path in value or () if path))


@dataclass(frozen=True)
class Settings:
    timeout: float = 10.0
    memory_mb: int = 1024
    packages_dir: str | None = None
    cache_size: int = 256
    output_cap: int = 64 * 1024
    result_cap: int = 2 * 1024 * 1024
    max_jobs: int = 8
    spares: int = 2
    python: str = sys.executable
    # When the server runs as root, load children switch to `load_user` before running function code: "auto"
    # unless that user cannot read what function code needs (then they stay root, and it is logged), "always",
    # or "off". See loader.parent.plan_privileges.
    drop_privileges: str = "auto"
    load_user: str = "nobody"
    # Folders (or files) that function code must never read, e.g. the server's instance folder: when the zygote
    # runs as root, each child mounts an empty read-only tmpfs over them before running function code, putting the
    # packages folder back when it lies in one of them (loader/confinement.py).
    hidden_paths: tuple[str, ...] = ()
    # Running functions (loader/runtime): a call's wall clock, the longest silence between a stream's frames, how
    # many warm workers the parent keeps (each holds one function's instance), and how long a call waits for one.
    run_timeout: float = 60.0
    run_idle_timeout: float = 30.0
    runtime_workers: int = 4
    busy_wait: float = 2.0


# Plain defaults: the loader reads no environment variable of its own; the app hands it every setting (configure).
_settings = Settings()

_UNSET = object()
_ANY_USER = "any user"


def configure(
    timeout=None,
    memory_mb=None,
    packages_dir=_UNSET,
    *,
    cache_size=None,
    output_cap=None,
    result_cap=None,
    max_jobs=None,
    spares=None,
    python=None,
    drop_privileges=None,
    load_user=None,
    hidden_paths=None,
    run_timeout=None,
    run_idle_timeout=None,
    runtime_workers=None,
    busy_wait=None,
) -> Settings:
    """Change how code is loaded; only the arguments given change. Returns the settings now in force."""
    global _settings
    given = {
        "timeout": (timeout, float),
        "memory_mb": (memory_mb, int),
        "cache_size": (cache_size, int),
        "output_cap": (output_cap, int),
        "result_cap": (result_cap, int),
        "max_jobs": (max_jobs, int),
        "spares": (spares, int),
        "python": (python, str),
        "drop_privileges": (drop_privileges, _drop_mode),
        "load_user": (load_user, str),
        "hidden_paths": (hidden_paths, _paths),
        "run_timeout": (run_timeout, float),
        "run_idle_timeout": (run_idle_timeout, float),
        "runtime_workers": (runtime_workers, int),
        "busy_wait": (busy_wait, float),
    }
    changes = {key: convert(value) for key, (value, convert) in given.items() if value is not None}
    positive = ("timeout", "memory_mb", "max_jobs", "run_timeout", "run_idle_timeout", "runtime_workers")
    if any(changes.get(name, 1) <= 0 for name in positive) or changes.get("busy_wait", 0) < 0:
        raise ValueError(f"{', '.join(positive)} must be positive and busy_wait not negative")
    if packages_dir is not _UNSET:
        changes["packages_dir"] = os.path.abspath(packages_dir) if packages_dir else None
    with _state_lock:
        old, _settings = _settings, replace(_settings, **changes)
    if old.packages_dir != _settings.packages_dir or old.hidden_paths != _settings.hidden_paths:
        clear_cache()
    restart = ("max_jobs", "spares", "python", "drop_privileges", "load_user")
    if any(getattr(old, name) != getattr(_settings, name) for name in restart):
        shutdown()
    _cache.resize(_settings.cache_size)
    return _settings


def settings() -> Settings:
    return _settings


# --- public API ------------------------------------------------------------------------------------------------


def load_function(
    content: str, *, function_id: str = "function", user: dict | None = None, valves: dict | None = None
) -> LoadResult:
    """Run `content` in an isolated child and describe the function it defines (see loader/CONTRACT.md)."""
    content_hash = hashlib.sha256(content.encode("utf-8", "surrogatepass")).hexdigest()
    manifest = _manifest(content)
    request = {"op": "load", "content": content, "function_id": function_id, "user": user}
    if valves is not None:
        request["valves"] = valves
    base_key = ("load", content_hash, function_id, _digest(valves) if valves is not None else None)
    # A result depends on the user only when an options method took the user; then it is cached per user.
    user_key = _digest(user) if user is not None else "no user"

    def compute():
        header, answer = _run(request)
        if header.get("error"):
            result = LoadResult.failed(content_hash, LoadError.from_answer(header["error"]), manifest)
            result.output = _output(header)
            return result, None
        result = LoadResult.from_answer(
            answer, content_hash=content_hash, manifest=manifest, output=_output(header)
        )
        user_dependent = isinstance(answer, dict) and answer.get("user_dependent") is True
        return result, base_key + ((user_key,) if user_dependent else (_ANY_USER,))

    result = _cache.get(base_key + (_ANY_USER,)) or _cache.get(base_key + (user_key,))
    if result is not None:
        _stats.bump("cache_hits")
        return result
    return _single_flight(base_key + (user_key,), compute)


def validate_valves(
    content: str,
    values: dict,
    *,
    kind: str = "valves",
    function_id: str = "function",
    user: dict | None = None,
) -> ValvesResult:
    """Validate `values` with the function's own `Valves` (kind="valves") or `UserValves` class, in a child."""
    if kind not in ("valves", "user_valves"):
        raise ValueError(f"kind must be 'valves' or 'user_valves', not {kind!r}")
    content_hash = hashlib.sha256(content.encode("utf-8", "surrogatepass")).hexdigest()
    key = ("validate", content_hash, function_id, kind, _digest(values))
    request = {
        "op": "validate",
        "content": content,
        "function_id": function_id,
        "kind": kind,
        "values": values,
        "user": user,
    }

    def compute():
        header, answer = _run(request)
        if header.get("error"):
            return ValvesResult(ok=False, error=LoadError.from_answer(header["error"])), None
        return ValvesResult.from_answer(answer), key

    result = _cache.get(key)
    if result is not None:
        _stats.bump("cache_hits")
        return result
    return _single_flight(key, compute)


def start() -> dict:
    """Start the zygote now rather than on the first load (e.g. when the app starts); returns its ready report."""
    return dict(_zygote().ready)


def shutdown() -> None:
    """Stop the zygote (and every child); the next load starts a new one."""
    global _current
    with _state_lock:
        zygote, _current = _current, None
    if zygote is not None:
        zygote.close()


def clear_cache() -> None:
    """Forget cached results, e.g. after packages were installed for function code."""
    _cache.clear()


def stats() -> dict:
    """Counters for this process: jobs sent to the zygote, cache hits, zygote starts, and the zygote's pid."""
    counters = _stats.snapshot()
    zygote = _current
    counters["zygote_pid"] = zygote.pid if zygote is not None and zygote.alive else None
    return counters


# --- the cache ---------------------------------------------------------------------------------------------------


class _Cache:
    """A bounded LRU of results; callers always get their own copy to mutate."""

    def __init__(self, size: int):
        self.size = size
        self.entries: OrderedDict = OrderedDict()
        self.lock = threading.Lock()

    def get(self, key):
        with self.lock:
            if key not in self.entries:
                return None
            self.entries.move_to_end(key)
            value = self.entries[key]
        return copy.deepcopy(value)

    def put(self, key, value) -> None:
        if self.size <= 0:
            return
        with self.lock:
            self.entries[key] = copy.deepcopy(value)
            self.entries.move_to_end(key)
            while len(self.entries) > self.size:
                self.entries.popitem(last=False)

    def resize(self, size: int) -> None:
        with self.lock:
            self.size = size
            while len(self.entries) > max(size, 0):
                self.entries.popitem(last=False)

    def clear(self) -> None:
        with self.lock:
            self.entries.clear()


class _Stats:
    def __init__(self):
        self.lock = threading.Lock()
        self.counts = {"jobs": 0, "cache_hits": 0, "zygote_starts": 0}

    def bump(self, name: str) -> None:
        with self.lock:
            self.counts[name] += 1

    def snapshot(self) -> dict:
        with self.lock:
            return dict(self.counts)


class _Flight:
    def __init__(self):
        self.done = threading.Event()
        self.followers = 0
        self.result = None


_cache = _Cache(_settings.cache_size)
_stats = _Stats()
_flights: dict = {}
_flights_lock = threading.Lock()


def _single_flight(key, compute):
    """Run `compute` once for concurrent identical requests; cache what it says may be cached."""
    with _flights_lock:
        flight = _flights.get(key)
        leader = flight is None
        if leader:
            flight = _flights[key] = _Flight()
        else:
            flight.followers += 1
    if not leader:
        flight.done.wait()
        if flight.result is None:  # the leader failed unexpectedly; try on our own
            return compute()[0]
        return copy.deepcopy(flight.result)
    result = None
    try:
        result, cache_key = compute()
        if cache_key is not None and _cacheable(result):
            _cache.put(cache_key, result)
        return result
    finally:
        with _flights_lock:
            _flights.pop(key, None)
            followers = flight.followers
        # The followers copy a snapshot taken before our caller can change the result it is handed.
        flight.result = copy.deepcopy(result) if followers and result is not None else None
        flight.done.set()


def _cacheable(result) -> bool:
    error = getattr(result, "error", None)
    check = getattr(result, "valves_check", None)
    if check is not None and check.error is not None and check.error.type in _UNCACHED:
        return False
    return error is None or error.type not in _UNCACHED


def _digest(value) -> str:
    text = json.dumps(value, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(text.encode("utf-8", "surrogatepass")).hexdigest()


def _manifest(content: str) -> dict:
    from loader.frontmatter import parse_frontmatter

    try:
        return parse_frontmatter(content)
    except Exception:  # the manifest is informative; a parser bug must not hide the load result
        log.exception("parse_frontmatter failed")
        return {}


def _output(header: dict) -> str:
    output = header.get("output") if isinstance(header.get("output"), str) else ""
    dropped = header.get("dropped")
    if isinstance(dropped, int) and dropped > 0:
        output += f"\n[{dropped} more bytes of output were discarded]"
    return output


# --- talking to the zygote ---------------------------------------------------------------------------------------


def _run(request: dict) -> tuple[dict, object]:
    """Send one job to the zygote and wait for its answer: (header, parsed child answer or None)."""
    current = _settings
    request = {
        **request,
        "timeout": current.timeout,
        "memory_mb": current.memory_mb,
        "packages_dir": current.packages_dir,
        "output_cap": current.output_cap,
        "result_cap": current.result_cap,
        "hidden_paths": list(current.hidden_paths),
    }
    try:
        zygote = _zygote()
    except _Unavailable as exc:
        return {"error": error("LoaderUnavailable", str(exc))}, None
    _stats.bump("jobs")
    # Jobs beyond max_jobs wait in the zygote's queue, so allow for a full round of slow jobs before them.
    header, body = zygote.call(request, wait=current.timeout * 2 + 10)
    if header.get("error"):
        return header, None
    try:
        return header, json.loads(body)
    except ValueError:
        return {**header, "error": error("BadAnswer", "the loader gave an unreadable answer")}, None


class _Unavailable(Exception):
    pass


class _Waiter:
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


class _ZygoteProcess:
    """One running zygote, its request pipe (written under a lock) and the thread that reads its answers.

    The reader never takes the write lock: a caller writing a large request must not stop the answers from being
    read, or the zygote, blocked writing an answer, would stop reading requests and both would wait forever.
    """

    def __init__(self, settings: Settings):
        self.write_lock = threading.Lock()
        self.pending_lock = threading.Lock()
        self.pending: dict[int, _Waiter] = {}
        self.ids = itertools.count(1)
        self.alive = True
        self.ready: dict = {}
        self.started = threading.Event()
        compat = COMPAT_DIR if os.path.isdir(COMPAT_DIR) else ""
        self.proc = _launcher.run(  # our own interpreter running our own module
            subprocess.Popen,
            [
                settings.python,
                "-I",
                "-B",
                "-c",
                _BOOTSTRAP,
                PACKAGE_ROOT,
                compat,
                str(settings.max_jobs),
                str(settings.spares),
                str(os.getpid()),
                settings.drop_privileges if os.geteuid() == 0 else "off",
                settings.load_user,
            ],
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
            raise _Unavailable("the loader process did not start")

    def call(self, request: dict, *, wait: float) -> tuple[dict, bytes]:
        waiter = _Waiter()
        stopped = {"error": error("LoaderCrashed", "the loader process stopped; try again")}, b""
        request_id = self.open(request, waiter)
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


class _Launcher:
    """Starts zygotes from one thread that lives as long as this process.

    A zygote asks the kernel for a signal when its parent dies (loader.parent._die_with_parent), and Linux ties
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


_current: _ZygoteProcess | None = None
_launcher = _Launcher()
_state_lock = threading.Lock()
_start_lock = threading.Lock()


def _zygote() -> _ZygoteProcess:
    global _current
    with _start_lock:
        zygote = _current
        if zygote is not None and zygote.alive:
            return zygote
        if zygote is not None:
            zygote.close()
        try:
            zygote = _ZygoteProcess(_settings)
        except OSError as exc:
            raise _Unavailable(f"the loader process could not start: {exc}") from exc
        _stats.bump("zygote_starts")
        with _state_lock:
            _current = zygote
        return zygote


def _after_fork_in_child() -> None:
    """A forked web worker must not share its parent's zygote: it starts its own on first use."""
    global _current, _state_lock, _start_lock, _flights_lock, _launcher
    zygote, _current = _current, None
    _launcher = _Launcher()  # its thread was not copied
    _state_lock, _start_lock, _flights_lock = threading.Lock(), threading.Lock(), threading.Lock()
    _flights.clear()
    _cache.lock = threading.Lock()
    _stats.lock = threading.Lock()
    if zygote is not None:
        zygote.forget()


os.register_at_fork(after_in_child=_after_fork_in_child)
