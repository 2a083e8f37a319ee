"""Loading a function's code without running it in the caller: the client the server uses, with its settings, its
result cache and the current connection to the warm parent (loader/connection.py).

`load_function` and `validate_valves` hand the code to a warm zygote process (`loader.parent`), which forks one
child per job with a wall-clock timeout, a memory cap and captured output. Calls are thread-safe: a reader thread
dispatches the zygote's answers to the waiting callers by request id. Identical loads are answered from a bounded
cache in this process. If the zygote dies, the calls in flight get a clear error and the next call starts a new one.
"""

from __future__ import annotations

import copy
import hashlib
import json
import logging
import os
import sys
import threading
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, field, fields, replace

from loader import warm_imports
from loader.connection import Unavailable, ZygoteProcess
from loader.json_values import TooLarge, json_safe
from loader.plain_valves import plain_class
from loader.protocol import DEFAULT_OUTPUT_CAP, DEFAULT_RESULT_CAP, error
from loader.results import LoadError, LoadResult, ValvesResult
from loader.valves import check_valves

log = logging.getLogger(__name__)

# At most this many classes built from plain valves specs are kept (see `validate_valves`).
PLAIN_CLASSES = 64


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
    "OutputLimit",  # depends on load_output_mb, which the operator may raise
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
    # Where each function gets a writable home of its own (`<homes_dir>/<function id>`: HOME and the XDG cache,
    # config and data folders), kept across loads and calls; None: the scratch directory, gone with the child.
    homes_dir: str | None = None
    cache_size: int = 256
    # Output kept and shown with a load's answer; the rest is counted, not kept.
    output_cap: int = DEFAULT_OUTPUT_CAP
    # Output a load may print in all: beyond it the load ends with OutputLimit (a flood is a broken function, not
    # something to skim through at 64 KiB a time until the timeout).
    load_output_mb: float = 1.0
    result_cap: int = DEFAULT_RESULT_CAP
    max_jobs: int = 8
    spares: int = 2
    # Seconds without a load after which the spares end (0: kept): an idle server does not hold their memory, and
    # the next load forks a child as a server without spares does, then the spares come back.
    spare_idle: float = 60.0
    python: str = sys.executable
    # When the server runs as root, load children switch to `load_user` before running function code: "auto"
    # unless that user cannot read what function code needs (then they stay root, and it is logged), "always",
    # or "off". See loader.parent.plan_privileges.
    drop_privileges: str = field(default="auto", metadata={"convert": _drop_mode})
    load_user: str = "nobody"
    # Folders (or files) that function code must never read, e.g. the server's instance folder: when the zygote
    # runs as root, each child mounts an empty read-only tmpfs over them before running function code, putting the
    # packages folder back when it lies in one of them (loader/confinement.py).
    hidden_paths: tuple[str, ...] = field(default=(), metadata={"convert": _paths})
    # Running functions (loader/runtime): a call's wall clock, the longest silence between a stream's frames, how
    # many warm workers the parent keeps (each holds one function's instance), and how long a call waits for one.
    run_timeout: float = 60.0
    run_idle_timeout: float = 30.0
    runtime_workers: int = 4
    busy_wait: float = 2.0
    # Seconds a warm worker may sit unused before it ends (0: kept until it must make room): a server that ran
    # functions once does not hold their workers' memory for good.
    worker_idle: float = 300.0
    # MiB each loader's template may grow by importing the modules loaded functions import (loader/warm_imports.py);
    # 0: none are. The app passes SLUICE_LOAD_WARM_IMPORTS_MB (64 by default); code using the loader alone opts in.
    warm_imports_mb: int = 0


# Plain defaults: the loader reads no environment variable of its own; the app hands it every setting (configure).
_settings = Settings()

_UNSET = object()
_ANY_USER = "any user"


# How `configure` reads each setting: by its type, or by the converter its field names. `packages_dir` and
# `homes_dir` are apart, since None (no such folder) is a value they can be set to.
_CONVERTERS = {
    item.name: item.metadata.get("convert") or {"float": float, "int": int, "str": str}[item.type]
    for item in fields(Settings)
    if item.name not in ("packages_dir", "homes_dir")
}


def configure(timeout=None, memory_mb=None, packages_dir=_UNSET, homes_dir=_UNSET, **others) -> Settings:
    """Change how code is loaded (any field of `Settings`); only the arguments given change. Returns the settings
    now in force."""
    global _settings
    unknown = sorted(set(others) - set(_CONVERTERS))
    if unknown:
        raise TypeError(f"configure() got unexpected keyword arguments: {', '.join(unknown)}")
    given = {"timeout": timeout, "memory_mb": memory_mb, **others}
    changes = {key: _CONVERTERS[key](value) for key, value in given.items() if value is not None}
    positive = (
        "timeout",
        "memory_mb",
        "load_output_mb",
        "max_jobs",
        "run_timeout",
        "run_idle_timeout",
        "runtime_workers",
    )
    if (
        any(changes.get(name, 1) <= 0 for name in positive)
        or min(changes.get(name, 0) for name in ("busy_wait", "worker_idle", "spare_idle")) < 0
    ):
        raise ValueError(
            f"{', '.join(positive)} must be positive and busy_wait, worker_idle, spare_idle not negative"
        )
    if packages_dir is not _UNSET:
        changes["packages_dir"] = os.path.abspath(packages_dir) if packages_dir else None
    if homes_dir is not _UNSET:
        changes["homes_dir"] = os.path.abspath(homes_dir) if homes_dir else None
    with _state_lock:
        old, _settings = _settings, replace(_settings, **changes)
    if old.packages_dir != _settings.packages_dir or old.hidden_paths != _settings.hidden_paths:
        clear_cache()
    restart = ("max_jobs", "spares", "spare_idle", "python", "drop_privileges", "load_user")
    if any(getattr(old, name) != getattr(_settings, name) for name in restart):
        shutdown()
    _cache.resize(_settings.cache_size)
    _plain.resize(min(_settings.cache_size, PLAIN_CLASSES))
    return _settings


def settings() -> Settings:
    return _settings


# --- public API ------------------------------------------------------------------------------------------------


def load_function(
    content: str,
    *,
    function_id: str = "function",
    user: dict | None = None,
    valves: dict | None = None,
    during: Callable[[], object] | None = None,
) -> LoadResult:
    """Run `content` in an isolated child and describe the function it defines (see loader/CONTRACT.md).

    `during`: called once in the calling thread while the child works (the caller's own checks, such as its
    database's), else before returning; its exception propagates.
    """
    ran: list[bool] = []

    def during_once() -> None:
        if during is not None and not ran:
            ran.append(True)
            during()

    content_hash = hashlib.sha256(content.encode("utf-8", "surrogatepass")).hexdigest()
    request = {"op": "load", "content": content, "function_id": function_id, "user": user}
    if valves is not None:
        request["valves"] = valves
    base_key = ("load", content_hash, function_id, _digest(valves) if valves is not None else None)
    # A result depends on the user only when an options method took the user; then it is cached per user.
    user_key = _digest(user) if user is not None else "no user"

    def compute():
        worked_out: dict = {}

        def while_loading() -> None:  # the manifest and the modules too are worked out while the child works
            worked_out["manifest"] = _manifest(content)
            if _settings.warm_imports_mb > 0:
                worked_out["modules"] = warm_imports.module_names(content)
            during_once()

        header, answer = _run(request, while_loading)
        manifest = worked_out["manifest"] if "manifest" in worked_out else _manifest(content)
        if worked_out.get("modules") and isinstance(answer, dict) and answer.get("ok"):
            _warm_imports(worked_out["modules"])
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
    else:
        result = _single_flight(base_key + (user_key,), compute)
    during_once()  # a cache hit, a load that could not be sent, or one another thread's request answered
    return result


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
    # What a child learnt of this code's class: a class built from its plain spec, False when it has none.
    plain_key = ("plain", content_hash, function_id, kind)
    plain = _plain.get(plain_key)
    request = {
        "op": "validate",
        "content": content,
        "function_id": function_id,
        "kind": kind,
        "values": values,
        "user": user,
        "plain": plain is None,
    }

    def compute():
        header, answer = _run(request)
        if header.get("error"):
            return ValvesResult(ok=False, error=LoadError.from_answer(header["error"])), None
        if plain is None and isinstance(answer, dict) and answer.get("error") is None and "plain" in answer:
            _plain.put(plain_key, _plain_class(answer["plain"]))
        return ValvesResult.from_answer(answer), key

    result = _cache.get(key)
    if result is not None:
        _stats.bump("cache_hits")
        return result
    if plain:
        answer = _checked_here(plain, values, kind)
        if answer is not None:
            _stats.bump("checked_here")
            return ValvesResult.from_answer(answer)
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
    _plain.clear()


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
        self.counts = {"jobs": 0, "cache_hits": 0, "checked_here": 0, "zygote_starts": 0}

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
# Classes built from plain valves specs (loader/plain_valves.py), by content: a few dozen KiB each, so fewer.
_plain = _Cache(min(_settings.cache_size, PLAIN_CLASSES))
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


def _plain_class(spec) -> type | bool:
    """The class a child's plain spec describes, or False (not plain, or a spec this process refuses)."""
    if spec is None:
        return False
    try:
        return plain_class(spec)
    except Exception:  # outside the grammar (the child ran untrusted code): its checks stay in children
        log.warning("a load child gave a valves spec outside the grammar; its checks stay in the loader")
        return False


def _checked_here(cls: type, values: dict, kind: str) -> dict | None:
    """What a child would answer for `values` against a plain class, worked out in this process (no function code
    runs: the class was built from plain types, loader/plain_valves.py); None when a child must answer, as for
    values too large to send or store, whose error the child words.

    The values make the same JSON round trip as on their way to a child, and the answer as on its way back.
    """
    sent = json.dumps(values, ensure_ascii=True, separators=(",", ":"), default=str)
    if len(sent) > _settings.result_cap:
        return None
    answer = check_valves(cls, json.loads(sent), kind)
    try:
        payload = json.dumps(json_safe(answer), ensure_ascii=True, allow_nan=False, separators=(",", ":"))
    except TooLarge:
        return None
    if len(payload) > _settings.result_cap:
        return None
    return json.loads(payload)


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


def _warm_imports(names: list[str]) -> None:
    """Tell the zygote which modules a function that loaded imports (no answer): its template imports those it can
    while nothing waits, so that the next loads of such functions find them imported."""
    zygote = _current
    if zygote is not None:
        zygote.post({"op": "imports", "names": names, "budget": _settings.warm_imports_mb * 1024 * 1024})


def _output(header: dict) -> str:
    output = header.get("output") if isinstance(header.get("output"), str) else ""
    dropped = header.get("dropped")
    if isinstance(dropped, int) and dropped > 0:
        output += f"\n[{dropped} more bytes of output were discarded]"
    return output


# --- talking to the zygote ---------------------------------------------------------------------------------------


def _run(request: dict, during=None) -> tuple[dict, object]:
    """Send one job to the zygote and wait for its answer: (header, parsed child answer or None); `during` is
    called once the job is sent, before waiting (see `ZygoteProcess.call`)."""
    current = _settings
    if current.warm_imports_mb > 0 and isinstance(request.get("content"), str):
        # What the zygote routes it by: a load importing a package its warm template holds is forked from that one.
        request = {**request, "modules": warm_imports.top_level_packages(request["content"])}
    request = {
        **request,
        "timeout": current.timeout,
        "memory_mb": current.memory_mb,
        "packages_dir": current.packages_dir,
        "homes_dir": current.homes_dir,
        "output_cap": current.output_cap,
        "output_limit": int(current.load_output_mb * 1024 * 1024),
        "result_cap": current.result_cap,
        "hidden_paths": list(current.hidden_paths),
    }
    try:
        zygote = _zygote()
    except Unavailable as exc:
        return {"error": error("LoaderUnavailable", str(exc))}, None
    _stats.bump("jobs")
    # Jobs beyond max_jobs wait in the zygote's queue, so allow for a full round of slow jobs before them.
    header, body = zygote.call(request, wait=current.timeout * 2 + 10, during=during)
    if header.get("error"):
        return header, None
    try:
        return header, json.loads(body)
    except ValueError:
        return {**header, "error": error("BadAnswer", "the loader gave an unreadable answer")}, None


_current: ZygoteProcess | None = None
_state_lock = threading.Lock()
_start_lock = threading.Lock()


def _zygote() -> ZygoteProcess:
    global _current
    with _start_lock:
        zygote = _current
        if zygote is not None and zygote.alive:
            return zygote
        if zygote is not None:
            zygote.close()
        try:
            zygote = ZygoteProcess(_settings)
        except OSError as exc:
            raise Unavailable(f"the loader process could not start: {exc}") from exc
        _stats.bump("zygote_starts")
        with _state_lock:
            _current = zygote
        return zygote


def _after_fork_in_child() -> None:
    """A forked web worker must not share its parent's zygote: it starts its own on first use."""
    global _current, _state_lock, _start_lock, _flights_lock
    zygote, _current = _current, None
    _state_lock, _start_lock, _flights_lock = threading.Lock(), threading.Lock(), threading.Lock()
    _flights.clear()
    _cache.lock = threading.Lock()
    _plain.lock = threading.Lock()
    _stats.lock = threading.Lock()
    if zygote is not None:
        zygote.forget()


os.register_at_fork(after_in_child=_after_fork_in_child)
