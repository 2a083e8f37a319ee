"""Blueprints: HTML pages and the JSON API, in separate modules."""

from flask import Flask


def register_blueprints(app: Flask) -> None:
    from blueprints import api_functions, auth, console, settings, system, users, valves

    app.register_blueprint(system.bp)
    app.register_blueprint(auth.bp)
    for module in (api_functions, console, valves, settings, users):
        module.register(app)


NAV_LINKS = [
    ("console.functions_list", "Functions", True),
    ("users.users_list", "Users", True),
    ("settings.valves", "My valves", False),
    ("settings.keys", "API keys", False),
]


def install_template_globals(app: Flask) -> None:
    endpoints = frozenset(app.view_functions)

    @app.context_processor
    def navigation():
        return {"nav_links": NAV_LINKS, "endpoints": endpoints}
