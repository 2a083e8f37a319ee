"""A chat through Sluice's functions, as Open WebUI runs one: whom it runs for, its inlet chain, its pipe (with
each chunk through the stream filters) and its outlet chain (RUNTIME.md §3, §4, §7).

The gateway's routes (``blueprints/gateway.py``) parse and answer; everything they decide is here and in its
neighbours: ``services.chat_models`` (the pipes as models, the filters that apply and their order),
``services.openai_shapes`` (the OpenAI completion and chunk shapes, server-sent events) and
``services.pipelines_protocol`` (Open WebUI's Pipelines filter and valves routes). Function code runs only in the
loader's workers (``services.running``).
"""

from __future__ import annotations

import logging
import re
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import select

from extensions import db
from models import ApiKey, Function, User
from services import accounts, running
from services.chat_models import chat_filters, find_model, model_entry, requested_filter_ids
from services.errors import ServiceError
from services.openai_shapes import chunk, completion, completion_id, event_chunk, sse

log = logging.getLogger(__name__)

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
            "filter_ids": requested_filter_ids(self.body),
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
        "filter_ids": requested_filter_ids(body),
        "model": model_entry(model, f),
        "direct": False,
    }
    extras = {"metadata": metadata, "message_id": cid, "headers": forwarded_headers(headers)}
    # Filters read it from the body, as in Open WebUI: Sluice's, not the caller's, since it names the user.
    body["metadata"] = metadata
    return Chat(
        body=body,
        actor=actor,
        function=f,
        model=model_entry(model, f),
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
    return completion(chat.id, chat.model_id, content)


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
