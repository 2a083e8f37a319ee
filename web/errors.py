"""Error answers: JSON with a ``detail`` under /api/, HTML pages elsewhere; never a traceback."""

from __future__ import annotations

import logging

from flask import Flask, jsonify, render_template, request
from flask_wtf.csrf import CSRFError
from werkzeug.exceptions import HTTPException, InternalServerError

from extensions import db
from services.errors import ServiceError
from web.access import ApiAuthError, is_api_request
from web.console_wording import console_detail

log = logging.getLogger(__name__)

API_DETAILS = {
    400: "Bad request",
    401: "Not authenticated",
    403: "You do not have permission to access this resource.",
    404: "We could not find what you're looking for :/",
    405: "Method not allowed",
    413: "The request body is too large",
    422: "The request body could not be understood",
    500: "Something went wrong on our side; the error has been logged.",
}


def api_error(status: int, detail: str | None = None, **extra):
    body = {"detail": detail or API_DETAILS.get(status, "Error"), **extra}
    return jsonify(body), status


# One title per status for every HTML error page, whether routing, an abort() or a service raised it.
PAGE_TITLES = {
    400: "Something is not right",
    403: "Not allowed",
    404: "Page not found",
    405: "Not allowed",
    413: "Too large",
    500: "Something went wrong",
}


def _page(status: int, title: str, message: str):
    return render_template("errors/error.html", status=status, title=title, message=message), status


def _title(status: int) -> str:
    return PAGE_TITLES.get(status) or PAGE_TITLES[500 if status >= 500 else 400]


def install_error_handlers(app: Flask) -> None:
    @app.errorhandler(ApiAuthError)
    def on_api_auth(error: ApiAuthError):
        return api_error(error.status, error.detail)

    @app.errorhandler(ServiceError)
    def on_service_error(error: ServiceError):
        if is_api_request():
            response = jsonify(error.to_dict())
            if error.kind == "busy" or getattr(
                error, "retry_after", None
            ):  # worth sending again, after this long
                response.headers["Retry-After"] = str(int(getattr(error, "retry_after", None) or 2))
            return response, error.status
        # The service's sentence says what is missing or refused; the title is the one every page uses. The API's
        # not-found text is Open WebUI's, kept for its clients; a person reading a page gets a plainer one.
        return _page(error.status, _title(error.status), console_detail(error))

    @app.errorhandler(CSRFError)
    def on_csrf(error: CSRFError):
        if is_api_request():
            return api_error(
                403, f"CSRF check failed: {error.description} Send it in the X-CSRFToken header."
            )
        return _page(
            400,
            "This form has expired",
            "The form's security token is missing or out of date. Go back, reload the page and try again.",
        )

    @app.errorhandler(HTTPException)
    def on_http_error(error: HTTPException):
        status = error.code or 500
        if is_api_request():
            detail = API_DETAILS.get(status) if status in (404, 405, 413) else None
            response, code = api_error(status, detail or error.description)
            valid_methods = getattr(error, "valid_methods", None)
            if status == 405 and valid_methods:
                response.headers["Allow"] = ", ".join(valid_methods)
            return response, code
        messages = {
            403: "Your account cannot open this page.",
            404: "There is nothing at this address.",
            405: "This page does not accept that kind of request.",
            413: "What you sent is larger than Sluice accepts.",
        }
        title = PAGE_TITLES.get(status, error.name)
        return _page(status, title, messages.get(status, error.description or ""))

    @app.errorhandler(Exception)
    def on_unexpected(error: Exception):
        log.exception("Unhandled error on %s %s", request.method, request.path)
        try:
            db.session.rollback()
        except Exception:  # the session may be unusable; the answer must still go out
            log.exception("Rollback after an unhandled error failed")
        if is_api_request():
            return api_error(500)
        return _page(500, PAGE_TITLES[500], InternalServerError.description)
