"""Flask's signed-cookie sessions, with the signing serializer built once per set of keys.

Flask builds a new serializer (and with it a JSON round trip that checks it is a text serializer) for every
request, API calls that carry no cookie included: about 6 % of a small `GET /api/v1/functions/`. The keys rarely
change, so one serializer is kept per (secret key, fallbacks); a changed key still takes effect at the next request.

Saving an empty, unchanged session (every API call made with a key) does only what Flask does then, add
`Vary: Cookie` when the session was read, without first reading seven cookie settings and parsing the Vary header.
"""

from __future__ import annotations

from flask import Flask, Response
from flask.sessions import SecureCookieSessionInterface, SessionMixin
from itsdangerous import URLSafeTimedSerializer


class CookieSessions(SecureCookieSessionInterface):
    def __init__(self) -> None:
        self._serializer: tuple[tuple, URLSafeTimedSerializer | None] = ((), None)

    def get_signing_serializer(self, app: Flask) -> URLSafeTimedSerializer | None:
        keys = (app.secret_key, tuple(app.config.get("SECRET_KEY_FALLBACKS") or ()))
        cached_keys, serializer = self._serializer
        if cached_keys != keys:
            serializer = super().get_signing_serializer(app)
            self._serializer = (keys, serializer)  # one assignment: threads see the old pair or the new one
        return serializer

    def save_session(self, app: Flask, session: SessionMixin, response: Response) -> None:
        if session or session.modified:
            super().save_session(app, session, response)
        elif session.accessed:
            if "Vary" in response.headers:
                response.vary.add("Cookie")
            else:
                response.headers["Vary"] = "Cookie"
