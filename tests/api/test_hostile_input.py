"""Hostile requests to the JSON API get a clean 4xx in JSON: wrong methods, oversized bodies, invalid UTF-8, huge
ids. (NUL, lone surrogates, infinite numbers and deep nesting are in test_errors.py.)"""

from __future__ import annotations

import re

import pytest
from werkzeug.exceptions import MethodNotAllowed, NotFound
from werkzeug.routing import RequestRedirect

from tests.api.conftest import PREFIXES

METHODS = ("GET", "POST", "PUT", "PATCH", "DELETE")


def test_no_path_is_routed_to_another_paths_rule_for_a_method_it_lacks(app):
    """A method a path does not have is 405, never a neighbouring rule whose variable happens to match."""
    adapter = app.url_map.bind("localhost")
    misrouted = []
    for rule in app.url_map.iter_rules():
        path = re.sub(r"<[^>]+>", "x", rule.rule)
        for method in METHODS:
            try:
                matched, _ = adapter.match(path, method, return_rule=True)
            except (MethodNotAllowed, NotFound, RequestRedirect):
                continue
            if matched.rule != rule.rule:
                misrouted.append((method, path, matched.rule))
    assert misrouted == []


@pytest.mark.parametrize("prefix", PREFIXES)
def test_deleting_the_history_diff_is_405_not_a_version_named_diff(admin_api, sample, prefix):
    response = admin_api.client.delete(prefix + "/id/sample_filter/history/diff", headers=admin_api.headers())
    assert response.status_code == 405
    assert response.get_json() == {"detail": "Method not allowed"}
    allowed = response.headers["Allow"].split(", ")
    assert "GET" in allowed and "DELETE" not in allowed
    # A version id that merely starts with the word is still a version id.
    assert admin_api.delete("/id/sample_filter/history/diffs").status_code == 404


MIB = 1024 * 1024
DEEP = b"[" * 100_000 + b"]" * 100_000
HOSTILE = [
    # (method, path, body): every answer is a 4xx with a JSON detail, never an HTML page or a 5xx.
    ("POST", "/api/v1/functions/create", b"x" * (MIB + 1)),
    ("POST", "/api/v1/functions/sync", b'{"functions": [' + b" " * MIB + b"]}"),
    ("POST", "/api/v1/functions/create", b'{"id": "a", "name": "\xff\xfe", "content": "x"}'),
    ("POST", "/api/v1/functions/id/sample_filter/valves/update", b"\xc3\x28"),
    ("POST", "/api/v1/functions/sync", b'{"functions": ' + DEEP + b"}"),
    ("POST", "/api/v1/functions/create", b'{"id": "' + b"a" * 100_000 + b'", "name": "x", "content": "x"}'),
    ("GET", "/api/v1/functions/id/" + "a" * 100_000, None),
    ("POST", "/api/v1/functions/id/" + "a" * 100_000 + "/update", b'{"name": "x", "content": "x"}'),
    ("GET", "/api/v1/functions/id/%ff%fe/history/%00", None),
    ("GET", "/api/v1/functions/id/sample_filter/history/diff?from_id=%ff&to_id=" + "b" * 100_000, None),
    ("GET", "/api/v1/functions/export?include_valves=%ff", None),
    ("GET", "/api/v1/functions/id/sample_filter/history?page=" + "9" * 5000, None),
    ("POST", "/v1/chat/completions", b"x" * (MIB + 1)),
    ("POST", "/v1/chat/completions", b'{"model": "\xff"}'),
    ("POST", "/v1/chat/completions", b'{"model": ' + DEEP + b"}"),
    ("POST", "/v1/sample_filter/filter/inlet", b'{"user": {}, "body": ' + DEEP + b"}"),
    ("POST", "/v1/" + "a" * 100_000 + "/filter/inlet", b"{}"),
    ("POST", "/v1/sample_filter/valves/update", b"\xff\xfe"),
]


@pytest.mark.parametrize("app_config", [{"SLUICE_MAX_REQUEST_MB": 1}])
@pytest.mark.parametrize("method, path, body", HOSTILE, ids=[f"{m} {p[:60]}" for m, p, _ in HOSTILE])
def test_hostile_requests_get_a_clean_json_4xx(app, admin_api, sample, app_config, method, path, body):
    app.config["PROPAGATE_EXCEPTIONS"] = False  # a crash must show as the 500 it would be, not raise here
    headers = admin_api.headers({"Content-Type": "application/json"})
    response = admin_api.client.open(path, method=method, data=body, headers=headers)
    assert 400 <= response.status_code < 500, response.data[:300]
    assert response.is_json and isinstance(response.get_json()["detail"], (str, list))
    if body is not None and len(body) > MIB:
        assert response.status_code == 413


def test_what_gunicorn_refuses_before_the_app_is_json_too(tmp_path):
    """A request line over `--limit-request-line` (bin/serve's 8190) or oversized headers never reach Flask:
    gunicorn answers them, in JSON like the API (gunicorn.conf.py)."""
    import json
    import os
    import socket
    import subprocess
    import sys
    import time

    root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    env = {
        **os.environ,
        "DATABASE_URL": f"sqlite:///{tmp_path / 'served.sqlite3'}",
        "SECRET_KEY": "test",
        "HOST": "127.0.0.1",
        "PORT": str(port),
        "SLUICE_WORKERS": "1",
        "SLUICE_THREADS": "1",
    }
    gunicorn = os.path.join(os.path.dirname(sys.executable), "gunicorn")
    server = subprocess.Popen(
        [gunicorn, "--limit-request-line", "8190", "app:create_app()"],
        cwd=root,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )

    def ask(raw: bytes) -> tuple[str, dict, dict]:
        for _ in range(300):  # until gunicorn listens (a minute at most on a loaded machine)
            try:
                connection = socket.create_connection(("127.0.0.1", port), timeout=10)
                break
            except OSError:
                time.sleep(0.2)
        with connection:
            connection.sendall(raw)
            answer = b""
            while chunk := connection.recv(65536):
                answer += chunk
        head, _, body = answer.partition(b"\r\n\r\n")
        status, *lines = head.decode("latin-1").split("\r\n")
        headers = {name.lower(): value.strip() for name, _, value in (line.partition(":") for line in lines)}
        return status, headers, json.loads(body)

    try:
        status, headers, body = ask(
            b"GET /api/v1/functions/id/" + b"a" * 9000 + b" HTTP/1.1\r\nHost: x\r\n\r\n"
        )
        assert status.split()[1] == "414" and headers["content-type"] == "application/json"
        assert body["detail"].startswith("URI Too Long")
        status, headers, body = ask(
            b"GET /api/v1/functions/ HTTP/1.1\r\nHost: x\r\nX-Big: " + b"b" * 20000 + b"\r\n\r\n"
        )
        assert status.split()[1].startswith("4") and headers["content-type"] == "application/json"
        assert isinstance(body["detail"], str)
    finally:
        server.terminate()
        server.wait(timeout=30)
