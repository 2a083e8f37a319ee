"""Checking what a client sends for a function before anything is loaded or stored: its name, a new id, and the
meta it sends (with the keys Sluice derives from the code put in).
"""

from __future__ import annotations

from typing import Any

from models import ID_PATTERN
from models.function import MAX_NAME_LENGTH
from services import storable
from services.errors import ServiceError
from services.loading import field_error

ID_FORMAT_ERROR = "Only alphanumeric characters and underscores are allowed in the id"
ID_TAKEN_ERROR = "Uh-oh! This id is already registered. Please choose another id string."

# Keys of `meta` that Sluice derives from the code; whatever a client sends under them is replaced.
DERIVED_META_KEYS = ("manifest", "toggle")


def check_name(name: Any) -> str:
    if not isinstance(name, str) or not name.strip():
        raise ServiceError(
            "The name must not be empty.", field="name", errors=[field_error("name", "Enter a name.")]
        )
    name = name.strip()
    problem = storable.text_problem(name)
    if problem:
        message = f"The name must not contain {problem}."
        raise ServiceError(message, field="name", errors=[field_error("name", message)])
    if len(name) > MAX_NAME_LENGTH:
        message = f"The name is longer than {MAX_NAME_LENGTH} characters."
        raise ServiceError(message, field="name", errors=[field_error("name", message)])
    return name


def check_new_id(function_id: Any) -> str:
    """The id to store (lower-cased); anything but 1–64 of `[A-Za-z0-9_]` is refused, surrounding spaces too."""
    if not isinstance(function_id, str) or ID_PATTERN.fullmatch(function_id) is None:
        raise ServiceError(ID_FORMAT_ERROR, kind="invalid_id", field="id")
    return function_id.lower()


def id_taken() -> ServiceError:
    return ServiceError(ID_TAKEN_ERROR, kind="duplicate_id", field="id")


def build_meta(client_meta: Any, manifest: dict, toggle: bool) -> dict:
    """`description`, the manifest from the code, the client's other keys verbatim, then `toggle` if any."""
    if client_meta is None:
        client_meta = {}
    if not isinstance(client_meta, dict):
        raise ServiceError("meta must be an object.")
    description = client_meta.get("description")
    if description is not None and not isinstance(description, str):
        raise ServiceError("meta.description must be a string or null.")
    if description is not None and storable.text_problem(description):
        raise ServiceError(f"The description must not contain {storable.text_problem(description)}.")
    unstorable = storable.first_problem(client_meta, "meta")
    if unstorable:
        raise ServiceError(unstorable)
    meta = {"description": description, "manifest": dict(manifest or {})}
    for key, value in client_meta.items():
        if key not in meta and key not in DERIVED_META_KEYS:
            meta[key] = value
    if toggle:
        meta["toggle"] = True
    return meta
