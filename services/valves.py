"""Valves: the admin's valves of a function and each user's own, read, checked against the code and written.

What a write stores is decided by ``services.loading.validate_valves``, the one valves rule every writer uses.
"""

from __future__ import annotations

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError

from extensions import db
from models import Function, User, UserValves, now
from services import audit, function_reads, functions, safe_mode
from services.loading import incompatible, load_in_loader, user_dict, validate_in_loader, validate_valves
from services.sealed_valves import for_storage

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
    if _options_need_loader(schema) and not safe_mode.is_on():  # the stored options will do meanwhile
        result = load_in_loader(f.content, function_id=f.id, user=user_dict(user))
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
    f = function_reads.get_function(function_id)
    return dict(f.valves) if isinstance(f.valves, dict) else {}


def valves_spec(function_id: str, user: User | None = None, *, for_form: bool = False) -> dict | None:
    """The JSON schema of the function's `Valves`, or None when its code has none.

    ``for_form`` adds the defaults of `default_factory` fields (see ``with_factory_defaults``).
    """
    return _schema(function_reads.get_function(function_id), "valves_schema", user, for_form=for_form)


def update_valves(function_id: str, values: dict) -> dict:
    """Validate admin valves with the function's own class and store exactly the keys that were set.

    The function's ``updated_at`` moves too, as in Open WebUI: lists sorted by it and exports show the change.
    """
    f = function_reads.get_function(function_id)
    before = f.valves if isinstance(f.valves, dict) else {}
    stored = validate_valves(f.content, f.id, values)
    # Which fields changed, never their values: valves hold secrets. Committed by update_one with the valves.
    audit.record(
        "function.valves_changed", "function", f.id, {"fields": audit.changed_fields(before, stored)}
    )
    functions.update_one(f.id, valves=for_storage(stored, f.valves_schema), updated_at=now())
    return stored


def clear_valves(function_id: str) -> None:
    """Forget every stored admin valve, so the function runs on its defaults (an empty set needs no validation)."""
    f = function_reads.get_function(function_id)
    before = f.valves if isinstance(f.valves, dict) else {}
    audit.record(
        "function.valves_changed",
        "function",
        f.id,
        {"fields": audit.changed_fields(before, {}), "cleared": True},
    )
    functions.update_one(f.id, valves={}, updated_at=now())


# --- user valves ----------------------------------------------------------------------------------------------


def _function_for_user(user: User, function_id: str) -> Function:
    f = function_reads.get_function(function_id)
    if not user.is_admin and (not f.is_active or safe_mode.is_on()):
        raise function_reads.FunctionNotFound()
    return f


def stored_user_valves(user: User, function_id: str) -> dict:
    stored = db.session.scalar(
        select(UserValves.valves).where(UserValves.user_id == user.id, UserValves.function_id == function_id)
    )
    return dict(stored) if isinstance(stored, dict) else {}


def get_user_valves(user: User, function_id: str) -> dict:
    f = _function_for_user(user, function_id)
    return stored_user_valves(user, f.id)


def user_valves_spec(user: User, function_id: str, *, for_form: bool = False) -> dict | None:
    return _schema(_function_for_user(user, function_id), "user_valves_schema", user, for_form=for_form)


def check_user_valves(user: User, function_id: str) -> list[dict]:
    """Field errors of the caller's stored user valves against the current code (empty when they are fine)."""
    f = _function_for_user(user, function_id)
    stored = stored_user_valves(user, f.id)
    if not stored or f.user_valves_schema is None or safe_mode.is_on():
        return []
    result = validate_in_loader(f.content, stored, kind="user_valves", function_id=f.id, user=user_dict(user))
    return incompatible(result.errors, stored) if result.error is None else []


def _dialect_insert():
    if db.session.get_bind().dialect.name == "postgresql":
        from sqlalchemy.dialects.postgresql import insert
    else:
        from sqlalchemy.dialects.sqlite import insert
    return insert


def update_user_valves(user: User, function_id: str, values: dict) -> dict:
    """Validate the caller's own valves and store them in their row, upserted so that writers never collide."""
    f = _function_for_user(user, function_id)
    before = stored_user_valves(user, f.id)
    stored = validate_valves(f.content, f.id, values, which="user_valves", user=user)
    insert = _dialect_insert()
    sealed = for_storage(stored, f.user_valves_schema)
    statement = insert(UserValves).values(user_id=user.id, function_id=f.id, valves=sealed, updated_at=now())
    statement = statement.on_conflict_do_update(
        index_elements=[UserValves.user_id, UserValves.function_id],
        set_={"valves": statement.excluded.valves, "updated_at": statement.excluded.updated_at},
    )
    try:
        with functions.committed():
            db.session.execute(statement)
            audit.record(
                "function.user_valves_changed",
                "function",
                f.id,
                {"fields": audit.changed_fields(before, stored)},
                by=user,  # whose valves these are, whoever the context names
            )
    except IntegrityError:
        # The function was deleted between the check and the write (rolled back already).
        raise function_reads.FunctionNotFound() from None
    return stored
