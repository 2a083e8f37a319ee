"""Sign-in, first-run admin creation, optional sign-up, sign-out and the pending page."""

from urllib.parse import urlsplit

from flask import Blueprint, current_app, flash, redirect, render_template, request, session, url_for
from flask_login import current_user, login_user, logout_user

from services import accounts
from services.errors import ServiceError
from web.access import page_user, safe_next

bp = Blueprint("auth", __name__)


def _landing() -> str:
    return url_for("system.home")


def _start_session(user) -> None:
    """Sign ``user`` in on a fresh session.

    Everything the session held before, the CSRF token above all, is dropped: a token planted in or read from the
    anonymous session (a shared computer, a fixated cookie) must not work for the signed-in account. The next page
    makes a new token.
    """
    session.clear()
    login_user(user)


def _destination(user, next_url: str) -> str:
    """Where to go once signed in: ``next``, unless it is an admin page that this account may not see."""
    path = urlsplit(next_url).path
    if (path == "/admin" or path.startswith("/admin/")) and not user.is_admin:
        flash("That page is for administrators, so here is your start page instead.", "info")
        return _landing()
    return next_url


@bp.route("/auth", methods=["GET", "POST"])
def sign_in():
    """Sign in; on an empty database, create the first admin instead."""
    first_run = not accounts.has_users()
    next_url = safe_next(request.values.get("next"), _landing())
    if current_user.is_authenticated and not first_run:
        return redirect(next_url)
    form = {"name": "", "email": ""}
    errors: dict[str, str] = {}
    if request.method == "POST":
        form = {"name": request.form.get("name", ""), "email": request.form.get("email", "")}
        password = request.form.get("password", "")
        if first_run:
            try:
                user = accounts.create_first_admin(form["name"], form["email"], password)
            except accounts.AccountError as exc:
                errors = exc.fields
            except ServiceError as exc:
                flash(exc.detail, "error")
                return redirect(url_for("auth.sign_in"))
            else:
                _start_session(user)
                flash("Welcome to Sluice. Your administrator account is ready.", "success")
                return redirect(_landing())
        else:
            result = accounts.authenticate(
                form["email"],
                password,
                current_app.config["SLUICE_SIGNIN_MAX_FAILURES"],
                current_app.config["SLUICE_SIGNIN_LOCK_SECONDS"],
                client=request.remote_addr,  # the proxy's X-Forwarded-For only with SLUICE_TRUSTED_PROXIES
            )
            if result.user is not None:
                _start_session(result.user)
                return redirect(_destination(result.user, next_url))
            errors["form"] = result.error
    status = 400 if errors else 200
    return (
        render_template(
            "auth/sign_in.html",
            first_run=first_run,
            form=form,
            errors=errors,
            next=request.values.get("next", ""),
            signup_enabled=current_app.config["SLUICE_ENABLE_SIGNUP"],
        ),
        status,
    )


@bp.route("/auth/signup", methods=["GET", "POST"])
def sign_up():
    """Self sign-up, when the operator enabled it: creates a pending account."""
    if not current_app.config["SLUICE_ENABLE_SIGNUP"]:
        return render_template("auth/signup_closed.html"), 404
    form = {"name": "", "email": ""}
    errors: dict[str, str] = {}
    if request.method == "POST":
        form = {"name": request.form.get("name", ""), "email": request.form.get("email", "")}
        try:
            # The very first account is still the admin: sign-up must not bypass first-run set-up.
            if not accounts.has_users():
                return redirect(url_for("auth.sign_in"))
            user = accounts.create_user(
                form["name"], form["email"], request.form.get("password", ""), role="pending"
            )
        except accounts.AccountError as exc:
            errors = exc.fields
        else:
            _start_session(user)
            return redirect(url_for("auth.pending"))
    return render_template("auth/sign_up.html", form=form, errors=errors), 400 if errors else 200


@bp.post("/auth/signout")
def sign_out():
    """Sign out everywhere and return to the sign-in page.

    The session cookie is signed, not stored: clearing it here would leave any copy of it valid. Moving the
    account's session epoch on ends every session it has, copies included.
    """
    if current_user.is_authenticated:
        accounts.end_sessions(page_user())
    logout_user()
    flash("You have signed out.", "info")
    return redirect(url_for("auth.sign_in"))


@bp.get("/pending")
def pending():
    """What a pending account sees until an admin approves it."""
    if not current_user.is_authenticated:
        return redirect(url_for("auth.sign_in"))
    if not current_user.is_pending:
        return redirect(_landing())
    return render_template("auth/pending.html")
