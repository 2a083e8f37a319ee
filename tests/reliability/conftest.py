"""Reliability tests: the app served over real HTTP while something misbehaves, and what it keeps.

* ``serve(database_url, **config)``: the app on a werkzeug server in a thread, on a free port, with an admin, a user
  and their API keys; ``Served.api`` speaks JSON over HTTP and ``Served.console()`` signs an admin in for the
  console's forms.
* ``Probe``: a thread asking ``GET /health`` meanwhile, keeping the worst latency it saw.
* ``tagged``/``still_running``: function code names its processes (``TAG``), so a test can tell none are left.
"""

from __future__ import annotations

import contextlib
import dataclasses
import html
import logging
import os
import re
import threading
import time
import uuid
from dataclasses import dataclass, field

import pytest
import requests

from tests.conftest import PASSWORD
from tests.live_server import served

# The worst latency /health may show while a case runs: a correctness bound (the server answers at all), far above
# what it takes when idle, so that two busy cores do not make it flaky.
PROBE_BOUND = float(os.environ.get("SLUICE_TEST_PROBE_BOUND", "2.0"))


def http() -> requests.Session:
    session = requests.Session()
    session.trust_env = False  # never route 127.0.0.1 through a proxy from the environment
    return session


@dataclass
class Served:
    """The app served over HTTP; ``url`` has no trailing slash."""

    url: str
    app: object
    keys: dict[str, str] = field(default_factory=dict)

    def api(self, method: str, path: str, key: str = "admin", timeout: float = 60, **kwargs):
        headers = {"Authorization": f"Bearer {self.keys[key]}"}
        with http() as session:
            return session.request(
                method, self.url + "/api/v1/functions" + path, headers=headers, timeout=timeout, **kwargs
            )

    def console(self, email: str = "admin@example.com") -> Console:
        return Console(self.url, email)


class Console:
    """A signed-in browser session, posting the console's forms as a browser would (with the CSRF token)."""

    def __init__(self, url: str, email: str):
        self.url = url
        self.session = http()
        token = self.token("/auth")
        answer = self.session.post(
            url + "/auth",
            data={"email": email, "password": PASSWORD, "csrf_token": token},
            allow_redirects=False,
            timeout=30,
        )
        assert answer.status_code == 302, answer.text[:300]

    def token(self, path: str) -> str:
        page = self.session.get(self.url + path, timeout=30)
        match = re.search(r'name="csrf-token" content="([^"]+)"', page.text)
        assert match, f"no CSRF token on {path} ({page.status_code})"
        return match.group(1)

    def get(self, path: str, **kwargs):
        return self.session.get(self.url + path, timeout=60, **kwargs)

    def post(self, path: str, data: dict, **kwargs):
        data = {**data, "csrf_token": self.token(path)}
        return self.session.post(self.url + path, data=data, allow_redirects=False, timeout=60, **kwargs)


def page_text(response) -> str:
    """A page's text with its markup's escapes undone, to look for a message in it."""
    return html.unescape(response.text)


def make_accounts(app) -> dict[str, str]:
    from services import accounts

    with app.app_context():
        admin = accounts.create_user("Ada Admin", "admin@example.com", PASSWORD, role="admin")
        user = accounts.create_user("Uma User", "user@example.com", PASSWORD, role="user")
        return {
            "admin": accounts.create_api_key(admin, "admin")[1],
            "user": accounts.create_api_key(user, "user")[1],
        }


@contextlib.contextmanager
def serve(database_url: str, **config):
    """The app on ``database_url`` served over HTTP in a thread; the loader's settings come back afterwards."""
    from app import create_app
    from loader import client

    before = client.settings()
    logging.getLogger("werkzeug").setLevel(logging.WARNING)  # the probe's hundreds of requests are no news
    app = create_app({"SQLALCHEMY_DATABASE_URI": database_url, "SECRET_KEY": "reliability-tests", **config})
    keys = make_accounts(app)
    try:
        with served(app, "sluice-reliability-server") as url:
            yield Served(url=url, app=app, keys=keys)
    finally:
        client.configure(**dataclasses.asdict(before))


class Probe:
    """Asks ``GET /health`` every few milliseconds in a thread; ``worst`` is the slowest answer (or failure) seen."""

    def __init__(self, url: str, every: float = 0.05):
        self.url = url + "/health"
        self.every = every
        self.worst = 0.0
        self.count = 0
        self.failures: list[str] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="sluice-health-probe", daemon=True)

    def _run(self) -> None:
        with http() as session:
            while not self._stop.is_set():
                started = time.monotonic()
                try:
                    answer = session.get(self.url, timeout=30)
                    if answer.status_code != 200:
                        self.failures.append(f"{answer.status_code} {answer.text[:100]}")
                except requests.RequestException as error:
                    self.failures.append(repr(error))
                self.worst = max(self.worst, time.monotonic() - started)
                self.count += 1
                self._stop.wait(self.every)

    def __enter__(self) -> Probe:
        self._thread.start()
        return self

    def __exit__(self, *exc_info) -> None:
        self._stop.set()
        self._thread.join(35)


# --- processes that function code started ----------------------------------------------------------------------


def new_tag() -> str:
    """A process name (`comm`, at most 15 characters) unique to one case."""
    return "sl" + uuid.uuid4().hex[:12]


def tagged(tag: str, code: str) -> str:
    """``code`` that first names its process ``tag``; processes it forks inherit the name."""
    return f"import ctypes as _ctypes\n_ctypes.CDLL(None).prctl(15, {tag.encode()!r}, 0, 0, 0)\n{code}"


def named(tag: str) -> list[int]:
    """The pids of live processes named ``tag`` (a zombie has ended: its parent only has not reaped it yet)."""
    found = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        with contextlib.suppress(OSError):
            with open(f"/proc/{entry}/stat") as stat:
                name, rest = stat.read().split("(", 1)[1].rsplit(")", 1)
            if name == tag and rest.split()[0] not in ("Z", "X"):
                found.append(int(entry))
    return found


def still_running(tag: str, within: float = 5.0) -> list[int]:
    """The processes named ``tag`` left once ``within`` seconds have passed (an empty list as soon as none are)."""
    deadline = time.monotonic() + within
    while True:
        left = named(tag)
        if not left or time.monotonic() > deadline:
            return left
        time.sleep(0.05)


@pytest.fixture
def sqlite_url(sqlite_template, tmp_path):
    import shutil

    path = tmp_path / "sluice.sqlite3"
    shutil.copy(sqlite_template, path)
    return f"sqlite:///{path}"
