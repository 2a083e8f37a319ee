"""Password-type valves (admin and user) are sealed at rest, read back plain by the API, the export and function
code, never put into a page, and sealed again under a new key by `rotate-valves-key`."""

from __future__ import annotations

import json

import pytest
from cryptography.fernet import Fernet
from sqlalchemy import text

from tests import factories as F
from tests.conftest import bearer, make_app

SECRET = "sk-very-secret-value-123"
USER_SECRET = "user-token-456"

SECRET_FILTER = F.source(
    '''
    """
    title: Secret Filter
    """

    from pydantic import BaseModel, Field


    class Filter:
        class Valves(BaseModel):
            api_key: str = Field(default="", json_schema_extra={"input": {"type": "password"}})
            plain: str = "visible"

        class UserValves(BaseModel):
            personal: str = Field(default="", json_schema_extra={"input": {"type": "password"}})

        def __init__(self):
            self.valves = self.Valves()

        def inlet(self, body: dict, __user__: dict) -> dict:
            body["seen"] = {"admin": self.valves.api_key, "user": __user__["valves"].personal}
            return body
    '''
)


def raw(app, sql: str, **params):
    from extensions import db

    with app.app_context():
        value = db.session.execute(text(sql), params).scalar()
    # PostgreSQL's driver parses JSON; SQLite's gives the text as stored.
    return value if isinstance(value, str) else json.dumps(value)


def raw_admin_valves(app, function_id="secret_filter") -> str:
    return str(raw(app, "SELECT valves FROM functions WHERE id = :id", id=function_id))


def raw_user_valves(app) -> str:
    return str(raw(app, "SELECT valves FROM user_valves"))


@pytest.fixture
def secret_function(app, admin_key, user_key):
    client = app.test_client()
    F.api_create(client, admin_key, id="secret_filter", content=SECRET_FILTER)
    base = "/api/v1/functions/id/secret_filter"
    assert client.post(f"{base}/toggle", headers=bearer(admin_key)).status_code == 200
    answer = client.post(f"{base}/valves/update", json={"api_key": SECRET}, headers=bearer(admin_key))
    assert answer.status_code == 200 and answer.get_json() == {"api_key": SECRET}
    answer = client.post(
        f"{base}/valves/user/update", json={"personal": USER_SECRET}, headers=bearer(user_key)
    )
    assert answer.status_code == 200 and answer.get_json() == {"personal": USER_SECRET}
    return "secret_filter"


def test_password_valves_are_stored_sealed_and_read_back_plain(
    app, client, admin_key, user_key, secret_function
):
    stored = raw_admin_valves(app)
    assert SECRET not in stored and "sluice-sealed:v1:" in stored
    stored_user = raw_user_valves(app)
    assert USER_SECRET not in stored_user and "sluice-sealed:v1:" in stored_user
    base = "/api/v1/functions/id/secret_filter"
    assert client.get(f"{base}/valves", headers=bearer(admin_key)).get_json() == {"api_key": SECRET}
    assert client.get(f"{base}/valves/user", headers=bearer(user_key)).get_json() == {"personal": USER_SECRET}


def test_a_value_that_is_not_a_password_stays_readable_in_the_database(
    app, client, admin_key, secret_function
):
    base = "/api/v1/functions/id/secret_filter"
    client.post(
        f"{base}/valves/update", json={"api_key": SECRET, "plain": "shown"}, headers=bearer(admin_key)
    )
    stored = raw_admin_valves(app)
    assert '"shown"' in stored and SECRET not in stored


def test_function_code_receives_the_plain_values(app, user_key, secret_function):
    answer = app.test_client().post(
        "/api/v1/functions/id/secret_filter/run",
        json={"method": "inlet", "body": {"messages": [{"role": "user", "content": "hi"}]}},
        headers=bearer(user_key),
    )
    assert answer.status_code == 200, answer.get_json()
    assert answer.get_json()["result"]["seen"] == {"admin": SECRET, "user": USER_SECRET}


def test_only_an_export_that_asks_for_valves_holds_them_in_clear(app, client, admin_key, secret_function):
    plain = client.get("/api/v1/functions/export", headers=bearer(admin_key))
    assert SECRET not in plain.get_data(as_text=True) and "sluice-sealed" not in plain.get_data(as_text=True)
    with_valves = client.get("/api/v1/functions/export?include_valves=true", headers=bearer(admin_key))
    assert with_valves.get_json()[0]["valves"] == {"api_key": SECRET}


def test_an_update_of_the_code_keeps_the_secret_sealed(app, client, admin_key, secret_function):
    changed = SECRET_FILTER.replace('plain: str = "visible"', 'plain: str = "changed"')
    answer = client.post(
        "/api/v1/functions/id/secret_filter/update",
        json=F.form(id="secret_filter", name="Secret", content=changed),
        headers=bearer(admin_key),
    )
    assert answer.status_code == 200, answer.get_json()
    assert SECRET not in raw_admin_valves(app)
    assert client.get("/api/v1/functions/id/secret_filter/valves", headers=bearer(admin_key)).get_json() == {
        "api_key": SECRET
    }


def test_a_sync_stores_password_valves_sealed(app, client, admin_key):
    item = {**F.form(id="synced", name="Synced", content=SECRET_FILTER), "valves": {"api_key": SECRET}}
    answer = client.post("/api/v1/functions/sync", json={"functions": [item]}, headers=bearer(admin_key))
    assert answer.status_code == 200, answer.get_json()
    assert answer.get_json()[0]["valves"] == {"api_key": SECRET}
    assert SECRET not in raw_admin_valves(app, "synced")


def test_the_console_never_sends_a_stored_secret_to_the_browser(
    app, admin_client, user_client, secret_function
):
    for client, path in ((admin_client, "/admin/functions/valves"), (user_client, "/settings/valves")):
        page = client.get(path, query_string={"id": "secret_filter"}, follow_redirects=True)
        assert page.status_code == 200
        body = page.get_data(as_text=True)
        assert SECRET not in body and USER_SECRET not in body and "sluice-sealed" not in body


def test_rotating_the_key_seals_everything_with_the_new_key(app, database_url, secret_function):
    old_stored = raw_admin_valves(app)
    new_key = Fernet.generate_key().decode()
    # The new key first, the old one (here the one derived from SECRET_KEY) still opens: no downtime.
    rotated_app = make_app(database_url, SLUICE_VALVES_KEY=new_key)
    result = rotated_app.test_cli_runner().invoke(args=["rotate-valves-key"])
    assert result.exit_code == 0, result.output
    assert "2 values" in result.output
    assert raw_admin_valves(rotated_app) != old_stored
    # Only the new key is needed from now on, even with another SECRET_KEY.
    only_new = make_app(database_url, SLUICE_VALVES_KEY=new_key, SECRET_KEY="another-secret")
    with only_new.app_context():
        from services import valves

        assert valves.get_valves("secret_filter") == {"api_key": SECRET}


def test_rotation_refuses_and_changes_nothing_when_a_value_cannot_be_opened(
    app, database_url, secret_function
):
    before = raw_admin_valves(app)
    stranger = make_app(database_url, SECRET_KEY="a-different-instance-secret")
    result = stranger.test_cli_runner().invoke(args=["rotate-valves-key"])
    assert result.exit_code != 0
    assert "cannot be opened" in result.output and "function secret_filter.api_key" in result.output
    assert raw_admin_valves(app) == before


def test_rotation_seals_secrets_stored_in_clear_before_sealing_existed(app, secret_function):
    with app.app_context():
        from extensions import db

        value = "CAST(:v AS JSON)" if db.engine.dialect.name == "postgresql" else ":v"
        db.session.execute(
            text(f"UPDATE functions SET valves = {value}"), {"v": '{"api_key": "legacy-clear"}'}
        )
        db.session.commit()
    result = app.test_cli_runner().invoke(args=["rotate-valves-key"])
    assert result.exit_code == 0, result.output
    assert "legacy-clear" not in raw_admin_valves(app)
    with app.app_context():
        from services import valves

        assert valves.get_valves("secret_filter") == {"api_key": "legacy-clear"}


def test_a_malformed_valves_key_stops_start_up_without_showing_it(database_url):
    from settings import SettingError

    with pytest.raises(SettingError) as error:
        make_app(database_url, SLUICE_VALVES_KEY="not-a-key-at-all")
    assert "SLUICE_VALVES_KEY" in str(error.value) and "not-a-key-at-all" not in str(error.value)
