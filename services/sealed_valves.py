"""Which valves are sealed at rest, and sealing them all again under the current key (``rotate-valves-key``).

A valve is sealed when the valves form treats it as a password (``services.valves_form``: ``input.type:
password``, ``format: password``, ``writeOnly``, or a credential-like name such as ``openai_api_key`` on a string
field): one rule for what a page never shows and what the database never holds in clear. The sealing itself is
``models.sealed``.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

from cryptography.fernet import InvalidToken
from sqlalchemy import JSON, select, type_coerce, update

from extensions import db
from models import Function, UserValves
from models.sealed import WithSecrets, current_keyring, is_sealed
from services import valves_form


def secret_names(schema: Mapping | None) -> frozenset[str]:
    """The fields of a valves schema whose values are sealed at rest."""
    return frozenset(f.name for f in valves_form.describe(schema) if f.field_kind.secret)


def for_storage(values: Mapping, schema: Mapping | None) -> dict:
    """``values`` marked so that the valves column seals the schema's password fields."""
    return WithSecrets(values, secret_names(schema))


@dataclass
class Resealed:
    functions: int = 0
    user_valves: int = 0
    values: int = 0
    unopened: list[str] = field(default_factory=list)  # where a sealed value no key opens was found


def _resealed(raw: dict | None, names: frozenset[str], keyring, where: str, report: Resealed) -> dict | None:
    """``raw`` (as stored) with every password value sealed with the first key, or None when nothing changes."""
    if not isinstance(raw, dict):
        return None
    changed = False
    out = {}
    for key, value in raw.items():
        if is_sealed(value):
            try:
                value = keyring.reseal(value)
            except InvalidToken:
                report.unopened.append(f"{where}.{key}")
                out[key] = value
                continue
            changed = True
        elif key in names and isinstance(value, str) and value:
            value = keyring.seal(value)
            changed = True
        else:
            out[key] = value
            continue
        report.values += 1
        out[key] = value
    return out if changed else None


def reseal_all(*, dry_run: bool = False) -> Resealed:
    """Seal every password valve (admin and user) with the first key, in one transaction; values stored in clear
    before sealing existed are sealed too. Nothing is written when some sealed value cannot be opened."""
    keyring = current_keyring()
    report = Resealed()
    raw_valves = type_coerce(Function.valves, JSON)  # as stored: no opening on the way out
    writes = []
    for function_id, raw, schema in db.session.execute(
        select(Function.id, raw_valves, Function.valves_schema).order_by(Function.id)
    ):
        new = _resealed(raw, secret_names(schema), keyring, f"function {function_id}", report)
        if new is not None:
            writes.append((Function, Function.id == function_id, new))
            report.functions += 1
    raw_user = type_coerce(UserValves.valves, JSON)
    for row_id, user_id, function_id, raw, schema in db.session.execute(
        select(
            UserValves.id, UserValves.user_id, UserValves.function_id, raw_user, Function.user_valves_schema
        )
        .join(Function, Function.id == UserValves.function_id)
        .order_by(UserValves.id)
    ):
        where = f"user valves of {user_id} for {function_id}"
        new = _resealed(raw, secret_names(schema), keyring, where, report)
        if new is not None:
            writes.append((UserValves, UserValves.id == row_id, new))
            report.user_valves += 1
    if report.unopened or dry_run:
        db.session.rollback()
        return report
    try:
        for model, where, new in writes:
            db.session.execute(update(model).where(where).values(valves=type_coerce(new, JSON)))
        db.session.commit()
    except Exception:
        db.session.rollback()
        raise
    return report
