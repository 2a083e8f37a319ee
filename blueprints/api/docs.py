"""The OpenAPI document of the JSON API, at /api/openapi.json and the conventional /openapi.json, and as a page."""

from __future__ import annotations

import json

from flask import Blueprint, current_app, render_template

from web.openapi import document_text

bp = Blueprint("api_docs", __name__)


@bp.get("/api/openapi.json")
@bp.get("/openapi.json", endpoint="openapi_json_root")
def openapi_json():
    """The OpenAPI 3.1 description of the JSON API; no credentials needed."""
    return current_app.response_class(document_text(), mimetype="application/json")


@bp.get("/api/docs")
def api_docs():
    """The same document as a page to read: every route with its summary, parameters and answers."""
    return render_template("api/docs.html", document=json.loads(document_text()))
