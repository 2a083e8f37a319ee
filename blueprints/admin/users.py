"""User management for admins (`/admin/users`): list, create, change role, approve pending, delete."""

from __future__ import annotations

from flask import Blueprint, Flask, flash, redirect, render_template, request, url_for

from models import ROLES
from services import accounts
from services.errors import ServiceError
from web.access import admin_pages_only, page_user

bp = Blueprint("users", __name__, url_prefix="/admin/users")

ROLE_LABELS = {"admin": "Admin", "user": "User", "pending": "Pending"}


def register(app: Flask) -> None:
    app.register_blueprint(bp)


admin_pages_only(bp)


@bp.context_processor
def _helpers():
    return {"roles": ROLES, "role_labels": ROLE_LABELS}


def _page(form=None, errors=None, status=200):
    query = accounts.UsersQuery.from_args(request.args)
    return (
        render_template(
            "users/list.html",
            query=query,
            page=accounts.search_users(query),
            form=form or {"name": "", "email": "", "role": "user"},
            errors=errors or {},
        ),
        status,
    )


@bp.get("")
def users_list():
    """The accounts a page at a time (searched by name or email, filtered by role), pending ones first and
    highlighted; and a form to create one."""
    return _page()


@bp.post("")
def users_create():
    """Create an account with a name, email, password and role."""
    form = {
        "name": request.form.get("name", ""),
        "email": request.form.get("email", ""),
        "role": request.form.get("role", "user"),
    }
    try:
        user = accounts.create_user(
            form["name"], form["email"], request.form.get("password", ""), form["role"]
        )
    except accounts.AccountError as exc:
        return _page(form, exc.fields, 400)
    flash(
        f"Account created for {user.name} ({user.email}) as {ROLE_LABELS.get(user.role, user.role)}.",
        "success",
    )
    return redirect(url_for("users.users_list"))


@bp.post("/<user_id>/role")
def users_role(user_id: str):
    """Change an account's role; an admin cannot take their own admin role away."""
    return _set_role(user_id, request.form.get("role", ""))


@bp.post("/<user_id>/approve")
def users_approve(user_id: str):
    """Approve a pending account: it becomes a user."""
    return _set_role(user_id, "user", approving=True)


def _set_role(user_id: str, role: str, approving: bool = False):
    try:
        user = accounts.change_role(page_user(), user_id, role)
    except ServiceError as exc:
        flash(exc.detail, "error")
    else:
        if approving:
            flash(f"{user.name} is approved and can now sign in as a user.", "success")
        else:
            flash(f"{user.name} is now {ROLE_LABELS.get(user.role, user.role).lower()}.", "success")
    return redirect(url_for("users.users_list"))


@bp.post("/<user_id>/delete")
def users_delete(user_id: str):
    """Delete an account with its API keys and personal valves; never one's own."""
    try:
        user = accounts.get_user(user_id)
        name = f"{user.name} ({user.email})"
        accounts.delete_user(page_user(), user_id)
    except ServiceError as exc:
        flash(exc.detail, "error")
    else:
        flash(f"Deleted {name}, with their API keys and personal valves.", "success")
    return redirect(url_for("users.users_list"))
