"""The admin console's functions pages: list, create, edit, source, toggles, delete, import, export, load from URL.

Every page is a thin layer over ``services.functions`` (the same calls the JSON API makes), so a rule holds on both
faces. Each page works without JavaScript; ``static/js`` only makes it quicker (in-place toggles, the editor).
Over 450 lines because it is one blueprint of a dozen short views that share its page helpers and form-error
placement; the import pages and the history page are the candidates to move out when it grows further.
"""

from __future__ import annotations

import json
import re
import unicodedata
from datetime import UTC, datetime
from typing import Any
from urllib.parse import urlencode

from flask import (
    Blueprint,
    Flask,
    Response,
    abort,
    current_app,
    flash,
    redirect,
    render_template,
    request,
    url_for,
)
from flask_login import current_user
from markupsafe import Markup
from pygments import highlight
from pygments.formatters import HtmlFormatter
from pygments.lexers import PythonLexer
from sqlalchemy import func, select

import loader
from extensions import db
from models import FUNCTION_TYPES, ID_PATTERN, FunctionVersion
from services import (
    chat_models,
    function_import,
    function_meta,
    function_reads,
    function_shapes,
    functions,
    requirements_jobs,
    running,
    url_loader,
)
from services import versions as versions_service
from services.errors import NotFound, ServiceError
from services.function_search import FunctionQuery, has_fields, search_functions
from web.access import admin_pages_only, safe_next
from web.console_wording import console_detail

bp = Blueprint("console", __name__, url_prefix="/admin/functions")

STARTER_TYPES = ("filter", "action", "pipe")
RECENT_VERSIONS = 5
TYPE_LABELS = {"pipe": "Pipe", "filter": "Filter", "action": "Action", "event": "Event"}


def register(app: Flask) -> None:
    app.register_blueprint(bp)


admin_pages_only(bp)


@bp.context_processor
def _page_helpers() -> dict[str, Any]:
    return {
        "type_labels": TYPE_LABELS,
        "function_types": FUNCTION_TYPES,
    }


# ---------------------------------------------------------------------------------------------------------------
# List and toggles


@bp.get("")
def functions_list():
    """The functions list: search, filter, sort and one page of results."""
    page = search_functions(FunctionQuery.from_args(request.args))
    return render_template("console/functions_list.html", page=page, query=page.query)


@bp.post("/toggle")
def functions_toggle():
    """Switch a function on or off (the form behind the list's switch when scripts do not run)."""
    return _set_switch("is_active", functions.toggle_active, "switched on", "switched off")


@bp.post("/toggle-global")
def functions_toggle_global():
    """Make a filter or action global, or not (the form behind the list's global switch)."""
    return _set_switch("is_global", functions.toggle_global, "made global", "no longer global")


def _set_switch(column: str, toggle, on_text: str, off_text: str):
    function = _function_or_404(request.form.get("id", ""))
    wanted = request.form.get("state") == "on"
    # The form says which state the admin saw it switch to, so a repeated submit does not flip it back.
    if bool(getattr(function, column)) != wanted:
        toggle(function.id)
    flash(f"{function.name} is {on_text if wanted else off_text}.", "success")
    return redirect(safe_next(request.form.get("next"), url_for("console.functions_list")))


# ---------------------------------------------------------------------------------------------------------------
# Create, clone, edit, load from URL


@bp.route("/create", methods=["GET", "POST"])
def functions_create():
    """Write a new function: from a starter template, a clone, or a blank page; save stores it."""
    if request.method == "POST":
        form = _read_form()
        errors, load_error = _fill_and_check(form, creating=True), None
        if not errors:
            try:
                function = functions.create_function(
                    current_user._get_current_object(),
                    id=form["id"],
                    name=form["name"],
                    content=form["content"],
                    meta={"description": form["description"]},
                    commit_message=form["commit_message"] or None,
                )
            except ServiceError as error:
                errors, load_error = _form_errors(error)
            else:
                flash(f"Saved {function.name}.", "success")
                return redirect(url_for("console.functions_edit", id=function.id))
        # Where the code came from is posted back with it, so a refused save still says so.
        cloned_from = request.form.get("cloned_from", "")
        return _editor_page(
            "create",
            form,
            errors,
            load_error,
            status=400,
            loaded_from=_loaded_from(request.form),
            cloned_from=cloned_from if ID_PATTERN.fullmatch(cloned_from) else None,
        )

    template = request.args.get("template", "filter")
    clone_id = request.args.get("clone")
    if clone_id:
        source = _function_or_404(clone_id)
        form = _blank_form(source.content)
        form.update(
            id=f"{source.id}_copy"[:64], name=f"{source.name} (copy)", description=_description(source.meta)
        )
        # The copy's id follows its name (as the page does while typing) only when it is the name's own id.
        form["auto_id"] = form["id"] if form["id"] == slugify(form["name"]) else ""
        template = ""
    else:
        template = template if template in STARTER_TYPES else "filter"
        form = _blank_form(starter(template))
        _fill_from_code(form, creating=True)
    return _editor_page("create", form, template=template, cloned_from=clone_id)


@bp.get("/id-available")
def functions_id_available():
    """Whether a new function could take this id, for the create page as the id is typed.

    Always 200 with ``{"available": bool}``: asking the API for the function answered 404 for every free id, which
    browsers list as an error in their console.
    """
    function_id = function_reads.normalise_id(request.args.get("id", ""))
    valid = bool(ID_PATTERN.fullmatch(function_id))
    return {
        "id": function_id,
        "valid": valid,
        "available": valid and not function_reads.function_exists(function_id),
    }


@bp.route("/edit", methods=["GET", "POST"])
def functions_edit():
    """Change a function's name, description and code; its id never changes."""
    function = _function_or_404(request.args.get("id", ""))
    if request.method == "POST":
        form = _read_form()
        form["id"] = function.id
        errors, load_error = _fill_and_check(form, creating=False), None
        reset_valves = request.form.get("reset_incompatible_valves") == "on"
        if not errors:
            meta = dict(function.meta or {})
            meta["description"] = form["description"]
            try:
                function = functions.update_function(
                    current_user._get_current_object(),
                    function.id,
                    name=form["name"],
                    content=form["content"],
                    meta=meta,
                    commit_message=form["commit_message"] or None,
                    reset_incompatible_valves=reset_valves,
                )
            except ServiceError as error:
                errors, load_error = _form_errors(error)
            else:
                flash(f"Saved {function.name}.", "success")
                return redirect(url_for("console.functions_edit", id=function.id))
        return _editor_page("edit", form, errors, load_error, function=function, status=400)

    form = _blank_form(function.content)
    form.update(id=function.id, name=function.name, description=_description(function.meta))
    return _editor_page("edit", form, function=function)


@bp.route("/load-url", methods=["GET", "POST"])
def functions_load_url():
    """Fetch a function's code from a web address and open it in the editor; nothing is stored until saved."""
    url = request.values.get("url", "").strip()
    if request.method == "POST":
        errors: dict[str, str] = {}
        if not url:
            errors["url"] = "Enter the address of a Python file (a GitHub link works too)."
        else:
            try:
                loaded = url_loader.load_from_url(
                    url, allow_private=current_app.config["SLUICE_ALLOW_PRIVATE_URLS"]
                )
            except ServiceError as error:
                errors["url"] = error.detail
            else:
                form = _blank_form(loaded.get("content") or "")
                form["commit_message"] = f"Loaded from {url}"[:500]
                _fill_from_code(form, creating=True)
                if not form["name"]:
                    # No title: line, so the file's name is offered. It is not the code's, so it is not marked as
                    # filled in and stays put when the code changes; the id follows it.
                    form["name"] = loaded.get("name") or ""
                    form["id"] = form["auto_id"] = slugify(form["name"])
                if not form["id"]:
                    # A title with nothing an id can use (no a-z or 0-9): offer the file's name as the id.
                    form["id"], form["auto_id"] = slugify(loaded.get("name") or ""), ""
                return _editor_page("create", form, loaded_from=url)
        return render_template("console/load_url.html", url=url, errors=errors), 400
    return render_template("console/load_url.html", url=url, errors={})


# Name, id and description are filled in from the code (title: and description: lines, the id from the name)
# wherever the admin has not chosen them. A field filled that way is sent twice: in the field and in a hidden
# `auto_<field>`. While the two agree, the admin has not changed the field, so on save it is derived again from
# the code being saved: code pasted over a starter is stored under its own title and id, never as "My Filter" /
# my_filter. Comparing with what the page itself filled in (not with one starter's defaults) covers the starter,
# load-from-URL and a refused save alike, and works without scripts; static/js/function_editor.js keeps the
# hidden fields in step as it fills the fields live, so both ways give the same result.
AUTO_FIELDS = ("name", "id", "description")


def _blank_form(content: str) -> dict[str, str]:
    form = {"id": "", "name": "", "description": "", "content": content, "commit_message": ""}
    form.update({f"auto_{field}": "" for field in AUTO_FIELDS})
    return form


def _read_form() -> dict[str, str]:
    form = {
        "id": request.form.get("id", "").strip(),
        "name": request.form.get("name", "").strip(),
        "description": request.form.get("description", "").strip(),
        # Browsers send CRLF line endings from a textarea; the stored code uses the author's LF.
        "content": request.form.get("content", "").replace("\r\n", "\n"),
        "commit_message": request.form.get("commit_message", "").strip(),
    }
    form.update({f"auto_{field}": request.form.get(f"auto_{field}", "").strip() for field in AUTO_FIELDS})
    return form


def _left_to_the_code(form: dict[str, str], field: str) -> bool:
    """Whether the field is empty or still holds what was filled in automatically (the admin did not choose it)."""
    return not form[field] or form[field] == form[f"auto_{field}"]


def _fill_from_code(form: dict[str, str], *, creating: bool) -> None:
    """Derive the fields the admin left to the code: name and description from the frontmatter, the id from the name."""
    manifest = loader.parse_frontmatter(form["content"])
    for field, key in (("name", "title"), ("description", "description")):
        if _left_to_the_code(form, field):
            form[field] = form[f"auto_{field}"] = (manifest.get(key) or "").strip()
        else:
            form[f"auto_{field}"] = ""
    if creating and _left_to_the_code(form, "id"):
        form["id"] = form["auto_id"] = slugify(form["name"])
    else:
        form["auto_id"] = ""


def _fill_and_check(form: dict[str, str], *, creating: bool) -> dict[str, str]:
    """Derive what the admin left to the code (see AUTO_FIELDS), then check what is required."""
    _fill_from_code(form, creating=creating)
    errors: dict[str, str] = {}
    if not form["name"]:
        errors["name"] = "Give the function a name, or a title: line in its docstring."
    if creating and not form["id"]:
        errors["id"] = "Give the function an id: letters, digits and underscores."
    if not form["content"].strip():
        errors["content"] = "The function has no code yet."
    return errors


# The editor's fields a service error may be about; anything else is shown above the form.
EDITOR_FIELDS = ("id", "name", "content", "description")


def _form_errors(error: ServiceError) -> tuple[dict[str, str], dict | None]:
    """Place a service error next to the field it is about (by its kind and field, never its wording); a load error
    also carries the failing line."""
    detail = console_detail(error)
    if error.kind == "incompatible_valves":
        return {"form": detail, "incompatible_valves": detail}, None
    if error.field in EDITOR_FIELDS:
        load_error = error.extra.get("error") if error.kind == "load_failed" else None
        return {error.field: detail}, load_error if isinstance(load_error, dict) else None
    return {"form": detail}, None


def _loaded_from(values) -> str | None:
    """The address a create form was loaded from (posted back with it), when it is one the page may link to."""
    url = (values.get("loaded_from") or "").strip()
    return url if url.lower().startswith(("http://", "https://")) and len(url) <= 2048 else None


def _editor_page(mode: str, form: dict[str, str], errors=None, load_error=None, *, status=200, **extra):
    function = extra.pop("function", None)
    errors = errors or {}
    creating = mode == "create"
    context: dict[str, Any] = {
        "mode": mode,
        "creating": creating,
        "form": form,
        "errors": errors,
        # Said before saving, so a prefilled id that is taken (a loaded or cloned function that is already here)
        # is changed first rather than refused after; a refused id already has its error instead.
        "id_taken": creating and "id" not in errors and function_reads.function_exists(form.get("id", "")),
        "load_error": load_error,
        "function": function,
        "starters": {kind: starter(kind) for kind in STARTER_TYPES} if creating else {},
        **extra,
    }
    if function is not None:
        context.update(_function_details(function))
    return render_template("console/function_editor.html", **context), status if errors else 200


def _function_details(function) -> dict[str, Any]:
    """What the edit page shows beside the form: history, requirements, valves and the last load problem."""
    manifest = function_meta.manifest(function.meta)
    value = manifest.get("requirements")
    has_requirements = isinstance(value, str) and bool(value.strip())
    requirements = requirements_jobs.requirements_status(function.id) if has_requirements else None
    versions = db.session.scalar(
        select(func.count()).select_from(FunctionVersion).where(FunctionVersion.function_id == function.id)
    )
    return {
        "manifest": manifest,
        "requirements": requirements,
        "version_count": versions or 0,
        "recent_versions": versions_service.list_versions(function.id)[:RECENT_VERSIONS],
        "valves_url": _valves_url(function.id),
        "has_valves": has_fields(function.valves_schema),
        "has_user_valves": has_fields(function.user_valves_schema),
        "function_icon_url": function_meta.icon_url(function.meta, function.icon),
        "run_methods": running.METHODS_BY_TYPE.get(function.type, ()),
        "sub_pipes": _sub_pipes(function),
    }


def _sub_pipes(function) -> list[dict]:
    """A manifold's sub-pipes as "Try it" offers them (`[{sub, name}]`), read as the gateway lists its models; empty
    for other functions and for a pipe whose `pipes` fails (the field still takes any id then)."""
    if function.type != "pipe":
        return []
    return [
        {"sub": str(model["sub"]), "name": model["name"]}
        for model in chat_models.list_pipe_models(function)
        if model.get("sub") is not None
    ]


@bp.post("/requirements/install")
def functions_requirements_install():
    """Start installing a function's missing requirements in the background, when the operator allows it."""
    function = _function_or_404(request.form.get("id", ""))
    try:
        job = requirements_jobs.start_install(function.id)
    except ServiceError as error:
        flash(error.detail, "error")
    else:
        if job.get("job_id"):
            flash(f"Installing the missing requirements (job {job['job_id']}, {job['status']}).", "success")
        else:
            flash("Every requirement is already installed.", "success")
    return redirect(url_for("console.functions_edit", id=function.id))


def _valves_url(function_id: str) -> str:
    # The valves page belongs to another blueprint; its address is fixed (Open WebUI's), so link to it directly.
    return "/admin/functions/valves?" + urlencode({"id": function_id})


# ---------------------------------------------------------------------------------------------------------------
# Source, delete, export, import


@bp.get("/source")
def functions_source():
    """The stored code, highlighted by Pygments, with line numbers and any error line marked."""
    function = _function_or_404(request.args.get("id", ""))
    error = function.load_error if getattr(function, "load_status", "ok") != "ok" else None
    line_count = source_line_count(function.content)
    line = _positive_int(request.args.get("line")) or (error or {}).get("line")
    if not isinstance(line, int) or line > line_count:
        line = None
    formatter = HtmlFormatter(
        linenos="table",
        anchorlinenos=True,
        lineanchors="L",
        hl_lines=[line] if line else [],
        cssclass="source-code",
        wrapcode=True,
    )
    # stripnl=False: by default Pygments drops leading and trailing blank lines, which shifted every line number
    # (and the marked line) of code that starts with a blank line, and made the count disagree with what is shown.
    lexer = PythonLexer(stripnl=False)
    code = Markup(highlight(function.content, lexer, formatter))  # noqa: S704 - Pygments escapes the source
    return render_template(
        "console/function_source.html",
        function=function,
        code=code,
        line=line,
        error=error,
        line_count=line_count,
    )


def source_line_count(content: str) -> int:
    """The number of lines the source view shows: lines end at LF, CRLF or CR (as for Pygments and Python)."""
    text = content.replace("\r\n", "\n").replace("\r", "\n")
    return text.count("\n") + (0 if text.endswith("\n") else 1)


@bp.route("/delete", methods=["GET", "POST"])
def functions_delete():
    """Ask for confirmation (GET), then delete the function and its users' valves (POST)."""
    function = _function_or_404(request.values.get("id", ""))
    if request.method == "POST":
        functions.delete_function(function.id)
        flash(f"Deleted {function.name}.", "success")
        return redirect(safe_next(request.form.get("next"), url_for("console.functions_list")))
    return render_template(
        "console/function_delete.html",
        function=function,
        next=safe_next(request.args.get("next"), url_for("console.functions_list")),
    )


@bp.get("/export")
def functions_export():
    """Download every function (or one, with ``id``) as an export file that import, sync and Open WebUI accept."""
    include_valves = request.args.get("include_valves") in ("1", "true", "on")
    function_id = request.args.get("id")
    stamp = datetime.now(UTC).strftime("%Y-%m-%d")
    if function_id:
        function = _function_or_404(function_id)
        serialise = (
            function_shapes.function_with_valves_model if include_valves else function_shapes.function_model
        )
        items = [serialise(function)]
        filename = f"function-{function.id}-export-{stamp}.json"
    else:
        items = function_reads.export_functions(include_valves)
        filename = f"functions-export-{stamp}.json"
    body = json.dumps(items, indent=2, ensure_ascii=False)
    return Response(
        body,
        mimetype="application/json",
        headers={"Content-Disposition": f'attachment; filename="{filename}"', "Cache-Control": "no-store"},
    )


@bp.route("/import", methods=["GET", "POST"])
def functions_import():
    """Upload an export file and preview what it would create or update; nothing changes yet."""
    if request.method == "GET":
        return render_template("console/function_import.html", errors={})
    upload = request.files.get("file")
    raw = upload.read() if upload else b""
    if not raw:
        raw = request.form.get("payload", "").encode()
    filename = upload.filename if upload else ""
    try:
        plan = function_import.plan_import(raw, check_code=True)
    except function_import.ImportFileError as error:
        return render_template("console/function_import.html", errors={"file": str(error)}), 400
    token = function_import.stage(current_user._get_current_object(), raw, filename or "")
    return render_template(
        "console/function_import_preview.html", plan=plan, token=token, filename=filename, errors={}
    )


@bp.post("/import/apply")
def functions_import_apply():
    """Create or update each chosen item of the previewed file, and report each one's outcome."""
    me = current_user._get_current_object()
    token = request.form.get("token", "")
    try:
        raw, _filename = function_import.staged(me, token)
        plan = function_import.plan_import(raw)
    except function_import.ImportFileError as error:
        return render_template("console/function_import.html", errors={"file": str(error)}), 400
    chosen = {int(value) for value in request.form.getlist("item") if value.isdigit()}
    if not chosen:
        # The button is disabled while nothing is ticked; a form sent anyway gets the preview back, kept staged.
        return render_template(
            "console/function_import_preview.html",
            plan=function_import.plan_import(raw, check_code=True),
            token=token,
            filename=_filename,
            errors={"form": "Nothing was imported: tick at least one function."},
        ), 400
    results = function_import.apply_import(
        me,
        plan,
        chosen,
        restore_settings=request.form.get("restore_settings") == "1",
    )
    function_import.discard(token)  # a second press of the button (or Back and again) does not import twice
    failed = sum(1 for result in results if result.status == "failed")
    done = sum(1 for result in results if result.status in ("created", "updated"))
    unchanged = sum(1 for result in results if result.status == "unchanged")
    flash(
        f"Imported {done} function{'s' if done != 1 else ''}"
        + (f"; {unchanged} already the same here" if unchanged else "")
        + (f"; {failed} failed." if failed else "."),
        "error" if failed else "success",
    )
    return render_template("console/function_import_results.html", results=results), 200


# ---------------------------------------------------------------------------------------------------------------
# Helpers shared by the pages


def _function_or_404(function_id: str):
    if not function_id:
        abort(404)
    try:
        return function_reads.get_function(function_id)
    except NotFound:
        abort(404)


def _description(meta: dict | None) -> str:
    value = (meta or {}).get("description")
    return value if isinstance(value, str) else ""


def starter(kind: str) -> str:
    """The starter code for a new function of ``kind`` (templates/console/starters/<kind>.py)."""
    env = current_app.jinja_env
    source, _filename, _uptodate = env.loader.get_source(env, f"console/starters/{kind}.py")
    return source


_SLUG_UNSAFE = re.compile(r"[^a-z0-9]+")
_COMBINING_ACCENTS = re.compile("[\u0300-\u036f]")


def slugify(name: str) -> str:
    """The id a name suggests: accents dropped, lower-case, every run of other characters one underscore.

    static/js/function_editor.js does the same as the admin types, so the id shown is the id saved.
    """
    plain = _COMBINING_ACCENTS.sub("", unicodedata.normalize("NFKD", name))
    return _SLUG_UNSAFE.sub("_", plain.lower()).strip("_")[:64].rstrip("_")


def _positive_int(value: str | None) -> int | None:
    try:
        number = int(value) if value else None
    except ValueError:
        return None
    return number if number and number > 0 else None
