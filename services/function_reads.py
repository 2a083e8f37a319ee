"""Reading functions: the lists (who sees which), one function by id, whether an id is taken, the export, and
`FunctionNotFound`, the one "no such function" error.
"""

from __future__ import annotations

from collections.abc import Callable

from sqlalchemy import and_, bindparam, or_, select

from extensions import db
from models import ID_PATTERN, Function, User
from services import safe_mode
from services.accounts import (
    KEY_OWNER,
    KEY_OWNER_IS_ADMIN,
    KEY_OWNER_MAY_CALL,
    KEY_OWNER_WIDTH,
    key_owner_of,
    owner_for_digest,
)
from services.errors import NotFound
from services.function_shapes import (
    FUNCTION_MODEL,
    FUNCTION_RESPONSE,
    function_model,
    function_response,
    function_with_valves_model,
)
from services.prepared import PreparedSelect

NOT_FOUND_ERROR = "We could not find what you're looking for :/"


class FunctionNotFound(NotFound):
    """No function has this id (or the caller may not see it); the API answers Open WebUI's own sentence."""

    kind = "function_not_found"

    def __init__(self):
        super().__init__(NOT_FOUND_ERROR)


# The lists read only the columns of FunctionResponse, as plain rows in wire order: no code, no schemas, no valves
# to decode, and no model objects to build. With 1,000 functions that was two thirds of the request (deferring the
# code still built an object and four deferred loaders per row). They and the single read are prepared reads
# (``services.prepared``): every API client calls them, and SQLAlchemy's per-call work was most of their cost.
_RESPONSE_COLUMNS = tuple(getattr(Function, key) for key in FUNCTION_RESPONSE)
_ID_INDEX, _MODEL_ID_INDEX = FUNCTION_RESPONSE.index("id"), FUNCTION_MODEL.index("id")
_NEWEST_FIRST = (Function.updated_at.desc(), Function.id)
# They go out only as JSON answers: meta's stored text is embedded as it is where the driver hands back text.
_EVERY_FUNCTION = PreparedSelect(select(*_RESPONSE_COLUMNS).order_by(*_NEWEST_FIRST), wire_json=("meta",))
_ACTIVE_FUNCTIONS = PreparedSelect(
    select(*_RESPONSE_COLUMNS).where(Function.is_active.is_(True)).order_by(*_NEWEST_FIRST),
    wire_json=("meta",),
)
_ONE_FUNCTION_MODEL = PreparedSelect(
    select(*(getattr(Function, key) for key in FUNCTION_MODEL)).where(Function.id == bindparam("id")),
    wire_json=("meta",),
)
# The same reads joined to the caller's API key and its owner (``accounts.KEY_OWNER``), for a caller that presents a
# key: on PostgreSQL the key's round trip was a third of these requests' cost. The key's row comes first, then the
# read's rows after it, or once with NULLs when there are none or the caller may not see any (the join's condition).
_FUNCTIONS_AS_KEY = PreparedSelect(
    select(*KEY_OWNER.c, *_RESPONSE_COLUMNS)
    .select_from(KEY_OWNER)
    .outerjoin(
        Function,
        and_(KEY_OWNER_MAY_CALL, or_(KEY_OWNER.c.owner_role == "admin", Function.is_active.is_(True))),
    )
    .order_by(*_NEWEST_FIRST),
    wire_json=("meta",),
)
_ONE_FUNCTION_MODEL_AS_KEY = PreparedSelect(
    select(*KEY_OWNER.c, *(getattr(Function, key) for key in FUNCTION_MODEL))
    .select_from(KEY_OWNER)
    .outerjoin(Function, and_(KEY_OWNER_IS_ADMIN, Function.id == bindparam("id"))),
    wire_json=("meta",),
)
# Asked by every create while the loader runs the code: through the ORM it was a millisecond of the request's CPU.
_FUNCTION_ID = PreparedSelect(select(Function.id).where(Function.id == bindparam("id")))


def list_functions(viewer: User) -> list[dict]:
    """FunctionResponse of each function ``viewer`` may see: admins every one, others the active ones (none in safe
    mode); newest change first."""
    if not viewer.is_admin and safe_mode.is_on():
        return []
    query = _EVERY_FUNCTION if viewer.is_admin else _ACTIVE_FUNCTIONS
    # Each row is already its wire values: meta an object (wire_json), the flags bools (NOT NULL Boolean columns,
    # which the dialect's processor or the driver makes bool), so no per-row conversion pass (a tenth of the list).
    return [dict(zip(FUNCTION_RESPONSE, row, strict=True)) for row in query.rows()]


def list_functions_as_key(digest: str) -> tuple[User | None, Callable[[], list[dict]]]:
    """``list_functions`` for the owner of the API key with ``digest``, in the key's own query: the owner (None for
    no usable key), and what makes the answer once the caller's role has been checked."""
    if db.engine.dialect.name == "sqlite":
        # In process, a second statement costs less than the key's columns repeated on every row (a 1,000-function
        # list took a quarter longer joined), so there the key comes first and the list only for an allowed caller.
        owner = owner_for_digest(digest)
        return owner, lambda: list_functions(owner)
    rows = _FUNCTIONS_AS_KEY.rows(digest=digest)
    owner = key_owner_of(rows[0]) if rows else None
    if owner is None or (not owner.is_admin and safe_mode.is_on()):
        return owner, list
    # A caller that may see no function has one row, its key's, with NULLs for the function (the outer join).
    found = [row[KEY_OWNER_WIDTH:] for row in rows if row[KEY_OWNER_WIDTH + _ID_INDEX] is not None]
    return owner, lambda: [dict(zip(FUNCTION_RESPONSE, row, strict=True)) for row in found]


def list_functions_with_users() -> list[dict]:
    """FunctionUserResponse of every function, with its creator's account (None when that account is gone), newest
    change first."""
    query = (
        select(*_RESPONSE_COLUMNS, User.name.label("user_name"), User.role, User.email)
        .outerjoin(User, User.id == Function.user_id)
        .order_by(*_NEWEST_FIRST)
    )
    return [
        {
            **function_response(row),
            "user": (  # User.to_public's shape
                {"id": row.user_id, "name": row.user_name, "role": row.role, "email": row.email}
                if row.email is not None
                else None
            ),
        }
        for row in db.session.execute(query)
    ]


def normalise_id(function_id: str) -> str:
    return (function_id or "").strip().lower()


def _lookup_id(function_id: str) -> str | None:
    """The stored id to look for, or None when no function can have it (so the database is not asked).

    Every stored id passed `check_new_id`; anything else, such as a NUL character that PostgreSQL refuses in a
    query, simply does not exist.
    """
    candidate = normalise_id(function_id) if isinstance(function_id, str) else ""
    return candidate if ID_PATTERN.fullmatch(candidate) else None


def known_id(function_id: str) -> str:
    """The stored id to write to; ``FunctionNotFound`` at once when no function can have it."""
    lookup = _lookup_id(function_id)
    if lookup is None:
        raise FunctionNotFound()
    return lookup


def get_function(function_id: str) -> Function:
    lookup = _lookup_id(function_id)
    f = db.session.get(Function, lookup) if lookup is not None else None
    if f is None:
        raise FunctionNotFound()
    return f


def function_model_by_id(function_id: str) -> dict:
    """FunctionModel of one function, read without building the model (the API's single read)."""
    lookup = _lookup_id(function_id)
    row = _ONE_FUNCTION_MODEL.first(id=lookup) if lookup is not None else None
    if row is None:
        raise FunctionNotFound()
    return dict(zip(FUNCTION_MODEL, row, strict=True))  # already wire values, as list_functions' rows


def function_model_as_key(digest: str, function_id: str) -> tuple[User | None, Callable[[], dict]]:
    """``function_model_by_id`` for the owner of the API key with ``digest``, in the key's own query: the owner
    (None for no usable key), and what makes the answer (or raises ``FunctionNotFound``) once the caller's role has
    been checked. Only an admin's join reads the function."""
    row = _ONE_FUNCTION_MODEL_AS_KEY.first(digest=digest, id=_lookup_id(function_id))
    owner = key_owner_of(row) if row is not None else None
    if owner is None or row[KEY_OWNER_WIDTH + _MODEL_ID_INDEX] is None:
        return owner, _not_found
    model = dict(zip(FUNCTION_MODEL, row[KEY_OWNER_WIDTH:], strict=True))
    return owner, lambda: model


def _not_found() -> dict:
    raise FunctionNotFound()


def function_exists(function_id: str) -> bool:
    lookup = _lookup_id(function_id)
    return lookup is not None and _FUNCTION_ID.first(id=lookup) is not None


def export_functions(include_valves: bool = False) -> list[dict]:
    """Every function as FunctionModel (FunctionWithValvesModel with valves), oldest first."""
    functions = db.session.scalars(select(Function).order_by(Function.created_at, Function.id))
    serialise = function_with_valves_model if include_valves else function_model
    return [serialise(f) for f in functions]
