"""A function's admin valves and each user's own valves, with the JSON schemas of their classes."""

from __future__ import annotations

from typing import Any

from blueprints.api import api
from services import valves as valves_service
from web.access import api_caller


@api.route(
    "/id/<id>/valves",
    "GET",
    auth="admin",
    summary="Get the admin valves",
    response=dict[str, Any],
    errors=(404,),
)
def get_valves(id: str):
    """The admin valves that were set (`{}` when none)."""
    return valves_service.get_valves(id)


@api.route(
    "/id/<id>/valves/spec",
    "GET",
    auth="admin",
    summary="JSON schema of the Valves class",
    response=dict[str, Any] | None,
    errors=(404, 503),
)
def valves_spec(id: str):
    """The `Valves` JSON schema, or null when the code has none."""
    return valves_service.valves_spec(id, api_caller())


@api.route(
    "/id/<id>/valves/update",
    "POST",
    auth="admin",
    summary="Set the admin valves",
    body=dict[str, Any],
    response=dict[str, Any],
    errors=(400, 404, 503),
)
def update_valves(id: str, body: dict[str, Any]):
    """Validate with the function's own class; store and answer exactly the keys set (nulls dropped)."""
    return valves_service.update_valves(id, body)


@api.route(
    "/id/<id>/valves/user",
    "GET",
    auth="user",
    summary="Get the caller's user valves",
    response=dict[str, Any],
    errors=(404,),
)
def get_user_valves(id: str):
    """The caller's own user valves (`{}` when none); an inactive function is not found for non-admins."""
    return valves_service.get_user_valves(api_caller(), id)


@api.route(
    "/id/<id>/valves/user/spec",
    "GET",
    auth="user",
    summary="JSON schema of the UserValves class",
    response=dict[str, Any] | None,
    errors=(404, 503),
)
def user_valves_spec(id: str):
    """The `UserValves` JSON schema, or null when the code has none."""
    return valves_service.user_valves_spec(api_caller(), id)


@api.route(
    "/id/<id>/valves/user/update",
    "POST",
    auth="user",
    summary="Set the caller's user valves",
    body=dict[str, Any],
    response=dict[str, Any],
    errors=(400, 404, 503),
)
def update_user_valves(id: str, body: dict[str, Any]):
    """Validate with the function's own `UserValves`; store the caller's keys only."""
    return valves_service.update_user_valves(api_caller(), id, body)
