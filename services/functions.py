"""Functions: create, update, switch and delete them (SPEC §1–§3), through the one write path that records their
versions; reading them is ``services.function_reads``, their wire shapes ``services.function_shapes``, checking what
a client sends ``services.function_checks``; valves and history have their own modules.

The one place for these rules; the JSON API and the HTML console both call these functions. They take a ``User``
and plain values, return models or plain dicts, and raise ``ServiceError`` (or ``NotFound``) with the texts clients
rely on and a ``kind`` callers route on. Function code is never run here: every load goes through
``services.loading`` and the isolated ``loader``.
"""

from __future__ import annotations

import os
import threading
import time
import uuid
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from typing import Any

from flask import current_app
from sqlalchemy import delete, not_, select, update
from sqlalchemy import inspect as sa_inspect
from sqlalchemy.exc import IntegrityError

from extensions import db
from models import Function, FunctionVersion, User, UserValves, now
from services import audit, function_reads
from services.errors import ServiceError
from services.function_checks import DERIVED_META_KEYS, build_meta, check_name, check_new_id, id_taken
from services.loading import apply_load_result, load_code, prepare_code, retire_workers, revalidated_valves
from services.sealed_valves import for_storage

# --- writing --------------------------------------------------------------------------------------------------


def _meta(f: Function) -> dict:
    return f.meta if isinstance(f.meta, dict) else {}


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
    """Record the function's name, code and meta as its new current version, pruning the history to
    ``SLUICE_HISTORY_LIMIT`` in the same (uncommitted) transaction."""
    limit = current_app.config.get("SLUICE_HISTORY_LIMIT")
    # A function not yet stored has no history to prune (versions reference a stored function, cascading).
    if limit and not sa_inspect(f).transient:
        prune_history(f.id, keep=limit - 1)
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


def prune_history(function_id: str, keep: int) -> int:
    """Delete all but the newest ``keep`` stored versions of a function, uncommitted; how many went."""
    # Without autoflush: a function being created is not in the session yet, and only stored versions count.
    with db.session.no_autoflush:
        older = list(
            db.session.scalars(
                select(FunctionVersion.id)
                .where(FunctionVersion.function_id == function_id)
                .order_by(FunctionVersion.created_at.desc(), FunctionVersion.id.desc())
                .offset(keep)
            )
        )
    if older:
        db.session.execute(delete(FunctionVersion).where(FunctionVersion.id.in_(older)))
    return len(older)


def write_function(
    f: Function,
    author: User | None,
    *,
    name: str,
    content: str,
    meta: dict,
    valves: dict,
    load: Any,
    at: int | None = None,
    commit_message: str | None = None,
    restored: FunctionVersion | None = None,
) -> None:
    """Write checked values onto a function (new or stored) and record a version when its name, code or meta
    changed, or it has none yet; ``restored`` makes that saved version current instead.

    ``load`` is the loader's result for ``content``, or None when the stored code was kept (its derived fields
    stay). Nothing is committed: the caller commits, so that a sync writes all its functions at once.
    """
    before = snapshot_of(f)
    f.name = name
    f.content = content
    f.meta = meta
    if f.valves != valves:
        f.valves = for_storage(valves, load.valves_schema if load is not None else f.valves_schema)
    if load is not None:
        apply_load_result(f, load)
    f.updated_at = at if at is not None else now()
    if restored is not None:
        f.version_id = restored.id
    elif snapshot_of(f) != before or not f.version_id:
        record_version(f, author, commit_message)


def detach_written(f: Function) -> None:
    """Write ``f`` (flush) and take it out of the session, before the commit: the answer then shows what this request
    wrote, without the commit expiring every attribute and the answer reading the row back (a query per save)."""
    db.session.flush()
    db.session.expunge(f)


@contextmanager
def committed() -> Iterator[None]:
    """Commit what the block wrote, or roll all of it back when the block or the commit raises."""
    try:
        yield
        db.session.commit()
    except Exception:
        db.session.rollback()
        raise


def delete_functions(function_ids: Iterable[str]) -> int:
    """Delete these functions with their user valves and history, uncommitted; how many functions went."""
    ids = list(function_ids)
    if not ids:
        return 0
    db.session.execute(delete(UserValves).where(UserValves.function_id.in_(ids)))
    db.session.execute(delete(FunctionVersion).where(FunctionVersion.function_id.in_(ids)))
    return db.session.execute(delete(Function).where(Function.id.in_(ids))).rowcount


# --- create / update ------------------------------------------------------------------------------------------


def create_function(
    user: User, *, id: str, name: str, content: str, meta: dict | None, commit_message: str | None = None
) -> Function:
    """Create a function from a FunctionForm's values; it starts inactive and not global."""
    function_id = check_new_id(id)

    def check_unique() -> None:
        if function_reads.function_exists(function_id):
            raise id_taken()

    try:
        name = check_name(name)
        content = prepare_code(content)
    except ServiceError:
        check_unique()  # a taken id is the error to report first, as it is checked first
        raise
    # The database is asked while the loader runs the code, not before.
    result = load_code(content, function_id, user, during=check_unique)
    timestamp = now()
    f = Function(
        id=function_id, user_id=user.id, valves={}, is_active=False, is_global=False, created_at=timestamp
    )
    write_function(
        f,
        user,
        name=name,
        content=content,
        meta=build_meta(meta, result.manifest, result.toggle),
        valves={},
        load=result,
        at=timestamp,
        commit_message=commit_message,
    )
    db.session.add(f)
    audit.record("function.created", "function", function_id, {"name": name})
    try:
        detach_written(f)
        db.session.commit()
    except IntegrityError:
        db.session.rollback()
        if function_reads.function_exists(function_id):
            raise id_taken() from None
        raise
    return f


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
    return update_loaded(
        user,
        function_reads.get_function(function_id),
        name=name,
        content=content,
        meta=meta,
        commit_message=commit_message,
        reset_incompatible_valves=reset_incompatible_valves,
    )


def update_loaded(
    user: User,
    f: Function,
    *,
    name: str,
    content: str,
    meta: dict | None,
    commit_message: str | None,
    reset_incompatible_valves: bool,
    restored: FunctionVersion | None = None,
) -> Function:
    """``update_function`` for a function already read; ``restored`` is the saved version a restore brings back."""
    name = check_name(name)
    content = prepare_code(content)
    stored_valves = dict(f.valves or {}) if isinstance(f.valves, dict) else {}
    result = load_code(content, f.id, user, valves=stored_valves or None)
    new_valves = revalidated_valves(
        content, f.id, stored_valves, result.valves_check, reset_incompatible_valves=reset_incompatible_valves
    )
    if meta is None:
        meta = {key: value for key, value in (f.meta or {}).items() if key not in DERIVED_META_KEYS}
    before = snapshot_of(f)
    with committed():
        write_function(
            f,
            user,
            name=name,
            content=content,
            meta=build_meta(meta, result.manifest, result.toggle),
            valves=new_valves,
            load=result,
            commit_message=commit_message,
            restored=restored,
        )
        details: dict[str, Any] = {"changed": audit.changed_fields(before, snapshot_of(f))}
        if restored is not None:
            details["version_id"] = restored.id
        if new_valves != stored_valves:
            # Fields the new code refused and the admin asked to reset: named, never their values.
            details["valves_reset"] = audit.changed_fields(stored_valves, new_valves)
        audit.record(
            "function.restored" if restored is not None else "function.updated", "function", f.id, details
        )
        detach_written(f)
    retire_workers([f.id])
    return f


# --- toggles and delete ---------------------------------------------------------------------------------------


# What switching a column on (True) or off (False) is called in the audit trail.
_SWITCH_ACTIONS = {
    "is_active": {True: "function.activated", False: "function.deactivated"},
    "is_global": {True: "function.made_global", False: "function.made_not_global"},
}


def _flip(function_id: str, column) -> Function:
    """Flip a boolean column in one UPDATE, so concurrent toggles never lose a flip."""
    lookup = function_reads.known_id(function_id)
    statement = (
        update(Function)
        .where(Function.id == lookup)
        .values({column: not_(column), Function.updated_at: now()})
        .returning(Function)
        .execution_options(synchronize_session=False, populate_existing=True)
    )
    with committed():
        f = db.session.execute(statement).scalars().one_or_none()
        if f is None:
            raise function_reads.FunctionNotFound()
        audit.record(_SWITCH_ACTIONS[column.key][bool(getattr(f, column.key))], "function", f.id)
        # Detached before the commit so that the answer shows this flip, not whatever another request did next.
        db.session.expunge(f)
    return f


def update_one(function_id: str, **values: Any) -> None:
    """Write ``values`` to one stored function in one committed UPDATE; ``NotFound`` if it is not there."""
    with committed():
        written = db.session.execute(
            update(Function).where(Function.id == function_id).values(**values)
        ).rowcount
        if written != 1:
            raise function_reads.FunctionNotFound()


def set_switches(
    function_id: str, *, is_active: bool | None = None, is_global: bool | None = None
) -> Function:
    """Set the active and/or global switch to given values (not flips) in one UPDATE, as an import restores them."""
    values = {
        name: bool(value)
        for name, value in (("is_active", is_active), ("is_global", is_global))
        if value is not None
    }
    lookup = function_reads.known_id(function_id)
    if values:
        f = function_reads.get_function(lookup)
        for name, value in values.items():
            if bool(getattr(f, name)) != value:
                audit.record(_SWITCH_ACTIONS[name][value], "function", lookup)
        update_one(lookup, **values, updated_at=now())  # commits the entries with the switches, or neither
    return function_reads.get_function(lookup)


def toggle_active(function_id: str) -> Function:
    return _flip(function_id, Function.is_active)


def toggle_global(function_id: str) -> Function:
    return _flip(function_id, Function.is_global)


def delete_function(function_id: str) -> bool:
    """Delete a function with its user valves and history; ``FunctionNotFound`` when there is no such function."""
    function_id = function_reads.known_id(function_id)
    name = db.session.scalar(select(Function.name).where(Function.id == function_id))
    with committed():
        if not delete_functions([function_id]):
            raise function_reads.FunctionNotFound()
        audit.record("function.deleted", "function", function_id, {"name": name})
    retire_workers([function_id])
    return True
