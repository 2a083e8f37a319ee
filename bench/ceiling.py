"""The ceiling for bench/compare.py: a bare Flask app answering JSON, served by gunicorn with Sluice's settings.

It answers `GET /api/v1/functions/` with twenty functions' worth of fixed JSON, and `/health`: no database, no
authentication. Sluice's requests/s are compared with it (the issue asks for at least half).
"""

from __future__ import annotations

from flask import Flask, jsonify

app = Flask(__name__)
app.json.sort_keys = False

FUNCTIONS = [
    {
        "version_id": None,
        "id": f"function_{n}",
        "user_id": "00000000-0000-0000-0000-000000000000",
        "type": "filter",
        "name": f"Function {n}",
        "meta": {"description": "A function", "manifest": {"title": f"Function {n}", "version": "1.0"}},
        "is_active": True,
        "is_global": False,
        "updated_at": 1_700_000_000 + n,
        "created_at": 1_700_000_000,
    }
    for n in range(20)
]


@app.get("/health")
def health():
    return jsonify({"status": True})


@app.get("/api/v1/functions/")
def functions():
    return jsonify(FUNCTIONS)


@app.get("/api/v1/functions/id/<id>")
def function(id: str):
    return jsonify({**FUNCTIONS[0], "id": id, "content": "class Filter:\n    pass\n" * 40})
