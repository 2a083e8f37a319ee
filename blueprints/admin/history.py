"""The admin console's history pages for one function: its versions, one version read-only, a comparison of two,
and restoring or deleting a version after a confirmation.

Thin pages over ``services.versions`` (the calls the JSON history API makes); highlighting is ``web.highlight``'s.
Every page works without scripts: choosing what to compare is a form, restore and delete have confirmation pages.
"""

from __future__ import annotations

from flask import Blueprint, Flask, abort, flash, redirect, render_template, request, url_for
from flask_login import current_user

from services import function_reads
from services import versions as versions_service
from services.errors import ServiceError
from web.access import admin_pages_only
from web.filters import absolute_time
from web.highlight import highlighted_lines, source_table

bp = Blueprint("history", __name__, url_prefix="/admin/functions/history")


def register(app: Flask) -> None:
    app.register_blueprint(bp)


admin_pages_only(bp)


@bp.get("")
def versions_list():
    """Every version of a function, newest first, with its author, time, message and size of change."""
    history = versions_service.history_page(request.args.get("id", ""), _page_number())
    function = history["function"]
    current = next((v for v in history["versions"] if v["is_current"]), None)
    return render_template(
        "history/list.html",
        function=function,
        history=history,
        # The comparison offered first: the current version against the one before it.
        compare_from=current["parent_id"] if current else None,
        compare_to=function.version_id,
    )


@bp.get("/version")
def version_view():
    """One version's name, meta and code, highlighted, read-only."""
    function = function_reads.get_function(request.args.get("id", ""))
    version = versions_service.get_version(function.id, request.args.get("version", ""))
    return render_template(
        "history/version.html",
        function=function,
        version=versions_service.version_model(version),
        code=source_table(version.content or ""),
        line_count=len((version.content or "").splitlines()),
    )


@bp.get("/compare")
def compare():
    """Two versions compared: the name and meta keys that differ, and the code as a highlighted diff."""
    function = function_reads.get_function(request.args.get("id", ""))
    choices = versions_service.version_choices(function.id)
    to_id = request.args.get("to") or function.version_id
    from_id = request.args.get("from")
    if not from_id:
        to_version = versions_service.get_version(function.id, to_id)
        from_id = versions_service.previous_version_id(to_version)
        if from_id is None:
            # The first version has nothing before it: say so rather than compare it with itself.
            return render_template(
                "history/compare.html", function=function, choices=choices, comparison=None, to_id=to_id
            )
    comparison = versions_service.compare_versions(function.id, from_id, to_id)
    old_lines = highlighted_lines(comparison["before"].content or "")
    new_lines = highlighted_lines(comparison["after"].content or "")
    return render_template(
        "history/compare.html",
        function=function,
        choices=choices,
        comparison=comparison,
        from_id=from_id,
        to_id=to_id,
        old_lines=old_lines,
        new_lines=new_lines,
    )


@bp.route("/restore", methods=["GET", "POST"])
def restore():
    """Ask to confirm (GET), then make the version current again, its code loaded as a save's is (POST)."""
    function = function_reads.get_function(request.values.get("id", ""))
    version = versions_service.get_version(function.id, request.values.get("version", ""))
    error = None
    if request.method == "POST":
        try:
            versions_service.restore_version(
                current_user._get_current_object(),
                function.id,
                version.id,
                reset_incompatible_valves=request.form.get("reset_incompatible_valves") == "on",
            )
        except ServiceError as refused:
            error = refused
        else:
            flash(f"Restored the version of {_when(version)}; it is the current version now.", "success")
            return redirect(url_for("history.versions_list", id=function.id))
    comparison = versions_service.compare_versions(function.id, function.version_id, version.id)
    page = render_template(
        "history/restore.html",
        function=function,
        version=versions_service.version_model(version),
        comparison=comparison,
        error=error,
        load_error=error.extra.get("error") if error is not None and error.kind == "load_failed" else None,
    )
    return page, (error.status if error is not None else 200)


@bp.route("/delete", methods=["GET", "POST"])
def delete():
    """Ask to confirm (GET), then delete the version (POST); the current version is never deleted."""
    function = function_reads.get_function(request.values.get("id", ""))
    version = versions_service.get_version(function.id, request.values.get("version", ""))
    error = None
    if request.method == "POST":
        try:
            versions_service.delete_version(function.id, version.id)
        except ServiceError as refused:
            error = refused
        else:
            flash(f"Deleted the version of {_when(version)}.", "success")
            return redirect(url_for("history.versions_list", id=function.id))
    page = render_template(
        "history/delete.html",
        function=function,
        version=versions_service.version_model(version),
        is_current=version.id == function.version_id,
        error=error,
    )
    return page, (error.status if error is not None else 200)


def _when(version) -> str:
    return absolute_time(version.created_at)


def _page_number() -> int:
    raw = request.args.get("page", "1")
    if not raw.isdigit() or int(raw) < 1:
        abort(404)
    return int(raw)
