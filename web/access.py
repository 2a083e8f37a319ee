"""Who is calling, and may they: API keys and session cookies, roles, CSRF and the pending gate.

One policy for both faces, as CTFd does: a JSON caller gets a status and a ``detail``, a browser is sent to the
sign-in page. CSRF is checked on every unsafe method that relies on the session cookie; API-key calls carry no
cookie authority and need no token.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import wraps
from typing import TypeVar
from urllib.parse import urlsplit

from flask import Flask, abort, current_app, g, redirect, request, session, url_for
from flask_login import current_user

from extensions import csrf, db, login_manager
from models import User
from services import accounts, audit

NOT_AUTHENTICATED = "Not authenticated"
INVALID_CREDENTIALS = "Your session has expired or the token is invalid. Please sign in again."
NO_PERMISSION = (
    "You do not have permission to access this resource. Please contact your administrator for assistance."
)
T = TypeVar("T")
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS", "TRACE"})


class ApiAuthError(Exception):
    def __init__(self, detail: str, status: int = 401):
        super().__init__(detail)
        self.detail = detail
        self.status = status


def is_api_request() -> bool:
    """JSON callers: the API under /api and the gateway under /v1."""
    path = request.path
    return path.startswith(("/api/", "/v1/")) or path in ("/api", "/v1")


def presented_key() -> str | None:
    """The credential in the request's headers, or None when it carries none."""
    header = request.headers.get("Authorization")
    if header is not None:
        scheme, _, token = header.partition(" ")
        # A malformed header is still a credential presented (and rejected), never a fallback to the cookie.
        return token.strip() if scheme.lower() == "bearer" else header
    api_key = request.headers.get("x-api-key")
    if api_key is not None:
        return api_key.strip()
    return None


def _session_cookie_rejected() -> bool:
    """True when the request carries a session cookie that Flask refused (bad signature, other secret, expired).

    Flask then starts an empty session. A cookie it did accept is never empty, because Flask deletes the cookie of
    a session that has been emptied; a browser that only visited the sign-in page holds its CSRF token in it.
    """
    presented = request.cookies.get(current_app.config["SESSION_COOKIE_NAME"])
    return bool(presented) and not session


def page_user() -> User:
    """The account signed in to this page's session: the model itself, not Flask-Login's proxy to it."""
    return current_user._get_current_object()


def api_caller() -> User:
    """The authenticated caller of an API route, or ``ApiAuthError`` saying why not."""
    if "api_user" in g:
        return g.api_user
    key = presented_key()
    if key is not None:
        user = accounts.user_for_api_key(key)
        if user is None:
            raise ApiAuthError(INVALID_CREDENTIALS)
    elif current_user.is_authenticated:
        user = page_user()
    elif session.get("_user_id") or _session_cookie_rejected():
        # The cookie names an account that no longer exists, or Flask could not load it at all.
        raise ApiAuthError(INVALID_CREDENTIALS)
    else:
        raise ApiAuthError(NOT_AUTHENTICATED)
    g.api_user = user
    return user


def acting_caller() -> audit.Actor:
    """Who the audit trail names for this request, and through which face: an API key, or the console's session.

    The console's own scripts call the API with the session cookie: that is still the console.
    """
    by_key = is_api_request() and presented_key() is not None  # pages never take a key
    if "api_user" in g:
        user = g.api_user
    elif not by_key and current_user.is_authenticated:
        user = page_user()
    else:
        user = None
    return audit.Actor(user, "api_key" if by_key else "console")


def _check_role(user: User, role: str) -> None:
    if user.role == "pending" or (role == "admin" and user.role != "admin"):
        raise ApiAuthError(NO_PERMISSION)


def _require_api(role: str):
    def decorator(view):
        @wraps(view)
        def wrapped(*args, **kwargs):
            _check_role(api_caller(), role)
            return view(*args, **kwargs)

        return wrapped

    return decorator


def read_as_caller(
    role: str,
    read: Callable[[User], T],
    read_as_key: Callable[[str], tuple[User | None, Callable[[], T]]],
) -> T:
    """An API read that authenticates its caller itself (a route registered with ``authenticated_by_view``).

    With an API key, ``read_as_key(digest)`` finds the key's owner and the data in one query, and answers (owner or
    None, what makes the answer): on PostgreSQL a round trip of its own for the key was a third of a read's cost.
    The answer is made only once the owner is known and allowed, so a caller turned away learns nothing, not even
    whether the function exists. Any other caller (a session cookie, a key already resolved) is authenticated
    first, as every other route does, and then ``read(caller)``.
    """
    key = presented_key()
    if key is None or "api_user" in g:
        caller = api_caller()
        _check_role(caller, role)
        return read(caller)
    digest = accounts.key_digest(key)
    owner, answer = read_as_key(digest) if digest is not None else (None, None)
    if owner is None:
        raise ApiAuthError(INVALID_CREDENTIALS)
    g.api_user = owner
    _check_role(owner, role)
    return answer()


api_user_required = _require_api("user")
api_admin_required = _require_api("admin")


def page_login_required(view):
    """Pages for any approved account."""

    @wraps(view)
    def wrapped(*args, **kwargs):
        if not current_user.is_authenticated:
            return redirect(url_for("auth.sign_in", next=request.full_path.rstrip("?")))
        return view(*args, **kwargs)

    return wrapped


def page_admin_required(view):
    """Pages for admins only; anyone else signed in gets the 403 page."""

    @wraps(view)
    def wrapped(*args, **kwargs):
        if not current_user.is_authenticated:
            return redirect(url_for("auth.sign_in", next=request.full_path.rstrip("?")))
        if not current_user.is_admin:
            abort(403)
        return view(*args, **kwargs)

    return wrapped


def admin_pages_only(bp) -> None:
    """Make every page of blueprint `bp` an admin page: anyone else gets the sign-in redirect or the 403 page."""
    bp.before_request(page_admin_required(lambda: None))


def safe_next(target: str | None, fallback: str) -> str:
    """Follow ``next=`` only to a path on this site; anything else (other hosts, ``//x``, schemes) is refused."""
    if not target:
        return fallback
    target = target.strip().replace("\\", "/")
    parts = urlsplit(target)
    if parts.scheme or parts.netloc or not target.startswith("/") or target.startswith("//"):
        return fallback
    return target


# Endpoints a pending account may reach: the waiting page, signing out, assets.
PENDING_ALLOWED = {"auth.pending", "auth.sign_out", "static", "system.health"}


def install_access_rules(app: Flask) -> None:
    login_manager.login_view = "auth.sign_in"
    audit.resolve_actor_with(acting_caller)

    @login_manager.user_loader
    def load_user(session_id: str):
        # "<user id>:<epoch>": a session from before the account's last sign-out names an old epoch.
        user_id, _, epoch = (session_id or "").rpartition(":")
        user = db.session.get(User, user_id) if user_id else None
        if user is None or str(user.session_epoch or 0) != epoch:
            return None
        return user

    @app.before_request
    def enforce_csrf_and_pending():
        if request.routing_exception is not None:
            return None  # no such route or method: let routing answer 404/405 rather than a CSRF error
        if request.method not in SAFE_METHODS:
            if is_api_request():
                # Header credentials are not ambient authority; only cookie-authenticated calls need the token.
                if presented_key() is None and current_user.is_authenticated:
                    csrf.protect()
            else:
                csrf.protect()
        if (
            not is_api_request()
            and current_user.is_authenticated
            and current_user.is_pending
            and request.endpoint not in PENDING_ALLOWED
        ):
            return redirect(url_for("auth.pending"))
        return None
