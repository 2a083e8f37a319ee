"""Asking the isolated loader about a function's code: prepare it, load it, check valves against its classes.

Function code is never run in the server: every load and every valves check goes through ``loader``, each within
one of this process's load slots. The rules that need the loader's answer live here, once: ``prepare_code`` (the
code a save stores), ``validate_valves`` (what a valves write stores) and ``revalidated_valves`` (what stored
valves become under new code).
"""

from __future__ import annotations

import hashlib
import logging
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

from flask import current_app

import loader
from models import Function, User
from services import safe_mode, storable
from services.errors import ServiceError

MAX_CONTENT_BYTES = 1024 * 1024
INCOMPATIBLE_VALVES_PREFIX = "Current Valves are incompatible with this code: "
LOADER_BUSY_ERROR = "Sluice is busy loading other functions; try again in a moment."

log = logging.getLogger(__name__)

# How long a request waits for one of its process's load slots before it is answered 503.
LOAD_SLOT_WAIT_SECONDS = 2.0


# --- errors -------------------------------------------------------------------------------------------------


class LoadFailed(ServiceError):
    """The code does not load: ``detail`` names the cause and line, ``error`` carries it structured."""

    kind = "load_failed"

    def __init__(self, error: Any):
        super().__init__(error.detail, field="content", error=load_error_dict(error))
        self.load_error = error


class ValvesRejected(ServiceError):
    """Values the function's own Valves/UserValves class refused; ``errors`` has one entry per problem."""

    kind = "invalid_valves"

    def __init__(self, errors: list[dict], which: str = "valves"):
        label = "user valves" if which == "user_valves" else "valves"
        super().__init__(f"Invalid {label}: {describe_field_errors(errors)}", errors=errors)
        self.errors = errors


class IncompatibleValves(ServiceError):
    """An update whose new ``Valves`` class refuses the admin valves already stored."""

    kind = "incompatible_valves"

    def __init__(self, errors: list[dict]):
        super().__init__(INCOMPATIBLE_VALVES_PREFIX + describe_field_errors(errors), errors=errors)
        self.errors = errors


class NoValvesClass(ServiceError):
    """Valves were sent for code that has no class to take them."""

    kind = "no_valves_class"

    def __init__(self, which: str = "valves"):
        cls = "UserValves" if which == "user_valves" else "Valves"
        super().__init__(f"This function has no {cls} class, so there is nothing to set.")


class LoaderBusy(ServiceError):
    """Every load slot of this process stayed taken for ``LOAD_SLOT_WAIT_SECONDS``: answered 503."""

    status = 503
    kind = "busy"

    def __init__(self):
        super().__init__(LOADER_BUSY_ERROR)


class ContentTooLarge(ServiceError):
    status = 413
    kind = "content_too_large"

    def __init__(self):
        super().__init__("The function's code is larger than 1 MiB, the most Sluice stores.", field="content")


def load_error_dict(error: Any) -> dict:
    return {"type": error.type, "message": error.message, "line": error.line, "column": error.column}


def describe_field_errors(errors: list[dict]) -> str:
    """`field: reason; other: reason`, the part of a sentence that names each refused field."""
    parts = []
    for item in errors:
        loc = ".".join(str(part) for part in item.get("loc") or []) or "valves"
        parts.append(f"{loc}: {item.get('msg') or 'invalid value'}")
    return "; ".join(parts) or "the values are not valid"


def field_error(field: str, msg: str) -> dict:
    return {"loc": [field], "msg": msg, "type": "value_error"}


# --- the code a save stores -----------------------------------------------------------------------------------


def content_hash(content: str) -> str:
    return hashlib.sha256(content.encode("utf-8")).hexdigest()


def check_content(content: Any) -> str:
    if not isinstance(content, str) or not content.strip():
        raise ServiceError(
            "The code must not be empty.",
            field="content",
            errors=[field_error("content", "Enter the function's code.")],
        )
    if len(content) > MAX_CONTENT_BYTES or len(content.encode("utf-8")) > MAX_CONTENT_BYTES:
        raise ContentTooLarge()
    # Refused here, not only by the API's parser, so that pages and import files get a clear error too.
    problem = storable.text_problem(content)
    if problem:
        message = f"The code must not contain {problem}."
        raise ServiceError(message, field="content", errors=[field_error("content", message)])
    return content


def prepare_code(content: Any) -> str:
    """The code as Sluice stores it: checked, Open WebUI's imports rewritten, and checked again (a rewrite may grow
    it past the size limit)."""
    return check_content(loader.rewrite_imports(check_content(content)))


# --- load slots -----------------------------------------------------------------------------------------------

_load_slots_lock = threading.Lock()


def _load_slots() -> threading.BoundedSemaphore:
    app = current_app._get_current_object()
    slots = app.extensions.get("sluice_load_slots")
    if slots is None:
        with _load_slots_lock:
            slots = app.extensions.get("sluice_load_slots")
            if slots is None:
                slots = threading.BoundedSemaphore(max(1, int(app.config["SLUICE_MAX_CONCURRENT_LOADS"])))
                app.extensions["sluice_load_slots"] = slots
    return slots


@contextmanager
def load_slot() -> Iterator[None]:
    """Hold one of this process's `SLUICE_MAX_CONCURRENT_LOADS` slots while the loader runs code for a request.

    A load may take up to the load timeout, and it holds a web server thread meanwhile; without a cap, enough
    slow loads at once would hold every thread and stall every other request. Past the cap, a request waits
    briefly for a slot and is then answered 503 (``LoaderBusy``).
    """
    slots = take_load_slot()
    try:
        yield
    finally:
        slots.release()


def take_load_slot() -> threading.BoundedSemaphore:
    """Take a load slot (``load_slot``); the caller releases it on the semaphore returned."""
    slots = _load_slots()
    if not slots.acquire(timeout=LOAD_SLOT_WAIT_SECONDS):
        raise LoaderBusy()
    return slots


def user_dict(user: User | None) -> dict | None:
    return user.to_public() if user is not None else None


def load_in_loader(content: str, *, during: Callable[[], object] | None = None, **kwargs: Any):
    """``loader.load_function`` within a load slot (refused in safe mode); ``during`` as ``load_code``'s."""
    try:
        safe_mode.refuse("loading a function's code")
        slots = take_load_slot()
    except ServiceError:
        if during is not None:
            during()
        raise
    try:
        return loader.load_function(content, during=during, **kwargs)
    finally:
        slots.release()


def validate_in_loader(content: str, values: dict, **kwargs: Any):
    """``loader.validate_valves`` within a load slot (refused in safe mode)."""
    safe_mode.refuse("checking valves against a function's code")
    with load_slot():
        return loader.validate_valves(content, values, **kwargs)


def retire_workers(function_ids: list[str]) -> None:
    """After a commit that deleted these functions or replaced their code: end their warm workers in this process's
    loader, so that nothing the old code left running (a thread, a process it forked) outlives it. Another server
    process's workers of them end when that process next runs the function or needs the room."""
    if not function_ids:
        return
    try:
        loader.retire_workers(function_ids)
    except Exception:  # the change is committed; a worker left over is what happened before this existed
        log.exception("Could not end the workers of %s", ", ".join(function_ids))


def load_code(
    content: str,
    function_id: str,
    user: User | None = None,
    valves: dict | None = None,
    during: Callable[[], object] | None = None,
):
    """Load already-prepared code in the isolated loader; a failure raises ``LoadFailed``. ``during`` is called
    while the code loads (the request's own database checks overlap the loader's round trip), or first, when the
    load is refused; its exception wins over the load's failure."""
    result = load_in_loader(
        content, function_id=function_id, user=user_dict(user), valves=valves, during=during
    )
    if not result.ok:
        raise LoadFailed(result.error)
    return result


def apply_load_result(f: Function, result: Any) -> None:
    """Keep on the function what the loader derived from its code, so reads never run the code again."""
    f.type = result.type
    f.valves_schema = result.valves_schema
    f.user_valves_schema = result.user_valves_schema
    f.valves_defaults = result.valves_defaults
    f.user_valves_defaults = result.user_valves_defaults
    f.icon = _storable_icon(result.icon)
    f.content_hash = result.content_hash
    f.load_status = "ok"
    f.load_error = None


def _storable_icon(icon: Any) -> str | None:
    """The code's icon as the loader bounded it, unless no database could store it (a NUL, a lone surrogate):
    a picture is not worth failing a save for. Whether it is shown is decided where it is shown."""
    if not isinstance(icon, str) or storable.text_problem(icon):
        return None
    return icon


# --- valves against the code's classes ------------------------------------------------------------------------


def validate_valves(
    content: str,
    function_id: str,
    values: Any,
    *,
    which: str = "valves",
    user: User | None = None,
    check: Any = None,
) -> dict:
    """The valves to store: nulls dropped, then validated by the function's own ``Valves`` (or ``UserValves``)
    class, which also normalises them.

    ``check`` is the loader's answer for these values when a load already gave it; otherwise the loader is asked.
    """
    if not isinstance(values, dict):
        raise ServiceError("Valves must be a JSON object.", kind="invalid_valves")
    cleaned = {key: value for key, value in values.items() if value is not None}
    unstorable = storable.first_problem(cleaned, "valves")
    if unstorable:
        raise ServiceError(unstorable, kind="invalid_valves")
    if check is None:
        check = validate_in_loader(
            content, cleaned, kind=which, function_id=function_id, user=user_dict(user)
        )
    if check.error is not None:
        if check.error.type == "NoValvesClass":
            raise NoValvesClass(which)
        raise LoadFailed(check.error)
    if not check.ok:
        raise ValvesRejected(check.errors, which)
    return check.values


def incompatible(errors: list[dict], stored: dict) -> list[dict]:
    """The errors about values that are stored; a required field nobody set is the code's own business."""
    found = []
    for item in errors:
        loc = item.get("loc") or []
        if not loc or loc[0] in stored:
            found.append(item)
    return found


def _prune_incompatible(content: str, function_id: str, stored: dict, errors: list[dict]) -> dict:
    """Drop the stored valves the new code refuses, keeping every value it still accepts."""
    bad = {item["loc"][0] for item in errors if item.get("loc")}
    if any(not item.get("loc") for item in errors):
        return {}
    kept = {key: value for key, value in stored.items() if key not in bad}
    if not kept:
        return {}
    check = validate_in_loader(content, kept, kind="valves", function_id=function_id)
    if check.ok:
        return kept
    # A validator across fields may still refuse what is left; then nothing stored is trustworthy.
    return {}


def revalidated_valves(
    content: str, function_id: str, stored: dict, check: Any, *, reset_incompatible_valves: bool = False
) -> dict:
    """The stored admin valves that new code keeps, given ``check`` (the load's check of ``stored``).

    Values the new ``Valves`` refuses stop the change (``IncompatibleValves``), or are dropped when the caller
    asked for that; code without a ``Valves`` class keeps them untouched, as they apply to nothing.
    """
    if not stored or check is None or check.ok:
        return stored
    if check.error is not None:
        if check.error.type != "NoValvesClass":
            raise LoadFailed(check.error)
        return stored
    errors = incompatible(check.errors, stored)
    if not errors:
        return stored
    if not reset_incompatible_valves:
        raise IncompatibleValves(errors)
    return _prune_incompatible(content, function_id, stored, errors)
