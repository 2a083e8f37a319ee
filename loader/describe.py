"""What a function's code defines, worked out inside a load child: run its module in an event loop as Open WebUI
would, find its class, its valves schemas and defaults, call its options methods, validate valves values, and keep
all of it JSON-safe. `loader.child` calls `answer` once it has isolated itself; nothing here isolates anything.
"""

from __future__ import annotations
import __future__

import asyncio
import inspect
import math
import os
import sys
import types
import warnings
from enum import Enum
from importlib.util import spec_from_file_location
from typing import NamedTuple

from loader import protocol
from loader.errors import describe_exception, safe_str

FUNCTION_CLASSES = (("Pipe", "pipe"), ("Filter", "filter"), ("Action", "action"), ("Event", "event"))
VALVES_CLASS = {"valves": "Valves", "user_valves": "UserValves"}
# Open WebUI execs function code from a module that has `from __future__ import annotations`, and exec of a string
# inherits the caller's future flags: so there every annotation in function code stays an unevaluated string.
FUNCTION_COMPILER_FLAGS = __future__.annotations.compiler_flag
MAX_WARNINGS = 20
MAX_JSON_NODES = 200_000
MAX_JSON_DEPTH = 64
CANCEL_GRACE = 0.5  # seconds that tasks left running by the function's code get to handle their cancellation


class TooLarge(Exception):
    pass


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
        message = "No Pipe, Filter, Action or Event class found"
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
            "error": protocol.error("NoValvesClass", message),
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
        raise TooLarge
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
