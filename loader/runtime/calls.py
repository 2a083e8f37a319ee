"""Calling a function's method as Open WebUI does, and turning what a pipe returns into a stream of items.

``invoke`` is a coroutine meant for the worker's asyncio loop: events and a pipe's chunks reach the sink as they
happen, and ``task.cancel()`` stops the call at its next ``await`` (closing a pipe's generator). A sync method or a
sync generator runs in the loop's thread, as in Open WebUI, so it cannot be interrupted there: the worker's
wall-clock limit (killing the process) covers it.
"""

from __future__ import annotations

import codecs
import inspect
import json
import math
import sys
from collections.abc import AsyncIterator, Iterable, Iterator, Mapping
from typing import Any

from loader.json_values import is_model, json_safe
from loader.runtime.context import (
    FILTER_METHODS,
    CallContext,
    EventRecorder,
    Sink,
    build_kwargs,
    build_valves,
    offered_names,
)
from loader.valves import valves_class

METHODS = {"filter": FILTER_METHODS, "pipe": ("pipe",), "action": ("action",)}


async def invoke(
    instance: object,
    method: str,
    ctx: CallContext,
    sink: Sink | None = None,
    *,
    answer=None,
    collect: bool = True,
) -> Any:
    """Call ``instance.<method>`` for ``ctx`` and return its result as JSON-safe data.

    Before the call, ``instance.valves`` is set from ``ctx.admin_valves`` (RUNTIME.md §1). Events go to
    ``ctx.events`` and to ``sink("event", {type, data})`` as they are emitted; ``answer`` (async, given the
    question) answers ``__event_call__``, else it returns None. For ``pipe`` each item of the result (see
    ``iterate_result``) goes to ``sink("chunk", item)`` as it is produced and the items are returned as a list
    (``None`` when ``collect`` is False). A filter without the method is skipped: its body (event) comes back.
    """
    offered_names(method)  # an unknown method is the caller's mistake: ValueError
    fn = getattr(instance, method, None)
    if fn is None or not callable(fn):
        if method in FILTER_METHODS:
            return json_safe(ctx.body)
        raise AttributeError(f"{type(instance).__name__} has no {method}() method")
    set_valves(instance, ctx.admin_valves, ctx)
    events = EventRecorder(sink, answer, ctx.events)
    kwargs = build_kwargs(method, fn, ctx, instance=instance, events=events)

    result = fn(**kwargs)
    if inspect.isawaitable(
        result
    ):  # Open WebUI awaits coroutine functions; a returned awaitable is awaited too
        result = await result
    if method != "pipe":
        return json_safe(result)

    items: list[tuple[str, Any]] | None = [] if collect else None
    async for item in iterate_result(result):
        if items is not None:
            items.append(item)
        if sink is not None:
            sent = sink("chunk", item)
            if inspect.isawaitable(sent):
                await sent
    return items


def set_valves(instance: object, stored: Mapping | None, ctx: CallContext) -> None:
    """``instance.valves = Valves(**stored)`` when the instance has both, as before every Open WebUI call."""
    cls = valves_class(instance, "Valves")
    if cls is None or not hasattr(instance, "valves"):
        return
    instance.valves = build_valves(cls, stored, ctx)


# --- what a pipe returns ----------------------------------------------------------------------------------------


async def iterate_result(value: Any) -> AsyncIterator[tuple[str, Any]]:
    """The items of a pipe's return value: ``("text", str)``, ``("json", data)`` or ``("sse", raw data line)``.

    A string is one text item; a dict or pydantic model one JSON item; a sync or async generator gives an item per
    element (strings starting with ``data:`` are server-sent events, parsed); a Starlette ``StreamingResponse``
    gives its body (parsed as server-sent events when it is a stream of them); a plain ``Response`` its body.
    ``data: [DONE]`` is dropped: whoever writes the stream ends it. None gives nothing.
    """
    if value is None:
        return
    if isinstance(value, str):
        yield ("text", value)
    elif isinstance(value, (bytes, bytearray)):
        yield ("text", bytes(value).decode("utf-8", "replace"))
    elif isinstance(value, Mapping) or is_model(value):
        yield ("json", json_safe(value))
    elif _is_response(value, "StreamingResponse"):
        async for item in _streaming_body(value):
            yield item
    elif _is_response(value, "Response"):
        for item in _response_body(value):
            yield item
    elif hasattr(value, "__aiter__"):
        try:
            async for element in value:
                for item in _element(element):
                    yield item
        finally:
            close = getattr(value, "aclose", None)
            if close is not None:
                await close()
    elif isinstance(value, Iterator):
        try:
            for element in value:
                for item in _element(element):
                    yield item
        finally:
            close = getattr(value, "close", None)
            if close is not None:
                close()
    elif isinstance(value, (list, tuple)):
        yield ("json", json_safe(value))
    else:
        yield ("text", str(value))


def _element(element: Any) -> Iterator[tuple[str, Any]]:
    """Items of one element a pipe's generator yielded."""
    if element is None:
        return
    if isinstance(element, (bytes, bytearray)):
        element = bytes(element).decode("utf-8", "replace")
    if isinstance(element, str):
        if element.startswith("data:"):
            parser = _EventStream()
            yield from parser.feed(element)
            yield from parser.close()
        else:
            yield ("text", element)
    elif isinstance(element, Mapping) or is_model(element):
        yield ("json", json_safe(element))
    else:
        yield ("text", str(element))


async def _streaming_body(response: Any) -> AsyncIterator[tuple[str, Any]]:
    media_type = str(getattr(response, "media_type", None) or "")
    body = response.body_iterator
    decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
    parser = _EventStream() if "event-stream" in media_type else None
    chunks = body if hasattr(body, "__aiter__") else _aiter(body)
    try:
        async for chunk in chunks:
            text = decoder.decode(chunk) if isinstance(chunk, (bytes, bytearray)) else str(chunk)
            if parser is None and text.strip():
                # A stream of `data:` lines under another media type is still one (a common shortcut in pipes).
                parser = _EventStream() if text.lstrip().startswith("data:") else False
            if parser:
                for item in parser.feed(text):
                    yield item
            elif text:
                yield ("text", text)
        rest = decoder.decode(b"", final=True)
        if parser:
            for item in parser.feed(rest):
                yield item
            for item in parser.close():
                yield item
        elif rest:
            yield ("text", rest)
    finally:
        close = getattr(body, "aclose", None) or getattr(body, "close", None)
        if close is not None:
            closed = close()
            if inspect.isawaitable(closed):
                await closed


async def _aiter(iterable: Iterable) -> AsyncIterator[Any]:
    for element in iterable:
        yield element


def _response_body(response: Any) -> Iterator[tuple[str, Any]]:
    body = getattr(response, "body", b"") or b""
    text = bytes(body).decode("utf-8", "replace") if isinstance(body, (bytes, bytearray)) else str(body)
    media_type = str(getattr(response, "media_type", None) or "")
    if "json" in media_type:
        try:
            yield ("json", json.loads(text))
            return
        except ValueError:
            pass
    if "event-stream" in media_type:
        parser = _EventStream()
        yield from parser.feed(text)
        yield from parser.close()
    elif text:
        yield ("text", text)


class _EventStream:
    """A server-sent-events parser fed text in arbitrary pieces; each event's data becomes one item."""

    def __init__(self):
        self.pending = ""
        self.data: list[str] = []

    def feed(self, text: str) -> Iterator[tuple[str, Any]]:
        self.pending += text
        while True:
            cut = _line_end(self.pending)
            if cut is None:
                return
            line, self.pending = self.pending[: cut[0]], self.pending[cut[1] :]
            yield from self._line(line)

    def close(self) -> Iterator[tuple[str, Any]]:
        if self.pending:
            line, self.pending = self.pending.rstrip("\r"), ""
            yield from self._line(line)
        yield from self._dispatch()

    def _line(self, line: str) -> Iterator[tuple[str, Any]]:
        if not line:
            yield from self._dispatch()
        elif line.startswith("data:"):
            value = line[5:]
            self.data.append(value[1:] if value.startswith(" ") else value)
        # `event:`, `id:`, `retry:` and `:` comments carry nothing a chat answer uses

    def _dispatch(self) -> Iterator[tuple[str, Any]]:
        if not self.data:
            return
        payload, self.data = "\n".join(self.data), []
        if payload.strip() == "[DONE]":
            return
        try:
            yield ("json", json.loads(payload))
        except ValueError:
            yield ("sse", f"data: {payload}")


def _line_end(text: str) -> tuple[int, int] | None:
    for index, char in enumerate(text):
        if char == "\n":
            return index, index + 1
        if char == "\r":
            if index + 1 == len(text):
                return None  # a "\r\n" may be split between two pieces
            return index, index + (2 if text[index + 1] == "\n" else 1)
    return None


def _is_response(value: Any, name: str) -> bool:
    module = sys.modules.get("starlette.responses")
    cls = getattr(module, name, None)
    return cls is not None and isinstance(value, cls)


# --- models, sub-actions, order ---------------------------------------------------------------------------------


async def list_pipes(
    module_or_instance: object, function_id: str, stored_name: str, *, valves: Mapping | None = None
) -> list[dict]:
    """The models a pipe function offers (RUNTIME.md §4): ``[{id, name, sub}]``.

    A manifold (a ``pipes`` list, or a sync or async callable returning one, of ``{id, name}``) gives one model per
    item, id ``{function_id}.{item id}``, name the instance's ``name`` attribute followed directly by the item's;
    an exception there gives no models (reported in the output). Otherwise one model named ``stored_name``.
    ``valves`` (stored admin valves) are set first when given, as Open WebUI does before reading ``pipes``.
    """
    source = module_or_instance
    if valves is not None:
        set_valves(source, valves, CallContext(function_id=function_id, method="pipe"))
    try:
        has_pipes = hasattr(source, "pipes")
    except Exception:
        has_pipes = False
    if not has_pipes:
        return [{"id": function_id, "name": stored_name, "sub": None}]
    try:
        listed = source.pipes
        if callable(listed):
            listed = listed()
        if inspect.isawaitable(listed):
            listed = await listed
        listed = list(listed or [])
    except Exception as exc:
        print(f"sluice: {function_id}: pipes failed, no models: {type(exc).__name__}: {exc}", file=sys.stderr)
        return []
    prefix = _name_prefix(source)
    models = []
    for item in listed:
        if not isinstance(item, Mapping) or item.get("id") is None:
            print(
                f"sluice: {function_id}: a pipes item without an id is skipped: {item!r:.200}",
                file=sys.stderr,
            )
            continue
        sub = str(item["id"])
        name = item.get("name")
        models.append(
            {"id": f"{function_id}.{sub}", "name": f"{prefix}{sub if name is None else name}", "sub": sub}
        )
    return models


def _name_prefix(source: object) -> str:
    try:
        name = getattr(source, "name", None)
    except Exception:
        return ""
    return "" if name is None else str(name)


def sub_actions(instance: object, function_id: str, stored_name: str) -> list[dict]:
    """An action's sub-actions from its ``actions = [{id, name?, icon_url?}]``: ``[{id, sub, name, icon_url}]``.

    ``id`` is ``{function_id}.{sub}``, the ``action_id`` Open WebUI sends; empty when there are none.
    """
    try:
        listed = getattr(instance, "actions", None)
        listed = list(listed) if isinstance(listed, (list, tuple)) else []
    except Exception:
        return []
    found = []
    for item in listed:
        if not isinstance(item, Mapping) or item.get("id") is None:
            continue
        sub = str(item["id"])
        found.append(
            {
                "id": f"{function_id}.{sub}",
                "sub": sub,
                "name": str(item.get("name") or f"{stored_name} ({sub})"),
                "icon_url": item.get("icon_url"),
            }
        )
    return found


def filter_priority(
    valves: Mapping | None = None, *, instance: object = None, valves_schema: Mapping | None = None
) -> float:
    """A filter's ``priority``: ``Valves(**stored).priority`` with the instance, else the stored value, else the
    schema's default; missing or failing counts as 0 (RUNTIME.md §3)."""
    stored = {key: value for key, value in dict(valves or {}).items() if value is not None}
    if instance is not None:
        cls = valves_class(instance, "Valves")
        if cls is None:
            return 0
        try:
            return _number(getattr(cls(**stored), "priority", 0))
        except Exception:
            return 0
    if "priority" in stored:
        return _number(stored["priority"])
    properties = (valves_schema or {}).get("properties") or {}
    prop = properties.get("priority") if isinstance(properties, Mapping) else None
    return _number(prop.get("default", 0)) if isinstance(prop, Mapping) else 0


def _number(value: Any) -> float:
    if isinstance(value, bool):
        return int(value)
    if isinstance(value, (int, float)) and not (isinstance(value, float) and math.isnan(value)):
        return value
    try:
        number = float(value)
    except (TypeError, ValueError):
        return 0
    return 0 if math.isnan(number) else number


def filter_order(filters: Iterable[Mapping]) -> list[Mapping]:
    """``filters`` sorted as Open WebUI runs them: ascending ``(priority, id)``.

    Each item is a mapping with ``id`` and, for its priority, ``priority`` itself or what ``filter_priority``
    takes: ``valves`` (stored), ``instance``, ``valves_schema``. The items come back as given.
    """

    def key(item: Mapping) -> tuple[float, str]:
        if "priority" in item:
            priority = _number(item["priority"])
        else:
            priority = filter_priority(
                item.get("valves"), instance=item.get("instance"), valves_schema=item.get("valves_schema")
            )
        return priority, str(item.get("id", ""))

    return sorted(filters, key=key)
