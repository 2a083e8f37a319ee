"""Running a function's method: pick the code, its valves and the caller's, build the call's context, call the loader.

Function code never runs here: ``loader.run_function`` runs it in a warm worker of the isolated loader. This module
decides *what* runs and *as whom*, once, for every face (the JSON run route, the console's "Try it" panel and the
gateway in ``services/chat.py``):

- the code: a stored function (for a caller who is not an admin, an inactive function does not exist), or unsaved
  ``content`` (admins only), prepared as a save would prepare it;
- its stored admin valves and the caller's own stored user valves;
- the context: ``__user__`` from the Sluice account, the metadata and the chat, message and session ids (generated
  when the body has none), the model.

What the function does (its result, events, output, and its own exception) is the *run's* answer. What stops the
call from running at all is a ``ServiceError``: not found, not allowed, a method the function's type has not, and
the runtime being busy (``busy``: 503 with Retry-After) or unavailable.
"""

from __future__ import annotations

import dataclasses
import uuid
from typing import Any

import loader
from extensions import db
from loader import RUN_METHODS
from models import ID_PATTERN, Function, User
from services import function_reads, safe_mode, valves
from services.errors import Forbidden, ServiceError
from services.loading import load_in_loader, prepare_code

# The methods each function type has, as the runtime calls them (loader/runtime/calls.py).
METHODS_BY_TYPE = RUN_METHODS
FILTER_METHODS = RUN_METHODS["filter"]
ALL_METHODS = tuple(method for methods in RUN_METHODS.values() for method in methods)

# Errors of the runtime that mean the call never ran: the caller may simply try again.
UNAVAILABLE_TYPES = ("LoaderUnavailable", "LoaderCrashed")
DEFAULT_RETRY_AFTER = 2

# CallContext fields a caller (the gateway) may set through ``extras``; the rest are this module's to fill.
EXTRA_FIELDS = (
    "metadata",
    "chat_id",
    "message_id",
    "session_id",
    "files",
    "task",
    "task_body",
    "tools",
    "features",
    "headers",
    "oauth_token",
    "request_body",
    "always_emit",
)


class RunBusy(ServiceError):
    """Every runtime worker stayed busy past the wait: answered 503 with ``Retry-After``."""

    status = 503
    kind = "busy"

    def __init__(self, retry_after: float | int | None = None):
        seconds = max(1, int(round(float(retry_after)))) if retry_after else DEFAULT_RETRY_AFTER
        super().__init__(f"Sluice is busy running other functions; try again in {seconds} s.")
        self.retry_after = seconds


class RuntimeUnavailable(ServiceError):
    """The loader could not take the call (it is starting again after a crash): answered 503."""

    status = 503
    kind = "runtime_unavailable"

    def __init__(self, message: str):
        super().__init__(f"Sluice could not run the function: {message}")
        self.retry_after = DEFAULT_RETRY_AFTER


class BadMethod(ServiceError):
    kind = "invalid_method"

    def __init__(self, detail: str):
        super().__init__(detail, field="method")


@dataclasses.dataclass
class Unsaved:
    """Code that is not stored (the console's editor): run under ``function_id`` with that function's stored valves
    when it exists, defaults otherwise. Admins only."""

    content: str
    function_id: str = "function"


class Run:
    """A started call: iterate it for the loader's frames (see ``loader.run_function``), ending with one ``done`` or
    ``error`` frame; ``close()`` (or leaving a ``with`` block) cancels it. ``function`` is the stored function, or
    None for unsaved code of a new function; ``type`` the function's type when known."""

    def __init__(self, call: loader.RunCall, first: dict, *, function_id: str, method: str, function, type_):
        self.call = call
        self._first: dict | None = first
        self.function_id = function_id
        self.method = method
        self.function = function
        self.type = type_

    def __iter__(self):
        return self

    def __next__(self) -> dict:
        if self._first is not None:
            frame, self._first = self._first, None
            return frame
        return next(self.call)

    def close(self) -> None:
        self._first = None
        self.call.close()

    def __enter__(self) -> Run:
        return self

    def __exit__(self, *exc_info) -> None:
        self.close()


# --- who may run what -------------------------------------------------------------------------------------------


def _is_admin(caller: Any) -> bool:
    return isinstance(caller, User) and caller.is_admin


def _stored_function(function_id: str, caller: Any) -> Function:
    f = function_reads.get_function(function_id)
    if not _is_admin(caller) and not f.is_active:
        raise function_reads.FunctionNotFound()
    return f


def check_method(method: Any, function_type: str | None) -> str:
    """The method, or ``BadMethod`` (400) when it is unknown or not one the function's type has."""
    if not isinstance(method, str) or method not in ALL_METHODS:
        raise BadMethod(f"Unknown method {method!r}; expected one of {', '.join(ALL_METHODS)}.")
    if function_type is None:  # code that does not load: the run reports why
        return method
    allowed = METHODS_BY_TYPE.get(function_type, ())
    if not allowed:
        raise BadMethod(f"A function of type {function_type} has no method Sluice can run.")
    if method not in allowed:
        raise BadMethod(f"A {function_type} has no {method} method; it can run {', '.join(allowed)}.")
    return method


def caller_user_valves(caller: Any, function_id: str) -> dict:
    """The caller's stored user valves; someone without an account (a plain dict) has none."""
    return valves.stored_user_valves(caller, function_id) if isinstance(caller, User) else {}


# --- the call's context -----------------------------------------------------------------------------------------


def user_record(caller: Any) -> dict | None:
    """``__user__``'s fields from the account (the runtime adds ``valves``)."""
    if isinstance(caller, User):
        return {"id": caller.id, "email": caller.email, "name": caller.name, "role": caller.role}
    if isinstance(caller, dict):
        return {key: caller.get(key) for key in ("id", "email", "name", "role")}
    return None


def model_record(
    model: Any, function_id: str, function_name: str | None, function_type: str | None, body
) -> dict:
    """``__model__``: the model dict given, or one for the model id given (or the body's), as Open WebUI lists it."""
    if isinstance(model, dict):
        return model
    model_id = model if isinstance(model, str) and model else None
    if model_id is None and isinstance(body, dict) and isinstance(body.get("model"), str) and body["model"]:
        model_id = body["model"]
    if model_id is None:
        model_id = function_id if function_type == "pipe" else "sluice-test-model"
    record = {"id": model_id, "name": model_id, "object": "model", "owned_by": "sluice"}
    if function_type == "pipe" and (model_id == function_id or model_id.startswith(function_id + ".")):
        record.update(name=function_name or model_id, owned_by="openai", pipe={"type": "pipe"})
    return record


def build_context(
    *,
    function_id: str,
    method: str,
    body: Any,
    caller: Any,
    model: dict,
    sub: str | None,
    extras: dict | None,
) -> dict:
    """The CallContext fields for ``loader.run_function``: metadata and ids from the body, generated when absent."""
    extras = {key: value for key, value in (extras or {}).items() if key in EXTRA_FIELDS}
    user = user_record(caller)
    given = body.get("metadata") if isinstance(body, dict) else None
    metadata = dict(extras.pop("metadata", None) or given or {})
    if not isinstance(given, dict) and isinstance(body, dict):
        for key in ("chat_id", "session_id"):  # an outlet or action body carries them at its top level
            if isinstance(body.get(key), str) and body[key]:
                metadata.setdefault(key, body[key])
        if method in ("outlet", "action") and isinstance(body.get("id"), str) and body["id"]:
            metadata.setdefault("message_id", body["id"])
    for key in ("chat_id", "message_id", "session_id"):
        chosen = extras.pop(key, None) or metadata.get(key) or str(uuid.uuid4())
        metadata[key] = chosen
    if user is not None:
        metadata.setdefault("user_id", user.get("id"))
    metadata.setdefault("model", model)
    ctx = {
        "body": body,
        "user": user,
        "model": model,
        "metadata": metadata,
        "chat_id": metadata["chat_id"],
        "message_id": metadata["message_id"],
        "session_id": metadata["session_id"],
        "sub_id": sub if method == "action" else None,
    }
    ctx.update(extras)
    return ctx


# --- running --------------------------------------------------------------------------------------------------


def run_call(
    function_or_content: str | Function | Unsaved,
    *,
    method: str,
    body: Any,
    caller: User | dict | None,
    model: Any = None,
    sub: str | None = None,
    stream: bool = False,
    extras: dict | None = None,
    timeout: float | None = None,
) -> Run:
    """Start a call of ``method`` and answer its frames (a ``Run``, iterated like ``loader.RunCall``).

    ``function_or_content``: a function id, a stored ``Function``, or ``Unsaved(content, function_id)`` (only an
    admin caller may run unsaved code). ``caller``: the Sluice account calling (its role decides access; its stored
    user valves are used), or a plain ``{id, email, name, role}`` dict for someone without an account (default user
    valves, a user's access), or None. ``model``: ``__model__`` as a dict, or a model id. ``sub``: a manifold's
    sub-pipe (the body's ``model`` becomes ``{id}.{sub}``) or an action's sub-action. ``extras``: more CallContext
    fields (metadata, files, tools, features, headers, request_body, ...). ``stream``: chunks and output as they
    come (see ``loader.run_function``).

    Raises ``FunctionNotFound`` (404), ``Forbidden`` (unsaved code from a non-admin), ``BadMethod`` (400),
    ``RunBusy`` (503, ``retry_after``), ``RuntimeUnavailable`` (503). Whatever the function itself does, its own
    exceptions included, comes back in the frames.
    """
    safe_mode.refuse("running a function")
    function: Function | None
    if isinstance(function_or_content, Unsaved):
        if not _is_admin(caller):
            raise Forbidden("Only admins may run code that is not saved.")
        content = prepare_code(function_or_content.content)
        function_id = function_reads.normalise_id(function_or_content.function_id)
        if not ID_PATTERN.fullmatch(function_id):
            function_id = "function"
        function = (
            db.session.get(Function, function_id) if function_reads.function_exists(function_id) else None
        )
        loaded = load_in_loader(content, function_id=function_id)
        function_type = loaded.type if loaded.ok else None  # code that does not load fails in the run itself
    else:
        function = (
            function_or_content
            if isinstance(function_or_content, Function)
            else _stored_function(function_or_content, caller)
        )
        if not _is_admin(caller) and not function.is_active:
            raise function_reads.FunctionNotFound()
        content = function.content
        function_id = function.id
        function_type = function.type
    check_method(method, function_type)
    if sub is not None and not isinstance(sub, str):
        raise ServiceError("sub must be a string.", field="sub")
    sub = sub.strip() or None if isinstance(sub, str) else None
    if method == "pipe" and sub and isinstance(body, dict):
        body = {**body, "model": f"{function_id}.{sub}"}
    admin_valves = dict(function.valves) if function is not None and isinstance(function.valves, dict) else {}
    user_valves = caller_user_valves(caller, function_id)
    model_dict = model_record(model, function_id, function.name if function else None, function_type, body)
    ctx = build_context(
        function_id=function_id,
        method=method,
        body=body,
        caller=caller,
        model=model_dict,
        sub=sub,
        extras=extras,
    )
    if method in ("inlet", "request", "pipe") and isinstance(body, dict) and "metadata" not in body:
        # Open WebUI's chat body carries its metadata from the inlet filters to the pipe; a body without any gets
        # the call's, so code reading `body["metadata"]` sees what it would there.
        ctx["body"] = {**body, "metadata": ctx["metadata"]}
    call = loader.run_function(
        content,
        function_id=function_id,
        method=method,
        ctx=ctx,
        admin_valves=admin_valves,
        user_valves=user_valves,
        stream=stream,
        timeout=timeout,
    )
    # The first frame says whether the call got a worker at all; a busy or absent runtime is not the run's answer.
    try:
        first = next(call)
    except StopIteration:
        first = {"kind": "error", "error": {"type": "BadAnswer", "message": "the loader gave no answer"}}
    if first.get("kind") == "error":
        error = first.get("error") or {}
        if error.get("type") == "Busy":
            call.close()
            raise RunBusy(error.get("retry_after"))
        if error.get("type") in UNAVAILABLE_TYPES:
            call.close()
            raise RuntimeUnavailable(error.get("message") or error["type"])
    return Run(call, first, function_id=function_id, method=method, function=function, type_=function_type)


def pipe_text(items: Any) -> str:
    """The text of a pipe's items: text items joined, and OpenAI-style chunks' or completions' content."""
    parts: list[str] = []
    for item in items or []:
        if not isinstance(item, (list, tuple)) or len(item) != 2:
            continue
        kind, value = item
        if kind == "text" and isinstance(value, str):
            parts.append(value)
        elif kind == "json" and isinstance(value, dict):
            for choice in value.get("choices") or []:
                if isinstance(choice, dict):
                    part = (choice.get("delta") or choice.get("message") or {}).get("content")
                    if isinstance(part, str):
                        parts.append(part)
    return "".join(parts)


def collect(call: Run | loader.RunCall) -> dict:
    """The whole call, waited for: ``{result, events, output, ms, error}`` (``error`` None when it succeeded; for a
    pipe also ``text``, the answer's text). A streamed call's result is the list of its items."""
    answer: dict[str, Any] = {"result": None, "events": [], "output": "", "ms": 0.0, "error": None}
    chunks: list = []
    with call:
        for frame in call:
            kind = frame.get("kind")
            if kind == "event":
                answer["events"].append(frame.get("event"))
            elif kind == "chunk":
                chunks.append(frame.get("item"))
            elif kind == "done":
                answer["result"] = chunks if chunks else frame.get("result")
            elif kind == "error":
                answer["error"] = frame.get("error")
            if kind in ("done", "error"):
                answer["output"] = frame.get("output") or ""
                answer["ms"] = frame.get("ms") or 0.0
    if getattr(call, "method", None) == "pipe":
        answer["text"] = pipe_text(answer["result"] if answer["error"] is None else chunks)
    return answer
