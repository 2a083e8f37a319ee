"""The gateway under ``/v1``: an OpenAI-compatible API over Sluice's pipes and filters, and Open WebUI's Pipelines
protocol, so that Open WebUI (or any OpenAI client) can use Sluice as a connection (RUNTIME.md §7, §8).

Every route takes a Sluice API key as a Bearer token, never the session cookie; errors are JSON ``{"detail"}``,
and inside a stream an ``error`` chunk followed by ``[DONE]``. The Pipelines server answers each route both at its
base and under ``/v1``; Sluice's base URL for Open WebUI is ``<sluice>/v1``, so only ``/v1/...`` exists here.
"""

from __future__ import annotations

from flask import Blueprint, Flask, Response, g, jsonify, request, stream_with_context

from models import ApiKey
from services import accounts, chat, chat_models, pipelines_protocol, safe_mode
from services.errors import ServiceError
from web.access import INVALID_CREDENTIALS, NO_PERMISSION, NOT_AUTHENTICATED, ApiAuthError, presented_key

bp = Blueprint("gateway", __name__, url_prefix="/v1")


def register(app: Flask) -> None:
    app.register_blueprint(bp)


@bp.before_request
def authenticate():
    """Every gateway route needs an API key of an approved account (a connection key is accepted here)."""
    presented = presented_key()
    if presented is None:
        raise ApiAuthError(NOT_AUTHENTICATED)
    key = accounts.api_key_for(presented)
    if key is None:
        raise ApiAuthError(INVALID_CREDENTIALS)
    if key.user.is_pending:
        raise ApiAuthError(NO_PERMISSION, 403)
    g.gateway_key = key
    g.api_user = key.user
    # After the key check, so that safe mode tells nobody without a key anything.
    safe_mode.refuse("answering through the gateway (every function is treated as inactive)")


def _key() -> ApiKey:
    return g.gateway_key


def _admin_key() -> ApiKey:
    key = _key()
    if not key.user.is_admin:
        raise ApiAuthError(NO_PERMISSION, 403)
    return key


@bp.errorhandler(ServiceError)
def on_service_error(error: ServiceError):
    response = jsonify({"detail": error.detail})
    retry_after = getattr(error, "retry_after", None) or error.extra.get("retry_after")
    if retry_after:
        response.headers["Retry-After"] = str(int(retry_after))
    return response, error.status


def _json_body():
    try:
        body = request.get_json(silent=True)
    except RecursionError:  # `silent` covers malformed JSON, not JSON nested deeper than the parser goes
        raise ServiceError("The request body is nested too deeply.", status=400) from None
    if body is None:
        raise ServiceError("The request body must be JSON.", status=400)
    return body


# --- OpenAI -------------------------------------------------------------------------------------------------------


@bp.get("/models")
def models():
    """The active pipes as models (a manifold's sub-pipes each as ``fn.sub``) and the active filters as Pipelines
    filter items."""
    return jsonify(chat_models.models_list())


@bp.post("/chat/completions")
def chat_completions():
    """Run the pipe named by ``model`` with the filters that apply, streaming or not."""
    prepared = chat.prepare_chat(_key(), _json_body(), request.headers)
    if not prepared.body.get("stream"):
        return jsonify(chat.complete(prepared))
    # A failing inlet or a busy runtime answers with its status, before any stream starts.
    inlet_events: list[dict] = []
    chat.run_inlets(prepared, on_event=inlet_events.append)
    call = chat.start_stream(prepared)
    return Response(
        stream_with_context(chat.stream(prepared, call, inlet_events)),
        mimetype="text/event-stream",
        headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"},
    )


# --- Open WebUI's Pipelines protocol ------------------------------------------------------------------------------


@bp.get("/pipelines")
def pipelines():
    """One item per active function, which Open WebUI's Pipelines admin page reads first."""
    return jsonify(chat_models.pipelines_list())


@bp.post("/<path:function_id>/filter/inlet")
def filter_inlet(function_id: str):
    """The function's inlet over ``body`` for ``user``; answers the new body."""
    return jsonify(
        pipelines_protocol.pipeline_filter(_key(), function_id, "inlet", _json_body(), request.headers)
    )


@bp.post("/<path:function_id>/filter/outlet")
def filter_outlet(function_id: str):
    """The function's outlet over ``body`` for ``user``; answers the new body."""
    return jsonify(
        pipelines_protocol.pipeline_filter(_key(), function_id, "outlet", _json_body(), request.headers)
    )


@bp.get("/<path:function_id>/valves")
def valves(function_id: str):
    """The function's admin valves, every field (defaults where nothing is stored)."""
    _admin_key()
    return jsonify(pipelines_protocol.pipeline_valves(function_id))


@bp.get("/<path:function_id>/valves/spec")
def valves_spec(function_id: str):
    """The JSON schema of the function's valves."""
    _admin_key()
    return jsonify(pipelines_protocol.pipeline_valves_spec(function_id))


@bp.post("/<path:function_id>/valves/update")
def valves_update(function_id: str):
    """Store new admin valves (checked by the function's own class); answers every field."""
    _admin_key()
    return jsonify(pipelines_protocol.update_pipeline_valves(function_id, _json_body()))
