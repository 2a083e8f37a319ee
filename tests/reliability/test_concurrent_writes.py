"""Sixteen clients writing at once through the served app, on each database: no 5xx, no "database is locked", and
the state left at the end is exactly what the clients' answers said.

Each client owns two functions and changes them at random (update, toggle, valves, its own user valves, delete and
create again), so it knows what each answer must say; all of them also toggle one shared function, whose final
switch must account for every flip they were answered. Now and then a client syncs: a sync replaces the whole set
of functions, so the test holds the others back while it runs (its answer can only be predicted on a still set).

``SLUICE_STRESS_SECONDS`` sets how long the clients write (10 s here; ``bench/stress_writes.py`` runs a minute).
"""

from __future__ import annotations

import os
import random
import threading
import time
from collections import Counter
from contextlib import contextmanager
from dataclasses import dataclass, field

import pytest

from tests.reliability.conftest import serve

SECONDS = float(os.environ.get("SLUICE_STRESS_SECONDS", "10"))
CLIENTS = 16
OWN = 2
SHARED = "shared_switch"
VARIANTS = 3


def code(variant: int) -> str:
    """Three versions of one filter, so that loads are mostly answered from the loader's cache."""
    return (
        f'"""\ntitle: Variant {variant}\n"""\n\nfrom pydantic import BaseModel\n\n\nclass Filter:\n'
        f"    class Valves(BaseModel):\n        level: int = {variant}\n\n"
        "    class UserValves(BaseModel):\n        note: str = ''\n\n"
        "    def inlet(self, body: dict) -> dict:\n        return body\n"
    )


@dataclass
class Expected:
    """What the server must hold for one function, as its owner's answers said."""

    exists: bool = True
    name: str = ""
    content: str = ""
    is_active: bool = False
    valves: dict = field(default_factory=dict)
    user_valves: dict = field(default_factory=dict)


class SharedExclusive:
    """Many clients at once, or one syncing client alone."""

    def __init__(self):
        self._cond = threading.Condition()
        self._readers = 0
        self._writing = False

    @contextmanager
    def shared(self):
        with self._cond:
            self._cond.wait_for(lambda: not self._writing)
            self._readers += 1
        try:
            yield
        finally:
            with self._cond:
                self._readers -= 1
                self._cond.notify_all()

    @contextmanager
    def exclusive(self):
        with self._cond:
            self._cond.wait_for(lambda: not self._writing)
            self._writing = True
            self._cond.wait_for(lambda: self._readers == 0)
        try:
            yield
        finally:
            with self._cond:
                self._writing = False
                self._cond.notify_all()


class Writers:
    def __init__(self, served):
        self.served = served
        self.expected: dict[str, Expected] = {}
        self.shared_flips = 0
        self.lock = threading.Lock()  # the test's own bookkeeping, never held across a request
        self.gate = SharedExclusive()
        self.counts: Counter = Counter()
        self.problems: list[str] = []

    def call(self, op: str, method: str, path: str, **kwargs):
        answer = self.served.api(method, path, **kwargs)
        with self.lock:
            self.counts[op] += 1
            if answer.status_code >= 500 or "locked" in answer.text:
                self.problems.append(f"{op} {path}: {answer.status_code} {answer.text[:300]}")
        return answer

    def expect(self, answer, op: str, check) -> None:
        try:
            assert answer.status_code == 200, answer.text[:300]
            check(answer.json())
        except AssertionError as error:
            with self.lock:
                self.problems.append(f"{op}: {error}")

    # --- one client's operations on a function it owns ------------------------------------------------------

    def create(self, function_id: str, rng: random.Random) -> None:
        variant = rng.randrange(VARIANTS)
        body = {"id": function_id, "name": f"{function_id} {variant}", "content": code(variant), "meta": {}}
        answer = self.call("create", "POST", "/create", json=body)
        self.expect(answer, "create", lambda got: None)
        if answer.status_code == 200:
            self.expected[function_id] = Expected(name=body["name"], content=body["content"])

    def act(self, function_id: str, rng: random.Random) -> None:
        mine = self.expected[function_id]
        if not mine.exists:
            return self.create(function_id, rng)
        op = rng.choice(["update", "toggle", "valves", "user_valves", "delete", "shared"])
        if op == "update":
            variant = rng.randrange(VARIANTS)
            name = f"{function_id} {variant} {rng.randrange(1000)}"
            body = {"id": function_id, "name": name, "content": code(variant), "meta": {}}
            answer = self.call(op, "POST", f"/id/{function_id}/update", json=body)
            if answer.status_code == 200:
                mine.name, mine.content = name, body["content"]
            self.expect(answer, op, lambda got: None)
        elif op == "toggle":
            answer = self.call(op, "POST", f"/id/{function_id}/toggle")
            if answer.status_code == 200:
                mine.is_active = not mine.is_active
            self.expect(answer, op, lambda got: _equal(got["is_active"], mine.is_active))
        elif op == "valves":
            values = {"level": rng.randrange(100)}
            answer = self.call(op, "POST", f"/id/{function_id}/valves/update", json=values)
            if answer.status_code == 200:
                mine.valves = values
            self.expect(answer, op, lambda got: _equal(got, values))
        elif op == "user_valves":
            values = {"note": f"n{rng.randrange(1000)}"}
            answer = self.call(op, "POST", f"/id/{function_id}/valves/user/update", json=values)
            if answer.status_code == 200:
                mine.user_valves = values
            self.expect(answer, op, lambda got: _equal(got, values))
        elif op == "delete":
            answer = self.call(op, "DELETE", f"/id/{function_id}/delete")
            if answer.status_code == 200:
                self.expected[function_id] = Expected(exists=False)
            self.expect(answer, op, lambda got: _equal(got, True))
        else:
            answer = self.call("toggle shared", "POST", f"/id/{SHARED}/toggle")
            if answer.status_code == 200:
                with self.lock:
                    self.shared_flips += 1
            self.expect(answer, "toggle shared", lambda got: None)

    def sync(self, rng: random.Random) -> None:
        """Every function listed as the clients' answers left it, one of them renamed: nothing else changes."""
        with self.gate.exclusive():
            with self.lock:
                listed = {fid: e for fid, e in self.expected.items() if e.exists}
                shared_active = self.shared_flips % 2 == 1
            renamed = rng.choice(sorted(listed))
            listed[renamed].name = f"{renamed} synced {rng.randrange(1000)}"
            items = [
                {
                    "id": fid,
                    "name": e.name,
                    "content": e.content,
                    "meta": {},
                    "is_active": e.is_active,
                    "valves": e.valves,
                }
                for fid, e in listed.items()
            ]
            items.append({"id": SHARED, "name": "Shared", "content": code(0), "is_active": shared_active})
            answer = self.call("sync", "POST", "/sync", json={"functions": items})
            self.expect(
                answer, "sync", lambda got: _equal(sorted(f["id"] for f in got), sorted(listed) + [SHARED])
            )

    def client(self, number: int, until: float) -> None:
        rng = random.Random(number)
        owned = [f"c{number}_f{k}" for k in range(OWN)]
        while time.monotonic() < until:
            if number < 2 and rng.random() < 0.1:
                self.sync(rng)
                continue
            with self.gate.shared():
                self.act(rng.choice(owned), rng)


def _equal(got, wanted) -> None:
    assert got == wanted, f"answered {got!r}, expected {wanted!r}"


@pytest.fixture
def served(database_url):
    # Enough load slots for every client: the busy answer (503) is the hostile tests' subject, not this one's.
    with serve(database_url, SLUICE_MAX_CONCURRENT_LOADS=CLIENTS) as served:
        yield served


def test_sixteen_clients_writing_at_once_lose_nothing(served):
    writers = Writers(served)
    rng = random.Random(99)
    for number in range(CLIENTS):
        for k in range(OWN):
            writers.create(f"c{number}_f{k}", rng)
    body = {"id": SHARED, "name": "Shared", "content": code(0), "meta": {}}
    assert served.api("POST", "/create", json=body).status_code == 200
    assert not writers.problems, writers.problems

    until = time.monotonic() + SECONDS
    threads = [threading.Thread(target=writers.client, args=(n, until)) for n in range(CLIENTS)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(SECONDS + 120)
    assert not any(thread.is_alive() for thread in threads)
    assert not writers.problems, writers.problems[:10]
    assert sum(writers.counts.values()) > CLIENTS

    stored = {f["id"]: f for f in served.api("GET", "/export?include_valves=true").json()}
    wanted = {fid for fid, e in writers.expected.items() if e.exists} | {SHARED}
    assert set(stored) == wanted
    for function_id, e in writers.expected.items():
        if not e.exists:
            continue
        f = stored[function_id]
        assert (f["name"], f["content"], f["is_active"], f["valves"] or {}) == (
            e.name,
            e.content,
            e.is_active,
            e.valves,
        ), function_id
        mine = served.api("GET", f"/id/{function_id}/valves/user").json()
        assert (mine or {}) == e.user_valves, function_id
    assert stored[SHARED]["is_active"] is (writers.shared_flips % 2 == 1)
    print(f"\n{sum(writers.counts.values())} writes in {SECONDS:g} s: {dict(writers.counts)}")
