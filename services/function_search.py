"""The console's functions list: search, filter, sort and paginate on the database, never in Python.

Author and description live inside the ``meta`` JSON column, so they are read with SQLAlchemy's JSON path
operators, which compile to ``->>``/``#>>`` on PostgreSQL and ``JSON_EXTRACT`` on SQLite. Only the columns the
list shows are selected: ``content`` can be a mebibyte per row and is never read here.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from typing import Any

from sqlalchemy import ColumnElement, and_, func, or_, select, true

from extensions import db
from models import FUNCTION_TYPES, Function, User
from services import function_meta

PER_PAGE = 50
MAX_PER_PAGE = 200
# A page number past this is read as this (then as the last page): the OFFSET it makes must fit a 64-bit integer,
# and ?page=99999999999999999999 overflowed it (a 500).
MAX_PAGE = 1_000_000
SORT_KEYS = ("name", "id", "type", "updated", "created")
DIRECTIONS = ("asc", "desc")
STATUSES = ("active", "inactive")
# Each sort's natural first direction: newest first for times, A→Z for words.
DEFAULT_DIRECTION = {"name": "asc", "id": "asc", "type": "asc", "updated": "desc", "created": "desc"}
LIKE_ESCAPE = "\\"


@dataclass(frozen=True)
class FunctionQuery:
    """What the admin asked the list for; every field has a safe default, so any query string is valid."""

    q: str = ""
    type: str = ""
    status: str = ""
    sort: str = "updated"
    direction: str = "desc"
    page: int = 1
    per_page: int = PER_PAGE

    @classmethod
    def from_args(cls, args: Mapping[str, str]) -> FunctionQuery:
        """Read a query string leniently: unknown values fall back to the defaults instead of failing."""
        sort = args.get("sort", "updated")
        sort = sort if sort in SORT_KEYS else "updated"
        direction = args.get("dir", "")
        direction = direction if direction in DIRECTIONS else DEFAULT_DIRECTION[sort]
        kind = args.get("type", "")
        status = args.get("status", "")
        return cls(
            q=" ".join(args.get("q", "").split())[:200],
            type=kind if kind in FUNCTION_TYPES else "",
            status=status if status in STATUSES else "",
            sort=sort,
            direction=direction,
            page=_positive_int(args.get("page"), 1, MAX_PAGE),
            per_page=_positive_int(args.get("per_page"), PER_PAGE, MAX_PER_PAGE),
        )

    def to_args(self, **changes: Any) -> dict[str, Any]:
        """Query-string arguments that reproduce this query (with ``changes``), omitting the defaults."""
        query = replace(self, **changes)
        args: dict[str, Any] = {}
        if query.q:
            args["q"] = query.q
        if query.type:
            args["type"] = query.type
        if query.status:
            args["status"] = query.status
        if query.sort != "updated":
            args["sort"] = query.sort
        if query.direction != DEFAULT_DIRECTION[query.sort]:
            args["dir"] = query.direction
        if query.page != 1:
            args["page"] = query.page
        if query.per_page != PER_PAGE:
            args["per_page"] = query.per_page
        return args

    @property
    def is_filtered(self) -> bool:
        return bool(self.q or self.type or self.status)


@dataclass(frozen=True)
class FunctionRow:
    """One line of the list: the function's columns without its code, plus its creator's name."""

    id: str
    name: str
    type: str
    meta: dict[str, Any]
    is_active: bool
    is_global: bool
    user_id: str
    creator_name: str | None
    created_at: int
    updated_at: int
    has_valves: bool = False
    has_user_valves: bool = False
    icon: str | None = None  # the icon the code names (Function.icon)

    @property
    def icon_url(self) -> str | None:
        return function_meta.icon_url(self.meta, self.icon)

    @property
    def manifest(self) -> dict[str, Any]:
        return function_meta.manifest(self.meta)

    @property
    def description(self) -> str:
        return function_meta.description(self.meta)

    @property
    def version(self) -> str:
        return _text(self.manifest.get("version"))

    @property
    def author(self) -> str:
        return _text(self.manifest.get("author"))

    @property
    def author_url(self) -> str | None:
        """The manifest's ``author_url`` when it is a web link; anything else (``javascript:`` …) is not linked."""
        url = _text(self.manifest.get("author_url")).strip()
        return url if url.lower().startswith(("http://", "https://")) else None

    @property
    def can_be_global(self) -> bool:
        return self.type in ("filter", "action")


@dataclass(frozen=True)
class FunctionCounts:
    """How many functions exist, by type and by state, regardless of the current search."""

    total: int = 0
    active: int = 0
    by_type: dict[str, int] = field(default_factory=dict)

    @property
    def inactive(self) -> int:
        return self.total - self.active


@dataclass(frozen=True)
class FunctionPage:
    query: FunctionQuery
    rows: list[FunctionRow]
    matching: int
    counts: FunctionCounts

    @property
    def pages(self) -> int:
        return max(1, math.ceil(self.matching / self.query.per_page))

    @property
    def first_index(self) -> int:
        """1-based position of the first row shown (0 when nothing is shown)."""
        return (self.query.page - 1) * self.query.per_page + 1 if self.rows else 0

    @property
    def last_index(self) -> int:
        return self.first_index + len(self.rows) - 1 if self.rows else 0


def search_functions(query: FunctionQuery) -> FunctionPage:
    """The page of functions ``query`` asks for, with the number that match and the overall counts."""
    conditions = _conditions(query)
    if query.q:
        # A search reads every row anyway, so the page and the number of matches come from that one scan.
        rows, matching = _page_rows(query, conditions, with_total=True)
        if rows or query.page == 1:
            return FunctionPage(query=query, rows=rows, matching=matching, counts=count_functions())
    matching = db.session.scalar(select(func.count()).select_from(Function).where(*conditions)) or 0
    pages = max(1, math.ceil(matching / query.per_page))
    if query.page > pages:
        # A page past the end (after a delete, or a hand-edited URL) shows the last page instead of nothing.
        query = replace(query, page=pages)
    rows, _ = _page_rows(query, conditions, with_total=False)
    return FunctionPage(query=query, rows=rows, matching=matching, counts=count_functions())


def _page_rows(query: FunctionQuery, conditions, *, with_total: bool) -> tuple[list[FunctionRow], int]:
    order = _SORT_COLUMNS[query.sort]
    order = order.asc() if query.direction == "asc" else order.desc()
    tiebreak = Function.id.asc() if query.direction == "asc" else Function.id.desc()
    columns = [
        Function.id,
        Function.name,
        Function.type,
        Function.meta,
        Function.is_active,
        Function.is_global,
        Function.user_id,
        User.name.label("creator_name"),
        Function.created_at,
        Function.updated_at,
        # Schemas are small (a few kB); whether there is one decides the Valves and My valves links.
        Function.valves_schema,
        Function.user_valves_schema,
        # Shown inline as an <img> (a data: URL as often as not), so read with the row like the frontmatter's.
        Function.icon,
    ]
    if with_total:
        columns.append(func.count().over().label("total"))
    statement = (
        select(*columns)
        .outerjoin(User, User.id == Function.user_id)
        .where(*conditions)
        .order_by(order, tiebreak)
        .limit(query.per_page)
        .offset((query.page - 1) * query.per_page)
    )
    rows, total = [], 0
    for row in db.session.execute(statement):
        values = row._asdict()
        total = values.pop("total", 0)
        values["meta"] = values["meta"] if isinstance(values["meta"], dict) else {}
        values["has_valves"] = has_fields(values.pop("valves_schema"))
        values["has_user_valves"] = has_fields(values.pop("user_valves_schema"))
        rows.append(FunctionRow(**values))
    return rows, total


def count_functions() -> FunctionCounts:
    """Totals for the filter labels, from the type and is_active indexes alone (never the rows' code)."""
    by_type: dict[str, int] = dict.fromkeys(FUNCTION_TYPES, 0)
    for kind, count in db.session.execute(select(Function.type, func.count()).group_by(Function.type)):
        by_type[kind] = by_type.get(kind, 0) + count
    active = db.session.scalar(select(func.count()).select_from(Function).where(Function.is_active == true()))
    return FunctionCounts(total=sum(by_type.values()), active=active or 0, by_type=by_type)


_SORT_COLUMNS: dict[str, ColumnElement] = {
    "name": func.lower(Function.name),
    "id": Function.id,
    "type": Function.type,
    "updated": Function.updated_at,
    "created": Function.created_at,
}


def _conditions(query: FunctionQuery) -> list[ColumnElement[bool]]:
    conditions: list[ColumnElement[bool]] = []
    if query.type:
        conditions.append(Function.type == query.type)
    if query.status:
        conditions.append(Function.is_active == (query.status == "active"))
    terms = query.q.lower().split()
    if terms:
        searched = (
            func.lower(Function.name),
            func.lower(Function.id),
            func.lower(Function.meta["description"].as_string()),
            # The list shows the frontmatter's description when none was given (function_meta.description).
            func.lower(Function.meta[("manifest", "description")].as_string()),
            func.lower(Function.meta[("manifest", "author")].as_string()),
        )
        # Every word must appear somewhere: "summar openai" finds the summariser written by OpenAI fans.
        conditions.append(
            and_(
                *(
                    or_(*(column.like(f"%{escape_like(term)}%", escape=LIKE_ESCAPE) for column in searched))
                    for term in terms
                )
            )
        )
    return conditions


def escape_like(term: str) -> str:
    return (
        term.replace(LIKE_ESCAPE, LIKE_ESCAPE * 2)
        .replace("%", LIKE_ESCAPE + "%")
        .replace("_", LIKE_ESCAPE + "_")
    )


def _positive_int(value: str | None, default: int, maximum: int) -> int:
    """``value`` as a whole number from 1 to ``maximum`` (a larger one is ``maximum``); ``default`` if it is not one."""
    try:
        number = int(value) if value is not None else default
    except ValueError:
        return default
    return min(number, maximum) if number >= 1 else default


def has_fields(schema: Any) -> bool:
    """Whether a valves schema has anything to set (a class with no fields offers nothing)."""
    return isinstance(schema, dict) and bool(schema.get("properties"))


def _text(value: Any) -> str:
    return value if isinstance(value, str) else ""
