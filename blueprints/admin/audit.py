"""The audit trail for admins (`/admin/audit`): every change, filtered by function, user, action and time."""

from __future__ import annotations

from flask import Blueprint, Flask, render_template, request

from services import audit
from web.access import admin_pages_only

bp = Blueprint("audit", __name__, url_prefix="/admin/audit")


def register(app: Flask) -> None:
    app.register_blueprint(bp)


admin_pages_only(bp)


@bp.get("")
def audit_log():
    """One page of the trail, newest first; a filter that does not fit is named beside its field."""
    query, errors = audit.AuditQuery.from_page_args(request.args)
    page = audit.search(query)
    choices = audit.filter_choices()
    return (
        render_template(
            "audit/list.html",
            page=page,
            query=query,
            errors=errors,
            actions=audit.ACTIONS,
            faces=audit.FACES,
            **choices,
        ),
        400 if errors else 200,
    )
