"""The audit trail: every change recorded with who, when, what and through which face, and read back filtered.

``record`` only adds a row to the session: the service that makes the change calls it before its own commit, so the
entry and the change are committed together, or rolled back together. Who and which face come from the caller's
context in one place: the web layer registers how to tell (``resolve_actor_with``), the CLI says so with
``acting_as("cli")``. Details name what changed (valve fields, a role before and after), never a valve's value.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, replace
from datetime import UTC, date, datetime
from typing import Any

from flask import g, has_app_context, has_request_context
from sqlalchemy import ColumnElement, delete, func, select

from extensions import db
from models import AuditEntry, Function, User, now
from services.function_search import _positive_int  # the same lenient page-number rule as the list

# The ways into Sluice: the browser console (a session cookie), the JSON API with a key, the operator's commands;
# "system" is whatever runs outside all three (tests, background work).
FACES = {"console": "Console", "api_key": "API key", "cli": "CLI", "system": "System"}

# Every action recorded, with the words the console shows for it; the order is the filter's.
ACTIONS = {
    "function.created": "Function created",
    "function.updated": "Function updated",
    "function.restored": "Function restored to a version",
    "function.deleted": "Function deleted",
    "function.activated": "Function switched on",
    "function.deactivated": "Function switched off",
    "function.made_global": "Function made global",
    "function.made_not_global": "Function no longer global",
    "function.version_deleted": "Function version deleted",
    "function.valves_changed": "Admin valves changed",
    "function.user_valves_changed": "User's valves changed",
    "api_key.created": "API key created",
    "api_key.revoked": "API key revoked",
    "user.created": "User created",
    "user.approved": "User approved",
    "user.role_changed": "User's role changed",
    "user.deleted": "User deleted",
    "user.signed_in": "Signed in",
    "user.sign_in_failed": "Sign-in failed",
}
TARGET_KINDS = ("function", "user", "api_key")

PER_PAGE = 50
MAX_PER_PAGE = 200
# The OFFSET a page makes must fit every database's integers.
MAX_PAGE = 1_000_000


# --- who is acting ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Actor:
    user: User | None
    face: str


_resolver: Callable[[], Actor] | None = None


def resolve_actor_with(resolver: Callable[[], Actor]) -> None:
    """Let the web layer say who a request's caller is and how they came (session or key)."""
    global _resolver
    _resolver = resolver


@contextmanager
def acting_as(face: str, user: User | None = None) -> Iterator[None]:
    """Record what the block changes as done by ``user`` through ``face`` (the CLI: ``acting_as("cli")``)."""
    saved = g.get("audit_actor")
    g.audit_actor = Actor(user, face)
    try:
        yield
    finally:
        g.audit_actor = saved


def current_actor() -> Actor:
    if has_app_context() and g.get("audit_actor") is not None:
        return g.audit_actor
    if has_request_context() and _resolver is not None:
        return _resolver()
    return Actor(None, "system")


# --- recording -------------------------------------------------------------------------------------------------

_UNSET: Any = object()


def record(
    action: str,
    target_kind: str,
    target_id: str | None = None,
    details: dict[str, Any] | None = None,
    *,
    by: User | None = _UNSET,
    email: str | None = None,
) -> AuditEntry:
    """Add an entry for a change to the session, uncommitted: the caller's commit writes it with the change.

    ``by`` names the account acting when the context cannot (a sign-in, an account signing itself up); ``email``
    is the address tried by a failed sign-in, which names no account.
    """
    if action not in ACTIONS or target_kind not in TARGET_KINDS:
        raise ValueError(f"unknown audit action {action!r} or target {target_kind!r}")
    actor = current_actor()
    user = actor.user if by is _UNSET else by
    entry = AuditEntry(
        created_at=now(),
        actor_id=user.id if user is not None else None,
        actor_email=user.email if user is not None else email,
        actor_name=user.name if user is not None else None,
        face=actor.face,
        action=action,
        target_kind=target_kind,
        target_id=target_id,
        details=details or {},
    )
    db.session.add(entry)
    return entry


# --- keeping it bounded ------------------------------------------------------------------------------------------

DAY = 24 * 60 * 60
PRUNE_BATCH = 5_000


def prune(keep_days: int, *, batch: int = PRUNE_BATCH, dry_run: bool = False) -> int:
    """Remove the entries older than ``keep_days`` days (1 or more); how many there were.

    In batches of ``batch``, oldest first, each committed on its own: a long-grown trail never holds a write lock
    (SQLite's is the whole database's) for longer than one batch takes, and the pages and the API keep answering
    meanwhile. Each batch finds its rows through ix_audit_log_time. ``dry_run`` only counts them."""
    if keep_days < 1:
        raise ValueError("keep_days must be 1 or more")
    cutoff = now() - keep_days * DAY
    if dry_run:
        return db.session.scalar(select(func.count()).where(AuditEntry.created_at < cutoff)) or 0
    removed = 0
    while True:
        ids = list(
            db.session.scalars(
                select(AuditEntry.id)
                .where(AuditEntry.created_at < cutoff)
                .order_by(AuditEntry.created_at, AuditEntry.id)
                .limit(batch)
            )
        )
        if not ids:
            return removed
        db.session.execute(delete(AuditEntry).where(AuditEntry.id.in_(ids)))
        db.session.commit()
        removed += len(ids)


def changed_fields(before: Mapping[str, Any] | None, after: Mapping[str, Any] | None) -> list[str]:
    """The names of the keys whose value differs (set, unset or changed), sorted; never the values."""
    before, after = dict(before or {}), dict(after or {})
    missing = object()
    return sorted(
        key for key in before.keys() | after.keys() if before.get(key, missing) != after.get(key, missing)
    )


# --- reading ---------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class AuditQuery:
    """The filters and page the console or the API asks for; every field has a safe default."""

    function: str = ""
    user: str = ""  # an account's id, or an email address (which also finds failed sign-ins)
    action: str = ""
    since: int | None = None  # epoch seconds, inclusive
    until: int | None = None  # epoch seconds, inclusive
    page: int = 1
    per_page: int = PER_PAGE

    @classmethod
    def from_page_args(cls, args: Mapping[str, str]) -> tuple[AuditQuery, dict[str, str]]:
        """Read the console's query string: dates as YYYY-MM-DD (UTC, whole days); errors by field."""
        errors: dict[str, str] = {}
        since = _day(args.get("from", ""), "from", errors)
        until = _day(args.get("to", ""), "to", errors)
        if since is not None and until is not None and until < since:
            errors["to"] = "The end date is before the start date."
        action = args.get("action", "")
        if action and action not in ACTIONS:
            errors["action"] = "Choose an action from the list."
        query = cls(
            function=args.get("function", "").strip()[:64],
            user=args.get("user", "").strip()[:320],
            action=action if action in ACTIONS else "",
            since=since,
            until=until + 86399 if until is not None else None,
            page=_positive_int(args.get("page"), 1, MAX_PAGE),
            per_page=_positive_int(args.get("per_page"), PER_PAGE, MAX_PER_PAGE),
        )
        return query, errors

    def to_page_args(self, **changes: Any) -> dict[str, Any]:
        """The console's query-string arguments for this query (with ``changes``), defaults left out."""
        query = replace(self, **changes)
        args: dict[str, Any] = {}
        for name in ("function", "user", "action"):
            if getattr(query, name):
                args[name] = getattr(query, name)
        if query.since is not None:
            args["from"] = day_text(query.since)
        if query.until is not None:
            args["to"] = day_text(query.until)
        if query.page != 1:
            args["page"] = query.page
        if query.per_page != PER_PAGE:
            args["per_page"] = query.per_page
        return args

    # The shared pagination partial builds its links with this name.
    to_args = to_page_args

    @property
    def is_filtered(self) -> bool:
        return bool(
            self.function or self.user or self.action or self.since is not None or self.until is not None
        )


@dataclass(frozen=True)
class AuditPage:
    query: AuditQuery
    entries: list[AuditEntry]
    matching: int

    @property
    def pages(self) -> int:
        return max(1, math.ceil(self.matching / self.query.per_page))


def search(query: AuditQuery) -> AuditPage:
    """One page of entries matching ``query``, newest first, and how many match in all."""
    conditions = _conditions(query)
    matching = db.session.scalar(select(func.count()).select_from(AuditEntry).where(*conditions)) or 0
    entries = list(
        db.session.scalars(
            select(AuditEntry)
            .where(*conditions)
            # By time, then id (the order entries are written): every filter's index ends in these two, so a page
            # is read in order even within a time range, which ordering by id alone could not do.
            .order_by(AuditEntry.created_at.desc(), AuditEntry.id.desc())
            .limit(query.per_page)
            .offset((query.page - 1) * query.per_page)
        )
    )
    return AuditPage(query=query, entries=entries, matching=matching)


def _conditions(query: AuditQuery) -> list[ColumnElement[bool]]:
    conditions: list[ColumnElement[bool]] = []
    if query.function:
        conditions += [AuditEntry.target_kind == "function", AuditEntry.target_id == query.function.lower()]
    if query.user:
        if "@" in query.user:
            conditions.append(AuditEntry.actor_email == query.user.strip().lower())
        else:
            conditions.append(AuditEntry.actor_id == query.user)
    if query.action:
        conditions.append(AuditEntry.action == query.action)
    if query.since is not None:
        conditions.append(AuditEntry.created_at >= query.since)
    if query.until is not None:
        conditions.append(AuditEntry.created_at <= query.until)
    return conditions


# A filter's suggestions stop here: past it the admin types the id or address.
MAX_CHOICES = 1000


def filter_choices() -> dict[str, list[str]]:
    """Function ids and account emails the console's filter fields suggest."""
    return {
        "function_ids": list(
            db.session.scalars(select(Function.id).order_by(Function.id).limit(MAX_CHOICES))
        ),
        "user_emails": list(db.session.scalars(select(User.email).order_by(User.email).limit(MAX_CHOICES))),
    }


def entry_response(entry: AuditEntry) -> dict[str, Any]:
    """An entry as the API answers it."""
    return {
        "id": entry.id,
        "created_at": entry.created_at,
        "user": {"id": entry.actor_id, "email": entry.actor_email, "name": entry.actor_name},
        "face": entry.face,
        "action": entry.action,
        "target_kind": entry.target_kind,
        "target_id": entry.target_id,
        "details": entry.details if isinstance(entry.details, dict) else {},
    }


def page_response(page: AuditPage) -> dict[str, Any]:
    return {
        "entries": [entry_response(entry) for entry in page.entries],
        "total": page.matching,
        "page": page.query.page,
        "per_page": page.query.per_page,
    }


def day_text(timestamp: int) -> str:
    return datetime.fromtimestamp(timestamp, UTC).strftime("%Y-%m-%d")


def _day(value: str, field: str, errors: dict[str, str]) -> int | None:
    """A YYYY-MM-DD date as the epoch second its day starts (UTC); None when empty."""
    value = (value or "").strip()
    if not value:
        return None
    try:
        day = date.fromisoformat(value)
    except ValueError:
        errors[field] = "Enter a date as YYYY-MM-DD."
        return None
    return max(0, int(datetime(day.year, day.month, day.day, tzinfo=UTC).timestamp()))
