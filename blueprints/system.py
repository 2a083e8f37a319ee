"""Operational routes: health check and the home redirect."""

from flask import Blueprint, jsonify, redirect, url_for
from flask_login import current_user
from sqlalchemy import text

from extensions import db

bp = Blueprint("system", __name__)


@bp.get("/health")
def health():
    """Answer whether the database answers."""
    try:
        db.session.execute(text("SELECT 1"))
    except Exception:
        db.session.rollback()
        return jsonify({"status": False}), 503
    return jsonify({"status": True})


@bp.get("/")
def home():
    """Send each account to where its work is."""
    if not current_user.is_authenticated:
        return redirect(url_for("auth.sign_in"))
    if current_user.is_admin:
        return redirect(url_for("console.functions_list"))
    return redirect(url_for("settings.valves"))
