"""What the valves pages need beyond the functions service: the personal valves list and a dry-run check."""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import select

from extensions import db
from models import Function, User, UserValves
from services import function_meta, safe_mode
from services.loading import validate_in_loader


@dataclass(frozen=True)
class PersonalValvesEntry:
    id: str
    name: str
    type: str
    description: str
    set_count: int
    icon_url: str | None = None


def _has_fields(schema) -> bool:
    return isinstance(schema, dict) and bool(schema.get("properties"))


def functions_with_user_valves(user: User) -> list[PersonalValvesEntry]:
    """The active functions whose code has a ``UserValves`` class with fields, by name (admins see the same list;
    users see none in safe mode, where no function is active)."""
    if safe_mode.is_on() and not user.is_admin:
        return []
    rows = db.session.execute(
        select(
            Function.id,
            Function.name,
            Function.type,
            Function.meta,
            Function.user_valves_schema,
            Function.icon,
        )
        .where(Function.is_active.is_(True))
        .order_by(Function.name, Function.id)
    ).all()
    mine = dict(
        db.session.execute(
            select(UserValves.function_id, UserValves.valves).where(UserValves.user_id == user.id)
        ).all()
    )
    entries = []
    for function_id, name, kind, meta, schema, code_icon in rows:
        if not _has_fields(schema):
            continue
        stored = mine.get(function_id)
        entries.append(
            PersonalValvesEntry(
                id=function_id,
                name=name,
                type=kind,
                description=function_meta.description(meta),
                set_count=len(stored) if isinstance(stored, dict) else 0,
                icon_url=function_meta.icon_url(meta, code_icon),
            )
        )
    return entries


def dry_run_errors(function: Function, values: dict, kind: str, user: User | None = None) -> list[dict]:
    """The errors the function's own class finds in ``values``, without storing anything.

    Used when a form also has fields that could not be read, so that every problem is reported at once.
    """
    cleaned = {key: value for key, value in values.items() if value is not None}
    # Through the shared load slots, so a form's dry run counts against the same concurrency cap as a save.
    result = validate_in_loader(
        function.content, cleaned, kind=kind, function_id=function.id, user=user.to_public() if user else None
    )
    return [] if result.error is not None else list(result.errors)
