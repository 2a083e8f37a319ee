"""Browser tests: Debian's Chromium, driven by Playwright (Python), against the real app on a live server.

* ``live_server`` (one per session): the app on a fresh, migrated SQLite file, served by werkzeug in a thread on a
  free port, with an administrator and an API key already made. ``fresh_server`` makes another, empty one (for the
  first-run set-up page).
* ``browser`` (one per session) and ``page`` (a new browser context per test, laptop-sized). ``page`` fails the test
  when a script throws, a static file is missing, or the server logged an unhandled error during the test.
* ``tests/browser/support.py`` has the helpers the tests share (sign in, screenshots into ``tests/screenshots/``).

Never ``playwright install``: Chromium comes from apt (``bin/test`` installs it). Without ``/usr/bin/chromium`` the
browser tests are skipped, or fail when ``CI`` is true.
"""

from __future__ import annotations

import logging
import os
import shutil
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest
import requests

from tests.browser.support import ADMIN_EMAIL, ADMIN_NAME, LAPTOP, PASSWORD, sign_in

CHROMIUM = "/usr/bin/chromium"
LAUNCH_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
    "--disable-quic",
]
IN_CI = os.environ.get("CI", "").strip().lower() in ("1", "true", "yes")
TIMEOUT_MS = 15_000


# ---------------------------------------------------------------------------------------------------------------
# The live server


class _ErrorLog(logging.Handler):
    """Keeps what the app logs at ERROR (its handler of unexpected exceptions logs there), for the tests to check."""

    def __init__(self) -> None:
        super().__init__(level=logging.ERROR)
        self.records: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        text = record.getMessage()
        if record.exc_info:
            text += "\n" + logging.Formatter().formatException(record.exc_info)
        self.records.append(text)


@dataclass
class LiveServer:
    """The app served over HTTP; ``url`` has no trailing slash."""

    url: str
    app: object
    admin_key: str | None = None
    errors: list[str] = field(default_factory=list)

    # --- set-up through the service layer (the same calls the pages make) ---

    def create_user(self, email: str, name: str, role: str = "user", password: str = PASSWORD) -> str:
        from services import accounts

        with self.app.app_context():
            return accounts.create_user(name, email, password, role=role).id

    def create_key(self, email: str) -> str:
        from sqlalchemy import select

        from extensions import db
        from models import User
        from services import accounts

        with self.app.app_context():
            user = db.session.scalar(select(User).where(User.email == accounts.normalise_email(email)))
            return accounts.create_api_key(user, "browser tests")[1]

    # --- the JSON API, over HTTP like any script would use it ---

    def api(self, method: str, path: str, key: str | None = None, **kwargs) -> requests.Response:
        headers = {"Authorization": f"Bearer {key or self.admin_key}"}
        with requests.Session() as session:
            session.trust_env = False  # never route 127.0.0.1 through a proxy from the environment
            return session.request(method, self.url + path, headers=headers, timeout=30, **kwargs)

    def api_json(self, method: str, path: str, key: str | None = None, **kwargs):
        response = self.api(method, path, key, **kwargs)
        assert response.status_code == 200, f"{method} {path} → {response.status_code}: {response.text[:500]}"
        return response.json()

    def create_function(self, id: str, content: str, name: str | None = None, active: bool = False) -> dict:
        body = {"id": id, "name": name or id.replace("_", " ").title(), "content": content, "meta": {}}
        created = self.api_json("POST", "/api/v1/functions/create", json=body)
        if active:
            assert self.api_json("POST", f"/api/v1/functions/id/{id}/toggle")["is_active"] is True
        return created


def _start_server(db_path: Path, packages_dir: Path) -> tuple[LiveServer, callable]:
    from werkzeug.serving import make_server

    from app import create_app

    app = create_app(
        {
            "SQLALCHEMY_DATABASE_URI": f"sqlite:///{db_path}",
            "SECRET_KEY": "browser-tests-secret-key",
            "SLUICE_ALLOW_PRIVATE_URLS": True,
            "SLUICE_LOAD_TIMEOUT": 10.0,
            "SLUICE_FUNCTION_PACKAGES_DIR": str(packages_dir),
        }
    )
    error_log = _ErrorLog()
    app.logger.addHandler(error_log)
    logging.getLogger("web").addHandler(error_log)

    server = make_server("127.0.0.1", 0, app, threaded=True)
    thread = threading.Thread(target=server.serve_forever, name="sluice-live-server", daemon=True)
    thread.start()
    live = LiveServer(url=f"http://127.0.0.1:{server.server_port}", app=app, errors=error_log.records)

    def stop() -> None:
        from extensions import db

        server.shutdown()
        thread.join(timeout=10)
        server.server_close()
        app.logger.removeHandler(error_log)
        logging.getLogger("web").removeHandler(error_log)
        with app.app_context():
            db.session.remove()
            db.engine.dispose()

    return live, stop


@pytest.fixture(scope="session")
def live_server(sqlite_template, tmp_path_factory) -> Iterator[LiveServer]:
    """One server for the session, with an administrator (ADMIN_EMAIL / PASSWORD) and ``admin_key``."""
    folder = tmp_path_factory.mktemp("live")
    db_path = folder / "sluice.sqlite3"
    shutil.copy(sqlite_template, db_path)
    live, stop = _start_server(db_path, folder / "function-packages")
    try:
        live.create_user(ADMIN_EMAIL, ADMIN_NAME, role="admin")
        live.admin_key = live.create_key(ADMIN_EMAIL)
        yield live
    finally:
        stop()


@pytest.fixture
def fresh_server(sqlite_template, tmp_path) -> Iterator[LiveServer]:
    """A server on an empty database: no account at all."""
    db_path = tmp_path / "sluice.sqlite3"
    shutil.copy(sqlite_template, db_path)
    live, stop = _start_server(db_path, tmp_path / "function-packages")
    try:
        yield live
    finally:
        stop()


# ---------------------------------------------------------------------------------------------------------------
# The browser


@pytest.fixture(scope="session")
def browser():
    if not os.path.exists(CHROMIUM):
        reason = f"{CHROMIUM} is missing: install Debian's chromium (bin/test does it with apt when it may)"
        if IN_CI:
            pytest.fail(f"CI must run the browser tests, but {reason}", pytrace=False)
        pytest.skip(reason)
    from playwright.sync_api import expect, sync_playwright

    expect.set_options(timeout=TIMEOUT_MS)
    playwright = sync_playwright().start()
    try:
        chromium = playwright.chromium.launch(executable_path=CHROMIUM, args=LAUNCH_ARGS, headless=True)
        try:
            yield chromium
        finally:
            chromium.close()
    finally:
        playwright.stop()


class PageProblems:
    """What went wrong in the browser during a test that no assertion looks at: script errors, missing files."""

    def __init__(self, page, server_url: str) -> None:
        self.problems: list[str] = []
        page.on("pageerror", lambda error: self.problems.append(f"script error on {page.url}: {error}"))
        page.on("response", self._on_response)
        self.server_url = server_url

    def _on_response(self, response) -> None:
        url = response.url
        if url.startswith(self.server_url + "/static/") and response.status >= 400:
            self.problems.append(f"{response.status} for {url}")
        elif url.startswith(self.server_url) and response.status >= 500:
            self.problems.append(f"{response.status} for {response.request.method} {url}")


def _new_page(browser, server: LiveServer, viewport=LAPTOP):
    context = browser.new_context(base_url=server.url, viewport=viewport, locale="en-GB", timezone_id="UTC")
    context.set_default_timeout(TIMEOUT_MS)
    page = context.new_page()
    return context, page, PageProblems(page, server.url)


def _check_after(problems: PageProblems, server: LiveServer, errors_before: int) -> None:
    server_errors = server.errors[errors_before:]
    messages = problems.problems + [f"server logged: {text}" for text in server_errors]
    if messages:
        pytest.fail("Problems seen during the test:\n" + "\n".join(messages), pytrace=False)


def _checked_tab(browser, server: LiveServer):
    """A new tab on ``server``; when the test ends, what went wrong in it or on the server fails the test."""
    errors_before = len(server.errors)
    context, page, problems = _new_page(browser, server)
    yield page
    context.close()
    _check_after(problems, server, errors_before)


@pytest.fixture
def page(browser, live_server):
    """A new, signed-out browser tab on the live server (relative URLs go to it)."""
    yield from _checked_tab(browser, live_server)


@pytest.fixture
def fresh_page(browser, fresh_server):
    """A browser tab on ``fresh_server``."""
    yield from _checked_tab(browser, fresh_server)


@pytest.fixture
def new_page(browser, live_server):
    """Open more tabs in their own contexts (another account signed in beside the first)."""
    opened = []
    errors_before = len(live_server.errors)

    def open_page(viewport=LAPTOP):
        context, page, problems = _new_page(browser, live_server, viewport)
        opened.append((context, problems))
        return page

    yield open_page
    for context, _problems in opened:
        context.close()
    for _context, problems in opened:
        _check_after(problems, live_server, errors_before)


@pytest.fixture(scope="session")
def admin_cookies(browser, live_server) -> list:
    """The administrator's session cookie, from one real sign-in through the form (sessions are signed cookies)."""
    context, page, problems = _new_page(browser, live_server)
    try:
        sign_in(page, ADMIN_EMAIL)
        return context.cookies()
    finally:
        context.close()
        _check_after(problems, live_server, 0)


@pytest.fixture
def admin_page(page, admin_cookies):
    """``page``, signed in as the administrator."""
    page.context.add_cookies(admin_cookies)
    return page
