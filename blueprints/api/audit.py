"""The audit trail as JSON (admins only), under both /api/audit and /api/v1/audit as the functions API is.

Its wire shapes live here beside its one route: they describe nothing else.
"""

from __future__ import annotations

from typing import Any, Literal

from flask import Blueprint, Flask
from pydantic import BaseModel, Field

from blueprints.api.schemas import HTTPError, ValidationErrorResponse
from services import audit
from web.openapi import RouteRegistry, publish

PREFIXES = ("/api/audit", "/api/v1/audit")

bp = Blueprint("api_audit", __name__)
api = RouteRegistry(bp, PREFIXES, tag="audit", error_model=HTTPError, invalid_model=ValidationErrorResponse)
publish(api)


def register(app: Flask) -> None:
    app.register_blueprint(bp, url_prefix=PREFIXES[1], name="api_audit")
    app.register_blueprint(bp, url_prefix=PREFIXES[0], name="api_audit_legacy")


class AuditQuery(BaseModel):
    function: str | None = Field(
        default=None, max_length=64, description="Changes to this function (its id)."
    )
    user: str | None = Field(
        default=None,
        max_length=320,
        description="Changes by this account: its id, or an email address (which also finds failed sign-ins).",
    )
    action: Literal[tuple(audit.ACTIONS)] | None = None
    since: int | None = Field(default=None, ge=0, description="From this time on (epoch seconds, inclusive).")
    until: int | None = Field(default=None, ge=0, description="Up to this time (epoch seconds, inclusive).")
    page: int = Field(default=1, ge=1, le=audit.MAX_PAGE)
    per_page: int = Field(default=audit.PER_PAGE, ge=1, le=audit.MAX_PER_PAGE)


class AuditActor(BaseModel):
    """A snapshot taken when the change was made (the account may have changed or gone since)."""

    id: str | None
    email: str | None
    name: str | None


class AuditEntry(BaseModel):
    id: int
    created_at: int
    user: AuditActor
    face: Literal[tuple(audit.FACES)]
    action: Literal[tuple(audit.ACTIONS)]
    target_kind: Literal[audit.TARGET_KINDS]
    target_id: str | None
    details: dict[str, Any] = Field(
        description="What changed: field names, a role before and after; no values."
    )


class AuditPage(BaseModel):
    entries: list[AuditEntry]
    total: int = Field(description="How many entries match the filters, on every page.")
    page: int
    per_page: int


@api.route(
    "", "GET", auth="admin", summary="The audit trail, newest first", query=AuditQuery, response=AuditPage
)
def audit_log(query: AuditQuery):
    """Every change with who made it, when, what and through which face (console, API key, CLI), filtered."""
    found = audit.search(
        audit.AuditQuery(
            function=query.function or "",
            user=query.user or "",
            action=query.action or "",
            since=query.since,
            until=query.until,
            page=query.page,
            per_page=query.per_page,
        )
    )
    return audit.page_response(found)
