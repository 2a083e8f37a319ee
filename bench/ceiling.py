"""The ceiling for bench/compare.py: a bare Flask app answering JSON, served by gunicorn with Sluice's settings.

It answers `GET /api/v1/functions/` with twenty functions' worth of fixed JSON, and `/health`: no database, no
authentication. Sluice's requests/s are compared with it (the issue asks for at least half).

With `CEILING_DATABASE_URL` (a PostgreSQL database Sluice has filled), the same routes read their answer from it
instead, in one query each on a connection of the thread's own (psycopg, autocommit, prepared after a few runs):
what any Flask app that reads its answer from PostgreSQL on each request reaches, with nothing else to do.
bench/compare.py ("Flask + PostgreSQL read") and bench/perf_workers.py measure it beside Sluice on PostgreSQL, to tell
the database's share of the gap to the ceiling from Sluice's own.
"""

from __future__ import annotations

import os
import threading

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


DATABASE_URL = os.environ.get("CEILING_DATABASE_URL")
RESPONSE_KEYS = tuple(FUNCTIONS[0])
_LIST = f"SELECT {', '.join(RESPONSE_KEYS)} FROM functions ORDER BY updated_at DESC, id"
_ONE = f"SELECT {', '.join(RESPONSE_KEYS)}, content FROM functions WHERE id = %s"
_local = threading.local()


def _rows(query: str, parameters: tuple = ()) -> list[dict]:
    connection = getattr(_local, "connection", None)
    if connection is None:
        import psycopg
        from psycopg.rows import dict_row

        connection = psycopg.connect(DATABASE_URL, autocommit=True, row_factory=dict_row)
        _local.connection = connection
    return connection.execute(query, parameters).fetchall()


@app.get("/health")
def health():
    return jsonify({"status": True})


@app.get("/api/v1/functions/")
def functions():
    if DATABASE_URL:
        return jsonify(_rows(_LIST))
    return jsonify(FUNCTIONS)


@app.get("/api/v1/functions/id/<id>")
def function(id: str):
    if DATABASE_URL:
        found = _rows(_ONE, (id,))
        return (jsonify(found[0]), 200) if found else (jsonify({"detail": "not found"}), 404)
    return jsonify({**FUNCTIONS[0], "id": id, "content": "class Filter:\n    pass\n" * 40})
