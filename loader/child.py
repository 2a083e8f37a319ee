"""One job's life inside a child forked from the zygote: isolate, run the function's module, answer, exit.

Everything here runs after `fork()` in a process that is about to execute untrusted code. `run` never returns: it
writes one length-prefixed JSON answer to its result pipe and leaves through `os._exit`, so nothing the function
registered (atexit hooks, threads, finalisers) runs afterwards.
"""

from __future__ import annotations
import __future__

import asyncio
import contextlib
import importlib
import inspect
import json
import math
import os
import resource
import signal
import sys
import tempfile
import types
import warnings
from enum import Enum
from importlib.util import spec_from_file_location

from loader import confinement
from loader.errors import describe_exception, safe_str

FUNCTION_CLASSES = (("Pipe", "pipe"), ("Filter", "filter"), ("Action", "action"), ("Event", "event"))
VALVES_CLASS = {"valves": "Valves", "user_valves": "UserValves"}
# Open WebUI execs function code from a module that has `from __future__ import annotations`, and exec of a string
# inherits the caller's future flags: so there every annotation in function code stays an unevaluated string.
FUNCTION_COMPILER_FLAGS = __future__.annotations.compiler_flag

PR_SET_PDEATHSIG = 1
FILE_SIZE_LIMIT = 256 * 1024 * 1024
EXTRA_TASKS = 512
MAX_WARNINGS = 20
MAX_JSON_NODES = 200_000
MAX_JSON_DEPTH = 64
CANCEL_GRACE = 0.5  # seconds that tasks left running by the function's code get to handle their cancellation

# Taken before any function code runs, so that code patching `os` cannot stop the child from answering or leaving.
_exit = os._exit
_write = os.write
_dumps = json.dumps


class _TooLarge(Exception):
    pass


# Whether this child has a private mount namespace (set by _isolate): only then may the job's folders be hidden.
_private_mounts = False


def run(
    *,
    job_fd: int,
    result_fd: int,
    output_fd: int,
    devnull_fd: int,
    workdir: str,
    zygote_pid: int,
    prctl=None,
    confine: bool = False,
) -> None:
    """Serve one job in this freshly forked child, then exit; never returns.

    Messages arrive on `job_fd`, each a 4-byte length and JSON. `{"op": "warm"}` (sent to a spare while the
    zygote is idle) loads a throwaway function, so that the pages a load touches are copied now rather than while
    a caller waits; any other message is the job. End of file before a job means the spare was retired.
    `confine`: the zygote found that load children can have mount namespaces of their own (loader/confinement.py).
    """
    status = 0
    try:
        _isolate(job_fd, result_fd, output_fd, devnull_fd, workdir, zygote_pid, prctl, confine)
        while True:
            request = _receive(job_fd)
            if request is None:
                _exit(0)
            if request.get("op") != "warm":
                break
            with contextlib.suppress(Exception):
                warm_up(workdir)
        os.close(job_fd)
        try:
            _prepare_job(request, workdir, zygote_pid, prctl)
        except PrivilegeError as exc:  # fail closed: no function code runs as root by mistake
            message = f"the loader could not switch to an unprivileged user: {exc}"
            answer = {
                "ok": False,
                "error": {"type": "LoaderUnavailable", "message": message, "line": None, "column": None},
            }
        else:
            answer = _answer(request, workdir)
        payload = _encode(answer, int(request.get("result_cap") or 2 * 1024 * 1024))
        _flush_std()
        _send(result_fd, payload)
    except BaseException:  # the child must leave through _exit whatever happened
        status = 70
    finally:
        _exit(status)


def _isolate(job_fd, result_fd, output_fd, devnull_fd, workdir, zygote_pid, prctl, confine=False) -> None:
    global _private_mounts
    os.setsid()
    if prctl is not None:
        prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
    if os.getppid() != zygote_pid:  # the zygote died before the death signal was armed
        _exit(0)

    signal.set_wakeup_fd(-1)
    for signum in (signal.SIGCHLD, signal.SIGTERM, signal.SIGHUP):
        signal.signal(signum, signal.SIG_DFL)
    signal.signal(signal.SIGPIPE, signal.SIG_IGN)
    signal.signal(signal.SIGINT, signal.default_int_handler)
    signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # an oversized write becomes an OSError, not a kill

    os.dup2(devnull_fd, 0)
    os.dup2(output_fd, 1)
    os.dup2(output_fd, 2)
    # Close every other descriptor inherited from the zygote (its request pipe, other jobs' pipes).
    low, high = sorted((job_fd, result_fd))
    os.closerange(3, low)
    os.closerange(low + 1, high)
    os.closerange(high + 1, 1 << 20)

    os.chdir(workdir)
    sys.argv = [""]  # rather than the zygote's, which name the repository
    os.environ["TMPDIR"] = workdir
    tempfile.tempdir = workdir
    sys.stdin = sys.__stdin__ = open(0, encoding="utf-8", closefd=False)
    sys.stdout = sys.__stdout__ = _text_stream(1)
    sys.stderr = sys.__stderr__ = _text_stream(2)
    # As root: a mount namespace and a /dev of our own, an empty capability bounding set (loader/confinement.py).
    _private_mounts = confinement.enter(confine)
    if _private_mounts:
        # Every mount read-only but the scratch directory, DATA_DIR and the shared temporary folders (function code
        # written for Open WebUI may write there at import): a child that keeps root still owns what root owns.
        # Done here, while a spare waits, rather than on a job's clock.
        data_dir = getattr(sys.modules.get("open_webui.env"), "DATA_DIR", None)
        confinement.read_only_except([workdir, str(data_dir) if data_dir else "", "/tmp", "/var/tmp"])


def _receive(job_fd: int) -> dict | None:
    """Read one message from the zygote; None at end of file."""
    head = _read_exactly(job_fd, 4)
    if head is None:
        return None
    body = _read_exactly(job_fd, int.from_bytes(head, "big"))
    return json.loads(body) if body is not None else None


def _read_exactly(fd: int, size: int) -> bytes | None:
    chunks, missing = [], size
    while missing:
        chunk = os.read(fd, min(missing, 1 << 20))
        if not chunk:
            return None
        chunks.append(chunk)
        missing -= len(chunk)
    return b"".join(chunks)


def _prepare_job(request: dict, workdir: str, zygote_pid: int, prctl) -> None:
    _limit_resources(
        request
    )  # before dropping privileges: root may raise a hard limit, the load user may not
    packages_dir = request.get("packages_dir")
    if packages_dir and os.path.isdir(packages_dir) and packages_dir not in sys.path:
        sys.path.append(packages_dir)
        importlib.invalidate_caches()
    hidden = request.get("hidden_paths")
    if _private_mounts and isinstance(hidden, list) and hidden:
        confinement.hide(
            [path for path in hidden if isinstance(path, str)],
            packages_dir if isinstance(packages_dir, str) and packages_dir else None,
        )
    identity = request.get("privileges")
    if identity:
        _drop_privileges(identity, workdir, zygote_pid, prctl)
    elif os.geteuid() == 0:
        # Staying root: its mounts are read-only but for a few folders (see `_isolate`), and without capabilities it
        # cannot undo the mounts, trace or read the server, or override file permissions. Best effort, as
        # everything in loader/confinement.py.
        confinement.drop_capabilities()
    confinement.make_undumpable()  # other children (same user, no capabilities) cannot read our memory


class PrivilegeError(Exception):
    pass


def become(uid: int, gid: int, groups: list[int]) -> None:
    """Take `uid`, `gid` and `groups` as real, effective and saved ids for good; PrivilegeError if that failed."""
    try:
        os.setgroups(groups)
        os.setresgid(gid, gid, gid)
        os.setresuid(uid, uid, uid)
    except (OSError, ValueError, TypeError) as exc:
        raise PrivilegeError(f"{type(exc).__name__}: {exc}") from None
    if os.getresuid() != (uid, uid, uid) or os.getresgid() != (gid, gid, gid):
        raise PrivilegeError(f"the ids are {os.getresuid()}/{os.getresgid()}, not {uid}/{gid}")


def _drop_privileges(identity: dict, workdir: str, zygote_pid: int, prctl) -> None:
    """Run the function's code as the unprivileged load user (the zygote runs as root): it can then neither signal
    the web server nor raise its own limits, and RLIMIT_NPROC applies to it. The scratch directory becomes its own.
    """
    uid, gid = int(identity["uid"]), int(identity["gid"])
    try:
        os.chown(workdir, uid, gid)
    except OSError as exc:
        raise PrivilegeError(f"could not hand over the scratch directory: {exc}") from None
    become(uid, gid, [int(group) for group in identity.get("groups") or [gid]])
    # Changing the effective uid clears the parent-death signal: arm it again, and make sure the zygote is there.
    if prctl is not None:
        prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
    if os.getppid() != zygote_pid:
        _exit(0)
    os.environ["HOME"] = workdir  # root's home is not the load user's to read or write


def _text_stream(fd: int):
    return open(fd, "w", buffering=1, encoding="utf-8", errors="backslashreplace", closefd=False)


def _limit_resources(request: dict) -> None:
    page = os.sysconf("SC_PAGE_SIZE")
    with open("/proc/self/statm", "rb") as statm:
        mapped = int(statm.read().split()[0]) * page
    memory = mapped + int(request.get("memory_mb") or 1024) * 1024 * 1024
    resource.setrlimit(resource.RLIMIT_AS, (memory, memory))
    cpu = math.ceil(float(request.get("timeout") or 10)) + 1
    resource.setrlimit(resource.RLIMIT_CPU, (cpu, cpu + 1))
    resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
    resource.setrlimit(resource.RLIMIT_FSIZE, (FILE_SIZE_LIMIT, FILE_SIZE_LIMIT))
    # RLIMIT_NPROC counts every task of the user, so it cannot be a small number; the number of tasks on the whole
    # machine (an upper bound of the user's) plus a margin leaves threads possible and stops a fork bomb. The
    # kernel does not apply it to root.
    with open("/proc/loadavg", "rb") as loadavg:
        tasks = int(loadavg.read().split()[3].split(b"/")[1])
    resource.setrlimit(resource.RLIMIT_NPROC, (tasks + EXTRA_TASKS, tasks + EXTRA_TASKS))


def _flush_std() -> None:
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except BaseException:  # the function may have replaced or closed them
            pass


def _send(fd: int, payload: bytes) -> None:
    view = memoryview(len(payload).to_bytes(4, "big") + payload)
    while view:
        written = _write(fd, view)
        view = view[written:]


# A typical small function: loading it once in a spare copies (on write) most of the pages a real load touches,
# so the real load, run while a caller waits, finds them already private.
_WARM_SOURCE = '''"""
title: warm-up
"""
from typing import Literal, Optional
from pydantic import BaseModel, Field

class Filter:
    class Valves(BaseModel):
        priority: int = Field(default=0, description="order")
        mode: Literal["a", "b"] = "a"
        note: Optional[str] = Field(default=None, json_schema_extra={"input": {"type": "password"}})

    class UserValves(BaseModel):
        enabled: bool = True

    def __init__(self):
        self.valves = self.Valves()
'''


def warm_up(workdir: str) -> None:
    """Load a throwaway function the way a job would, then forget it."""
    request = {
        "op": "load",
        "content": _WARM_SOURCE,
        "function_id": "sluice_warm_up",
        "valves": {"priority": "1"},
    }
    try:
        _encode(_answer(request, workdir), 1 << 20)
    finally:
        sys.modules.pop("function_sluice_warm_up", None)
        with contextlib.suppress(OSError):
            os.unlink(os.path.join(workdir, "function_sluice_warm_up.py"))


# --- the job itself -------------------------------------------------------------------------------------------


def _answer(request: dict, workdir: str) -> dict:
    memory_mb = int(request.get("memory_mb") or 1024)
    function_id = "".join(ch if ch.isalnum() or ch == "_" else "_" for ch in str(request.get("function_id")))
    path = os.path.join(workdir, f"function_{function_id}.py")
    notes: list[str] = []
    reserve = bytearray(512 * 1024)  # released to report a MemoryError with memory to spare

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("default")
        try:
            answer = _in_event_loop(_load(request, f"function_{function_id}", path, notes, memory_mb))
        except MemoryError as exc:
            del reserve
            answer = {"ok": False, "error": describe_exception(exc, path, memory_mb=memory_mb)}
        except BaseException as exc:  # SystemExit, KeyboardInterrupt, custom BaseExceptions
            answer = {"ok": False, "error": describe_exception(exc, path, memory_mb=memory_mb)}
    for item in caught[:MAX_WARNINGS]:
        where = f" (line {item.lineno})" if item.filename == path else ""
        notes.append(f"{item.category.__name__}: {safe_str(item.message, 500)}{where}")
    answer["warnings"] = notes
    return answer


def _in_event_loop(job):
    """Run the coroutine `job` as Open WebUI runs function code: inside its request handler, so with an event loop
    running in this thread (`asyncio.create_task` and `get_running_loop` work at import; `asyncio.run` fails).

    Tasks the code left behind are cancelled afterwards and given a moment to finish; nothing waits for threads
    it started, since the child leaves through `_exit` anyway. Async options methods are awaited in the same loop.
    """
    loop = asyncio.new_event_loop()
    asyncio.set_event_loop(loop)
    try:
        return loop.run_until_complete(job)
    finally:
        try:
            pending = [task for task in asyncio.all_tasks(loop) if not task.done()]
            for task in pending:
                task.cancel()
            if pending:
                loop.run_until_complete(asyncio.wait(pending, timeout=CANCEL_GRACE))
            loop.close()  # does not wait for the loop's executor threads
        except BaseException:  # the code may have stopped or closed the loop; the answer matters more
            pass
        asyncio.set_event_loop(None)


async def _load(request: dict, module_name: str, path: str, notes: list[str], memory_mb: int) -> dict:
    content = request.get("content") or ""
    with open(path, "w", encoding="utf-8", errors="surrogatepass") as source:
        source.write(content)
    try:
        code = compile(content, path, "exec", flags=FUNCTION_COMPILER_FLAGS, dont_inherit=True)
    except (SyntaxError, ValueError) as exc:
        return {"ok": False, "error": describe_exception(exc, path)}

    module = types.ModuleType(module_name)
    module.__file__ = path
    module.__spec__ = spec_from_file_location(module_name, path)
    module.__loader__ = module.__spec__.loader
    # Registered while it runs: pydantic resolves postponed annotations through sys.modules[cls.__module__].
    sys.modules[module_name] = module
    try:
        exec(code, module.__dict__)  # running the function's code is this child's purpose
    except BaseException as exc:
        return {"ok": False, "error": describe_exception(exc, path, memory_mb=memory_mb)}

    found = next(((name, kind) for name, kind in FUNCTION_CLASSES if _has(module, name)), None)
    if found is None:
        message = "No Pipe, Filter, Action or Event class found"
        return {
            "ok": False,
            "error": {"type": "NoFunctionClass", "message": message, "line": None, "column": None},
        }
    attribute, kind = found
    function_class = getattr(module, attribute)

    try:
        instance = function_class()
    except BaseException as exc:
        error = describe_exception(exc, path, memory_mb=memory_mb)
        error["message"] = f"creating {attribute}() failed: {error['message']}"
        return {"ok": False, "error": error}

    if request.get("op") == "validate":
        kind_name = request.get("kind") or "valves"
        return _check_valves(
            _valves_class(instance, VALVES_CLASS.get(kind_name, "Valves"), notes),
            request.get("values") or {},
            kind_name,
        )

    user = _OptionsUser(request.get("user"))
    answer = {"ok": True, "type": kind, "toggle": False, "user_dependent": False}
    if kind == "filter":
        try:
            answer["toggle"] = bool(getattr(instance, "toggle", False))
        except Exception as exc:
            notes.append(f"toggle could not be read: {safe_str(exc, 500)}")
    valves_class = _valves_class(instance, "Valves", notes)
    for key, cls in (
        ("valves_schema", valves_class),
        ("user_valves_schema", _valves_class(instance, "UserValves", notes)),
    ):
        answer[key] = await _schema(cls, user, notes, answer) if cls is not None else None
        defaults_key = key.replace("_schema", "_defaults")
        answer[defaults_key] = _factory_defaults(cls, answer[key]) if answer[key] is not None else None
    if "valves" in request:
        answer["valves_check"] = _check_valves(valves_class, request.get("valves") or {}, "valves")
    return answer


def _has(module: types.ModuleType, name: str) -> bool:
    try:
        return hasattr(module, name)
    except Exception:  # a module __getattr__ raising something odd means "not there"
        return False


def _valves_class(instance: object, name: str, notes: list[str]):
    """The `Valves`/`UserValves` class as Open WebUI finds it: an attribute of the function instance."""
    try:
        cls = getattr(instance, name, None)
    except Exception as exc:
        notes.append(f"{name} could not be read: {safe_str(exc, 500)}")
        return None
    if cls is None:
        return None
    if not isinstance(cls, type) or not (hasattr(cls, "model_json_schema") or hasattr(cls, "schema")):
        notes.append(f"{name} is not a pydantic model class; it is ignored")
        return None
    return cls


async def _schema(cls: type, user: _OptionsUser, notes: list[str], answer: dict) -> dict | None:
    try:
        schema = cls.model_json_schema() if hasattr(cls, "model_json_schema") else cls.schema()
    except Exception as exc:  # Open WebUI still loads such a function; only its form is lost
        notes.append(
            f"{cls.__name__}: its JSON schema could not be built: {type(exc).__name__}: {safe_str(exc, 1000)}"
        )
        return None
    if not isinstance(schema, dict):
        return None
    properties = schema.get("properties")
    if isinstance(properties, dict):
        for name, prop in properties.items():
            control = prop.get("input") if isinstance(prop, dict) else None
            if isinstance(control, dict) and isinstance(control.get("options"), str):
                control["options"], used_user = await _options(cls, control["options"], user, name, notes)
                answer["user_dependent"] = answer["user_dependent"] or used_user
    return schema


def _factory_defaults(cls: type, schema: dict) -> dict | None:
    """The defaults that fields built by ``default_factory`` would get, which their JSON schema leaves out.

    Open WebUI's schema (kept identical here) has no ``default`` for them, so a form would say nothing about what
    the function will use; the factory is called once, here, so the form can show it. Secrets are left out.
    """
    fields = getattr(cls, "model_fields", None)
    properties = schema.get("properties")
    if not isinstance(fields, dict) or not isinstance(properties, dict):
        return None  # a pydantic v1 model: its schema already carries factory defaults, or nothing
    found: dict = {}
    for name, info in fields.items():
        key = getattr(info, "alias", None) or name
        prop = properties.get(key)
        if getattr(info, "default_factory", None) is None or not isinstance(prop, dict) or "default" in prop:
            continue
        if prop.get("format") == "password" or prop.get("writeOnly") is True:
            continue
        try:
            try:
                value = info.get_default(call_default_factory=True, validated_data={})
            except TypeError:  # pydantic before 2.10 has no validated_data
                value = info.get_default(call_default_factory=True)
            from pydantic import TypeAdapter

            found[key] = TypeAdapter(info.annotation).dump_python(value, mode="json")
        except Exception:  # a factory that fails or a value that cannot be shown: the form says nothing
            continue
    return json_safe(found) if found else None


class _OptionsUser:
    """The user an options method may ask for, as Open WebUI gives it: the full `UserModel.model_dump()`.

    Sluice knows a user by `{id, name, email, role}`; the rest of Open WebUI's user (settings, info, bio,
    timestamps, ...) is filled with its defaults, once, when a method first asks.
    """

    def __init__(self, user: dict | None):
        self.given = user
        self._dump: dict | None = None

    def dump(self) -> dict | None:
        if self.given is None or self._dump is not None:
            return self._dump
        try:
            from open_webui.models.users import UserModel

            fields = {"last_active_at": 0, "updated_at": 0, "created_at": 0, **self.given}
            self._dump = UserModel.model_validate(fields).model_dump()
        except Exception:
            # A user the model refuses, or a compatibility layer the code broke: pass the user as given.
            self._dump = dict(self.given)
        return self._dump


# Open WebUI passes the user only to these parameters, by keyword; any other parameter keeps its default.
USER_PARAMETERS = ("__user__", "user")


async def _options(
    cls: type, method_name: str, user: _OptionsUser, field: str, notes: list[str]
) -> tuple[list, bool]:
    """Resolve `input.options` given as a method name by calling that method of the valves class."""
    try:
        raw = inspect.getattr_static(cls, method_name)
    except AttributeError:
        notes.append(f"{cls.__name__}.{field}: options method {method_name!r} does not exist")
        return [], False
    try:
        if isinstance(raw, (classmethod, staticmethod)) or not inspect.isfunction(raw):
            method = getattr(cls, method_name)
        else:  # a plain method wants an instance; defaults must be enough to build one
            method = getattr(cls(), method_name)
        if not callable(method):
            notes.append(f"{cls.__name__}.{field}: {method_name!r} is not a method")
            return [], False
        wanted = [name for name in USER_PARAMETERS if name in inspect.signature(method).parameters]
        # Like Open WebUI, the user is passed only when there is one; the result depends on it either way.
        kwargs = {name: user.dump() for name in wanted} if user.given is not None else {}
        result = method(**kwargs)
        if inspect.isawaitable(result):  # Open WebUI leaves these unresolved; Sluice awaits them
            result = await result
        if isinstance(result, (str, bytes, dict)) or not hasattr(result, "__iter__"):
            notes.append(f"{cls.__name__}.{field}: options method {method_name!r} did not return a list")
            return [], bool(wanted)
        return list(result), bool(wanted)
    except Exception as exc:  # a failing options method empties the list, it does not fail the load
        notes.append(
            f"{cls.__name__}.{field}: options method {method_name!r} failed: {type(exc).__name__}: "
            f"{safe_str(exc, 500)}"
        )
        return [], False


def _check_valves(cls: type | None, values: dict, kind: str) -> dict:
    """Validate `values` with the function's own class, as Sluice stores them: only what was explicitly set."""
    if cls is None:
        name = VALVES_CLASS.get(kind, "Valves")
        message = f"the function has no {name} class"
        return {
            "ok": False,
            "values": {},
            "errors": [],
            "error": {"type": "NoValvesClass", "message": message, "line": None, "column": None},
        }
    values = {key: value for key, value in dict(values).items() if value is not None}
    try:
        if hasattr(cls, "model_validate"):
            model = cls.model_validate(values)
            dumped = _revealed(model, model.model_dump(exclude_unset=True, mode="json"))
        else:  # a pydantic.v1 model
            model = cls(**values)
            dumped = _revealed(model, model.dict(exclude_unset=True))
    except Exception as exc:  # ValidationError, or a validator raising something else
        return {"ok": False, "values": {}, "errors": _validation_errors(exc), "error": None}
    return {"ok": True, "values": dumped, "errors": [], "error": None}


def _revealed(model, dumped: dict) -> dict:
    """`dumped` with each secret (SecretStr, SecretBytes) at its real value rather than pydantic's "**********".

    Stored masked, a secret valve would be lost for good. The plain (python) dump holds the secret objects at the
    same places as the JSON dump holds their masks: walk both together and take the secret's value there.
    """
    try:
        plain = model.model_dump(exclude_unset=True) if hasattr(model, "model_dump") else dumped
    except Exception:  # a serializer that works only for JSON: keep what pydantic gave
        return dumped
    return _reveal(plain, dumped)


def _reveal(plain, dumped):
    if _is_secret(plain):
        value = plain.get_secret_value()
        return value.decode("utf-8", "replace") if isinstance(value, bytes) else value
    # Where a JSON-only serializer changed the shape, the two no longer match: keep pydantic's JSON there.
    if isinstance(plain, dict) and isinstance(dumped, dict) and len(plain) == len(dumped):
        pairs = zip(dumped.items(), plain.values(), strict=True)
        return {key: _reveal(value, item) for (key, item), value in pairs}
    if (
        isinstance(plain, (list, tuple, set, frozenset))
        and isinstance(dumped, list)
        and len(plain) == len(dumped)
    ):
        return [_reveal(value, item) for value, item in zip(plain, dumped, strict=True)]
    return dumped


def _is_secret(value) -> bool:
    """A pydantic secret (v2 `SecretStr`, `SecretBytes`, `Secret[...]`, or v1's) that knows its real value."""
    secret_types = []
    for module_name, name in (("pydantic.types", "_SecretBase"), ("pydantic.v1.types", "SecretField")):
        module = sys.modules.get(module_name)
        if module is not None and isinstance(getattr(module, name, None), type):
            secret_types.append(getattr(module, name))
    return (
        bool(secret_types) and isinstance(value, tuple(secret_types)) and hasattr(value, "get_secret_value")
    )


def _validation_errors(exc: Exception) -> list[dict]:
    errors = getattr(exc, "errors", None)
    if callable(errors):
        try:
            try:
                items = errors(include_url=False, include_context=False, include_input=False)
            except TypeError:
                items = errors()
            return [
                {
                    "loc": [
                        part if isinstance(part, (str, int)) else safe_str(part)
                        for part in item.get("loc", ())
                    ],
                    "msg": safe_str(item.get("msg", "")),
                    "type": safe_str(item.get("type", "value_error")),
                }
                for item in items
            ]
        except Exception:  # fall back to the exception's text below
            pass
    return [{"loc": [], "msg": safe_str(exc) or type(exc).__name__, "type": type(exc).__name__}]


# --- answering in JSON ------------------------------------------------------------------------------------------


def json_safe(value, budget: list[int] | None = None, depth: int = 0):
    """A copy of `value` that `json.dumps` accepts: schemas may hold sets, enums, bytes, NaN or arbitrary objects."""
    if budget is None:
        budget = [MAX_JSON_NODES]
    budget[0] -= 1
    if budget[0] < 0:
        raise _TooLarge
    if value is None or isinstance(value, (bool, int, str)):
        return value if type(value) in (bool, int, str) or value is None else _primitive(value)
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if depth >= MAX_JSON_DEPTH:
        return safe_str(value, 200)
    if isinstance(value, dict):
        return {_key(key): json_safe(item, budget, depth + 1) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [json_safe(item, budget, depth + 1) for item in value]
    if isinstance(value, (set, frozenset)):
        items = [json_safe(item, budget, depth + 1) for item in value]
        try:
            return sorted(items)
        except TypeError:
            return items
    if isinstance(value, Enum):
        return json_safe(value.value, budget, depth + 1)
    if isinstance(value, (bytes, bytearray)):
        return bytes(value).decode("utf-8", "replace")
    return safe_str(value, 1000)


def _primitive(value):
    """Plain bool/int/str for subclasses (IntEnum, str-based secrets), whose own methods must not run on dump."""
    if isinstance(value, bool):
        return bool(value)
    if isinstance(value, int):
        return int(value)
    return str.__str__(value)


def _key(key) -> str:
    if isinstance(key, str):
        return str.__str__(key)
    if isinstance(key, Enum):
        key = key.value
    return safe_str(key, 200)


def _encode(answer: dict, cap: int) -> bytes:
    try:
        payload = _dumps(
            json_safe(answer), ensure_ascii=True, allow_nan=False, separators=(",", ":")
        ).encode()
    except _TooLarge:
        payload = None
    if payload is None or len(payload) > cap:
        size = f"{len(payload) / 1048576:.1f} MiB of JSON" if payload is not None else "too many values"
        limit = f"{size}; at most {cap / 1048576:g} MiB"
        if _largest_part(answer) in ("values", "valves_check"):
            message = f"the valves values are too large to store ({limit})"
        else:
            message = f"the answer is too large ({limit}): is the valves schema huge?"
        answer = {
            "ok": False,
            "error": {"type": "ResultTooLarge", "message": message, "line": None, "column": None},
            "warnings": answer.get("warnings", [])[:5],
        }
        payload = _dumps(json_safe(answer), ensure_ascii=True).encode()
    return payload


def _largest_part(answer: dict) -> str | None:
    """Which part of an oversized answer makes it so: the schemas, or the valves values being validated."""
    sizes = {}
    for key in (
        "valves_schema",
        "user_valves_schema",
        "valves_defaults",
        "user_valves_defaults",
        "valves_check",
        "values",
    ):
        if answer.get(key) is None:
            continue
        try:
            sizes[key] = len(_dumps(json_safe(answer[key]), ensure_ascii=True))
        except _TooLarge:
            sizes[key] = math.inf
    return max(sizes, key=sizes.get) if sizes else None
