"""Every user's own pages: personal valves (`/settings/valves`) and API keys (`/settings/keys`)."""

from __future__ import annotations

import re

import pytest

from tests.conftest import bearer, csrf_token, sign_in
from tests.console.html_forms import read_form
from tests.factories import FILTER, PIPE, make_function, source

PERSONAL = source(
    '''
    """
    title: Personal Touch
    description: Greets you your way.
    """

    from typing import Literal

    from pydantic import BaseModel, Field


    class Filter:
        class Valves(BaseModel):
            priority: int = 0

        class UserValves(BaseModel):
            nickname: str | None = Field(default=None, description="What to call you")
            token: str = Field(default="", json_schema_extra={"input": {"type": "password"}})
            max_turns: int = Field(default=4, ge=1, le=10)
            tone: Literal["warm", "dry"] = "warm"
            enabled: bool = True

        def __init__(self):
            self.valves = self.Valves()

        def inlet(self, body: dict, __user__: dict | None = None) -> dict:
            return body
    '''
)
# A later version: `max_turns` now tops out at 5 and the `dry` tone is gone.
PERSONAL_STRICTER = PERSONAL.replace("le=10", "le=5").replace(
    'Literal["warm", "dry"]', 'Literal["warm", "sunny"]'
)

URL = "/settings/valves?id=personal"
SECRET = "tok-PERSONAL-SECRET-987654"


@pytest.fixture
def personal(app, admin_id):
    return make_function(app, admin_id, id="personal", content=PERSONAL, name="Personal Touch", active=True)


def my_valves(app, key, function_id="personal"):
    response = app.test_client().get(f"/api/v1/functions/id/{function_id}/valves/user", headers=bearer(key))
    assert response.status_code == 200, response.get_json()
    return response.get_json()


def set_my_valves(app, key, values, function_id="personal"):
    response = app.test_client().post(
        f"/api/v1/functions/id/{function_id}/valves/user/update", json=values, headers=bearer(key)
    )
    assert response.status_code == 200, response.get_json()


def field_html(page: bytes, name: str) -> str:
    match = re.search(
        rf'<div class="field valve-field[^"]*"[^>]*data-testid="valve-field-{name}".*?(?=<div class="field valve-field|</form>)',
        page.decode(),
        re.S,
    )
    assert match, f"no field {name}"
    return match.group(0)


# --- access ---------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("path", ["/settings/valves", URL, "/settings/keys"])
def test_anonymous_is_sent_to_sign_in(client, path):
    response = client.get(path)
    assert response.status_code == 302
    assert response.headers["Location"].startswith("/auth")


@pytest.mark.parametrize("path", ["/settings/valves", "/settings/keys"])
def test_a_pending_account_waits(app, pending_id, path):
    client = app.test_client()
    sign_in(client, "pending@example.com")
    response = client.get(path)
    assert response.status_code == 302
    assert response.headers["Location"].endswith("/pending")


# --- personal valves: the list ----------------------------------------------------------------------------------


def test_the_list_shows_active_functions_with_user_valves_only(app, admin_id, user_client, personal):
    make_function(app, admin_id, id="inactive_one", content=PERSONAL, name="Sleeping")  # not active
    make_function(app, admin_id, id="no_user_valves", content=PIPE, name="Echo Pipe", active=True)
    page = user_client.get("/settings/valves")
    assert page.status_code == 200
    assert b'data-testid="my-valves-link-personal"' in page.data
    assert b"Personal Touch" in page.data and b"Greets you your way." in page.data
    assert b"Sleeping" not in page.data
    assert b"Echo Pipe" not in page.data


def test_admins_see_the_same_list(app, admin_id, admin_client, personal):
    make_function(app, admin_id, id="inactive_one", content=PERSONAL, name="Sleeping")
    page = admin_client.get("/settings/valves")
    assert b"Personal Touch" in page.data and b"Sleeping" not in page.data


def test_an_empty_state_when_nothing_offers_personal_valves(user_client):
    page = user_client.get("/settings/valves")
    assert page.status_code == 200
    assert b'data-testid="my-valves-empty"' in page.data


def test_the_list_counts_what_i_set(app, user_client, user_key, personal):
    set_my_valves(app, user_key, {"max_turns": 3, "tone": "dry"})
    link = re.search(
        rb'data-testid="my-valves-link-personal".*?</a>', user_client.get("/settings/valves").data, re.S
    )
    assert b"2 set" in link.group(0)


# --- personal valves: the form ----------------------------------------------------------------------------------


def test_the_form_is_generated_from_user_valves(user_client, personal):
    page = user_client.get(URL)
    assert page.status_code == 200
    assert b'aria-current="page"' in page.data
    assert 'type="password"' in field_html(page.data, "token")
    assert 'placeholder="Not set"' in field_html(page.data, "nickname")
    assert "What to call you" in field_html(page.data, "nickname")
    max_turns = field_html(page.data, "max_turns")
    assert 'type="number" value="4" min="1" max="10" step="1"' in max_turns
    assert "between 1 and 10" in max_turns
    assert "Default (warm)" in field_html(page.data, "tone")
    assert 'type="checkbox"' in field_html(page.data, "enabled")
    assert "priority" not in page.data.decode()  # the admin Valves are not on a user's page


def test_saving_stores_only_what_i_set(app, user_client, user_key, personal):
    form = read_form(user_client.get(URL).data, "valves-form")
    form.setlist("valve-max_turns", ["7"])
    form.setlist("valve-tone", ["dry"])
    form.setlist("valve-enabled", ["off"])
    form.setlist("valve-token", [SECRET])
    response = user_client.post(URL, data=form)
    assert response.status_code == 302
    assert my_valves(app, user_key) == {"max_turns": 7, "tone": "dry", "enabled": False, "token": SECRET}
    page = user_client.get(URL)
    assert b"Valves saved." in page.data
    assert SECRET.encode() not in page.data
    assert "•••••• (stored — leave empty to keep)" in field_html(page.data, "token")


def test_an_untouched_form_keeps_my_secret_and_changes_nothing(app, user_client, user_key, personal):
    set_my_valves(app, user_key, {"token": SECRET, "nickname": "Uma"})
    page = user_client.get(URL)
    assert SECRET.encode() not in page.data
    assert 'value="Uma"' in field_html(page.data, "nickname")
    assert user_client.post(URL, data=read_form(page.data, "valves-form")).status_code == 302
    assert my_valves(app, user_key) == {"token": SECRET, "nickname": "Uma"}


def test_optional_emptied_and_reset(app, user_client, user_key, personal):
    set_my_valves(app, user_key, {"nickname": "Uma", "max_turns": 9, "token": SECRET})
    form = read_form(user_client.get(URL).data, "valves-form")
    form.setlist("valve-nickname", [""])
    form.add("reset-max_turns", "1")
    form.add("reset-token", "1")
    assert user_client.post(URL, data=form).status_code == 302
    assert my_valves(app, user_key) == {}


@pytest.mark.parametrize("sent", ["", "4e"])
def test_an_emptied_or_unparseable_number_keeps_what_i_stored(app, user_client, user_key, personal, sent):
    set_my_valves(app, user_key, {"max_turns": 9, "tone": "dry"})
    form = read_form(user_client.get(URL).data, "valves-form")
    form.setlist("valve-max_turns", [sent])
    response = user_client.post(URL, data=form)
    assert response.status_code == 400
    expected = "Enter a whole number, or tick Reset to default." if sent == "" else "Enter a whole number."
    assert expected in field_html(response.data, "max_turns")
    assert my_valves(app, user_key) == {"max_turns": 9, "tone": "dry"}


def test_errors_are_shown_beside_their_fields(app, user_client, user_key, personal):
    set_my_valves(app, user_key, {"token": SECRET})
    form = read_form(user_client.get(URL).data, "valves-form")
    form.setlist("valve-max_turns", ["11"])
    response = user_client.post(URL, data=form)
    assert response.status_code == 400
    assert "Enter a whole number between 1 and 10." in field_html(response.data, "max_turns")
    assert 'value="11"' in field_html(response.data, "max_turns")
    assert SECRET.encode() not in response.data
    form.setlist("valve-max_turns", ["many"])
    form.setlist("valve-tone", ["dry"])
    form.setlist("valve-token", ["typed-secret-value"])
    response = user_client.post(URL, data=form)
    assert "Enter a whole number." in field_html(response.data, "max_turns")
    assert "type it again" in field_html(response.data, "token")
    assert b"typed-secret-value" not in response.data and SECRET.encode() not in response.data
    assert my_valves(app, user_key) == {"token": SECRET}


def test_csrf_is_required(app, user_client, user_key, personal):
    form = read_form(user_client.get(URL).data, "valves-form")
    form.pop("csrf_token")
    form.setlist("valve-max_turns", ["2"])
    assert user_client.post(URL, data=form).status_code == 400
    assert my_valves(app, user_key) == {}


def test_my_valves_are_mine_alone(app, user_client, user_key, other_user_key, personal):
    set_my_valves(app, other_user_key, {"nickname": "Otto's nickname", "token": "otto-secret-token"})
    page = user_client.get(URL)
    assert b"Otto" not in page.data and b"otto-secret-token" not in page.data
    form = read_form(page.data, "valves-form")
    form.setlist("valve-nickname", ["Uma"])
    assert user_client.post(URL, data=form).status_code == 302
    assert my_valves(app, user_key) == {"nickname": "Uma"}
    assert my_valves(app, other_user_key) == {"nickname": "Otto's nickname", "token": "otto-secret-token"}


def test_there_is_no_way_to_name_another_user(
    app, user_client, user_key, other_user_id, other_user_key, personal
):
    set_my_valves(app, other_user_key, {"nickname": "Otto"})
    form = read_form(user_client.get(URL).data, "valves-form")
    form.add("user_id", other_user_id)
    form.setlist("valve-nickname", ["Mallory"])
    user_client.post(f"{URL}&user_id={other_user_id}", data=form)
    assert my_valves(app, other_user_key) == {"nickname": "Otto"}
    page = user_client.get(f"{URL}&user_id={other_user_id}")
    assert b"Otto" not in page.data


def test_an_inactive_function_does_not_exist_for_a_user(app, admin_id, user_client, admin_client):
    make_function(app, admin_id, id="personal", content=PERSONAL)  # inactive
    assert user_client.get(URL).status_code == 404
    token = csrf_token(user_client, "/settings/valves")
    assert user_client.post(URL, data={"csrf_token": token, "valve-max_turns": "2"}).status_code == 404
    assert admin_client.get(URL).status_code == 200  # admins may set theirs before switching it on


def test_a_function_without_user_valves_says_so(app, admin_id, user_client):
    make_function(app, admin_id, id="echo", content=PIPE, active=True)
    page = user_client.get("/settings/valves?id=echo")
    assert page.status_code == 200
    assert b'data-testid="valves-none"' in page.data


def test_stale_values_are_shown_as_errors_not_dropped(app, admin_id, user_client, user_key, personal):
    set_my_valves(app, user_key, {"max_turns": 8, "tone": "dry", "nickname": "Uma"})
    from extensions import db
    from models import User
    from services import functions

    with app.app_context():
        functions.update_function(
            db.session.get(User, admin_id),
            "personal",
            name="Personal Touch",
            content=PERSONAL_STRICTER,
            meta={},
        )
    page = user_client.get(URL)
    assert page.status_code == 200
    assert b"no longer fit this version" in page.data
    max_turns = field_html(page.data, "max_turns")
    assert (
        "Enter a whole number between 1 and 5." in max_turns
        and 'value="8"' in max_turns
        and 'aria-invalid="true"' in max_turns
    )
    tone = field_html(page.data, "tone")
    assert "dry (no longer offered)" in tone and "Choose one of the values offered." in tone
    assert my_valves(app, user_key) == {"max_turns": 8, "tone": "dry", "nickname": "Uma"}  # still stored

    # Saving the stale values unchanged is refused; resetting them fixes it.
    form = read_form(page.data, "valves-form")
    assert user_client.post(URL, data=form).status_code == 400
    form.add("reset-max_turns", "1")
    form.add("reset-tone", "1")
    assert user_client.post(URL, data=form).status_code == 302
    assert my_valves(app, user_key) == {"nickname": "Uma"}


def test_stored_keys_the_code_no_longer_has_are_announced(app, admin_id, user_client, user_key, personal):
    set_my_valves(app, user_key, {"max_turns": 3})
    from extensions import db
    from models import UserValves

    with app.app_context():
        row = db.session.query(UserValves).one()
        row.valves = {"max_turns": 3, "retired_option": True}
        db.session.commit()
    page = user_client.get(URL)
    assert b'data-testid="valves-unknown-keys"' in page.data and b"<code>retired_option</code>" in page.data


# --- API keys -------------------------------------------------------------------------------------------------


def create_key(client, name="backup script", **extra):
    """Create a key through the form, as a browser does: with the page's token and one-time form id."""
    page = client.get("/settings/keys").get_data(as_text=True)
    form_id = re.search(r'name="form_id" value="([^"]+)"', page).group(1)
    token = csrf_token(client, "/settings/keys")
    return client.post(
        "/settings/keys", data={"csrf_token": token, "name": name, "form_id": form_id, **extra}
    )


def test_an_admin_makes_a_connection_key_that_only_the_gateway_takes(app, admin_client):
    assert b'data-testid="connection-key"' in admin_client.get("/settings/keys").data
    response = create_key(admin_client, "open webui", connection="on")
    plain = re.search(rb'id="new-key-value" class="mono" type="text" value="(sk-[^"]+)"', response.data)
    plain = plain.group(1).decode()

    assert b'data-testid="connection-badge"' in response.data
    other = app.test_client()
    assert other.get("/api/v1/functions/", headers=bearer(plain)).status_code == 401
    assert other.get("/v1/pipelines", headers=bearer(plain)).status_code == 200


def test_a_user_is_not_offered_a_connection_key_and_cannot_make_one(user_client):
    assert b'data-testid="connection-key"' not in user_client.get("/settings/keys").data
    response = create_key(user_client, "sneaky", connection="on")

    assert response.status_code == 303
    page = user_client.get("/settings/keys")
    assert b"Only an administrator can make a connection key." in page.data
    assert b'data-testid="keys-empty"' in page.data


def test_keys_page_lists_nothing_at_first(user_client):
    page = user_client.get("/settings/keys")
    assert page.status_code == 200
    assert b'data-testid="keys-empty"' in page.data
    assert b'<label for="name">Name (optional)</label>' in page.data


def test_a_new_key_is_shown_once_and_works(app, user_client):
    response = create_key(user_client)
    assert response.status_code == 200
    assert response.headers["Cache-Control"] == "no-store"
    # The key is in this answer only: never in the session cookie, which is signed but readable.
    assert "sk-" not in (response.headers.get("Set-Cookie") or "")
    with user_client.session_transaction() as session:
        assert not any("sk-" in str(value) for value in session.values())
    plain = re.search(rb'id="new-key-value" class="mono" type="text" value="(sk-[^"]+)"', response.data)
    plain = plain.group(1).decode()
    assert len(plain) >= 35
    assert b"It will not be shown again" in response.data
    assert b"backup script" in response.data

    assert app.test_client().get("/api/v1/functions/", headers=bearer(plain)).status_code == 200

    later = user_client.get("/settings/keys")
    assert plain.encode() not in later.data
    assert plain[:10].encode() in later.data  # the prefix identifies it
    assert b'data-testid="new-key"' not in later.data


def test_reloading_after_creating_a_key_makes_no_second_key(app, user_client, caplog):
    page = user_client.get("/settings/keys").get_data(as_text=True)
    form = {
        "csrf_token": csrf_token(user_client, "/settings/keys"),
        "name": "once",
        "form_id": re.search(r'name="form_id" value="([^"]+)"', page).group(1),
    }
    shown = user_client.post("/settings/keys", data=form)
    plain = re.search(rb'id="new-key-value" class="mono" type="text" value="(sk-[^"]+)"', shown.data).group(1)
    again = user_client.post("/settings/keys", data=form)  # the reload sends the same form again
    assert again.status_code == 303 and again.headers["Location"] == "/settings/keys"
    followed = user_client.get("/settings/keys")
    assert b"That key was already created" in followed.data
    assert plain not in followed.data and b'data-testid="new-key"' not in followed.data
    assert followed.headers["Cache-Control"] == "no-store"
    from extensions import db
    from models import ApiKey

    with app.app_context():
        assert db.session.query(ApiKey).count() == 1
    assert plain.decode() not in caplog.text


def test_each_form_makes_its_own_key(app, user_client):
    assert b'data-testid="new-key"' in create_key(user_client, "first").data
    assert b'data-testid="new-key"' in create_key(user_client, "second").data
    from extensions import db
    from models import ApiKey

    with app.app_context():
        assert db.session.query(ApiKey).count() == 2


def test_creating_a_key_needs_the_csrf_token(app, user_client, user_id):
    response = user_client.post("/settings/keys", data={"name": "x"})
    assert response.status_code == 400
    from extensions import db
    from models import ApiKey

    with app.app_context():
        assert db.session.query(ApiKey).count() == 0


def test_revoking_a_key_stops_it(app, user_client):
    plain = re.search(rb'value="(sk-[^"]+)"', create_key(user_client).data).group(1).decode()
    page = user_client.get("/settings/keys")
    key_id = re.search(rb'data-testid="revoke-([^"]+)"', page.data).group(1).decode()
    token = csrf_token(user_client, "/settings/keys")
    response = user_client.post(
        f"/settings/keys/{key_id}/revoke", data={"csrf_token": token}, follow_redirects=True
    )
    assert b"revoked" in response.data
    assert b"badge-revoked" in response.data
    assert f'data-testid="revoke-{key_id}"'.encode() not in response.data
    answer = app.test_client().get("/api/v1/functions/", headers=bearer(plain))
    assert answer.status_code == 401


def test_revoke_needs_the_csrf_token(app, user_client):
    plain = re.search(rb'value="(sk-[^"]+)"', create_key(user_client).data).group(1).decode()
    key_id = (
        re.search(rb'data-testid="revoke-([^"]+)"', user_client.get("/settings/keys").data).group(1).decode()
    )
    assert user_client.post(f"/settings/keys/{key_id}/revoke").status_code == 400
    assert app.test_client().get("/api/v1/functions/", headers=bearer(plain)).status_code == 200


def test_nobody_revokes_or_sees_anothers_key(app, user_client, other_user_id, other_user_key):
    from extensions import db
    from models import ApiKey

    with app.app_context():
        other_key = db.session.query(ApiKey).filter_by(user_id=other_user_id).one()
        other_key_id, other_prefix = other_key.id, other_key.prefix
    page = user_client.get("/settings/keys")
    assert other_prefix.encode() not in page.data
    token = csrf_token(user_client, "/settings/keys")
    response = user_client.post(
        f"/settings/keys/{other_key_id}/revoke", data={"csrf_token": token}, follow_redirects=True
    )
    assert b"This API key does not exist." in response.data
    assert app.test_client().get("/api/v1/functions/", headers=bearer(other_user_key)).status_code == 200


def test_a_function_with_both_valves_classes_is_listed(app, admin_id, user_client):
    make_function(app, admin_id, id="sample_filter", content=FILTER, active=True)
    assert b"my-valves-link-sample_filter" in user_client.get("/settings/valves").data
