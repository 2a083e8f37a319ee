"""SluiceFlask remembers which callables are synchronous; SecurityHeaders keeps a view's own headers."""

from __future__ import annotations

import inspect

from flask import Response

from web.flask_app import SluiceFlask
from web.headers import HEADERS, install_security_headers


def test_ensure_sync_asks_once_per_callable(monkeypatch):
    app = SluiceFlask(__name__)
    asked = []
    real = inspect.iscoroutinefunction
    monkeypatch.setattr("flask.app.iscoroutinefunction", lambda f: asked.append(f) or real(f))

    def view():
        return "ok"

    assert app.ensure_sync(view) is view
    assert app.ensure_sync(view) is view
    assert asked == [view]


def test_ensure_sync_still_wraps_a_coroutine_function():
    app = SluiceFlask(__name__)

    async def view():
        return "async ok"

    wrapped = app.ensure_sync(view)
    assert wrapped is not view
    assert app.ensure_sync(view) is wrapped


def test_security_headers_keep_what_a_view_set_and_add_the_rest():
    app = SluiceFlask(__name__)
    app.config["SESSION_COOKIE_SECURE"] = True

    @app.get("/own")
    def own():
        return Response("x", headers={"X-Frame-Options": "SAMEORIGIN"})

    install_security_headers(app)
    answer = app.test_client().get("/own")
    assert answer.headers.getlist("X-Frame-Options") == ["SAMEORIGIN"]
    for name in HEADERS:
        assert name in answer.headers
    assert answer.headers["Strict-Transport-Security"].startswith("max-age=")
    assert app.test_client().get("/missing").headers["X-Content-Type-Options"] == "nosniff"
