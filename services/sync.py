"""Sync: make the stored functions exactly the listed ones, all or nothing.

Every item is checked and loaded before anything is written (unchanged code is not loaded again: its content hash
matches the stored one); if any item fails, nothing changes and each failure is reported with its id. The writes
then happen in one transaction.
"""

from __future__ import annotations

import contextlib
import fcntl
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from sqlalchemy import select, text
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm.exc import StaleDataError

import loader
from extensions import db
from models import Function, User, now
from services import audit, function_checks, function_shapes, loading
from services import functions as fs
from services.errors import ServiceError


@dataclass
class _Planned:
    id: str
    name: str
    content: str
    meta: dict
    valves: dict
    is_active: bool
    is_global: bool
    load: Any  # the LoadResult, or None when the stored code was reused
    existing: Function | None


# How long a sync waits for the one before it to finish before it is answered 503.
SYNC_WAIT_SECONDS = 30.0
SYNC_BUSY_ERROR = "Another sync is still running; try again in a moment."
NO_VALVES_CLASS_ERROR = "This function has no Valves class, but the item sets valves."
_process_lock = threading.Lock()  # for databases without a file to lock beside (SQLite in memory)


class SyncBusy(ServiceError):
    status = 503
    kind = "busy"

    def __init__(self):
        super().__init__(SYNC_BUSY_ERROR)


@contextlib.contextmanager
def _one_sync_at_a_time() -> Iterator[None]:
    """Hold the database-wide sync lock: every worker process and thread takes turns.

    PostgreSQL has advisory locks for this (held by the transaction, released at its commit or rollback); with
    SQLite every worker shares the database file, so a lock file beside it does the same job. Waiting is polled so
    that it ends at ``SYNC_WAIT_SECONDS`` with a 503 instead of holding a worker for good.
    """
    deadline = time.monotonic() + SYNC_WAIT_SECONDS
    engine = db.session.get_bind()
    if engine.dialect.name == "postgresql":
        while not db.session.execute(
            text("SELECT pg_try_advisory_xact_lock(:key)"), {"key": _PG_LOCK_KEY}
        ).scalar():
            if time.monotonic() > deadline:
                db.session.rollback()
                raise SyncBusy()
            time.sleep(0.05)
        yield  # released with the transaction, which the sync always ends
        return
    database = engine.url.database
    if not database or database == ":memory:":
        if not _process_lock.acquire(timeout=SYNC_WAIT_SECONDS):
            raise SyncBusy()
        try:
            yield
        finally:
            _process_lock.release()
        return
    with open(f"{database}.sync-lock", "a+b") as handle:
        while True:
            try:
                fcntl.flock(handle.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() > deadline:
                    raise SyncBusy() from None
                time.sleep(0.05)
        try:
            yield
        finally:
            fcntl.flock(handle.fileno(), fcntl.LOCK_UN)


# Any fixed number: it names Sluice's sync lock among the database's advisory locks.
_PG_LOCK_KEY = 0x51_CE_5C


class SyncFailed(ServiceError):
    def __init__(self, errors: list[dict], total: int):
        noun = "function" if total == 1 else "functions"
        super().__init__(
            f"{len(errors)} of {total} {noun} could not be synced, so nothing was changed.", errors=errors
        )


def _item_error(item_id: Any, error: ServiceError) -> dict:
    entry: dict[str, Any] = {"id": item_id if isinstance(item_id, str) else None, "detail": error.detail}
    for key in ("error", "errors"):
        if key in error.extra:
            entry[key] = error.extra[key]
    return entry


def _check_valves(content: str, function_id: str, values: dict, load: Any) -> dict:
    """The valves to store, as ``loading.validate_valves`` decides; an empty set needs no class to take it."""
    if not values:
        return {}
    check = load.valves_check if load is not None else None
    try:
        return loading.validate_valves(content, function_id, values, check=check)
    except ServiceError as error:
        if error.kind == "no_valves_class":
            # An item names its valves on purpose; say that it is the item, not a form, that sets them.
            raise ServiceError(NO_VALVES_CLASS_ERROR, kind="no_valves_class") from None
        raise


def _plan_item(
    user: User, item: dict, existing: Function | None, reset_incompatible_valves: bool = False
) -> _Planned:
    function_id = function_checks.check_new_id(item.get("id"))
    name = function_checks.check_name(item.get("name"))
    content = loading.prepare_code(item.get("content"))
    stored_valves = (
        dict(existing.valves) if existing is not None and isinstance(existing.valves, dict) else {}
    )
    # An item without `valves` keeps the stored ones, exactly as an update does; one with `valves` sets them.
    sets_valves = item.get("valves") is not None
    given_valves = item["valves"] if sets_valves else stored_valves
    given_valves = {key: value for key, value in given_valves.items() if value is not None}

    reuse = (
        existing is not None
        and existing.load_status == "ok"
        and existing.content_hash == loading.content_hash(content)
        and existing.content == content
    )
    if reuse:
        load = None
        toggle = bool((existing.meta or {}).get("toggle"))
        manifest = loader.parse_frontmatter(content)
        if given_valves == stored_valves:
            valves = stored_valves
        else:
            valves = _check_valves(content, function_id, given_valves, None)
    else:
        load = loading.load_code(content, function_id, user, valves=given_valves or None)
        toggle, manifest = load.toggle, load.manifest
        if sets_valves:
            valves = _check_valves(content, function_id, given_valves, load)
        else:
            valves = loading.revalidated_valves(
                content,
                function_id,
                stored_valves,
                load.valves_check,
                reset_incompatible_valves=reset_incompatible_valves,
            )
    return _Planned(
        id=function_id,
        name=name,
        content=content,
        meta=function_checks.build_meta(item.get("meta"), manifest, toggle),
        valves=valves,
        is_active=bool(item.get("is_active")),
        is_global=bool(item.get("is_global")),
        load=load,
        existing=existing,
    )


def _changes(plan: _Planned) -> list[str]:
    """What an item changes in its stored function, by field name."""
    f = plan.existing
    stored = {
        "name": f.name,
        "content": f.content,
        "meta": f.meta or {},
        "valves": f.valves or {},
        "is_active": bool(f.is_active),
        "is_global": bool(f.is_global),
    }
    planned = {
        "name": plan.name,
        "content": plan.content,
        "meta": plan.meta,
        "valves": plan.valves,
        "is_active": plan.is_active,
        "is_global": plan.is_global,
    }
    return audit.changed_fields(stored, planned)


def _changed(plan: _Planned) -> bool:
    return bool(_changes(plan))


def sync_functions(
    user: User, items: list[dict], *, dry_run: bool = False, reset_incompatible_valves: bool = False
) -> list[dict] | dict:
    """Create or update each item and delete every function not listed; or, with ``dry_run``, say what would.

    ``reset_incompatible_valves`` drops the stored valves that an item's new code refuses, as update does.
    """
    if dry_run:
        return _sync(user, items, dry_run=True, reset_incompatible_valves=reset_incompatible_valves)
    # Syncs run one at a time, from reading what is stored to the commit: two at once would each delete what the
    # other created only if it saw it, leaving an end state neither asked for.
    with _one_sync_at_a_time():
        return _sync(user, items, dry_run=False, reset_incompatible_valves=reset_incompatible_valves)


# Ids per `IN (...)` when reading the listed functions: well within every database's limit on bound parameters.
READ_CHUNK = 500


def _stored_functions(items: list[dict], stored_ids: set[str]) -> dict[str, Function]:
    """The stored functions the items name, by id. Only those are read whole: the others are only deleted, by id,
    and reading every stored function's code to sync a few held it all in the worker's memory at once."""
    named = sorted({item["id"].lower() for item in items if isinstance(item.get("id"), str)} & stored_ids)
    found: dict[str, Function] = {}
    for start in range(0, len(named), READ_CHUNK):
        chunk = named[start : start + READ_CHUNK]
        found.update((f.id, f) for f in db.session.scalars(select(Function).where(Function.id.in_(chunk))))
    return found


def _sync(
    user: User, items: list[dict], *, dry_run: bool, reset_incompatible_valves: bool
) -> list[dict] | dict:
    stored_ids = set(db.session.scalars(select(Function.id)))
    stored = _stored_functions(items, stored_ids)
    plans: list[_Planned] = []
    errors: list[dict] = []
    seen: set[str] = set()
    for item in items:
        raw_id = item.get("id")
        try:
            function_id = function_checks.check_new_id(raw_id)
            if function_id in seen:
                raise ServiceError(
                    "This id appears more than once in the list.", kind="duplicate_id", field="id"
                )
            seen.add(function_id)
            plans.append(_plan_item(user, item, stored.get(function_id), reset_incompatible_valves))
        except ServiceError as error:
            if error.kind == "busy":
                # Not a fault of this item: the whole sync is answered 503 and can simply be sent again.
                db.session.rollback()
                raise
            errors.append(_item_error(raw_id, error))
    if errors:
        db.session.rollback()
        raise SyncFailed(errors, len(items))

    listed = {plan.id for plan in plans}
    deleted = sorted(function_id for function_id in stored_ids if function_id not in listed)
    created = [plan.id for plan in plans if plan.existing is None]
    updated = [plan.id for plan in plans if plan.existing is not None and _changed(plan)]
    unchanged = [plan.id for plan in plans if plan.existing is not None and not _changed(plan)]
    if dry_run:
        db.session.rollback()
        return {"created": created, "updated": updated, "deleted": deleted, "unchanged": unchanged}

    try:
        result = _apply(user, plans, deleted)
        db.session.commit()
    except (IntegrityError, StaleDataError):
        # Another request created one of these ids, or deleted one, between the plan and the write.
        db.session.rollback()
        raise ServiceError(
            "The functions changed while syncing, so nothing was changed. Try again.", kind="conflict"
        ) from None
    except Exception:
        db.session.rollback()
        raise
    loading.retire_workers(deleted + updated)
    return result


def _apply(user: User, plans: list[_Planned], deleted: list[str]) -> list[dict]:
    """Write the plans and record each change in the audit trail, uncommitted: the caller commits all or nothing."""
    fs.delete_functions(deleted)
    for function_id in deleted:
        audit.record("function.deleted", "function", function_id, {"via": "sync"})
    timestamp = now()
    answer = []
    for plan in plans:
        f = plan.existing
        if f is None:
            # A new function is the syncing admin's from now; one that exists keeps its creator and created_at.
            f = Function(id=plan.id, user_id=user.id, created_at=timestamp, valves={})
            db.session.add(f)
            audit.record("function.created", "function", plan.id, {"name": plan.name, "via": "sync"})
        elif not (changes := _changes(plan)):
            answer.append(function_shapes.function_with_valves_model(f))
            continue
        else:
            details = {"changed": changes, "via": "sync"}
            if "valves" in changes:
                details["valves"] = audit.changed_fields(f.valves, plan.valves)
            audit.record("function.updated", "function", plan.id, details)
        f.is_active = plan.is_active
        f.is_global = plan.is_global
        fs.write_function(
            f,
            user,
            name=plan.name,
            content=plan.content,
            meta=plan.meta,
            valves=plan.valves,
            load=plan.load,
            at=timestamp,
        )
        answer.append(function_shapes.function_with_valves_model(f))
    db.session.flush()
    return answer
