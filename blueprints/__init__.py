"""Blueprints: HTML pages (sign-in, settings, the admin pages in ``admin``) and the JSON API (``api``)."""

from flask import Flask


def register_blueprints(app: Flask) -> None:
    from blueprints import api, auth, gateway, settings, system
    from blueprints.admin import audit, functions, history, users, valves

    app.register_blueprint(system.bp)
    app.register_blueprint(auth.bp)
    for module in (api, gateway, functions, history, valves, settings, users, audit):
        module.register(app)
