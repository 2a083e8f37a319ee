"""The menu every page shows, and which entry the current page belongs to."""

from flask import Flask, has_request_context, request

from services import safe_mode

NAV_LINKS = [
    ("console.functions_list", "Functions", True),
    ("users.users_list", "Users", True),
    ("audit.audit_log", "Audit", True),
    ("settings.valves", "My valves", False),
    ("settings.keys", "API keys", False),
]


# The menu entry a page belongs to, by blueprint (every functions page, the valves included, is under Functions);
# a blueprint not named here belongs to the entry of its own endpoint (My valves and API keys share one).
NAV_SECTIONS = {
    "console": "console.functions_list",
    "valves": "console.functions_list",
    "history": "console.functions_list",
    "users": "users.users_list",
    "audit": "audit.audit_log",
}


def install_template_globals(app: Flask) -> None:
    endpoints = frozenset(app.view_functions)

    @app.context_processor
    def navigation():
        blueprint = request.blueprint if has_request_context() else None
        current = NAV_SECTIONS.get(blueprint or "") or (request.endpoint if blueprint else None)
        return {
            "nav_links": NAV_LINKS,
            "endpoints": endpoints,
            "nav_current": current,
            "safe_mode": safe_mode.is_on(),
        }
