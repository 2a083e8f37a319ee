"""Open WebUI's Pipelines protocol beyond the model list: one filter's inlet or outlet over a body that Open WebUI
sends (``/v1/{id}/filter/inlet|outlet``), and reading and storing a function's valves from its Pipelines admin
page (RUNTIME.md §8). The model list (``/v1/models``, ``/v1/pipelines``) is ``services.chat_models``.
"""

from __future__ import annotations

import logging
from typing import Any

from extensions import db
from models import ApiKey, Function
from services.chat import actor_for, forwarded_headers, run_phase
from services.chat_models import function_for, is_toggle, requested_filter_ids, stored_valves
from services.errors import NotFound, ServiceError

log = logging.getLogger(__name__)


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
    if f.type != "filter" or (is_toggle(f) and f.id not in requested_filter_ids(body)):
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
    return _full_valves(f, stored_valves(f))


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
