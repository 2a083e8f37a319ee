"""The server killed (SIGKILL, every process of it) in the middle of a write: after a restart, the data is exactly
as it was before that write or as it is after it, never in between.

The server is gunicorn started as ``bin/serve`` starts it (in the repository root, so that it reads
gunicorn.conf.py), on each database. Each write is sent once to learn how long it takes, then again and again with
the server killed at points spread over that time.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
import requests

from tests.reliability.conftest import http, make_accounts

ROOT = Path(__file__).resolve().parents[2]
GUNICORN = Path(sys.executable).with_name("gunicorn")
SYNCED = 500
# Where in a write's usual duration the server is killed.
CRASH_POINTS = (0.2, 0.6, 1.0)


def code(variant: int) -> str:
    return (
        f"from pydantic import BaseModel\n\n\nclass Filter:\n    class Valves(BaseModel):\n"
        f"        level: int = 0\n        label: str = ''\n\n    # variant {variant}\n"
        "    def inlet(self, body: dict) -> dict:\n        return body\n"
    )


CODE = code(0)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class Server:
    """gunicorn serving the app on ``database_url``, started again after each kill."""

    def __init__(self, database_url: str, key: str):
        self.database_url = database_url
        self.key = key
        self.process: subprocess.Popen | None = None
        self.url = ""

    def start(self) -> None:
        port = free_port()
        env = {
            **os.environ,
            "DATABASE_URL": self.database_url,
            "SECRET_KEY": "crash-tests-secret-key",
            "HOST": "127.0.0.1",
            "PORT": str(port),
            "SLUICE_WORKERS": "1",
            "SLUICE_THREADS": "4",
        }
        self.process = subprocess.Popen(
            [str(GUNICORN), "--limit-request-line", "8190", "app:create_app()"],
            cwd=ROOT,
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,  # its own process group: the kill takes every process of the server at once
        )
        self.url = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            try:
                if requests.get(self.url + "/health", timeout=2).status_code == 200:
                    return
            except requests.RequestException:
                pass
            assert self.process.poll() is None, "gunicorn did not start"
            time.sleep(0.1)
        raise AssertionError("gunicorn did not answer within 60 s")

    def kill(self) -> None:
        if self.process is not None and self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait(10)

    def api(self, method: str, path: str, **kwargs):
        with http() as session:
            return session.request(
                method,
                self.url + "/api/v1/functions" + path,
                headers={"Authorization": f"Bearer {self.key}"},
                timeout=120,
                **kwargs,
            )

    def snapshot(self) -> dict:
        """Everything a write could change, read from the database itself: each function's name, code, valves and
        switch, and how many versions it has."""
        from sqlalchemy import create_engine, func, select

        from models import Function, FunctionVersion

        engine = create_engine(self.database_url)
        try:
            with engine.connect() as conn:
                versions = dict(
                    conn.execute(
                        select(FunctionVersion.function_id, func.count()).group_by(
                            FunctionVersion.function_id
                        )
                    ).all()
                )
                rows = conn.execute(
                    select(Function.id, Function.name, Function.content, Function.valves, Function.is_active)
                ).all()
        finally:
            engine.dispose()
        return {
            row.id: (row.name, row.content, row.valves, row.is_active, versions.get(row.id, 0))
            for row in rows
        }

    def timed(self, method: str, path: str, json) -> float:
        started = time.monotonic()
        answer = self.api(method, path, json=json)
        assert answer.status_code == 200, answer.text[:300]
        return time.monotonic() - started

    def killed_during(self, method: str, path: str, json, after: float) -> None:
        """Send the write, kill the server ``after`` seconds later, and start it again."""
        sender = threading.Thread(target=self._send_ignoring_errors, args=(method, path, json), daemon=True)
        sender.start()
        time.sleep(after)
        self.kill()
        sender.join(30)
        self.start()

    def _send_ignoring_errors(self, method, path, json) -> None:
        try:
            self.api(method, path, json=json)
        except requests.RequestException:
            pass  # the server died under it, as it should


@pytest.fixture
def server(database_url):
    from app import create_app
    from extensions import db

    app = create_app({"SQLALCHEMY_DATABASE_URI": database_url, "SECRET_KEY": "crash-tests", "TESTING": True})
    key = make_accounts(app)["admin"]
    with app.app_context():
        db.session.remove()
        db.engine.dispose()
    server = Server(database_url, key)
    server.start()
    yield server
    server.kill()


def sync_body(look: int) -> dict:
    """All 500 functions, named and switched by ``look``: the code and valves stay, so that the sync is all writes
    (renaming and switching 500 functions, a new version of each) with no load of code before them."""
    items = [
        {
            "id": f"synced_{n:03d}",
            "name": f"Synced {n} look {look}",
            "content": CODE,
            "valves": {"level": 1},
            "is_active": look % 2 == 1,
        }
        for n in range(SYNCED)
    ]
    return {"functions": items}


def looks_like(state: dict, look: int) -> dict:
    """``state`` after a sync to ``look``: each function renamed and switched, with one more version."""
    body = {item["id"]: item for item in sync_body(look)["functions"]}
    return {
        fid: (body[fid]["name"], content, valves, body[fid]["is_active"], versions + 1)
        for fid, (_name, content, valves, _active, versions) in state.items()
    }


def test_killed_during_a_sync_of_500_functions(server):
    server.timed("POST", "/sync", sync_body(0))  # loads 500 functions: the slow part, done once
    previous = server.snapshot()
    assert len(previous) == SYNCED
    took = server.timed("POST", "/sync", sync_body(1))
    assert server.snapshot() == looks_like(previous, 1)
    previous, look = server.snapshot(), 1
    for point in CRASH_POINTS:
        look += 1
        server.killed_during("POST", "/sync", sync_body(look), took * point)
        now = server.snapshot()
        assert now in (previous, looks_like(previous, look)), f"between states after a kill at {point}"
        print(
            f"\nsync of {SYNCED} ({took:.2f} s) killed at {point:.0%}: {'after' if now != previous else 'before'}"
        )
        previous = now


@pytest.mark.parametrize("write", ["update", "valves"])
def test_killed_during_an_update_or_a_valves_write(server, write):
    body = {"id": "victim", "name": "Victim", "content": code(0), "meta": {}}
    assert server.api("POST", "/create", json=body).status_code == 200
    for n, point in enumerate(CRASH_POINTS, start=1):
        if write == "update":
            path, sent = "/id/victim/update", {**body, "name": f"Victim {n}", "content": code(n)}
        else:
            path, sent = "/id/victim/valves/update", {"level": n, "label": f"set {n}"}
        before = server.snapshot()
        took = server.timed("POST", path, sent)
        after = server.snapshot()
        # Back to the state before, through the same kind of write, then again with the kill.
        undo = (
            {**body, "name": before["victim"][0], "content": before["victim"][1]}
            if write == "update"
            else before["victim"][2]
        )
        server.timed("POST", path, undo)
        restored = server.snapshot()
        server.killed_during("POST", path, sent, took * point)
        now = server.snapshot()
        if write == "update":
            expected_after = {"victim": after["victim"][:4] + (restored["victim"][4] + 1,)}
        else:
            expected_after = after
        assert now in (restored, expected_after), f"between states after a kill at {point}: {now}"
        print(f"\n{write} ({took:.2f} s) killed at {point:.0%}: {'after' if now != restored else 'before'}")
