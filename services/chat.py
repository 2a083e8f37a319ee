"""Chats through Sluice's functions, as Open WebUI runs them: the pipes as models, the filters that apply, and a
chat's inlet chain, pipe and outlet chain, shaped as OpenAI chat completions (RUNTIME.md §3, §4, §7).

The gateway's routes (``blueprints/gateway.py``) parse and answer; everything they decide is here. Function code
runs only in the loader's workers (``services.running``).

Sluice has no models of its own to attach filters to, so the filters that apply to a chat are the active
**global** filters (a toggle filter only when its id is among the request's ``filter_ids``); a filter that is not
global applies to no model.
"""

from __future__ import annotations

import hashlib
import json
import logging
import re
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import select

import loader
from extensions import db
from loader.runtime import filter_order, filter_priority
from models import ApiKey, Function, User
from services import accounts, running
from services.errors import NotFound, ServiceError

log = logging.getLogger(__name__)

# A model list reads each pipe's `pipes`; one that takes longer than this offers no models this time.
PIPES_TIMEOUT = 10.0
# The stream phase costs a worker round trip per chunk per filter: a filter whose code defines no `stream` method
# (which would pass every chunk through unchanged) is left out of it without asking its worker.
STREAM_METHOD = re.compile(r"\bdef\s+stream\s*\(")


class ChatError(ServiceError):
    """A function failed a chat: its message for the caller, the status the gateway answers."""


# --- who a call runs for --------------------------------------------------------------------------------------


@dataclass
class Actor:
    """Whom function code sees as ``__user__``: a Sluice account (its stored user valves apply) or a user that
    Open WebUI named and Sluice does not know (``user`` None: default user valves)."""

    user: User | None
    info: dict

    @classmethod
    def of(cls, user: User) -> Actor:
        return cls(user, user.to_public())


def may_act_for_others(key: ApiKey) -> bool:
    """An admin's key (a connection key is one, limited to the gateway) may speak for the user a request names;
    any other key speaks for its own owner. Checked at each call: a demoted admin's keys lose the right."""
    return key.user.is_admin


def actor_for(key: ApiKey, claimed: Any) -> Actor:
    """The user a gateway call runs as: the key's owner, unless the key may act for others and the request names a
    user (``{"id", "email", "name", "role"}``, as Open WebUI sends it), matched to a Sluice account by email."""
    if not may_act_for_others(key) or not isinstance(claimed, dict):
        return Actor.of(key.user)
    email = accounts.normalise_email(str(claimed.get("email") or ""))
    if not email:
        return Actor.of(key.user)
    account = db.session.scalar(select(User).where(User.email == email))
    if account is not None:
        return Actor.of(account)
    info = {
        "id": str(claimed.get("id") or ""),
        "email": email,
        "name": str(claimed.get("name") or ""),
        "role": str(claimed.get("role") or "user"),
    }
    return Actor(None, info)


# --- the functions involved -----------------------------------------------------------------------------------


def _active(kind: str) -> list[Function]:
    query = select(Function).where(Function.type == kind, Function.is_active.is_(True)).order_by(Function.id)
    return [f for f in db.session.scalars(query) if f.load_status == "ok"]


def _stored_valves(f: Function) -> dict:
    return dict(f.valves) if isinstance(f.valves, dict) else {}


def function_for(model_or_id: str, *, active_only: bool = True) -> Function:
    """The function behind a model id or a function id (``fn`` or ``fn.sub``)."""
    function_id = str(model_or_id or "").split(".", 1)[0]
    f = db.session.get(Function, function_id) if function_id else None
    if f is None or (active_only and not f.is_active):
        raise NotFound(f"There is no active function with the id {function_id!r}.", kind="function_not_found")
    return f


@dataclass(frozen=True)
class _PipeCode:
    """What listing a pipe's models needs, read from the database first (listing may run in other threads)."""

    id: str
    name: str
    content: str
    valves: str  # the stored admin valves as JSON, part of the cache key

    @classmethod
    def of(cls, f: Function) -> _PipeCode:
        valves = json.dumps(_stored_valves(f), sort_keys=True, default=str)
        return cls(f.id, f.name, f.content, valves)


# What each pipe offers, kept for a few seconds: every chat looks its model up, and Open WebUI reads the list often.
# The key holds the code and the valves, so a change is seen at once; a failed listing is not kept.
PIPES_KEPT_SECONDS = 5.0
_offered: dict[tuple[str, str, str], tuple[float, list[dict]]] = {}
_offered_lock = threading.Lock()


def _pipe_models(pipe: _PipeCode) -> list[dict]:
    key = (pipe.id, hashlib.sha256(pipe.content.encode("utf-8", "surrogatepass")).hexdigest(), pipe.valves)
    with _offered_lock:
        kept = _offered.get(key)
    if kept is not None and time.monotonic() - kept[0] < PIPES_KEPT_SECONDS:
        return kept[1]
    outcome = loader.run_function_collect(
        pipe.content,
        function_id=pipe.id,
        method="pipes",
        admin_valves=json.loads(pipe.valves),
        timeout=PIPES_TIMEOUT,
    )
    if not outcome.ok or not isinstance(outcome.result, list):
        log.warning("Pipe %s offers no models: %s", pipe.id, (outcome.error or {}).get("message"))
        return []
    models = []
    for item in outcome.result:
        if isinstance(item, dict) and item.get("id"):
            name = item.get("name") if item.get("sub") is not None else pipe.name
            models.append({"id": str(item["id"]), "name": str(name or ""), "sub": item.get("sub")})
    with _offered_lock:
        if len(_offered) > 1024:
            _offered.clear()
        _offered[key] = (time.monotonic(), models)
    return models


def list_pipe_models(f: Function) -> list[dict]:
    """The models one pipe function offers: ``[{id, name, sub}]`` (a manifold's sub-pipes each as ``fn.sub``).

    A manifold's ``pipes`` is function code, read in its worker with its admin valves set, as Open WebUI reads it;
    it takes no user, so no user valves either.
    """
    return _pipe_models(_PipeCode.of(f))


def _model_entry(model: dict, f: Function) -> dict:
    # No `pipe` key: Open WebUI takes a model carrying one for a function of its own and would not call Sluice.
    return {
        "id": model["id"],
        "name": model["name"],
        "object": "model",
        "created": int(f.created_at or 0),
        "owned_by": "openai",
        "pipeline": {"type": "pipe", "valves": f.valves_schema is not None},
    }


def filter_priority_of(f: Function) -> float:
    return filter_priority(_stored_valves(f), valves_schema=f.valves_schema)


def _filter_entry(f: Function) -> dict:
    return {
        "id": f.id,
        "name": f.name,
        "object": "model",
        "created": int(f.created_at or 0),
        "owned_by": "openai",
        "pipeline": {
            "type": "filter",
            "valves": f.valves_schema is not None,
            # Global filters apply to every model; Sluice has no models to attach others to. A toggle filter runs
            # only in a chat whose filter_ids name it, which Open WebUI never does for a connection's filters.
            "pipelines": ["*"] if f.is_global and not _is_toggle(f) else [],
            "priority": filter_priority_of(f),
        },
    }


def models_list() -> dict:
    """``GET /v1/models``: the active pipes as models, then the active filters as Pipelines filter items."""
    pipes = _active("pipe")
    codes = [_PipeCode.of(f) for f in pipes]
    # Each pipe's list comes from its own worker: ask them all at once.
    with ThreadPoolExecutor(max_workers=max(1, min(8, len(codes)))) as pool:
        offered = list(pool.map(_pipe_models, codes))
    data = []
    for f, models in zip(pipes, offered, strict=True):
        data.extend(_model_entry(model, f) for model in models)
    data.extend(_filter_entry(f) for f in filter_order_of(_active("filter")))
    return {"object": "list", "data": data, "pipelines": True}


def pipelines_list() -> dict:
    """``GET /v1/pipelines``: one item per active function, for Open WebUI's Pipelines admin page."""
    query = select(Function).where(Function.is_active.is_(True)).order_by(Function.id)
    return {
        "data": [
            {"id": f.id, "name": f.name, "type": f.type, "valves": f.valves_schema is not None}
            for f in db.session.scalars(query)
        ]
    }


def filter_order_of(functions: list[Function]) -> list[Function]:
    ordered = filter_order(
        [{"id": f.id, "priority": filter_priority_of(f), "function": f} for f in functions]
    )
    return [item["function"] for item in ordered]


def _filter_ids(body: dict) -> list[str]:
    found = body.get("filter_ids")
    if found is None and isinstance(body.get("metadata"), dict):
        found = body["metadata"].get("filter_ids")
    return [str(item) for item in found] if isinstance(found, list) else []


def _is_toggle(f: Function) -> bool:
    return bool((f.meta or {}).get("toggle"))


def chat_filters(body: dict) -> list[Function]:
    """The filters that run on a chat, in Open WebUI's order: the active global ones; a toggle filter only when the
    request's ``filter_ids`` name it."""
    chosen = _filter_ids(body)
    applies = [
        f for f in _active("filter") if f.is_global and (not (f.meta or {}).get("toggle") or f.id in chosen)
    ]
    return filter_order_of(applies)


def find_model(model_id: str) -> tuple[Function, dict]:
    """The pipe function and model entry for a model id, or NotFound."""
    if not isinstance(model_id, str) or not model_id:
        raise ServiceError("The request names no model.", status=400)
    try:
        f = function_for(model_id)
    except NotFound:
        f = None
    if f is not None and f.type == "pipe" and f.load_status == "ok":
        for model in list_pipe_models(f):
            if model["id"] == model_id:
                return f, model
    raise NotFound(f"There is no model {model_id!r} here.", kind="model_not_found")


# --- one function call ------------------------------------------------------------------------------------------


def _start(
    f: Function,
    method: str,
    body: Any,
    actor: Actor,
    *,
    model: dict | None = None,
    extras: dict | None = None,
    stream: bool = False,
) -> running.Run:
    """Start one call of a stored function's method for ``actor`` (their stored user valves, else defaults)."""
    caller = actor.user if actor.user is not None else dict(actor.info)
    return running.run_call(
        f, method=method, body=body, caller=caller, model=model, stream=stream, extras=extras
    )


def _error_status(error: dict) -> int:
    # The function failed (its exception, its limits): the caller's request is what it could not answer. A busy or
    # absent runtime never gets here: running.run_call raises those (503) before the call runs.
    return 504 if error.get("type") == "Timeout" else 400


def error_text(error: dict | None) -> str:
    error = error or {}
    message = str(error.get("message") or "").strip()
    kind = str(error.get("type") or "Error")
    return message if message.startswith(kind) or not message else f"{kind}: {message}"


def call_failed(error: dict | None) -> ChatError:
    error = error or {}
    return ChatError(error_text(error), status=_error_status(error), kind="run_failed")


@dataclass
class Phase:
    """The outcome of running one method of a function over a body: the new body, and the events it emitted."""

    body: Any
    events: list = field(default_factory=list)


def run_phase(
    f: Function,
    method: str,
    body: Any,
    actor: Actor,
    *,
    model: dict | None = None,
    extras: dict | None = None,
    on_event: Callable[[dict], None] | None = None,
) -> Phase:
    """Run one filter method (``inlet``, ``outlet``, ``stream``) and return its result; ChatError when it fails."""
    events: list = []
    with _start(f, method, body, actor, model=model, extras=extras) as call:
        for frame in call:
            kind = frame.get("kind")
            if kind == "event":
                events.append(frame.get("event"))
                if on_event is not None:
                    on_event(frame.get("event"))
            elif kind == "done":
                return Phase(frame.get("result"), events)
            elif kind == "error":
                raise call_failed(frame.get("error"))
    raise call_failed({"type": "BadAnswer", "message": "the call ended without an answer"})


def run_chain(
    filters: list[Function],
    method: str,
    body: Any,
    actor: Actor,
    *,
    model: dict | None = None,
    extras: dict | None = None,
    on_event: Callable[[dict], None] | None = None,
    strict: bool = True,
) -> Any:
    """Each filter's ``method`` in order, each one's answer the next one's body. ``strict``: a failure fails the
    chain (inlet); otherwise it is logged and the body passes on unchanged (outlet)."""
    for f in filters:
        try:
            answer = run_phase(f, method, body, actor, model=model, extras=extras, on_event=on_event).body
        except ServiceError as exc:
            if strict:
                raise
            log.warning("Filter %s %s failed, the body passes on: %s", f.id, method, exc.detail)
            continue
        if method == "stream" and not answer:
            return None  # a falsy stream answer drops the chunk
        body = answer
    return body


# --- the chat -----------------------------------------------------------------------------------------------------


def completion_id(model_id: str) -> str:
    return f"{model_id}-{uuid.uuid4()}"


def chunk(cid: str, model_id: str, delta: dict, finish_reason: str | None = None) -> dict:
    return {
        "id": cid,
        "object": "chat.completion.chunk",
        "created": int(time.time()),
        "model": model_id,
        "choices": [{"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish_reason}],
    }


def event_chunk(cid: str, model_id: str, event: dict) -> dict:
    """An event as Open WebUI reads one inline in a stream: a chunk with a top-level ``event``."""
    return {
        "id": cid,
        "object": "chat.completion.chunk",
        "created": int(time.time()),
        "model": model_id,
        "choices": [],
        "event": event,
    }


def sse(data: Any) -> str:
    text = data if isinstance(data, str) else json.dumps(data, ensure_ascii=False, separators=(",", ":"))
    return f"data: {text}\n\n"


@dataclass
class Chat:
    """One ``/v1/chat/completions`` request, ready to run: the pipe, the filters and who it runs for."""

    body: dict
    actor: Actor
    function: Function
    model: dict
    filters: list[Function]
    stream_filters: list[Function]
    id: str
    extras: dict

    @property
    def model_id(self) -> str:
        return self.model["id"]

    @property
    def call_options(self) -> dict:
        return {"model": self.model, "extras": self.extras}

    def pipe_body(self) -> dict:
        return {key: value for key, value in self.body.items() if key not in ("metadata", "filter_ids")}

    def outlet_body(self, content: str) -> dict:
        messages = list(self.body.get("messages") or [])
        messages.append(
            {"id": self.id, "role": "assistant", "content": content, "timestamp": int(time.time())}
        )
        return {
            "model": self.model_id,
            "messages": messages,
            "filter_ids": _filter_ids(self.body),
            "chat_id": None,
            "session_id": None,
            "id": self.id,
        }


# Never shown to function code: the caller's credentials.
PRIVATE_HEADERS = frozenset({"authorization", "cookie", "x-api-key", "proxy-authorization"})


def forwarded_headers(headers: Any) -> dict:
    """The request's headers for ``__request__.headers`` (Open WebUI's ``X-OpenWebUI-*`` among them), without the
    caller's credentials."""
    return {str(k): str(v) for k, v in dict(headers or {}).items() if str(k).lower() not in PRIVATE_HEADERS}


def prepare_chat(key: ApiKey, body: Any, headers: Any = None) -> Chat:
    """Check a chat request, pick its pipe and filters and whom it runs for.

    A body whose ``user`` is an object, sent with a key that may act for others, comes from Open WebUI through a
    Pipelines connection: it has already called the filters' ``/filter/inlet`` routes (and will call their
    outlets), so the inlet and outlet chains are not run again here; the stream phase, which that protocol lacks,
    still is. Any other key gets every filter, whatever its body says.
    """
    if not isinstance(body, dict):
        raise ServiceError("The request body must be a JSON object.", status=400)
    if not isinstance(body.get("messages"), list):
        raise ServiceError("The request needs `messages`, a list.", status=400)
    claimed = body.get("user")
    actor = actor_for(key, claimed)
    f, model = find_model(body.get("model"))
    via_pipelines = isinstance(claimed, dict) and may_act_for_others(key)
    body = {k: v for k, v in body.items() if not (k == "user" and isinstance(v, dict))}
    applying = chat_filters(body)
    stream_filters = [flt for flt in applying if STREAM_METHOD.search(flt.content or "")]
    cid = completion_id(model["id"])
    metadata = {
        "user_id": actor.info.get("id"),
        "chat_id": None,
        "message_id": cid,
        "session_id": None,
        "filter_ids": _filter_ids(body),
        "model": _model_entry(model, f),
        "direct": False,
    }
    extras = {"metadata": metadata, "message_id": cid, "headers": forwarded_headers(headers)}
    # Filters read it from the body, as in Open WebUI: Sluice's, not the caller's, since it names the user.
    body["metadata"] = metadata
    return Chat(
        body=body,
        actor=actor,
        function=f,
        model=_model_entry(model, f),
        filters=[] if via_pipelines else applying,
        stream_filters=stream_filters,
        id=cid,
        extras=extras,
    )


def run_inlets(chat: Chat, on_event: Callable[[dict], None] | None = None) -> None:
    """The inlet chain; its answer becomes the chat's body. A failing inlet fails the chat (ChatError)."""
    if not chat.filters:
        return
    answer = run_chain(
        chat.filters, "inlet", chat.body, chat.actor, model=chat.model, extras=chat.extras, on_event=on_event
    )
    if not isinstance(answer, dict):
        raise ChatError("A filter's inlet did not answer a chat body (a JSON object).", status=400)
    chat.body = answer


def run_outlets(chat: Chat, content: str, on_event: Callable[[dict], None] | None = None) -> str:
    """The outlet chain over the finished answer; the answer's text as the outlets left it (errors only logged)."""
    if not chat.filters:
        return content
    answer = run_chain(
        chat.filters,
        "outlet",
        chat.outlet_body(content),
        chat.actor,
        model=chat.model,
        extras=chat.extras,
        on_event=on_event,
        strict=False,
    )
    messages = answer.get("messages") if isinstance(answer, dict) else None
    if isinstance(messages, list) and messages and isinstance(messages[-1], dict):
        last = messages[-1]
        if last.get("role") == "assistant" and isinstance(last.get("content"), str):
            return last["content"]
    return content


def complete(chat: Chat) -> dict:
    """A chat without streaming: inlets, the pipe, outlets; a ``chat.completion`` (or the pipe's own object)."""
    run_inlets(chat)
    outcome = running.collect(
        _start(chat.function, "pipe", chat.pipe_body(), chat.actor, **chat.call_options)
    )
    if outcome["error"] is not None:
        raise call_failed(outcome["error"])
    items = [tuple(item) for item in outcome["result"] or []]
    if len(items) == 1 and items[0][0] == "json" and isinstance(items[0][1], dict):
        return _own_answer(chat, items[0][1])
    content = run_outlets(chat, running.pipe_text(items))
    return {
        "id": chat.id,
        "object": "chat.completion",
        "created": int(time.time()),
        "model": chat.model_id,
        "choices": [
            {
                "index": 0,
                "message": {"role": "assistant", "content": content},
                "logprobs": None,
                "finish_reason": "stop",
            }
        ],
    }


def _own_answer(chat: Chat, answer: dict) -> dict:
    """A pipe's dict is answered as it is (RUNTIME.md §4); when it is a completion, the outlets see its text."""
    choices = answer.get("choices")
    first = choices[0] if isinstance(choices, list) and choices and isinstance(choices[0], dict) else None
    message = first.get("message") if first is not None else None
    if not isinstance(message, dict) or not isinstance(message.get("content"), str):
        return answer
    content = run_outlets(chat, message["content"])
    if content == message["content"]:
        return answer
    return {**answer, "choices": [{**first, "message": {**message, "content": content}}, *choices[1:]]}


def start_stream(chat: Chat) -> running.Run:
    """Start the pipe of a streaming chat (before the answer starts: a busy runtime is still a 503)."""
    return _start(chat.function, "pipe", chat.pipe_body(), chat.actor, stream=True, **chat.call_options)


def stream(chat: Chat, call: running.Run, inlet_events: list[dict]) -> Iterator[str]:
    """A streaming chat's server-sent events, after the inlets ran: the events the inlets emitted, the pipe's
    chunks (each through the stream filters) and events as they come, the final stop chunk, the outlets' events,
    ``[DONE]``. A failure inside the stream is an ``error`` chunk, then ``[DONE]``. Leaving early (the client went
    away) cancels the pipe's call."""
    cid, model_id = chat.id, chat.model_id
    with call:
        for event in inlet_events:
            yield sse(event_chunk(cid, model_id, event))
        items: list = []
        try:
            for frame in call:
                kind = frame.get("kind")
                if kind == "event":
                    yield sse(event_chunk(cid, model_id, frame.get("event")))
                elif kind == "chunk":
                    item = tuple(frame.get("item") or ("text", ""))
                    items.append(item)
                    yield from _filtered(chat, _chunk_out(chat, item))
                elif kind == "error":
                    raise call_failed(frame.get("error"))
                elif kind == "done":
                    break
            yield from _filtered(chat, chunk(cid, model_id, {}, "stop"))
            pending: list[dict] = []
            run_outlets(chat, running.pipe_text(items), on_event=pending.append)
            for event in pending:
                yield sse(event_chunk(cid, model_id, event))
        except ServiceError as exc:
            yield sse({"error": {"detail": exc.detail}})
        yield sse("[DONE]")


def _chunk_out(chat: Chat, item: tuple[str, Any]) -> Any:
    kind, value = item
    if kind == "text":
        return chunk(chat.id, chat.model_id, {"content": str(value)})
    if kind == "sse":
        return str(value)  # a `data:` line the pipe wrote itself, passed on as it is
    return value


def _filtered(chat: Chat, data: Any) -> Iterator[str]:
    """One chunk through the stream filters (dicts only; a falsy answer drops it), as server-sent events."""
    if isinstance(data, str):
        text = data[5:].lstrip() if data.startswith("data:") else data
        yield sse(text)
        return
    if isinstance(data, dict) and chat.stream_filters:
        extras = {**chat.extras, "request_body": chat.body}
        events: list[dict] = []
        for f in chat.stream_filters:
            try:
                answer = run_phase(
                    f, "stream", data, chat.actor, model=chat.model, extras=extras, on_event=events.append
                ).body
            except ServiceError as exc:
                log.warning("Filter %s stream failed, the chunk is dropped: %s", f.id, exc.detail)
                answer = None
            if not answer:
                data = None
                break
            data = answer
        for event in events:
            yield sse(event_chunk(chat.id, chat.model_id, event))
        if data is None:
            return
    yield sse(data)


# --- Pipelines protocol: one function's filter phase --------------------------------------------------------------


def pipeline_filter(
    key: ApiKey, function_or_model_id: str, method: str, payload: Any, headers: Any = None
) -> Any:
    """``/v1/{id}/filter/inlet|outlet``: the filter's ``method`` over ``payload["body"]`` for the user named in
    ``payload["user"]`` (when the key may act for others), answering the new body.

    A pipe's id (Open WebUI calls these routes for a model that carries a ``pipeline`` field) passes the body
    through unchanged: Open WebUI never calls a pipe function's own ``inlet`` or ``outlet``. So does a function
    that is switched off or gone since Open WebUI last read the model list (an error here would abort every chat
    until it reads the list again), and a toggle filter the chat did not switch on.
    """
    if not isinstance(payload, dict) or not isinstance(payload.get("body"), dict):
        raise ServiceError('The request body must be {"user": {...}, "body": {...}}.', status=400)
    body = payload["body"]
    try:
        f = function_for(function_or_model_id)
    except NotFound:
        log.info(
            "Filter route for %r, which is not an active function: the body passes", function_or_model_id
        )
        return body
    if f.type != "filter" or (_is_toggle(f) and f.id not in _filter_ids(body)):
        return body
    actor = actor_for(key, payload.get("user"))
    metadata = body.get("metadata") if isinstance(body.get("metadata"), dict) else {}
    model = metadata.get("model") if isinstance(metadata.get("model"), dict) else body.get("model")
    return run_phase(f, method, body, actor, model=model, extras={"headers": forwarded_headers(headers)}).body


# --- Pipelines protocol: valves -----------------------------------------------------------------------------------


def _valves_function(function_or_model_id: str) -> Function:
    return function_for(function_or_model_id, active_only=False)


def _full_valves(f: Function, stored: dict) -> dict:
    """Every field of the function's valves: the schema's defaults, then `default_factory` ones, then what is set."""
    values: dict = {}
    properties = (f.valves_schema or {}).get("properties") or {}
    for name, prop in properties.items():
        if isinstance(prop, dict) and "default" in prop:
            values[name] = prop["default"]
    values.update(f.valves_defaults or {})
    values.update(stored)
    return values


def _require_valves(f: Function) -> None:
    if f.valves_schema is None:
        raise NotFound(f"{f.id!r} has no valves.", kind="no_valves_class")


def pipeline_valves(function_or_model_id: str) -> dict:
    f = _valves_function(function_or_model_id)
    _require_valves(f)
    return _full_valves(f, _stored_valves(f))


def pipeline_valves_spec(function_or_model_id: str) -> dict:
    f = _valves_function(function_or_model_id)
    _require_valves(f)
    return f.valves_schema


def update_pipeline_valves(function_or_model_id: str, values: Any) -> dict:
    """Store the valves Open WebUI's Pipelines page sends (all fields), checked by the function's own class."""
    from services import valves

    if not isinstance(values, dict):
        raise ServiceError("The valves must be a JSON object.", status=400)
    f = _valves_function(function_or_model_id)
    _require_valves(f)
    stored = valves.update_valves(f.id, values)
    db.session.refresh(f)
    return _full_valves(f, stored)
