"""Response headers that keep pages from being framed, sniffed or leaking their addresses."""

from __future__ import annotations

from collections.abc import Callable, Iterable

from flask import Flask

# Every script and stylesheet is a file under static/. Styles may also be inline: the code editor (CodeMirror)
# writes its own <style> elements. Function manifests may carry icons as data: URIs or https addresses (shown as
# <img> only, where an SVG never runs a script).
CONTENT_SECURITY_POLICY = "; ".join(
    [
        "default-src 'self'",
        "script-src 'self'",
        "style-src 'self' 'unsafe-inline'",
        "img-src 'self' data: https:",
        "connect-src 'self'",
        "object-src 'none'",
        "base-uri 'self'",
        "form-action 'self'",
        "frame-ancestors 'none'",  # no page may be framed: its buttons cannot be clickjacked
    ]
)

HEADERS = {
    "Content-Security-Policy": CONTENT_SECURITY_POLICY,
    "X-Frame-Options": "DENY",  # for browsers that predate frame-ancestors
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "same-origin",
    "Cross-Origin-Opener-Policy": "same-origin",
}


def install_security_headers(app: Flask) -> None:
    app.wsgi_app = SecurityHeaders(app.wsgi_app, hsts=bool(app.config.get("SESSION_COOKIE_SECURE")))


class SecurityHeaders:
    """WSGI middleware that adds HEADERS (and HSTS when served over HTTPS) to every answer that lacks them.

    Added to the plain list of header pairs as the answer starts, rather than in an ``after_request`` hook: there
    the werkzeug Headers object's scans and copies were a twentieth of a small API answer's time. Everything Flask
    answers passes through here, static files and error pages included; a header a view set itself is kept.
    """

    def __init__(self, wsgi_app: Callable, hsts: bool):
        self.wsgi_app = wsgi_app
        added = dict(HEADERS)
        if hsts:
            # The operator said it is served over HTTPS: browsers should not try plain HTTP again for a year.
            added["Strict-Transport-Security"] = "max-age=31536000"
        self.added = tuple((name.lower(), name, value) for name, value in added.items())

    def __call__(self, environ: dict, start_response: Callable) -> Iterable[bytes]:
        def start_with_headers(status: str, headers: list[tuple[str, str]], exc_info=None):
            present = {name.lower() for name, _ in headers}
            headers.extend((name, value) for lower, name, value in self.added if lower not in present)
            return start_response(status, headers, exc_info)

        return self.wsgi_app(environ, start_with_headers)
