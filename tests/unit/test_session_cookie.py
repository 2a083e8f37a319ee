"""The session interface keeps one signing serializer per set of keys, and a changed key still takes effect."""

from __future__ import annotations

import re

from flask import Flask, session
from flask.sessions import SecureCookieSessionInterface

from web.session_cookie import CookieSessions


def _app(secret: str) -> Flask:
    app = Flask(__name__)
    app.secret_key = secret
    app.session_interface = CookieSessions()

    @app.get("/set")
    def set_value():
        session["who"] = "me"
        return "ok"

    @app.get("/get")
    def get_value():
        return session.get("who", "nobody")

    return app


def test_one_serializer_per_key_set():
    app = _app("first secret key, long enough")
    first = app.session_interface.get_signing_serializer(app)
    assert app.session_interface.get_signing_serializer(app) is first
    app.secret_key = "second secret key, long enough"
    assert app.session_interface.get_signing_serializer(app) is not first


def test_a_changed_key_refuses_old_cookies_unless_it_is_a_fallback():
    app = _app("first secret key, long enough")
    client = app.test_client()
    client.get("/set")
    assert client.get("/get").text == "me"
    app.secret_key = "second secret key, long enough"
    assert client.get("/get").text == "nobody"
    app.config["SECRET_KEY_FALLBACKS"] = ["first secret key, long enough"]
    assert client.get("/get").text == "me"


def test_the_app_uses_it(tmp_path):
    from app import create_app

    app = create_app(
        {"TESTING": True, "SQLALCHEMY_DATABASE_URI": f"sqlite:///{tmp_path}/db", "SECRET_KEY": "k" * 32}
    )
    assert isinstance(app.session_interface, CookieSessions)


def _headers_with(interface, path: str, environ_overrides=None) -> dict:
    app = _app("first secret key, long enough")
    app.session_interface = interface

    @app.get("/read-with-vary")
    def read_with_vary():
        session.get("who")
        return "ok", 200, {"Vary": "Accept"}

    @app.get("/untouched")
    def untouched():
        return "ok"

    @app.get("/clear")
    def clear():
        session.clear()
        return "ok"

    client = app.test_client()
    client.get("/set")
    if environ_overrides == "no cookie":
        client.delete_cookie("session")
    answer = client.get(path)
    # A signed cookie carries the second it was signed (and a signature over it): two answers a second apart differ
    # there, whichever interface made them. So the token is compared by what Flask's own serializer reads from it.
    reader = SecureCookieSessionInterface().get_signing_serializer(app)
    cookies = [
        re.sub(r"^session=([^;]+)", lambda token: f"session={reader.loads(token.group(1))!r}", value)
        if not value.startswith("session=;")
        else value
        for value in answer.headers.getlist("Set-Cookie")
    ]
    return {"Vary": answer.headers.get("Vary"), "Set-Cookie": cookies}


def test_saving_answers_the_same_headers_as_flask():
    """The shortcut for an empty, unchanged session must not change what any answer carries."""
    for path in ("/get", "/read-with-vary", "/untouched", "/clear", "/set"):
        for cookie in ("cookie", "no cookie"):
            ours = _headers_with(CookieSessions(), path, cookie)
            flasks = _headers_with(SecureCookieSessionInterface(), path, cookie)
            assert ours == flasks, (path, cookie)
