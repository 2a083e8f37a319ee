"""What a function's code defines, worked out inside a load child: run its module in an event loop as Open WebUI
would, find its class, its valves schemas and defaults, call its options methods, validate valves values, and keep
all of it JSON-safe. `loader.child` calls `answer` once it has isolated itself; nothing here isolates anything.
"""

from __future__ import annotations
import __future__

import asyncio
import inspect
import os
import sys
import types
import warnings
from importlib.util import spec_from_file_location
from typing import NamedTuple

from loader import protocol
from loader.errors import describe_exception, safe_str
from loader.json_values import json_safe
from loader.plain_valves import plain_spec
from loader.results import FUNCTION_TYPES, MAX_ICON_CHARS
from loader.valves import VALVES_CLASS, check_valves, valves_class

# The class that makes a function of each type, in the order Open WebUI looks for them (Pipe before Filter, ...).
FUNCTION_CLASSES = tuple((kind.capitalize(), kind) for kind in FUNCTION_TYPES)
# Open WebUI execs function code from a module that has `from __future__ import annotations`, and exec of a string
# inherits the caller's future flags: so there every annotation in function code stays an unevaluated string.
FUNCTION_COMPILER_FLAGS = __future__.annotations.compiler_flag
MAX_WARNINGS = 20
CANCEL_GRACE = 0.5  # seconds that tasks left running by the function's code get to handle their cancellation


def answer(request: dict, workdir: str) -> dict:
    memory_mb = int(request.get("memory_mb") or 1024)
    module_name, path = module_path(workdir, request.get("function_id"))
    notes: list[str] = []
    reserve = bytearray(512 * 1024)  # released to report a MemoryError with memory to spare

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("default")
        try:
            answer = _in_event_loop(_load(request, module_name, path, notes, memory_mb))
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


def module_path(workdir: str, function_id) -> tuple[str, str]:
    """The module name a function's code runs as, and the file its source is written to (tracebacks name it)."""
    name = "".join(ch if ch.isalnum() or ch == "_" else "_" for ch in str(function_id))
    return f"function_{name}", os.path.join(workdir, f"function_{name}.py")


class Loaded(NamedTuple):
    """What `instantiate` made of a function's source: its instance and kind, or the load error."""

    error: dict | None
    instance: object = None
    kind: str | None = None


def instantiate(content: str, module_name: str, path: str, memory_mb: int) -> Loaded:
    """Run the function's module as Open WebUI does and create its instance, in this process.

    Load children (`_load`) and runtime workers (loader/runtime/worker.py) both come here, so function code is
    compiled and set up the same way for both. Call it with an event loop running in the thread.
    """
    with open(path, "w", encoding="utf-8", errors="surrogatepass") as source:
        source.write(content)
    try:
        code = compile(content, path, "exec", flags=FUNCTION_COMPILER_FLAGS, dont_inherit=True)
    except (SyntaxError, ValueError) as exc:
        return Loaded(describe_exception(exc, path))

    module = types.ModuleType(module_name)
    module.__file__ = path
    module.__spec__ = spec_from_file_location(module_name, path)
    module.__loader__ = module.__spec__.loader
    # Registered while it runs: pydantic resolves postponed annotations through sys.modules[cls.__module__].
    sys.modules[module_name] = module
    try:
        exec(code, module.__dict__)  # running the function's code is this child's purpose
    except BaseException as exc:
        return Loaded(describe_exception(exc, path, memory_mb=memory_mb))

    found = next(((name, kind) for name, kind in FUNCTION_CLASSES if _has(module, name)), None)
    if found is None:
        names = [name for name, _ in FUNCTION_CLASSES]
        message = f"No {', '.join(names[:-1])} or {names[-1]} class found"
        return Loaded(protocol.error("NoFunctionClass", message))
    attribute, kind = found
    function_class = getattr(module, attribute)

    try:
        instance = function_class()
    except BaseException as exc:
        error = describe_exception(exc, path, memory_mb=memory_mb)
        error["message"] = f"creating {attribute}() failed: {error['message']}"
        return Loaded(error)
    return Loaded(None, instance, kind)


async def _load(request: dict, module_name: str, path: str, notes: list[str], memory_mb: int) -> dict:
    loaded = instantiate(request.get("content") or "", module_name, path, memory_mb)
    if loaded.error is not None:
        return {"ok": False, "error": loaded.error}
    instance, kind = loaded.instance, loaded.kind

    if request.get("op") == "validate":
        kind_name = request.get("kind") or "valves"
        cls = valves_class(instance, VALVES_CLASS.get(kind_name, "Valves"), notes)
        checked = check_valves(cls, request.get("values") or {}, kind_name)
        if request.get("plain") and cls is not None:
            # So that the caller can check the next values itself (loader/plain_valves.py).
            checked["plain"] = plain_spec(cls)
        return checked

    user = _OptionsUser(request.get("user"))
    answer = {"ok": True, "type": kind, "toggle": False, "user_dependent": False}
    if kind == "filter":
        try:
            answer["toggle"] = bool(getattr(instance, "toggle", False))
        except Exception as exc:
            notes.append(f"toggle could not be read: {safe_str(exc, 500)}")
    answer["icon"] = _icon(instance, notes)
    admin_class = valves_class(instance, "Valves", notes)
    for key, cls in (
        ("valves_schema", admin_class),
        ("user_valves_schema", valves_class(instance, "UserValves", notes)),
    ):
        answer[key] = await _schema(cls, user, notes, answer) if cls is not None else None
        defaults_key = key.replace("_schema", "_defaults")
        answer[defaults_key] = _factory_defaults(cls, answer[key]) if answer[key] is not None else None
    if "valves" in request:
        answer["valves_check"] = check_valves(admin_class, request.get("valves") or {}, "valves")
    return answer


# The attributes Open WebUI shows as a filter's or action's icon when the frontmatter has no `icon_url`, in its
# order: filters and actions mostly set `self.icon = "data:image/svg+xml;base64,..."` in `__init__`, a few a class
# attribute; `icon_url` is read first there, so it is here.
ICON_ATTRIBUTES = ("icon_url", "icon")


def _icon(instance: object, notes: list[str]) -> str | None:
    """The icon the function's instance names, as plain text (a string subclass's own methods never run), or None.

    Anything but a non-empty string is no icon; one longer than `MAX_ICON_CHARS` is left out with a warning, so a
    huge attribute cannot swell every answer and stored row. Whether it is safe to show is the app's decision.
    """
    for name in ICON_ATTRIBUTES:
        try:
            value = getattr(instance, name, None)
        except Exception as exc:  # a property that raises: no icon, the load goes on
            notes.append(f"{name} could not be read: {safe_str(exc, 500)}")
            continue
        if not isinstance(value, str):
            continue
        value = str.__str__(value)
        if not value.strip():
            continue
        if len(value) > MAX_ICON_CHARS:
            notes.append(
                f"{name} is ignored: {len(value)} characters, more than the {MAX_ICON_CHARS} an icon may have"
            )
            continue
        return value
    return None


def _has(module: types.ModuleType, name: str) -> bool:
    try:
        return hasattr(module, name)
    except Exception:  # a module __getattr__ raising something odd means "not there"
        return False


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
