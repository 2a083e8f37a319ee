"""Functions: create, update, toggle, delete, valves, user valves, history and export.

The one place for the rules of SPEC §1–§3; the JSON API and the HTML console both call these functions. They take
a ``User`` and plain values, return models or plain dicts, and raise ``ServiceError`` (or ``NotFound``) with the
texts clients rely on. Function code is never run here: every load goes through the isolated ``loader``.
"""

from __future__ import annotations

import difflib
import hashlib
import os
import re
import threading
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from flask import current_app
from sqlalchemy import delete, func, not_, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import defer

import loader
from extensions import db
from models import Function, FunctionVersion, User, UserValves, now
from services import storable
from services.errors import NotFound, ServiceError

ID_PATTERN = re.compile(r"[A-Za-z0-9_]{1,64}")  # used with fullmatch: `$` would let "abc\n" through
MAX_NAME_LENGTH = 256
MAX_CONTENT_BYTES = 1024 * 1024
HISTORY_PAGE_SIZE = 20
# Far beyond any real history, and small enough that the row offset it makes fits every database's integers.
MAX_HISTORY_PAGE = 1_000_000

ID_FORMAT_ERROR = "Only alphanumeric characters and underscores are allowed in the id"
ID_TAKEN_ERROR = "Uh-oh! This id is already registered. Please choose another id string."
NOT_FOUND_ERROR = "We could not find what you're looking for :/"
VERSION_NOT_FOUND_ERROR = "Version not found"
CURRENT_VERSION_ERROR = "Cannot delete the current version"
INCOMPATIBLE_VALVES_PREFIX = "Current Valves are incompatible with this code: "
LOADER_BUSY_ERROR = "Sluice is busy loading other functions; try again in a moment."

# How long a request waits for one of its process's load slots before it is answered 503.
LOAD_SLOT_WAIT_SECONDS = 2.0

# Keys of `meta` that Sluice derives from the code; whatever a client sends under them is replaced.
DERIVED_META_KEYS = ("manifest", "toggle")


# --- errors -------------------------------------------------------------------------------------------------


class LoadFailed(ServiceError):
    """The code does not load: ``detail`` names the cause and line, ``error`` carries it structured."""

    def __init__(self, error: Any):
        super().__init__(error.detail, error=load_error_dict(error))
        self.load_error = error


class ValvesRejected(ServiceError):
    """Values the function's own Valves/UserValves class refused; ``errors`` has one entry per problem."""

    def __init__(self, errors: list[dict], kind: str = "valves"):
        label = "user valves" if kind == "user_valves" else "valves"
        super().__init__(f"Invalid {label}: {describe_field_errors(errors)}", errors=errors)
        self.errors = errors


class IncompatibleValves(ServiceError):
    """An update whose new ``Valves`` class refuses the admin valves already stored."""

    def __init__(self, errors: list[dict]):
        super().__init__(INCOMPATIBLE_VALVES_PREFIX + describe_field_errors(errors), errors=errors)
        self.errors = errors


class LoaderBusy(ServiceError):
    """Every load slot of this process stayed taken for ``LOAD_SLOT_WAIT_SECONDS``: answered 503."""

    status = 503

    def __init__(self):
        super().__init__(LOADER_BUSY_ERROR)


class ContentTooLarge(ServiceError):
    status = 413

    def __init__(self):
        super().__init__("The function's code is larger than 1 MiB, the most Sluice stores.")


def load_error_dict(error: Any) -> dict:
    return {"type": error.type, "message": error.message, "line": error.line, "column": error.column}


def describe_field_errors(errors: list[dict]) -> str:
    """`field: reason; other: reason`, the part of a sentence that names each refused field."""
    parts = []
    for item in errors:
        loc = ".".join(str(part) for part in item.get("loc") or []) or "valves"
        parts.append(f"{loc}: {item.get('msg') or 'invalid value'}")
    return "; ".join(parts) or "the values are not valid"


# --- serialisers (SPEC §2 key orders) -----------------------------------------------------------------------


def _meta(f: Function) -> dict:
    return f.meta if isinstance(f.meta, dict) else {}


# One reader per wire field; each shape below is an ordered selection of them (the order is the contract).
_FIELDS = {
    "version_id": lambda f: f.version_id,
    "id": lambda f: f.id,
    "user_id": lambda f: f.user_id,
    "name": lambda f: f.name,
    "type": lambda f: f.type,
    "content": lambda f: f.content,
    "meta": _meta,
    "valves": lambda f: f.valves if isinstance(f.valves, dict) else {},
    "is_active": lambda f: bool(f.is_active),
    "is_global": lambda f: bool(f.is_global),
    "updated_at": lambda f: f.updated_at,
    "created_at": lambda f: f.created_at,
}
_FLAGS_AND_TIMES = ("is_active", "is_global", "updated_at", "created_at")
_HEAD = ("version_id", "id", "user_id")
FUNCTION_MODEL = _HEAD + ("name", "type", "content", "meta") + _FLAGS_AND_TIMES
FUNCTION_WITH_VALVES_MODEL = _HEAD + ("name", "type", "content", "meta", "valves") + _FLAGS_AND_TIMES
FUNCTION_RESPONSE = _HEAD + ("type", "name", "meta") + _FLAGS_AND_TIMES


def _shape(f: Function, keys: tuple[str, ...]) -> dict:
    return {key: _FIELDS[key](f) for key in keys}


def function_model(f: Function) -> dict:
    return _shape(f, FUNCTION_MODEL)


def function_with_valves_model(f: Function) -> dict:
    return _shape(f, FUNCTION_WITH_VALVES_MODEL)


def function_response(f: Function) -> dict:
    return _shape(f, FUNCTION_RESPONSE)


def function_user_response(f: Function, user: User | None) -> dict:
    return {**function_response(f), "user": user.to_public() if user is not None else None}


# --- reading --------------------------------------------------------------------------------------------------


def _without_code():
    """List queries never need the code or the schemas; leaving them out keeps `GET /` cheap."""
    return (
        defer(Function.content),
        defer(Function.valves_schema),
        defer(Function.user_valves_schema),
        defer(Function.load_error),
    )


def list_functions(viewer: User) -> list[Function]:
    """Admins see every function, everyone else only the active ones; newest change first."""
    query = select(Function).options(*_without_code()).order_by(Function.updated_at.desc(), Function.id)
    if not viewer.is_admin:
        query = query.where(Function.is_active.is_(True))
    return list(db.session.scalars(query))


def list_functions_with_users() -> list[tuple[Function, User | None]]:
    """Every function with its creator's account (None when that account is gone), newest change first."""
    query = (
        select(Function, User)
        .outerjoin(User, User.id == Function.user_id)
        .options(*_without_code())
        .order_by(Function.updated_at.desc(), Function.id)
    )
    return [(row[0], row[1]) for row in db.session.execute(query)]


def normalise_id(function_id: str) -> str:
    return (function_id or "").strip().lower()


def _lookup_id(function_id: str) -> str | None:
    """The stored id to look for, or None when no function can have it (so the database is not asked).

    Every stored id passed `check_new_id`; anything else, such as a NUL character that PostgreSQL refuses in a
    query, simply does not exist.
    """
    candidate = normalise_id(function_id) if isinstance(function_id, str) else ""
    return candidate if ID_PATTERN.fullmatch(candidate) else None


def get_function(function_id: str) -> Function:
    lookup = _lookup_id(function_id)
    f = db.session.get(Function, lookup) if lookup is not None else None
    if f is None:
        raise NotFound(NOT_FOUND_ERROR)
    return f


def function_exists(function_id: str) -> bool:
    lookup = _lookup_id(function_id)
    return (
        lookup is not None and db.session.scalar(select(Function.id).where(Function.id == lookup)) is not None
    )


# --- loading and meta -----------------------------------------------------------------------------------------


def content_hash(content: str) -> str:
    return hashlib.sha256(content.encode("utf-8")).hexdigest()


def check_name(name: Any) -> str:
    if not isinstance(name, str) or not name.strip():
        raise ServiceError("The name must not be empty.", errors=[_field_error("name", "Enter a name.")])
    name = name.strip()
    problem = storable.text_problem(name)
    if problem:
        message = f"The name must not contain {problem}."
        raise ServiceError(message, errors=[_field_error("name", message)])
    if len(name) > MAX_NAME_LENGTH:
        message = f"The name is longer than {MAX_NAME_LENGTH} characters."
        raise ServiceError(message, errors=[_field_error("name", message)])
    return name


def check_content(content: Any) -> str:
    if not isinstance(content, str) or not content.strip():
        raise ServiceError(
            "The code must not be empty.", errors=[_field_error("content", "Enter the function's code.")]
        )
    if len(content) > MAX_CONTENT_BYTES or len(content.encode("utf-8")) > MAX_CONTENT_BYTES:
        raise ContentTooLarge()
    # Refused here, not only by the API's parser, so that pages and import files get a clear error too.
    problem = storable.text_problem(content)
    if problem:
        message = f"The code must not contain {problem}."
        raise ServiceError(message, errors=[_field_error("content", message)])
    return content


def check_new_id(function_id: Any) -> str:
    """The id to store (lower-cased); anything but 1–64 of `[A-Za-z0-9_]` is refused, surrounding spaces too."""
    if not isinstance(function_id, str) or ID_PATTERN.fullmatch(function_id) is None:
        raise ServiceError(ID_FORMAT_ERROR)
    return function_id.lower()


def _field_error(field: str, msg: str) -> dict:
    return {"loc": [field], "msg": msg, "type": "value_error"}


def _user_dict(user: User | None) -> dict | None:
    return user.to_public() if user is not None else None


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
    slots = _load_slots()
    if not slots.acquire(timeout=LOAD_SLOT_WAIT_SECONDS):
        raise LoaderBusy()
    try:
        yield
    finally:
        slots.release()


def load_in_loader(content: str, **kwargs: Any):
    """``loader.load_function`` within a load slot."""
    with load_slot():
        return loader.load_function(content, **kwargs)


def validate_in_loader(content: str, values: dict, **kwargs: Any):
    """``loader.validate_valves`` within a load slot."""
    with load_slot():
        return loader.validate_valves(content, values, **kwargs)


def load_code(content: str, function_id: str, user: User | None = None, valves: dict | None = None):
    """Load already-rewritten code in the isolated loader; a failure raises ``LoadFailed``."""
    result = load_in_loader(content, function_id=function_id, user=_user_dict(user), valves=valves)
    if not result.ok:
        raise LoadFailed(result.error)
    return result


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


def apply_load_result(f: Function, result: Any) -> None:
    f.type = result.type
    f.valves_schema = result.valves_schema
    f.user_valves_schema = result.user_valves_schema
    f.valves_defaults = result.valves_defaults
    f.user_valves_defaults = result.user_valves_defaults
    f.content_hash = result.content_hash
    f.load_status = "ok"
    f.load_error = None


# --- versions -------------------------------------------------------------------------------------------------

_version_clock_lock = threading.Lock()
_version_clock_last = 0


def _new_version_id() -> str:
    """A UUIDv7-style id: versions made in the same second still sort in the order they were made."""
    global _version_clock_last
    with _version_clock_lock:
        stamp = max(time.time_ns() // 1000, _version_clock_last + 1)  # microseconds, strictly increasing
        _version_clock_last = stamp
    millis, micros = divmod(stamp, 1000)
    value = (millis & ((1 << 48) - 1)) << 80
    value |= 0x7 << 76
    value |= (micros & 0xFFF) << 64
    value |= 0b10 << 62
    value |= int.from_bytes(os.urandom(8), "big") & ((1 << 62) - 1)
    return str(uuid.UUID(int=value))


def snapshot_of(f: Function) -> dict:
    return {"name": f.name, "content": f.content, "meta": _meta(f)}


def record_version(f: Function, author: User | None, commit_message: str | None = None) -> FunctionVersion:
    version = FunctionVersion(
        id=_new_version_id(),
        function_id=f.id,
        user_id=author.id if author is not None else f.user_id,
        commit_message=commit_message or None,
        name=f.name,
        content=f.content,
        meta=_meta(f),
        created_at=now(),
    )
    db.session.add(version)
    f.version_id = version.id
    return version


# --- create / update ------------------------------------------------------------------------------------------


def create_function(
    user: User, *, id: str, name: str, content: str, meta: dict | None, commit_message: str | None = None
) -> Function:
    """Create a function from a FunctionForm's values; it starts inactive and not global."""
    function_id = check_new_id(id)
    if function_exists(function_id):
        raise ServiceError(ID_TAKEN_ERROR)
    name = check_name(name)
    content = loader.rewrite_imports(check_content(content))
    check_content(content)
    result = load_code(content, function_id, user)
    timestamp = now()
    f = Function(
        id=function_id,
        user_id=user.id,
        name=name,
        content=content,
        meta=build_meta(meta, result.manifest, result.toggle),
        valves={},
        is_active=False,
        is_global=False,
        created_at=timestamp,
        updated_at=timestamp,
    )
    apply_load_result(f, result)
    db.session.add(f)
    record_version(f, user, commit_message)
    try:
        db.session.commit()
    except IntegrityError:
        db.session.rollback()
        if function_exists(function_id):
            raise ServiceError(ID_TAKEN_ERROR) from None
        raise
    return f


def _incompatible(errors: list[dict], stored: dict) -> list[dict]:
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
    errors = _incompatible(check.errors, stored)
    if not errors:
        return stored
    if not reset_incompatible_valves:
        raise IncompatibleValves(errors)
    return _prune_incompatible(content, function_id, stored, errors)


def update_function(
    user: User,
    function_id: str,
    *,
    name: str,
    content: str,
    meta: dict | None,
    commit_message: str | None = None,
    reset_incompatible_valves: bool = False,
) -> Function:
    """Replace a function's name, code and meta; if anything fails, the stored function stays as it was.

    ``meta`` None keeps the stored description and other keys (the derived ones are worked out from the new code).
    """
    f = get_function(function_id)
    return _update_loaded(
        user,
        f,
        name=name,
        content=content,
        meta=meta,
        commit_message=commit_message,
        reset_incompatible_valves=reset_incompatible_valves,
    )


def _update_loaded(
    user: User,
    f: Function,
    *,
    name: str,
    content: str,
    meta: dict | None,
    commit_message: str | None,
    reset_incompatible_valves: bool,
    restore_version: FunctionVersion | None = None,
) -> Function:
    name = check_name(name)
    content = loader.rewrite_imports(check_content(content))
    check_content(content)
    stored_valves = dict(f.valves or {}) if isinstance(f.valves, dict) else {}
    result = load_code(content, f.id, user, valves=stored_valves or None)
    new_valves = revalidated_valves(
        content, f.id, stored_valves, result.valves_check, reset_incompatible_valves=reset_incompatible_valves
    )

    if meta is None:
        meta = {key: value for key, value in (f.meta or {}).items() if key not in DERIVED_META_KEYS}
    new_meta = build_meta(meta, result.manifest, result.toggle)
    before = snapshot_of(f)
    f.name = name
    f.content = content
    f.meta = new_meta
    if new_valves != stored_valves:
        f.valves = new_valves
    apply_load_result(f, result)
    f.updated_at = now()
    if restore_version is not None:
        f.version_id = restore_version.id
    elif snapshot_of(f) != before or not f.version_id:
        record_version(f, user, commit_message)
    try:
        db.session.commit()
    except Exception:
        db.session.rollback()
        raise
    return f


# --- toggles and delete ---------------------------------------------------------------------------------------


def _flip(function_id: str, column) -> Function:
    """Flip a boolean column in one UPDATE, so concurrent toggles never lose a flip."""
    lookup = _lookup_id(function_id)
    if lookup is None:
        raise NotFound(NOT_FOUND_ERROR)
    statement = (
        update(Function)
        .where(Function.id == lookup)
        .values({column: not_(column), Function.updated_at: now()})
        .returning(Function)
        .execution_options(synchronize_session=False, populate_existing=True)
    )
    try:
        f = db.session.execute(statement).scalars().one_or_none()
        if f is None:
            db.session.rollback()
            raise NotFound(NOT_FOUND_ERROR)
        # Detached before the commit so that the answer shows this flip, not whatever another request did next.
        db.session.expunge(f)
        db.session.commit()
    except NotFound:
        raise
    except Exception:
        db.session.rollback()
        raise
    return f


def _update_one(function_id: str, **values: Any) -> None:
    """Write ``values`` to one stored function in one committed UPDATE; ``NotFound`` if it is not there."""
    try:
        written = db.session.execute(
            update(Function).where(Function.id == function_id).values(**values)
        ).rowcount
        if written != 1:
            raise NotFound(NOT_FOUND_ERROR)
        db.session.commit()
    except Exception:
        db.session.rollback()
        raise


def set_switches(
    function_id: str, *, is_active: bool | None = None, is_global: bool | None = None
) -> Function:
    """Set the active and/or global switch to given values (not flips) in one UPDATE, as an import restores them."""
    values = {
        name: bool(value)
        for name, value in (("is_active", is_active), ("is_global", is_global))
        if value is not None
    }
    lookup = _lookup_id(function_id)
    if lookup is None:
        raise NotFound(NOT_FOUND_ERROR)
    if values:
        _update_one(lookup, **values, updated_at=now())
    return get_function(lookup)


def toggle_active(function_id: str) -> Function:
    return _flip(function_id, Function.is_active)


def toggle_global(function_id: str) -> Function:
    return _flip(function_id, Function.is_global)


def delete_function(function_id: str) -> bool:
    """Delete a function with its user valves and history; ``NotFound`` when there is no such function."""
    function_id = _lookup_id(function_id)
    if function_id is None:
        raise NotFound(NOT_FOUND_ERROR)
    try:
        db.session.execute(delete(UserValves).where(UserValves.function_id == function_id))
        db.session.execute(delete(FunctionVersion).where(FunctionVersion.function_id == function_id))
        gone = db.session.execute(delete(Function).where(Function.id == function_id)).rowcount
        if not gone:
            db.session.rollback()
            raise NotFound(NOT_FOUND_ERROR)
        db.session.commit()
    except NotFound:
        raise
    except Exception:
        db.session.rollback()
        raise
    return True


# --- admin valves ---------------------------------------------------------------------------------------------


def _options_need_loader(schema: dict | None) -> bool:
    """True when a field has `input.options`, which may come from a method answering per user.

    The loader resolves such methods while loading, so the stored schema already holds a list; only the loader
    knows whether that list depends on the user (its result cache makes the common, user-independent case cheap).
    """
    if not isinstance(schema, dict):
        return False
    for prop in (schema.get("properties") or {}).values():
        if isinstance(prop, dict):
            ui = prop.get("input")
            if isinstance(ui, dict) and "options" in ui:
                return True
    return False


def _schema(f: Function, attribute: str, user: User | None, *, for_form: bool = False) -> dict | None:
    schema = getattr(f, attribute)
    defaults_attribute = attribute.replace("_schema", "_defaults")
    defaults = getattr(f, defaults_attribute)
    if _options_need_loader(schema):
        result = load_in_loader(f.content, function_id=f.id, user=_user_dict(user))
        if result.ok:
            schema, defaults = getattr(result, attribute), getattr(result, defaults_attribute)
    return with_factory_defaults(schema, defaults) if for_form else schema


def with_factory_defaults(schema: dict | None, defaults: dict | None) -> dict | None:
    """The schema with the defaults of `default_factory` fields filled in, for forms only.

    The API answers the schema exactly as Open WebUI does (no `default` for such fields); a form built from that
    could only say "computed by the function", where the admin needs to see the list or object it starts from.
    """
    if not isinstance(schema, dict) or not isinstance(defaults, dict) or not defaults:
        return schema
    properties = schema.get("properties")
    if not isinstance(properties, dict):
        return schema
    filled = dict(properties)
    for name, value in defaults.items():
        prop = filled.get(name)
        if isinstance(prop, dict) and "default" not in prop:
            filled[name] = {**prop, "default": value}
    return {**schema, "properties": filled}


def get_valves(function_id: str) -> dict:
    f = get_function(function_id)
    return dict(f.valves) if isinstance(f.valves, dict) else {}


def valves_spec(function_id: str, user: User | None = None, *, for_form: bool = False) -> dict | None:
    """The JSON schema of the function's `Valves`, or None when its code has none.

    ``for_form`` adds the defaults of `default_factory` fields (see ``with_factory_defaults``).
    """
    return _schema(get_function(function_id), "valves_schema", user, for_form=for_form)


def _validate(f: Function, values: Any, kind: str, user: User | None) -> dict:
    if not isinstance(values, dict):
        raise ServiceError("Valves must be a JSON object.")
    cleaned = {key: value for key, value in values.items() if value is not None}
    unstorable = storable.first_problem(cleaned, "valves")
    if unstorable:
        raise ServiceError(unstorable)
    result = validate_in_loader(f.content, cleaned, kind=kind, function_id=f.id, user=_user_dict(user))
    if result.error is not None:
        if result.error.type == "NoValvesClass":
            cls = "UserValves" if kind == "user_valves" else "Valves"
            raise ServiceError(f"This function has no {cls} class, so there is nothing to set.")
        raise LoadFailed(result.error)
    if not result.ok:
        raise ValvesRejected(result.errors, kind)
    return result.values


def update_valves(function_id: str, values: dict) -> dict:
    """Validate admin valves with the function's own class and store exactly the keys that were set.

    The function's ``updated_at`` moves too, as in Open WebUI: lists sorted by it and exports show the change.
    """
    f = get_function(function_id)
    stored = _validate(f, values, "valves", None)
    _update_one(f.id, valves=stored, updated_at=now())
    return stored


def clear_valves(function_id: str) -> None:
    """Forget every stored admin valve, so the function runs on its defaults (an empty set needs no validation)."""
    _update_one(function_id, valves={}, updated_at=now())


# --- user valves ----------------------------------------------------------------------------------------------


def _function_for_user(user: User, function_id: str) -> Function:
    f = get_function(function_id)
    if not f.is_active and not user.is_admin:
        raise NotFound(NOT_FOUND_ERROR)
    return f


def _stored_user_valves(user: User, function_id: str) -> dict:
    stored = db.session.scalar(
        select(UserValves.valves).where(UserValves.user_id == user.id, UserValves.function_id == function_id)
    )
    return dict(stored) if isinstance(stored, dict) else {}


def get_user_valves(user: User, function_id: str) -> dict:
    f = _function_for_user(user, function_id)
    return _stored_user_valves(user, f.id)


def user_valves_spec(user: User, function_id: str, *, for_form: bool = False) -> dict | None:
    return _schema(_function_for_user(user, function_id), "user_valves_schema", user, for_form=for_form)


def check_user_valves(user: User, function_id: str) -> list[dict]:
    """Field errors of the caller's stored user valves against the current code (empty when they are fine)."""
    f = _function_for_user(user, function_id)
    stored = _stored_user_valves(user, f.id)
    if not stored or f.user_valves_schema is None:
        return []
    result = validate_in_loader(
        f.content, stored, kind="user_valves", function_id=f.id, user=_user_dict(user)
    )
    return _incompatible(result.errors, stored) if result.error is None else []


def _dialect_insert():
    if db.session.get_bind().dialect.name == "postgresql":
        from sqlalchemy.dialects.postgresql import insert
    else:
        from sqlalchemy.dialects.sqlite import insert
    return insert


def update_user_valves(user: User, function_id: str, values: dict) -> dict:
    """Validate the caller's own valves and store them in their row, upserted so that writers never collide."""
    f = _function_for_user(user, function_id)
    stored = _validate(f, values, "user_valves", user)
    insert = _dialect_insert()
    statement = insert(UserValves).values(user_id=user.id, function_id=f.id, valves=stored, updated_at=now())
    statement = statement.on_conflict_do_update(
        index_elements=[UserValves.user_id, UserValves.function_id],
        set_={"valves": statement.excluded.valves, "updated_at": statement.excluded.updated_at},
    )
    try:
        db.session.execute(statement)
        db.session.commit()
    except IntegrityError:
        # The function was deleted between the check and the write.
        db.session.rollback()
        raise NotFound(NOT_FOUND_ERROR) from None
    except Exception:
        db.session.rollback()
        raise
    return stored


# --- export ---------------------------------------------------------------------------------------------------


def export_functions(include_valves: bool = False) -> list[dict]:
    """Every function as FunctionModel (FunctionWithValvesModel with valves), oldest first."""
    functions = db.session.scalars(select(Function).order_by(Function.created_at, Function.id))
    serialise = function_with_valves_model if include_valves else function_model
    return [serialise(f) for f in functions]


# --- history --------------------------------------------------------------------------------------------------


def _author(user_id: str) -> dict | None:
    name = db.session.scalar(select(User.name).where(User.id == user_id))
    return {"name": name} if name else None


def _version_order():
    return (FunctionVersion.created_at.desc(), FunctionVersion.id.desc())


def _parent_id(version: FunctionVersion) -> str | None:
    """The version made just before this one, which is what it was edited from."""
    return db.session.scalar(
        select(FunctionVersion.id)
        .where(
            FunctionVersion.function_id == version.function_id,
            (FunctionVersion.created_at < version.created_at)
            | ((FunctionVersion.created_at == version.created_at) & (FunctionVersion.id < version.id)),
        )
        .order_by(*_version_order())
        .limit(1)
    )


def version_response(version: FunctionVersion, parent_id: str | None, author: dict | None) -> dict:
    return {
        "id": version.id,
        "function_id": version.function_id,
        "parent_id": parent_id,
        "user_id": version.user_id,
        "commit_message": version.commit_message,
        "created_at": version.created_at,
        "user": author,
    }


def version_model(version: FunctionVersion) -> dict:
    return {
        **version_response(version, _parent_id(version), _author(version.user_id)),
        "snapshot": {"name": version.name, "content": version.content, "meta": version.meta or {}},
    }


def list_versions(function_id: str, page: int = 1) -> list[dict]:
    """One page of a function's versions, newest first."""
    f = get_function(function_id)
    page = max(1, int(page or 1))
    if page > MAX_HISTORY_PAGE:
        return []
    # One more than a page, so the last one on the page knows its parent.
    rows = db.session.execute(
        select(FunctionVersion, User.name)
        .outerjoin(User, User.id == FunctionVersion.user_id)
        .where(FunctionVersion.function_id == f.id)
        .order_by(*_version_order())
        .offset((page - 1) * HISTORY_PAGE_SIZE)
        .limit(HISTORY_PAGE_SIZE + 1)
    ).all()
    answer = []
    for index, (version, author) in enumerate(rows[:HISTORY_PAGE_SIZE]):
        parent = rows[index + 1][0].id if index + 1 < len(rows) else None
        answer.append(version_response(version, parent, {"name": author} if author else None))
    return answer


def get_version(function_id: str, version_id: str) -> FunctionVersion:
    f = get_function(function_id)
    if not isinstance(version_id, str) or "\x00" in version_id:
        raise NotFound(VERSION_NOT_FOUND_ERROR)  # no version has such an id, and PostgreSQL cannot be asked
    version = db.session.scalar(
        select(FunctionVersion).where(FunctionVersion.function_id == f.id, FunctionVersion.id == version_id)
    )
    if version is None:
        raise NotFound(VERSION_NOT_FOUND_ERROR)
    return version


def diff_versions(function_id: str, from_id: str, to_id: str) -> dict:
    """What changed between two versions: name/meta before and after, and a unified diff of the code."""
    before = get_version(function_id, from_id)
    after = get_version(function_id, to_id)
    left = {"name": before.name, "meta": before.meta or {}}
    right = {"name": after.name, "meta": after.meta or {}}
    metadata = {
        key: {"before": left[key], "after": right[key]} for key in ("name", "meta") if left[key] != right[key]
    }
    old, new = before.content or "", after.content or ""
    patch = "\n".join(
        difflib.unified_diff(
            old.splitlines(),
            new.splitlines(),
            fromfile=f"{before.id}.py",
            tofile=f"{after.id}.py",
            lineterm="",
        )
    )
    return {
        "from_id": before.id,
        "to_id": after.id,
        "metadata": metadata,
        "content_diff": patch,
        "line_endings_only": old != new and not patch,
    }


def restore_version(
    user: User, function_id: str, version_id: str, reset_incompatible_valves: bool = False
) -> Function:
    """Make a saved version current again, loading its code as an update does."""
    f = get_function(function_id)
    version = get_version(f.id, version_id)
    return _update_loaded(
        user,
        f,
        name=version.name,
        content=version.content,
        meta=version.meta or {},
        commit_message=None,
        reset_incompatible_valves=reset_incompatible_valves,
        restore_version=version,
    )


def delete_version(function_id: str, version_id: str) -> bool:
    f = get_function(function_id)
    version = get_version(f.id, version_id)
    if f.version_id == version.id:
        raise ServiceError(CURRENT_VERSION_ERROR)
    db.session.delete(version)
    db.session.commit()
    return True


def count_functions() -> int:
    return db.session.scalar(select(func.count()).select_from(Function))
