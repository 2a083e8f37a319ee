"""The functions a chat involves, as Open WebUI sees them through a connection: the active pipes as models (a
manifold's sub-pipes each as its own model), the active filters as Pipelines filter items, which filters apply to a
chat and in which order (RUNTIME.md §3, §7).

Sluice has no models of its own to attach filters to, so the filters that apply to a chat are the active
**global** filters (a toggle filter only when its id is among the request's ``filter_ids``); a filter that is not
global applies to no model. A pipe's model list is its own code (``pipes``), read in its loader worker.
"""

from __future__ import annotations

import hashlib
import json
import logging
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

from sqlalchemy import select

import loader
from extensions import db
from loader.runtime import filter_order, filter_priority
from models import Function
from services import safe_mode
from services.errors import NotFound, ServiceError

log = logging.getLogger(__name__)

# A model list reads each pipe's `pipes`; one that takes longer than this offers no models this time.
PIPES_TIMEOUT = 10.0


def _active(kind: str) -> list[Function]:
    query = select(Function).where(Function.type == kind, Function.is_active.is_(True)).order_by(Function.id)
    return [f for f in db.session.scalars(query) if f.load_status == "ok"]


def stored_valves(f: Function) -> dict:
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
        valves = json.dumps(stored_valves(f), sort_keys=True, default=str)
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
    if safe_mode.is_on():
        return []  # reading `pipes` runs the function's code
    return _pipe_models(_PipeCode.of(f))


def model_entry(model: dict, f: Function) -> dict:
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
    return filter_priority(stored_valves(f), valves_schema=f.valves_schema)


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
            "pipelines": ["*"] if f.is_global and not is_toggle(f) else [],
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
        data.extend(model_entry(model, f) for model in models)
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


def requested_filter_ids(body: dict) -> list[str]:
    found = body.get("filter_ids")
    if found is None and isinstance(body.get("metadata"), dict):
        found = body["metadata"].get("filter_ids")
    return [str(item) for item in found] if isinstance(found, list) else []


def is_toggle(f: Function) -> bool:
    return bool((f.meta or {}).get("toggle"))


def chat_filters(body: dict) -> list[Function]:
    """The filters that run on a chat, in Open WebUI's order: the active global ones; a toggle filter only when the
    request's ``filter_ids`` name it."""
    chosen = requested_filter_ids(body)
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
