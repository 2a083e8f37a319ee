"""Several instances on one PostgreSQL agree at once: a change made through one server is what the next request to
the other sees, its loader and runtime caches included.

Two gunicorn servers (one with two workers) on different ports share one database; skipped without PostgreSQL.
"""

from __future__ import annotations

import os
import re
import socket
import subprocess
import time
from pathlib import Path

import pytest
import requests

from tests.conftest import PASSWORD, POSTGRES, _truncate_postgres

pytestmark = pytest.mark.skipif(not POSTGRES, reason="needs PostgreSQL (TEST_DATABASE_URL)")

ROOT = Path(__file__).resolve().parent.parent
CODE = '''"""
title: Scale {version}
"""

from pydantic import BaseModel


class Filter:
    class Valves(BaseModel):
        tag: str = "none"

    class UserValves(BaseModel):
        mine: str = "unset"

    def __init__(self):
        self.valves = self.Valves()

    def inlet(self, body: dict, __user__: dict | None = None) -> dict:
        mine = getattr((__user__ or {{}}).get("valves"), "mine", None)
        body["seen"] = ["{version}", self.valves.tag, mine]
        return body
'''
CHAT = {"model": "m", "messages": [{"role": "user", "content": "hi"}]}


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


class Instance:
    """One server: its base URL and an admin key's session."""

    def __init__(self, port: int, key: str):
        self.base = f"http://127.0.0.1:{port}"
        self.http = requests.Session()
        self.http.headers["Authorization"] = f"Bearer {key}"

    def api(self, method: str, path: str, **kw) -> requests.Response:
        return self.http.request(method, f"{self.base}/api/v1/functions{path}", timeout=60, **kw)


@pytest.fixture(scope="module")
def database(postgres_url):
    yield postgres_url
    _truncate_postgres(postgres_url)


@pytest.fixture(scope="module")
def keys(database):
    """An admin's key and a user's key, made directly in the shared database."""
    from extensions import db
    from services import accounts
    from tests.conftest import make_app

    app = make_app(database)
    with app.app_context():
        admin = accounts.create_user("Ada", "admin@example.com", PASSWORD, role="admin")
        user = accounts.create_user("Uma", "user@example.com", PASSWORD, role="user")
        keys = accounts.create_api_key(admin, "a")[1], accounts.create_api_key(user, "u")[1]
        db.session.remove()
        db.engine.dispose()
    return keys


@pytest.fixture(scope="module")
def servers(database, keys, tmp_path_factory):
    folder = tmp_path_factory.mktemp("scale-out")
    env = {
        **os.environ,
        "DATABASE_URL": database,
        "SECRET_KEY": "scale-out-shared-secret-key",
        "SLUICE_FUNCTION_PACKAGES_DIR": str(folder / "packages"),
        "SLUICE_FUNCTION_HOMES_DIR": str(folder / "homes"),
        "SLUICE_INSTALL_JOBS_DIR": str(folder / "jobs"),
        "SLUICE_RUNTIME_WORKERS": "1",
    }
    started = []
    try:
        for workers in (1, 2):
            port = _free_port()
            command = [str(ROOT / ".venv/bin/gunicorn"), "--bind", f"127.0.0.1:{port}", "--workers", str(workers),
                       "--threads", "2", "app:create_app()"]  # fmt: skip
            log = open(folder / f"server-{port}.log", "w")  # noqa: SIM115 - closed below
            started.append((subprocess.Popen(command, cwd=ROOT, env=env, stderr=log, stdout=log), port, log))
        for _process, port, _log in started:
            _wait_healthy(port)
        yield [Instance(port, keys[0]) for _p, port, _l in started]
    finally:
        for process, _port, log in started:
            process.terminate()
            process.wait(timeout=30)
            log.close()


def _wait_healthy(port: int) -> None:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            if requests.get(f"http://127.0.0.1:{port}/health", timeout=2).status_code == 200:
                return
        except requests.RequestException:
            pass
        time.sleep(0.2)
    raise AssertionError(f"the server on port {port} did not become healthy")


def create(instance: Instance, fid: str, version: str = "v1") -> None:
    body = {"id": fid, "name": fid, "content": CODE.format(version=version), "meta": {"description": "d"}}
    response = instance.api("POST", "/create", json=body)
    assert response.status_code == 200, response.text


def run_inlet(instance: Instance, fid: str, key: str | None = None) -> requests.Response:
    headers = {"Authorization": f"Bearer {key}"} if key else None
    return instance.api("POST", f"/id/{fid}/run", json={"method": "inlet", "body": CHAT}, headers=headers)


def seen(instance: Instance, fid: str) -> list:
    response = run_inlet(instance, fid)
    assert response.status_code == 200 and response.json()["error"] is None, response.text
    return response.json()["result"]["seen"]


def test_what_one_server_writes_the_other_reads_next(servers):
    a, b = servers
    create(a, "shared")
    assert b.api("GET", "/id/shared").json()["content"] == CODE.format(version="v1")
    assert "shared" in [f["id"] for f in b.api("GET", "/").json()]

    update = {"id": "shared", "name": "Renamed", "content": CODE.format(version="v2"), "meta": {}}
    assert a.api("POST", "/id/shared/update", json=update).status_code == 200
    got = b.api("GET", "/id/shared").json()
    assert (got["name"], got["content"]) == ("Renamed", CODE.format(version="v2"))
    assert len(b.api("GET", "/id/shared/history").json()) == 2  # created, then updated

    assert a.api("POST", "/id/shared/toggle").json()["is_active"] is True
    assert b.api("GET", "/id/shared").json()["is_active"] is True
    assert a.api("POST", "/id/shared/toggle/global").json()["is_global"] is True
    assert b.api("GET", "/id/shared").json()["is_global"] is True

    assert a.api("POST", "/id/shared/valves/update", json={"tag": "from-a"}).status_code == 200
    assert b.api("GET", "/id/shared/valves").json() == {"tag": "from-a"}
    assert a.api("POST", "/id/shared/valves/user/update", json={"mine": "mine-a"}).status_code == 200
    assert b.api("GET", "/id/shared/valves/user").json() == {"mine": "mine-a"}

    assert a.api("DELETE", "/id/shared/delete").status_code == 200
    assert b.api("GET", "/id/shared").status_code == 404


def test_the_other_servers_warm_runtime_runs_the_new_code_and_valves(servers, keys):
    a, b = servers
    create(a, "warm")
    a.api("POST", "/id/warm/toggle")
    assert seen(b, "warm") == ["v1", "none", "unset"]  # b's worker now holds v1's instance

    update = {"id": "warm", "name": "warm", "content": CODE.format(version="v2"), "meta": {}}
    assert a.api("POST", "/id/warm/update", json=update).status_code == 200
    assert seen(b, "warm")[0] == "v2"

    a.api("POST", "/id/warm/valves/update", json={"tag": "t2"})
    assert seen(b, "warm")[1] == "t2"
    a.api("POST", "/id/warm/valves/user/update", json={"mine": "m2"})
    assert seen(b, "warm")[2] == "m2"

    # Switched off through one server, the other refuses the function to a user at once.
    assert run_inlet(b, "warm", key=keys[1]).status_code == 200
    a.api("POST", "/id/warm/toggle")
    assert run_inlet(b, "warm", key=keys[1]).status_code in (400, 404)


def test_signing_out_on_one_server_ends_the_session_on_the_other(servers):
    a, b = servers
    browser = requests.Session()  # cookies are kept per host, so one jar serves both ports
    page = browser.get(f"{a.base}/auth").text
    token = re.search(r'name="csrf-token" content="([^"]+)"', page).group(1)
    answer = browser.post(
        f"{a.base}/auth",
        data={"email": "admin@example.com", "password": PASSWORD, "csrf_token": token},
        allow_redirects=False,
    )
    assert answer.status_code == 302
    assert browser.get(f"{b.base}/api/v1/functions/").status_code == 200

    page = browser.get(f"{a.base}/admin/functions").text
    token = re.search(r'name="csrf-token" content="([^"]+)"', page).group(1)
    browser.post(f"{a.base}/auth/signout", data={"csrf_token": token}, allow_redirects=False)
    # The old cookie, replayed: the epoch it names has moved on in the shared database.
    browser.cookies.clear()
    browser.cookies.update(dict(answer.cookies))
    assert browser.get(f"{b.base}/api/v1/functions/").status_code == 401
