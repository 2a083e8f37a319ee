"""The gateway under test: the app served over HTTP (werkzeug in a thread, on a free port), with accounts, keys
and the functions of ``tests/gateway/functions.py`` already stored and switched on."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from dataclasses import dataclass, field

import pytest

from tests.conftest import PASSWORD
from tests.gateway import functions as sources
from tests.live_server import served

# id: (source, active, global)
FUNCTIONS = {
    "echo": (sources.ECHO, True, False),
    "multi": (sources.MULTI, True, False),
    "broken": (sources.BROKEN, True, False),
    "whoami": (sources.WHOAMI, True, False),
    "proxy": (sources.PROXY, True, False),
    "endless": (sources.ENDLESS, True, False),
    "marker": (sources.MARKER, True, True),
    "upper": (sources.UPPER, True, True),
    "refuser": (sources.REFUSER, False, True),
}


@dataclass
class Gateway:
    """The live server: ``base`` is what an OpenAI client takes as its base URL (``<sluice>/v1``)."""

    url: str
    app: object
    keys: dict[str, str] = field(default_factory=dict)

    @property
    def base(self) -> str:
        return self.url + "/v1"

    def client(self, key: str = "user"):
        import openai

        return openai.OpenAI(base_url=self.base, api_key=self.keys.get(key, key), max_retries=0, timeout=60)

    def switch(self, function_id: str, *, active: bool) -> None:
        from services import functions

        with self.app.app_context():
            functions.set_switches(function_id, is_active=active)


def setup_accounts_and_functions(app) -> dict[str, str]:
    """Accounts (admin, user, other), their keys, a connection key, the functions and some user valves."""
    from services import accounts, functions, valves

    keys = {}
    with app.app_context():
        admin = accounts.create_user("Ada Admin", "admin@example.com", PASSWORD, role="admin")
        user = accounts.create_user("Uma User", "user@example.com", PASSWORD, role="user")
        other = accounts.create_user("Otto Other", "other@example.com", PASSWORD, role="user")
        keys["admin"] = accounts.create_api_key(admin, "admin")[1]
        keys["user"] = accounts.create_api_key(user, "user")[1]
        keys["other"] = accounts.create_api_key(other, "other")[1]
        keys["connection"] = accounts.create_api_key(admin, "open webui", connection=True)[1]
        for function_id, (content, active, is_global) in FUNCTIONS.items():
            functions.create_function(
                admin, id=function_id, name=function_id.title(), content=content, meta={}
            )
            functions.set_switches(function_id, is_active=active, is_global=is_global)
        valves.update_user_valves(user, "whoami", {"greeting": "hi"})
        valves.update_user_valves(user, "marker", {"tag": "uma"})
        valves.update_user_valves(other, "whoami", {"greeting": "ahoy"})
    return keys


@pytest.fixture(scope="session")
def gateway(sqlite_template, tmp_path_factory) -> Iterator[Gateway]:
    from app import create_app

    folder = tmp_path_factory.mktemp("gateway")
    db_path = folder / "sluice.sqlite3"
    shutil.copy(sqlite_template, db_path)
    app = create_app(
        {
            "SQLALCHEMY_DATABASE_URI": f"sqlite:///{db_path}",
            "SECRET_KEY": "gateway-tests-secret-key",
            "SLUICE_LOAD_TIMEOUT": 10.0,
        }
    )
    keys = setup_accounts_and_functions(app)
    with served(app, "sluice-gateway-server") as url:
        yield Gateway(url=url, app=app, keys=keys)
