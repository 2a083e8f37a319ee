"""The admin valves page: a form generated from the function's `Valves` schema, saved through the valves service."""

from __future__ import annotations

import re

import pytest

from tests.conftest import bearer, csrf_token
from tests.console.html_forms import read_form
from tests.factories import ACTION, OPTIONS_METHOD, make_function, source

RICH = source(
    '''
    """
    title: Rich Valves
    description: One valve of every kind.
    """

    import os
    from typing import Literal, Optional

    from pydantic import BaseModel, Field, field_validator


    class Pipe:
        class Valves(BaseModel):
            api_key: str = Field(default="", description="Key for <b>the</b> service.\\nKeep it safe.")
            base_url: str = Field(default=os.getenv("SLUICE_TEST_RICH_URL", "https://api.example.com"))
            model: Literal["small", "large"] = "small"
            temperature: float = Field(default=0.7, ge=0, le=2)
            max_tokens: int = Field(default=256, ge=1)
            retries: Optional[int] = None
            verbose: bool = False
            stream: Optional[bool] = None
            stop: list[str] = Field(default_factory=list)
            extra: dict = {}
            prompt: str = Field(default="Be brief.", json_schema_extra={"input": {"type": "textarea"}})
            voice: str = Field(
                default="alloy",
                json_schema_extra={
                    "input": {
                        "type": "select",
                        "options": [{"value": "alloy", "label": "Alloy"}, {"value": "echo", "label": "Echo"}],
                    }
                },
            )

            @field_validator("api_key")
            @classmethod
            def no_spaces(cls, value):
                if " " in value:
                    raise ValueError(f"the key {value!r} has a space")
                return value

        def __init__(self):
            self.valves = self.Valves()

        def pipe(self, body: dict) -> str:
            return "ok"
    '''
)

URL = "/admin/functions/valves?id=rich"
SECRET = "sk-VERY-SECRET-0123456789"


@pytest.fixture
def rich(app, admin_id):
    return make_function(app, admin_id, id="rich", content=RICH, name="Rich Valves")


def stored_valves(client, key):
    response = client.get("/api/v1/functions/id/rich/valves", headers=bearer(key))
    assert response.status_code == 200
    return response.get_json()


def set_valves(client, key, values):
    response = client.post("/api/v1/functions/id/rich/valves/update", json=values, headers=bearer(key))
    assert response.status_code == 200, response.get_json()


def field_html(page: bytes, name: str) -> str:
    """The markup of one generated field."""
    html = page.decode()
    match = re.search(
        rf'<div class="field valve-field[^"]*"[^>]*data-testid="valve-field-{name}".*?(?=<div class="field valve-field|</form>)',
        html,
        re.S,
    )
    assert match, f"no field {name}"
    return match.group(0)


# --- access ---------------------------------------------------------------------------------------------------


def test_anonymous_is_sent_to_sign_in(client, rich):
    response = client.get(URL)
    assert response.status_code == 302
    assert response.headers["Location"].startswith("/auth")


def test_a_user_gets_403(user_client, rich):
    assert user_client.get(URL).status_code == 403
    token = csrf_token(user_client, "/settings/valves")
    assert user_client.post(URL, data={"csrf_token": token, "valve-max_tokens": "9"}).status_code == 403


def test_unknown_function_is_404(admin_client):
    assert admin_client.get("/admin/functions/valves?id=nope").status_code == 404
    assert admin_client.get("/admin/functions/valves").status_code == 404


def error_title(response) -> str:
    return re.search(r"<h1>(.*?)</h1>", response.get_data(as_text=True)).group(1)


def test_a_missing_function_has_the_same_404_page_as_a_missing_address(admin_client, user_client):
    # A service's 404 was titled "Something is not right", every other 404 "Page not found".
    missing_address = admin_client.get("/admin/nothing-here")
    for response in (
        admin_client.get("/admin/functions/valves?id=nope"),
        user_client.get("/settings/valves?id=nope"),
    ):
        assert response.status_code == 404
        assert error_title(response) == error_title(missing_address) == "Page not found"
        page = response.get_data(as_text=True)
        assert "There is no function with this id here; it may have been deleted." in page
        assert "We could not find what you" not in page  # the API's text, Open WebUI's, is for scripts


def test_a_reworded_not_found_sentence_still_gives_the_page_its_own(admin_client, monkeypatch):
    # The page chooses its sentence by the error's kind, so the API's wording may change freely.
    from services import function_reads

    monkeypatch.setattr(function_reads, "NOT_FOUND_ERROR", "No such function, reworded.")
    response = admin_client.get("/admin/functions/valves?id=nope")
    assert response.status_code == 404
    page = response.get_data(as_text=True)
    assert "There is no function with this id here; it may have been deleted." in page
    assert "reworded" not in page


@pytest.fixture
def refusing_pages(app):
    """Two pages whose service refuses (registered before any request, as Flask requires)."""
    from services.errors import Forbidden, ServiceError

    @app.get("/admin/refused")
    def refused():
        raise Forbidden("Only the owner may do that.")

    @app.get("/admin/invalid")
    def invalid():
        raise ServiceError("That value does not fit.")


def test_a_service_refusal_on_a_page_is_titled_by_its_status(refusing_pages, admin_client):
    response = admin_client.get("/admin/refused")
    assert response.status_code == 403 and error_title(response) == "Not allowed"
    assert "Only the owner may do that." in response.get_data(as_text=True)
    response = admin_client.get("/admin/invalid")
    assert response.status_code == 400 and error_title(response) == "Something is not right"


def test_a_function_without_valves_says_so(app, admin_id, admin_client):
    make_function(app, admin_id, id="plain_action", content=ACTION)
    page = admin_client.get("/admin/functions/valves?id=plain_action")
    assert page.status_code == 200
    assert b'data-testid="valves-none"' in page.data
    assert b"has no <code>Valves</code> class" in page.data
    assert b'data-testid="valves-form"' not in page.data


# --- rendering ------------------------------------------------------------------------------------------------


def test_every_kind_of_field_is_rendered(admin_client, rich):
    page = admin_client.get(URL)
    assert page.status_code == 200
    data = page.data

    api_key = field_html(data, "api_key")
    assert 'type="password"' in api_key and 'value=""' in api_key and 'autocomplete="new-password"' in api_key
    assert 'placeholder="Not set"' in api_key

    assert (
        'id="valve-base_url" name="valve-base_url" type="text" value="https://api.example.com"'
        in field_html(data, "base_url")
    )

    model = field_html(data, "model")
    assert '<select id="valve-model" name="valve-model"' in model
    assert '<option value="" selected>Default (small)</option>' in model
    assert '<option value="large">large</option>' in model

    # Numbers carry the schema's range, so the browser checks it before the form is sent.
    temperature = field_html(data, "temperature")
    assert 'type="number" value="0.7" min="0" max="2" step="any"' in temperature
    assert 'data-range-error="Enter a number between 0 and 2."' in temperature
    assert "between 0 and 2" in temperature

    max_tokens = field_html(data, "max_tokens")
    assert 'type="number" value="256" min="1" step="1"' in max_tokens
    assert "at least 1" in max_tokens

    retries = field_html(data, "retries")
    assert 'type="number" value=""' in retries and 'placeholder="Not set"' in retries
    # The form is left to the browser's checks (no novalidate); "Reset all" skips them.
    assert b" novalidate" not in data.split(b'data-testid="valves-form"')[0].rsplit(b"<form", 1)[1]

    verbose = field_html(data, "verbose")
    assert '<input type="hidden" name="valve-verbose" value="off">' in verbose
    assert 'type="checkbox" id="valve-verbose" name="valve-verbose" value="on"' in verbose
    assert "checked" not in verbose.split('id="valve-verbose"')[1].split(">")[0]

    stream = field_html(data, "stream")
    assert "Default (none)" in stream and '<option value="true">On</option>' in stream

    stop = field_html(data, "stop")
    assert (
        "<textarea" in stop and "one item per line" in stop and "empty list" in stop
    )  # default_factory=list

    extra = field_html(data, "extra")
    assert 'data-json="true"' in extra and "{}" in extra

    prompt = field_html(data, "prompt")
    assert '<textarea id="valve-prompt"' in prompt and "Be brief." in prompt

    voice = field_html(data, "voice")
    assert '<option value="echo">Echo</option>' in voice and "Default (Alloy)" in voice

    for name in ("api_key", "model", "temperature", "stop", "prompt"):
        assert f'<label for="valve-{name}">' in field_html(data, name)


def test_descriptions_are_escaped_text(admin_client, rich):
    api_key = field_html(admin_client.get(URL).data, "api_key")
    assert "Key for &lt;b&gt;the&lt;/b&gt; service.\nKeep it safe." in api_key
    assert "<b>the</b>" not in api_key


def test_titles_defaults_and_state_are_shown(admin_client, app, admin_key, rich):
    client = app.test_client()
    set_valves(client, admin_key, {"temperature": 1.1})
    data = admin_client.get(URL).data
    temperature = field_html(data, "temperature")
    assert ">Temperature</label>" in temperature
    assert 'data-testid="valve-default-temperature">0.7<' in temperature
    assert 'data-testid="valve-state-temperature">Custom<' in temperature
    assert 'value="1.1"' in temperature
    assert 'name="reset-temperature"' in temperature
    assert 'data-testid="valve-state-model">Default<' in field_html(data, "model")
    assert 'name="reset-model"' not in field_html(data, "model")
    assert b"1 of 12 set" in data


# --- saving ---------------------------------------------------------------------------------------------------


def test_an_untouched_form_stores_nothing(app, admin_client, admin_key, rich):
    form = read_form(admin_client.get(URL).data, "valves-form")
    response = admin_client.post(URL, data=form)
    assert response.status_code == 302
    assert stored_valves(app.test_client(), admin_key) == {}
    page = admin_client.get(URL)
    assert b"Valves saved." in page.data


def test_values_are_coerced_and_only_what_was_set_is_stored(app, admin_client, admin_key, rich):
    form = read_form(admin_client.get(URL).data, "valves-form")
    form.setlist("valve-temperature", ["1.5"])
    form.setlist("valve-max_tokens", ["512"])
    form.setlist("valve-model", ["large"])
    form.setlist("valve-voice", ["echo"])
    form.setlist("valve-verbose", ["off", "on"])
    form.setlist("valve-stream", ["false"])
    form.setlist("valve-stop", ["END\nSTOP\n"])
    form.setlist("valve-extra", ['{"a": [1, 2]}'])
    form.setlist("valve-prompt", ["Line one\r\nLine two"])
    response = admin_client.post(URL, data=form)
    assert response.status_code == 302, response.data
    assert stored_valves(app.test_client(), admin_key) == {
        "temperature": 1.5,
        "max_tokens": 512,
        "model": "large",
        "voice": "echo",
        "verbose": True,
        "stream": False,
        "stop": ["END", "STOP"],
        "extra": {"a": [1, 2]},
        "prompt": "Line one\nLine two",
    }
    # Re-rendered from what is stored, and re-submitted untouched, nothing changes.
    page = admin_client.get(URL).data
    assert 'value="1.5"' in field_html(page, "temperature")
    assert '<option value="large" selected>' in field_html(page, "model")
    assert "checked" in field_html(page, "verbose")
    assert admin_client.post(URL, data=read_form(page, "valves-form")).status_code == 302
    assert stored_valves(app.test_client(), admin_key)["stop"] == ["END", "STOP"]
    assert len(stored_valves(app.test_client(), admin_key)) == 9


def test_reset_and_optional_fields_left_empty(app, admin_client, admin_key, rich):
    set_valves(app.test_client(), admin_key, {"temperature": 1.5, "retries": 3, "model": "large"})
    form = read_form(admin_client.get(URL).data, "valves-form")
    form.add("reset-temperature", "1")
    form.setlist("valve-retries", [""])  # Optional emptied: back to its default
    assert admin_client.post(URL, data=form).status_code == 302
    assert stored_valves(app.test_client(), admin_key) == {"model": "large"}


def test_reset_all(app, admin_client, admin_key, rich):
    set_valves(app.test_client(), admin_key, {"temperature": 1.5, "api_key": SECRET})
    token = csrf_token(admin_client, URL)
    response = admin_client.post(
        URL, data={"csrf_token": token, "action": "reset_all"}, follow_redirects=True
    )
    assert b"Every valve is back to its default." in response.data
    assert stored_valves(app.test_client(), admin_key) == {}


def test_parse_errors_are_shown_beside_their_field_and_nothing_is_saved(app, admin_client, admin_key, rich):
    set_valves(app.test_client(), admin_key, {"temperature": 1.5})
    form = read_form(admin_client.get(URL).data, "valves-form")
    form.setlist("valve-max_tokens", ["lots"])
    form.setlist("valve-extra", ["{broken"])
    form.setlist("valve-base_url", ["https://typed.example"])
    # Readable, but refused by the class: reported in the same answer.
    form.setlist("valve-temperature", ["5"])
    response = admin_client.post(URL, data=form)
    assert response.status_code == 400
    max_tokens = field_html(response.data, "max_tokens")
    assert (
        "Enter a whole number." in max_tokens
        and 'value="lots"' in max_tokens
        and 'aria-invalid="true"' in max_tokens
    )
    assert "This is not valid JSON" in field_html(response.data, "extra")
    assert 'value="https://typed.example"' in field_html(response.data, "base_url")  # what was typed is kept
    assert "Enter a number between 0 and 2." in field_html(response.data, "temperature")
    assert b"Nothing was saved: 3 fields need fixing." in response.data
    assert stored_valves(app.test_client(), admin_key) == {"temperature": 1.5}


@pytest.mark.parametrize("sent", ["", "4e", "0.3-"])
def test_an_unparseable_number_is_a_field_error_whatever_the_browser_sends(
    app, admin_client, admin_key, rich, sent
):
    # Chromium submits "" for a type=number input holding "4e"; the fields are text inputs now, so the server sees
    # "4e" itself, and an emptied stored number is refused too: neither may wipe what is stored.
    set_valves(app.test_client(), admin_key, {"max_tokens": 512, "model": "large"})
    form = read_form(admin_client.get(URL).data, "valves-form")
    form.setlist("valve-max_tokens", [sent])
    response = admin_client.post(URL, data=form)
    assert response.status_code == 400
    assert b"Valves saved." not in response.data
    max_tokens = field_html(response.data, "max_tokens")
    expected = "Enter a whole number, or tick Reset to default." if sent == "" else "Enter a whole number."
    assert expected in max_tokens and f'value="{sent}"' in max_tokens
    # The error sits right below the input, before the help and the reset box.
    assert max_tokens.index("valve-max_tokens-error") < max_tokens.index('class="help valve-help"')
    assert max_tokens.index('class="help valve-help"') < max_tokens.index('name="reset-max_tokens"')
    assert stored_valves(app.test_client(), admin_key) == {"max_tokens": 512, "model": "large"}


def test_an_emptied_number_that_was_not_stored_stays_at_its_default(app, admin_client, admin_key, rich):
    form = read_form(admin_client.get(URL).data, "valves-form")
    form.setlist("valve-max_tokens", [""])
    assert admin_client.post(URL, data=form).status_code == 302
    assert stored_valves(app.test_client(), admin_key) == {}


def test_the_functions_own_validation_errors_are_shown_beside_their_field(app, admin_client, admin_key, rich):
    form = read_form(admin_client.get(URL).data, "valves-form")
    form.setlist("valve-temperature", ["5"])
    form.setlist("valve-max_tokens", ["0"])
    response = admin_client.post(URL, data=form)
    assert response.status_code == 400
    # Sentences in the form's own style, the same the browser shows for its own range check; no pydantic text.
    assert "Enter a number between 0 and 2." in field_html(response.data, "temperature")
    assert 'value="5"' in field_html(response.data, "temperature")
    assert "Enter a whole number at least 1." in field_html(response.data, "max_tokens")
    assert b"Input should" not in response.data
    assert b"the function refused these values" in response.data
    assert stored_valves(app.test_client(), admin_key) == {}


def test_csrf_is_required(app, admin_client, admin_key, rich):
    form = read_form(admin_client.get(URL).data, "valves-form")
    form.pop("csrf_token")
    form.setlist("valve-max_tokens", ["9"])
    response = admin_client.post(URL, data=form)
    assert response.status_code == 400
    assert b"This form has expired" in response.data
    assert stored_valves(app.test_client(), admin_key) == {}


# --- secrets --------------------------------------------------------------------------------------------------


def test_a_stored_secret_never_reaches_the_page_and_is_kept_when_untouched(
    app, admin_client, admin_key, rich
):
    set_valves(app.test_client(), admin_key, {"api_key": SECRET})
    page = admin_client.get(URL)
    assert SECRET.encode() not in page.data
    api_key = field_html(page.data, "api_key")
    assert 'value=""' in api_key
    assert "•••••• (stored — leave empty to keep)" in api_key
    assert "Clear the stored secret" in api_key

    form = read_form(page.data, "valves-form")
    form.setlist("valve-max_tokens", ["300"])
    response = admin_client.post(URL, data=form, follow_redirects=True)
    assert SECRET.encode() not in response.data
    assert stored_valves(app.test_client(), admin_key) == {"api_key": SECRET, "max_tokens": 300}


def test_a_typed_secret_replaces_and_clear_removes(app, admin_client, admin_key, rich):
    set_valves(app.test_client(), admin_key, {"api_key": SECRET})
    form = read_form(admin_client.get(URL).data, "valves-form")
    form.setlist("valve-api_key", ["sk-new"])
    assert admin_client.post(URL, data=form).status_code == 302
    assert stored_valves(app.test_client(), admin_key) == {"api_key": "sk-new"}

    form = read_form(admin_client.get(URL).data, "valves-form")
    form.add("reset-api_key", "1")
    assert admin_client.post(URL, data=form).status_code == 302
    assert stored_valves(app.test_client(), admin_key) == {}


def test_secrets_stay_out_of_error_pages(app, admin_client, admin_key, rich):
    set_valves(app.test_client(), admin_key, {"api_key": SECRET})
    form = read_form(admin_client.get(URL).data, "valves-form")
    form.setlist("valve-max_tokens", ["0"])  # refused by the class: the page comes back with errors
    response = admin_client.post(URL, data=form)
    assert response.status_code == 400
    assert SECRET.encode() not in response.data
    assert "•••••• (stored — leave empty to keep)" in field_html(response.data, "api_key")


def test_a_typed_secret_is_not_echoed_even_when_the_function_quotes_it(app, admin_client, admin_key, rich):
    typed = "sk-typed with-a-space"
    form = read_form(admin_client.get(URL).data, "valves-form")
    form.setlist("valve-api_key", [typed])
    response = admin_client.post(URL, data=form)
    assert response.status_code == 400
    assert b"has a space" in response.data  # the function's own message, beside its field
    assert typed.encode() not in response.data
    assert b"with-a-space" not in response.data
    api_key = field_html(response.data, "api_key")
    assert "has a space" in api_key and "type it again" in api_key
    assert stored_valves(app.test_client(), admin_key) == {}


def test_options_named_by_a_method_are_offered(app, admin_id, admin_client, admin_key):
    make_function(app, admin_id, id="options_method", content=OPTIONS_METHOD)
    url = "/admin/functions/valves?id=options_method"
    page = admin_client.get(url)
    model = field_html(page.data, "model")
    assert '<select id="valve-model"' in model
    assert '<option value="c">c</option>' in model and "Default (a)" in model
    form = read_form(page.data, "valves-form")
    form.setlist("valve-model", ["c"])
    assert admin_client.post(url, data=form).status_code == 302
    response = app.test_client().get("/api/v1/functions/id/options_method/valves", headers=bearer(admin_key))
    assert response.get_json() == {"model": "c"}


NEEDS_ENDPOINT = source(
    """
    from pydantic import BaseModel, Field

    class Filter:
        class Valves(BaseModel):
            endpoint: str = Field(description="Where to send requests")
            retries: int = 2
    """
)


def test_a_required_valve_is_kept_by_reset_all_and_has_no_reset_box(app, admin_id, admin_client, admin_key):
    make_function(app, admin_id, id="needs_endpoint", content=NEEDS_ENDPOINT, name="Needs Endpoint")
    url = "/admin/functions/valves?id=needs_endpoint"
    api = app.test_client()
    headers = bearer(admin_key)
    response = api.post(
        "/api/v1/functions/id/needs_endpoint/valves/update",
        json={"endpoint": "https://x.example", "retries": 5},
        headers=headers,
    )
    assert response.status_code == 200, response.get_json()

    page = admin_client.get(url).get_data(as_text=True)
    assert 'data-testid="valve-reset-retries"' in page
    assert 'data-testid="valve-reset-endpoint"' not in page  # nothing to reset it to
    assert "Required valves have no default, so they keep their values." in page

    token = csrf_token(admin_client, url)
    done = admin_client.post(url, data={"csrf_token": token, "action": "reset_all"}, follow_redirects=True)
    assert b"except the required ones" in done.data
    stored = api.get("/api/v1/functions/id/needs_endpoint/valves", headers=headers).get_json()
    assert stored == {"endpoint": "https://x.example"}


def test_a_required_valve_not_yet_set_says_it_has_no_default(app, admin_id, admin_client):
    make_function(app, admin_id, id="needs_endpoint", content=NEEDS_ENDPOINT, name="Needs Endpoint")
    page = admin_client.get("/admin/functions/valves?id=needs_endpoint").get_data(as_text=True)
    field = re.search(r'data-testid="valve-field-endpoint".*?</div>\s*</div>', page, re.S).group(0)
    assert 'data-testid="valve-state-endpoint">Required<' in field
    assert "No default: " in field and "a value is required" in field
    assert "Default:" not in field


FACTORY_DEFAULTS = source(
    """
    from pydantic import BaseModel, Field

    class Filter:
        class Valves(BaseModel):
            stop_words: list[str] = Field(default_factory=lambda: ["END", "STOP"])
            headers: dict = Field(default_factory=lambda: {"X-Team": "blue"})
    """
)


def test_default_factory_defaults_are_shown_in_the_form_not_in_the_api(
    app, admin_id, admin_client, admin_key
):
    make_function(app, admin_id, id="factory", content=FACTORY_DEFAULTS, name="Factory")
    url = "/admin/functions/valves?id=factory"
    page = admin_client.get(url).get_data(as_text=True)
    stop = re.search(r'data-testid="valve-default-stop_words">(.*?)<', page).group(1)
    headers = re.search(r'data-testid="valve-default-headers">(.*?)<', page).group(1)
    assert "END" in stop and "STOP" in stop
    assert "X-Team" in headers
    assert "computed by the function" not in page

    # Left as shown, nothing is stored: the function's own factory gives the same.
    form = read_form(admin_client.get(url).data, "valves-form")
    assert admin_client.post(url, data=form).status_code == 302
    assert stored_valves_of(app, admin_key, "factory") == {}

    # The API's schema stays Open WebUI's: no default for factory fields.
    spec = (
        app.test_client()
        .get("/api/v1/functions/id/factory/valves/spec", headers=bearer(admin_key))
        .get_json()
    )
    assert all("default" not in prop for prop in spec["properties"].values())


def stored_valves_of(app, key, function_id):
    return app.test_client().get(f"/api/v1/functions/id/{function_id}/valves", headers=bearer(key)).get_json()
