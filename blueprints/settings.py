"""Every user's own pages: personal valves (`/settings/valves`) and API keys (`/settings/keys`)."""

from __future__ import annotations

import secrets

from flask import Blueprint, Flask, flash, make_response, redirect, render_template, request, session, url_for

from services import accounts, function_meta, function_reads, valves_pages
from services import valves as valves_service
from services.errors import ServiceError
from web.access import page_login_required, page_user
from web.valves_forms import valves_page

bp = Blueprint("settings", __name__, url_prefix="/settings")


def register(app: Flask) -> None:
    app.register_blueprint(bp)


@bp.before_request
@page_login_required
def _signed_in_only():
    """Every page here is for a signed-in, approved account (pending ones are held back by the access rules)."""
    return None


# --- personal valves ------------------------------------------------------------------------------------------


@bp.route("/valves", methods=["GET", "POST"])
def valves():
    """The functions that have personal valves; with `?id=`, that function's form, holding only the caller's own."""
    me = page_user()
    entries = valves_pages.functions_with_user_valves(me)
    function_id = request.args.get("id", "").strip()
    if not function_id:
        if request.method == "POST":
            return redirect(url_for("settings.valves"))
        return render_template("settings/valves.html", entries=entries, function=None)

    function = function_reads.get_function(function_id)
    # An inactive function does not exist for a non-admin (the API's rule); the services say so with a 404.
    spec = valves_service.user_valves_spec(me, function.id, for_form=True)
    stored = valves_service.get_user_valves(me, function.id)
    action = url_for("settings.valves", id=function.id)
    saved, context, status = valves_page(
        spec,
        stored,
        class_name="UserValves",
        save=lambda values: valves_service.update_user_valves(me, function.id, values),
        check=lambda values: valves_pages.dry_run_errors(function, values, "user_valves", me),
        stale=lambda: valves_service.check_user_valves(me, function.id),
    )
    if saved:
        return redirect(action)
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


# The create form's one-time ids already used by this browser: a reload of the page that showed a new key sends
# the form again, and must not make (and show) a second key.
USED_FORM_IDS = "used_key_forms"
KEPT_FORM_IDS = 20
ALREADY_CREATED = (
    "That key was already created, and a key is shown only once. Create another if you need one."
)


@bp.get("/keys")
def keys():
    """The caller's API keys: name, prefix, dates and whether revoked; a form to create one."""
    return _keys_page()


@bp.post("/keys")
def create_key():
    """Create a key and show it in this answer, once.

    The key is never kept anywhere but its hash: not in the session cookie (signed, not encrypted), not in a page
    that a cache or the history could keep (no-store). A reload re-sends the form, whose one-time id is then
    recognised: it answers with a note instead of a second key.
    """
    me = page_user()
    form_id = request.form.get("form_id", "")
    used = [item for item in session.get(USED_FORM_IDS, []) if isinstance(item, str)]
    if form_id and form_id in used:
        flash(ALREADY_CREATED, "info")
        return redirect(url_for("settings.keys"), 303)
    # Only admins are offered the choice; anyone else sending it is refused by the service, and shown why.
    connection = bool(request.form.get("connection"))
    try:
        key, plain = accounts.create_api_key(me, request.form.get("name", ""), connection=connection)
    except ServiceError as exc:
        flash(exc.detail, "error")
        return redirect(url_for("settings.keys"), 303)
    if form_id:
        session[USED_FORM_IDS] = [*used, form_id][-KEPT_FORM_IDS:]
    return _keys_page(new_key=plain, new_key_id=key.id)


@bp.post("/keys/<key_id>/revoke")
def revoke_key(key_id: str):
    """Revoke one of the caller's keys; it stops working at once."""
    try:
        key = accounts.revoke_api_key(page_user(), key_id)
    except ServiceError as exc:
        flash(exc.detail, "error")
        return redirect(url_for("settings.keys"))
    label = f"“{key.name}”" if key.name else f"{key.prefix}…"
    flash(f"API key {label} revoked. Anything using it is now refused.", "success")
    return redirect(url_for("settings.keys"))


def _keys_page(new_key: str | None = None, new_key_id: str | None = None):
    response = make_response(
        render_template(
            "settings/keys.html",
            keys=accounts.list_api_keys(page_user()),
            new_key=new_key,
            new_key_id=new_key_id,
            form_id=secrets.token_urlsafe(16),
        )
    )
    # A new key is in this answer only: no cache may keep it (nor the page that could show one).
    response.headers["Cache-Control"] = "no-store"
    return response
