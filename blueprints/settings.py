"""Every user's own pages: personal valves (`/settings/valves`) and API keys (`/settings/keys`)."""

from __future__ import annotations

from flask import Blueprint, Flask, flash, make_response, redirect, render_template, request, session, url_for
from flask_login import current_user

from blueprints.access import page_login_required
from blueprints.valves import absolute_time, form_context, iso_time, stale_errors, submit_valves
from services import accounts, function_meta, functions, valves_pages
from services.errors import ServiceError

bp = Blueprint("settings", __name__, url_prefix="/settings")


def register(app: Flask) -> None:
    app.register_blueprint(bp)


@bp.before_request
@page_login_required
def _signed_in_only():
    """Every page here is for a signed-in, approved account (pending ones are held back by the access rules)."""
    return None


@bp.context_processor
def _helpers():
    return {"absolute_time": absolute_time, "iso_time": iso_time}


def _me():
    return current_user._get_current_object()


# --- personal valves ------------------------------------------------------------------------------------------


@bp.route("/valves", methods=["GET", "POST"])
def valves():
    """The functions that have personal valves; with `?id=`, that function's form, holding only the caller's own."""
    me = _me()
    entries = valves_pages.functions_with_user_valves(me)
    function_id = request.args.get("id", "").strip()
    if not function_id:
        if request.method == "POST":
            return redirect(url_for("settings.valves"))
        return render_template("settings/valves.html", entries=entries, function=None)

    function = functions.get_function(function_id)
    # An inactive function does not exist for a non-admin (the API's rule); the services say so with a 404.
    spec = functions.user_valves_spec(me, function.id, for_form=True)
    stored = functions.get_user_valves(me, function.id)
    action = url_for("settings.valves", id=function.id)
    status = 200
    if spec is None:
        context = form_context(None, stored)
        if request.method == "POST":
            context["form_errors"] = ["This function has no UserValves class, so there is nothing to set."]
            status = 400
    elif request.method == "POST":
        ok, context = submit_valves(
            spec,
            stored,
            save=lambda values: functions.update_user_valves(me, function.id, values),
            check=lambda values: valves_pages.dry_run_errors(function, values, "user_valves", me),
        )
        if ok:
            return redirect(action)
        status = 400
    else:
        # Stored values that the current code refuses are shown as errors beside their fields, never dropped.
        field_errors, form_errors = stale_errors(spec, stored, functions.check_user_valves(me, function.id))
        if field_errors or form_errors:
            form_errors.insert(
                0,
                "Some of your saved values no longer fit this version of the function. "
                "Fix or reset the fields marked below, then save.",
            )
        context = form_context(spec, stored, field_errors=field_errors, form_errors=form_errors)
    return (
        render_template(
            "settings/valves.html",
            entries=entries,
            function=function,
            spec=spec,
            action=action,
            description=function_meta.description(function.meta),
            **context,
        ),
        status,
    )


# --- API keys -------------------------------------------------------------------------------------------------


# Where a new key waits, between the POST that made it and the page that shows it once.
NEW_KEY = "new_api_key"


@bp.get("/keys")
def keys():
    """The caller's API keys: name, prefix, dates and whether revoked; a form to create one; a new key, once."""
    me = _me()
    new = session.pop(NEW_KEY, None)
    if not isinstance(new, dict) or new.get("user_id") != me.id:
        new = {}
    response = _keys_page(new_key=new.get("key"), new_key_id=new.get("id"))
    # A new key is in this page only: no cache may keep it (nor the page that could show one).
    response.headers["Cache-Control"] = "no-store"
    return response


@bp.post("/keys")
def create_key():
    """Create a key, then show it on the keys page, once (post-redirect-get: reloading never makes another)."""
    me = _me()
    key, plain = accounts.create_api_key(me, request.form.get("name", ""))
    session[NEW_KEY] = {"id": key.id, "key": plain, "user_id": me.id}
    return redirect(url_for("settings.keys"), 303)


@bp.post("/keys/<key_id>/revoke")
def revoke_key(key_id: str):
    """Revoke one of the caller's keys; it stops working at once."""
    try:
        key = accounts.revoke_api_key(_me(), key_id)
    except ServiceError as exc:
        flash(exc.detail, "error")
        return redirect(url_for("settings.keys"))
    label = f"“{key.name}”" if key.name else f"{key.prefix}…"
    flash(f"API key {label} revoked. Anything using it is now refused.", "success")
    return redirect(url_for("settings.keys"))


def _keys_page(new_key: str | None = None, new_key_id: str | None = None):
    return make_response(
        render_template(
            "settings/keys.html",
            keys=accounts.list_api_keys(_me()),
            new_key=new_key,
            new_key_id=new_key_id,
        )
    )
