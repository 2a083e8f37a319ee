"""What the console says for a service error whose API text is Open WebUI's.

The JSON API keeps Open WebUI's sentences (SPEC §3 fixes them for its clients: "Uh-oh! This id is already
registered…", "We could not find what you're looking for :/"); a person reading a page gets Sluice's own plain
voice instead. Chosen by the error's ``kind``, never by its wording, so either text can change alone.
"""

from __future__ import annotations

from services.errors import ServiceError
from services.loading import describe_field_errors

DUPLICATE_ID = "A function with this id already exists. Choose another id."
INVALID_ID = "An id may hold only letters, digits and underscores (at most 64)."
FUNCTION_NOT_FOUND = "There is no function with this id here; it may have been deleted."
INCOMPATIBLE_VALVES = "The valves stored for this function do not fit the new code: "


def console_detail(error: ServiceError) -> str:
    """The sentence a console page shows for ``error``."""
    if error.kind == "duplicate_id":
        return DUPLICATE_ID
    if error.kind == "invalid_id":
        return INVALID_ID
    if error.kind == "function_not_found":
        return FUNCTION_NOT_FOUND
    if error.kind == "incompatible_valves":
        errors = getattr(error, "errors", None) or error.extra.get("errors") or []
        return INCOMPATIBLE_VALVES + describe_field_errors(errors) + "."
    return error.detail
