"""The OpenAPI document of the JSON API, at /api/openapi.json."""

from __future__ import annotations

from flask import Blueprint, current_app

from web.openapi import document_text

bp = Blueprint("api_docs", __name__)


@bp.get("/api/openapi.json")
def openapi_json():
    """The OpenAPI 3.1 description of the JSON API; no credentials needed."""
    return current_app.response_class(document_text(), mimetype="application/json")
