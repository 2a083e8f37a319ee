"""What a call gives a function's method: the keyword arguments Open WebUI offers, per method kind.

RUNTIME.md §2 is the table followed here. The first argument is ``body=`` (``event=`` for ``stream``); every other
name is offered only when it is a literal parameter of the method, so a ``**kwargs`` catch-all receives nothing.
"""

from __future__ import annotations

import dataclasses
import importlib
import importlib.util
import inspect
import os
import sys
from collections.abc import Awaitable, Callable, Mapping
from typing import Any

from loader.json_values import json_safe
from loader.valves import valves_class

FILTER_METHODS = ("inlet", "request", "stream", "outlet")

# Offered names by method (RUNTIME.md §2's table, column by column).
OFFERED: dict[str, tuple[str, ...]] = {
    "inlet": (
        "__user__",
        "__event_emitter__",
        "__event_call__",
        "__metadata__",
        "__model__",
        "__id__",
        "__request__",
        "__chat_id__",
        "__message_id__",
        "__oauth_token__",
    ),
    "outlet": (
        "__user__",
        "__event_emitter__",
        "__event_call__",
        "__metadata__",
        "__model__",
        "__id__",
        "__request__",
    ),
    "pipe": (
        "__user__",
        "__event_emitter__",
        "__event_call__",
        "__metadata__",
        "__request__",
        "__chat_id__",
        "__message_id__",
        "__session_id__",
        "__oauth_token__",
        "__files__",
        "__tools__",
        "__task__",
        "__task_body__",
    ),
    "action": ("__user__", "__event_emitter__", "__event_call__", "__model__", "__id__", "__request__"),
}
OFFERED["request"] = (*OFFERED["inlet"], "__features__")
OFFERED["stream"] = (*OFFERED["inlet"], "__body__")

# What a sink receives: sink(kind, payload), kind "event" (payload {type, data}) or "chunk" (a pipe's item).
Sink = Callable[[str, Any], Awaitable[None] | None]


@dataclasses.dataclass
class CallContext:
    """Everything about one call that is not the function's code: who calls, with what, from which chat."""

    function_id: str
    method: str
    body: Any = None  # the chat body; for `stream`, the event (chunk) being filtered
    user: dict | None = None  # {id, email, name, role} as Sluice knows the caller, or None
    user_valves: dict | None = None  # that user's stored values for this function
    admin_valves: dict | None = None  # the function's stored valves
    model: dict | None = None  # __model__ (filters, actions)
    metadata: dict | None = None  # default: the body's own "metadata"
    chat_id: str | None = None  # defaults for these four: the metadata's values
    message_id: str | None = None
    session_id: str | None = None
    files: list | None = None
    task: str | None = None
    task_body: dict | None = None
    tools: dict | None = None
    features: dict | None = None
    sub_id: str | None = None  # an action's sub-action, or a manifold's sub-pipe
    headers: dict | None = None  # the caller's HTTP headers, for the __request__ stand-in
    oauth_token: dict | None = None
    request_body: dict | None = None  # __body__ of `stream`: the chat request the chunk belongs to
    # Open WebUI gives a pipe no emitter without chat, message and session ids (a bare API call). Sluice gives one
    # anyway so the gateway can pass a pipe's status on; False restores Open WebUI's None.
    always_emit: bool = True
    # Filled by the call: the events emitted/asked in order, and what it could not honour.
    events: list[dict] = dataclasses.field(default_factory=list)
    notes: list[str] = dataclasses.field(default_factory=list)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> CallContext:
        """A context from a JSON frame; unknown keys are ignored so that a newer server can talk to this one."""
        names = {field.name for field in dataclasses.fields(cls)} - {"events", "notes"}
        return cls(**{key: value for key, value in data.items() if key in names})

    def note(self, text: str) -> None:
        """Record something the call could not honour, and show it in the call's captured output."""
        self.notes.append(text)
        print(f"sluice: {text}", file=sys.stderr)

    def metadata_dict(self) -> dict:
        if isinstance(self.metadata, dict):
            return self.metadata
        found = self.body.get("metadata") if isinstance(self.body, dict) else None
        return found if isinstance(found, dict) else {}


def offered_names(method: str) -> tuple[str, ...]:
    """The names Open WebUI may pass to ``method`` besides its first argument."""
    try:
        return OFFERED[method]
    except KeyError:
        raise ValueError(f"unknown method {method!r}; expected one of {', '.join(OFFERED)}") from None


def accepted_names(fn: Callable) -> set[str]:
    """The literal parameter names of ``fn`` (``*args``/``**kwargs`` excluded: they receive nothing)."""
    try:
        parameters = inspect.signature(fn).parameters.values()
    except (TypeError, ValueError):
        return set()
    skipped = (inspect.Parameter.VAR_POSITIONAL, inspect.Parameter.VAR_KEYWORD)
    return {parameter.name for parameter in parameters if parameter.kind not in skipped}


def build_kwargs(
    method: str,
    fn: Callable,
    ctx: CallContext,
    *,
    instance: object = None,
    events: EventRecorder | None = None,
) -> dict[str, Any]:
    """The keyword arguments for calling ``fn`` as ``method``: the first argument, then what it asks for."""
    offered = offered_names(method)
    wanted = accepted_names(fn)
    metadata = ctx.metadata_dict()
    body = ctx.body
    if method == "pipe" and isinstance(body, dict) and "metadata" in body:
        body = {key: value for key, value in body.items() if key != "metadata"}  # popped, as Open WebUI does
    kwargs: dict[str, Any] = {"event" if method == "stream" else "body": body}

    def value(name: str) -> Any:
        if name == "__user__":
            return user_record(ctx.user, instance, ctx)
        if name in ("__event_emitter__", "__event_call__"):
            if events is None:
                return None
            if method == "pipe" and not ctx.always_emit and not _has_chat_ids(ctx, metadata):
                return None
            return events.emit if name == "__event_emitter__" else events.call
        if name == "__metadata__":
            return metadata
        if name == "__model__":
            return ctx.model
        if name == "__id__":
            return (ctx.sub_id or ctx.function_id) if method == "action" else ctx.function_id
        if name == "__request__":
            return RequestStandIn(ctx.headers)
        if name in ("__chat_id__", "__message_id__", "__session_id__"):
            key = name.strip("_")
            return getattr(ctx, key) or metadata.get(key)
        if name == "__oauth_token__":
            return ctx.oauth_token
        if name == "__files__":
            return ctx.files if ctx.files is not None else (metadata.get("files") or [])
        if name == "__tools__":
            return ctx.tools if ctx.tools is not None else {}
        if name in ("__task__", "__task_body__"):
            key = name.strip("_")
            found = getattr(ctx, key)
            return found if found is not None else metadata.get(key)
        if name == "__body__":
            return ctx.request_body if ctx.request_body is not None else {}
        if name == "__features__":
            if ctx.features is not None:
                return ctx.features
            found = body.get("features") if isinstance(body, dict) else None
            return found if isinstance(found, dict) else (metadata.get("features") or {})
        raise AssertionError(name)

    for name in offered:
        if name in wanted:
            kwargs[name] = value(name)
    return kwargs


def _has_chat_ids(ctx: CallContext, metadata: dict) -> bool:
    return all(getattr(ctx, key) or metadata.get(key) for key in ("chat_id", "message_id", "session_id"))


# --- __user__ ---------------------------------------------------------------------------------------------------


def user_record(user: dict | None, instance: object, ctx: CallContext) -> dict:
    """``__user__``: a fresh dict per call, with ``valves`` the caller's ``UserValves`` when the function has one."""
    record = _user_fields(user)
    cls = valves_class(instance, "UserValves")
    if cls is not None:
        record["valves"] = user_valves(cls, ctx.user_valves, ctx)
    return record


def _user_fields(user: dict | None) -> dict:
    """The user as Open WebUI gives it (its ``UserModel`` dumped) when the compatibility layer is loaded."""
    if not user:
        return {}
    users = sys.modules.get("open_webui.models.users")
    if users is None and "open_webui" in sys.modules:  # the compatibility layer is there (a loader process)
        try:
            users = importlib.import_module("open_webui.models.users")
        except Exception:
            users = None
    model = getattr(users, "UserModel", None)
    if model is not None:
        try:
            fields = {"last_active_at": 0, "updated_at": 0, "created_at": 0, **user}
            return model.model_validate(fields).model_dump()
        except Exception:  # a user the model refuses, or a layer the code broke: pass the user as given
            pass
    return dict(user)


def user_valves(cls: type, stored: Mapping | None, ctx: CallContext) -> Any:
    """``UserValves(**stored)``; a stored value the class now refuses falls back to that field's default."""
    return build_valves(cls, stored, ctx)


def build_valves(cls: type, stored: Mapping | None, ctx: CallContext) -> Any:
    """``cls(**stored)`` with None values dropped; fields whose stored value fails get their defaults (noted)."""
    if stored is not None and not isinstance(stored, Mapping):
        ctx.note(f"{cls.__name__}: stored values are not a mapping ({type(stored).__name__}); defaults used")
        stored = None
    values = {key: value for key, value in dict(stored or {}).items() if value is not None}
    refused: list[str] = []
    for _ in range(len(values) + 1):
        try:
            instance = cls(**values)
        except Exception as exc:
            failing = _failing_fields(exc, values)
            if not failing:
                break
            refused.extend(failing)
            values = {key: value for key, value in values.items() if key not in failing}
            continue
        if refused:
            ctx.note(f"{cls.__name__}: stored value refused, default used for {', '.join(sorted(refused))}")
        return instance
    if values:
        ctx.note(f"{cls.__name__}: stored values refused, defaults used for {', '.join(sorted(values))}")
    return cls()  # a class that cannot be built from defaults fails the call with its own error


def _failing_fields(exc: Exception, values: dict) -> list[str]:
    errors = getattr(exc, "errors", None)
    if not callable(errors):
        return []
    try:
        items = errors()
    except Exception:
        return []
    found = []
    for item in items:
        loc = item.get("loc") if isinstance(item, dict) else None
        if loc and loc[0] in values and loc[0] not in found:
            found.append(loc[0])
    return found


# --- events -----------------------------------------------------------------------------------------------------


class EventRecorder:
    """``__event_emitter__`` and ``__event_call__`` for one call: events kept in order and passed to a sink at once.

    ``answer`` (an async callable taking the question) answers ``__event_call__``; without one, the question is
    recorded and the answer is None, as a chat without a browser would give.
    """

    def __init__(
        self,
        sink: Sink | None = None,
        answer: Callable[[dict], Awaitable[Any]] | None = None,
        events: list[dict] | None = None,
    ):
        self.events: list[dict] = events if events is not None else []
        self.sink = sink
        self.answer = answer

    async def emit(self, event: Any) -> None:
        await self._record(event, "__event_emitter__")

    async def call(self, event: Any) -> Any:
        recorded = await self._record(event, "__event_call__")
        if self.answer is None:
            return None
        return await self.answer(recorded)

    async def _record(self, event: Any, name: str) -> dict:
        if not isinstance(event, Mapping):
            raise TypeError(
                f"{name} takes a dict {{'type': ..., 'data': {{...}}}}, not {type(event).__name__}"
            )
        kind = event.get("type")
        data = event.get("data", {})
        recorded = {"type": kind if isinstance(kind, str) else str(kind or ""), "data": json_safe(data)}
        self.events.append(recorded)
        if self.sink is not None:
            sent = self.sink("event", recorded)
            if inspect.isawaitable(sent):
                await sent
        return recorded


# --- __request__ ------------------------------------------------------------------------------------------------


def _not_available_base() -> type:
    """The compatibility layer's NotAvailableInSluice, the very class function code sees when it is loaded."""
    module = sys.modules.get("open_webui._unavailable")
    if module is None:  # not in a loader process: read the same file under a private name
        name = "_sluice_runtime_unavailable"
        module = sys.modules.get(name)
        if module is None:
            path = os.path.join(
                os.path.dirname(os.path.dirname(__file__)), "compat", "open_webui", "_unavailable.py"
            )
            spec = importlib.util.spec_from_file_location(name, path)
            module = importlib.util.module_from_spec(spec)
            sys.modules[name] = module
            spec.loader.exec_module(module)
    return module.NotAvailableInSluice


_missing_classes: dict[type, type] = {}


def not_available(name: str) -> Exception:
    """The compatibility layer's "not available in Sluice" error, also an AttributeError so `getattr(x, n, None)` works."""
    base = _not_available_base()
    cls = _missing_classes.get(base)
    if cls is None:
        cls = _missing_classes[base] = type("NotAvailableInSluice", (base, AttributeError), {})
    return cls(name)


class _State:
    """``request.app.state`` / ``request.state``: attributes function code sets are kept; any other is missing."""

    def __init__(self, path: str):
        object.__setattr__(self, "_sluice_path", path)

    def __getattr__(self, name: str) -> Any:
        if name.startswith("__"):
            raise AttributeError(name)
        raise not_available(f"{self._sluice_path}.{name}")


class _App:
    def __init__(self):
        self.state = _State("request.app.state")

    def __getattr__(self, name: str) -> Any:
        if name.startswith("__"):
            raise AttributeError(name)
        raise not_available(f"request.app.{name}")


class Headers(Mapping):
    """The caller's headers, looked up without regard to case as Starlette's are."""

    def __init__(self, headers: Mapping | None = None):
        self._items = {str(key).lower(): str(value) for key, value in dict(headers or {}).items()}

    def __getitem__(self, key: str) -> str:
        return self._items[str(key).lower()]

    def __iter__(self):
        return iter(self._items)

    def __len__(self) -> int:
        return len(self._items)

    def __repr__(self) -> str:
        return f"Headers({self._items!r})"


class RequestStandIn:
    """``__request__``: the caller's headers and an ``app.state``; anything else raises "not available in Sluice"."""

    method = "POST"

    def __init__(self, headers: Mapping | None = None):
        self.headers = Headers(headers)
        self.app = _App()
        self.state = _State("request.state")

    def __getattr__(self, name: str) -> Any:
        if name.startswith("__"):
            raise AttributeError(name)
        raise not_available(f"request.{name}")
