"""The functions JSON API (SPEC §3), mounted under both /api/functions and /api/v1/functions.

One blueprint and one route registry, filled by the modules of this package by area; routes parse, call one
service function and answer, and the rules live in ``services``. The OpenAPI document is built from the same
registry (``web.openapi``) and served by ``docs``.
"""

from __future__ import annotations

from flask import Blueprint, Flask

from blueprints.api.schemas import HTTPError, ValidationErrorResponse
from models import ID_PATTERN
from web.openapi import CONVERTERS, RouteRegistry, publish

PREFIXES = ("/api/functions", "/api/v1/functions")

bp = Blueprint("api_functions", __name__)
api = RouteRegistry(
    bp,
    PREFIXES,
    tag="functions",
    error_model=HTTPError,
    invalid_model=ValidationErrorResponse,
    path_patterns={"id": ID_PATTERN.pattern},
)
publish(api)

# The routes register themselves on ``api`` when their modules are imported; this order is the document's.
# ``audit`` has a registry of its own, under /api/audit and /api/v1/audit.
from blueprints.api import audit, docs, functions, history, requirements, running, valves  # noqa: E402, F401


def register(app: Flask) -> None:
    app.url_map.converters.update(CONVERTERS)
    app.register_blueprint(bp, url_prefix=PREFIXES[1], name="api_functions")
    app.register_blueprint(bp, url_prefix=PREFIXES[0], name="api_functions_legacy")
    app.register_blueprint(docs.bp)
    audit.register(app)
