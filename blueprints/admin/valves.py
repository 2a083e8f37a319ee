"""The admin valves page: a function's `Valves` in a form generated from its schema (``web.valves_forms``)."""

from __future__ import annotations

from flask import Blueprint, Flask, redirect, render_template, request, url_for
from flask_login import current_user

from services import function_meta, functions, valves_pages
from services import valves as valves_service
from web.access import page_admin_required
from web.valves_forms import form_context, submit_valves

bp = Blueprint("valves", __name__)


def register(app: Flask) -> None:
    app.register_blueprint(bp)


# --- the admin page ---------------------------------------------------------------------------------------------


@bp.route("/admin/functions/valves", methods=["GET", "POST"])
@page_admin_required
def function_valves():
    """Edit a function's admin valves in a form generated from its `Valves` schema."""
    function = functions.get_function(request.args.get("id", ""))
    spec = valves_service.valves_spec(function.id, user=current_user._get_current_object(), for_form=True)
    stored = valves_service.get_valves(function.id)
    status = 200
    if spec is None:
        context = form_context(None, stored)
        if request.method == "POST":
            context["form_errors"] = ["This function has no Valves class, so there is nothing to set."]
            status = 400
    elif request.method == "POST":
        ok, context = submit_valves(
            spec,
            stored,
            save=lambda values: valves_service.update_valves(function.id, values),
            check=lambda values: valves_pages.dry_run_errors(function, values, "valves"),
        )
        if ok:
            return redirect(url_for("valves.function_valves", id=function.id))
        status = 400
    else:
        context = form_context(spec, stored)
    return (
        render_template(
            "valves/admin.html",
            function=function,
            spec=spec,
            description=function_meta.description(function.meta),
            **context,
        ),
        status,
    )
