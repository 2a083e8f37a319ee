"""Blueprints: HTML pages and the JSON API, in separate modules."""

from flask import Flask


def register_blueprints(app: Flask) -> None:
    from blueprints import auth, system

    app.register_blueprint(system.bp)
    app.register_blueprint(auth.bp)
    # The API and console blueprints register themselves here as they are written.
    for module_name in ("api_functions", "console", "valves", "settings", "users"):
        try:
            module = __import__(f"blueprints.{module_name}", fromlist=["register"])
        except ModuleNotFoundError as exc:
            if exc.name != f"blueprints.{module_name}":
                raise
            continue
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
