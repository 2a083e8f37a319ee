"""Response headers that keep pages from being framed, sniffed or leaking their addresses."""

from __future__ import annotations

from flask import Flask, Response

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
    @app.after_request
    def _add_headers(response: Response) -> Response:
        # One pass over the few headers a response has (setdefault scanned them once per name: a tenth of a small
        # API answer's time); a header a view set itself is kept.
        present = {name.lower() for name in response.headers.keys()}
        response.headers.extend(
            [(name, value) for name, value in HEADERS.items() if name.lower() not in present]
        )
        if app.config.get("SESSION_COOKIE_SECURE"):
            # Served over HTTPS (the operator said so): browsers should not try plain HTTP again for a year.
            response.headers.setdefault("Strict-Transport-Security", "max-age=31536000")
        return response
