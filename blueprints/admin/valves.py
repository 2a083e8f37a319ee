"""The admin valves page: a function's `Valves` in a form generated from its schema (``web.valves_forms``)."""

from __future__ import annotations

from flask import Blueprint, Flask, redirect, render_template, request, url_for

from services import function_meta, function_reads, valves_pages
from services import valves as valves_service
from web.access import page_admin_required, page_user
from web.valves_forms import valves_page

bp = Blueprint("valves", __name__)


def register(app: Flask) -> None:
    app.register_blueprint(bp)


# --- the admin page ---------------------------------------------------------------------------------------------


@bp.route("/admin/functions/valves", methods=["GET", "POST"])
@page_admin_required
def function_valves():
    """Edit a function's admin valves in a form generated from its `Valves` schema."""
    function = function_reads.get_function(request.args.get("id", ""))
    spec = valves_service.valves_spec(function.id, user=page_user(), for_form=True)
    stored = valves_service.get_valves(function.id)
    saved, context, status = valves_page(
        spec,
        stored,
        class_name="Valves",
        save=lambda values: valves_service.update_valves(function.id, values),
        check=lambda values: valves_pages.dry_run_errors(function, values, "valves"),
    )
    if saved:
        return redirect(url_for("valves.function_valves", id=function.id))
    return (
        render_template(
            "valves/admin.html",
            function=function,
            spec=spec,
            description=function_meta.description(function.meta),
            icon_url=function_meta.icon_url(function.meta, function.icon),
            **context,
        ),
        status,
    )
