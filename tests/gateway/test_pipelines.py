"""Open WebUI's Pipelines protocol on the gateway (Flask test client): the list of functions, the filter routes
with whom they run for, and the valves routes."""

from __future__ import annotations

import pytest

from tests.conftest import sign_in
from tests.gateway.conftest import setup_accounts_and_functions

CHAT = {"model": "echo", "messages": [{"role": "user", "content": "hi"}], "stream": True}
OTHER = {"id": "owui-7", "email": "other@example.com", "name": "Otto", "role": "user"}
STRANGER = {"id": "owui-8", "email": "stranger@elsewhere.org", "name": "Stranger", "role": "user"}


@pytest.fixture
def keys(app):
    return setup_accounts_and_functions(app)


def bearer(key: str) -> dict:
    return {"Authorization": f"Bearer {key}"}


def inlet(client, key: str, user: dict | None, function_id: str = "marker"):
    return client.post(
        f"/v1/{function_id}/filter/inlet", json={"user": user, "body": CHAT}, headers=bearer(key)
    )


def test_pipelines_lists_each_active_function_once(client, keys):
    answer = client.get("/v1/pipelines", headers=bearer(keys["user"]))

    assert answer.status_code == 200
    assert answer.get_json()["data"] == [
        {"id": "broken", "name": "Broken", "type": "pipe", "valves": False},
        {"id": "echo", "name": "Echo", "type": "pipe", "valves": False},
        {"id": "endless", "name": "Endless", "type": "pipe", "valves": False},
        {"id": "marker", "name": "Marker", "type": "filter", "valves": True},
        {"id": "multi", "name": "Multi", "type": "pipe", "valves": True},
        {"id": "proxy", "name": "Proxy", "type": "pipe", "valves": False},
        {"id": "upper", "name": "Upper", "type": "filter", "valves": False},
        {"id": "whoami", "name": "Whoami", "type": "pipe", "valves": False},
    ]


def test_filter_inlet_answers_the_new_body_with_the_named_users_valves(client, keys):
    answer = inlet(client, keys["connection"], OTHER)

    assert answer.status_code == 200
    body = answer.get_json()
    assert body["messages"][0] == {"role": "system", "content": "tag=plain"}
    assert body["messages"][-1]["content"] == "hi [in]"
    assert body["model"] == "echo" and body["stream"] is True


def test_filter_inlet_for_a_known_user_uses_their_stored_valves(client, keys):
    user = {"id": "owui-9", "email": "user@example.com", "name": "Uma", "role": "user"}

    assert inlet(client, keys["admin"], user).get_json()["messages"][0]["content"] == "tag=uma"
    assert inlet(client, keys["connection"], STRANGER).get_json()["messages"][0]["content"] == "tag=plain"


def test_a_users_key_runs_the_filter_as_itself_whatever_user_the_body_names(client, keys):
    # Uma's own valves (tag=uma), though the body claims Otto, whose valves are the defaults.
    assert inlet(client, keys["user"], OTHER).get_json()["messages"][0]["content"] == "tag=uma"


def test_a_toggle_filter_runs_on_the_route_only_when_the_chat_switched_it_on(client, keys):
    headers = bearer(keys["connection"])
    off = client.post("/v1/upper/filter/inlet", json={"user": OTHER, "body": CHAT}, headers=headers)
    on_body = {**CHAT, "metadata": {"filter_ids": ["upper"]}}
    on = client.post("/v1/upper/filter/inlet", json={"user": OTHER, "body": on_body}, headers=headers)

    assert off.get_json() == CHAT
    assert on.get_json()["messages"][-1]["content"] == "hi [upper]"


def test_filter_outlet_answers_the_new_body(client, keys):
    body = {
        "model": "echo",
        "messages": [
            {"role": "user", "content": "hi"},
            {"id": "m1", "role": "assistant", "content": "hello"},
        ],
        "chat_id": "c1",
        "session_id": "s1",
        "id": "m1",
    }
    answer = client.post(
        "/v1/marker/filter/outlet", json={"user": OTHER, "body": body}, headers=bearer(keys["connection"])
    )

    assert answer.status_code == 200
    assert answer.get_json()["messages"][-1]["content"] == "hello [out]"


def test_a_pipes_filter_routes_pass_the_body_through(client, keys):
    for model in ("echo", "multi.small"):
        answer = inlet(client, keys["connection"], OTHER, model)
        assert answer.status_code == 200 and answer.get_json() == CHAT


def test_a_failing_inlet_is_an_error_with_its_text(app, client, keys):
    from services import functions

    with app.app_context():
        functions.set_switches("refuser", is_active=True)
    answer = inlet(client, keys["connection"], OTHER, "refuser")

    assert answer.status_code == 400
    assert "this chat is not allowed" in answer.get_json()["detail"]


def test_filter_routes_of_unknown_or_inactive_functions_pass_the_body_through(client, keys):
    # Open WebUI may still list a filter switched off or deleted since it last read the models: chats go on.
    for function_id in ("nothing", "refuser"):
        answer = inlet(client, keys["connection"], OTHER, function_id)
        assert answer.status_code == 200 and answer.get_json() == CHAT


def test_filter_route_with_a_malformed_body_is_400(client, keys):
    answer = client.post("/v1/marker/filter/inlet", json={"body": "no"}, headers=bearer(keys["admin"]))

    assert answer.status_code == 400 and answer.get_json()["detail"]


def test_valves_routes_show_and_update_the_admin_valves(client, keys):
    headers = bearer(keys["connection"])

    assert client.get("/v1/marker/valves", headers=headers).get_json() == {"priority": 0, "mark": "[in]"}
    spec = client.get("/v1/marker/valves/spec", headers=headers).get_json()
    assert set(spec["properties"]) == {"priority", "mark"}
    updated = client.post("/v1/marker/valves/update", json={"priority": 3, "mark": "[IN]"}, headers=headers)
    assert updated.status_code == 200
    assert updated.get_json() == {"priority": 3, "mark": "[IN]"}
    assert inlet(client, keys["admin"], OTHER).get_json()["messages"][-1]["content"] == "hi [IN]"
    models = client.get("/v1/models", headers=headers).get_json()["data"]
    assert next(m for m in models if m["id"] == "marker")["pipeline"]["priority"] == 3


def test_valves_update_refuses_values_the_function_refuses(client, keys):
    answer = client.post("/v1/marker/valves/update", json={"priority": "high"}, headers=bearer(keys["admin"]))

    assert answer.status_code == 400 and answer.get_json()["detail"]


def test_valves_of_a_function_without_valves_are_404(client, keys):
    assert client.get("/v1/echo/valves", headers=bearer(keys["admin"])).status_code == 404


@pytest.mark.parametrize(
    "method, path",
    [("GET", "/v1/marker/valves"), ("GET", "/v1/marker/valves/spec"), ("POST", "/v1/marker/valves/update")],
)
def test_valves_routes_are_for_admin_keys_only(client, keys, method, path):
    answer = client.open(path, method=method, json={"mark": "x"}, headers=bearer(keys["user"]))

    assert answer.status_code == 403 and answer.get_json()["detail"]


def test_a_pending_accounts_key_is_refused(app, client, keys):
    from services import accounts

    with app.app_context():
        pending = accounts.create_user("Pat", "pending@example.com", "correct horse battery", role="pending")
        key = accounts.create_api_key(pending)[1]

    assert client.get("/v1/models", headers=bearer(key)).status_code == 403


def test_the_session_cookie_is_not_a_gateway_credential(client, keys):
    assert sign_in(client, "admin@example.com").status_code == 302
    assert client.get("/api/v1/functions/").status_code == 200  # signed in indeed

    assert client.get("/v1/pipelines").status_code == 401


def test_unknown_gateway_paths_answer_json(client, keys):
    answer = client.get("/v1/nothing/here", headers=bearer(keys["admin"]))

    assert answer.status_code == 404 and "detail" in answer.get_json()


def test_a_busy_runtime_is_503_with_retry_after(client, keys, monkeypatch):
    from services import running

    def busy(*_args, **_kwargs):
        raise running.RunBusy(3)

    monkeypatch.setattr(running, "run_call", busy)
    answer = client.post("/v1/chat/completions", json=CHAT, headers=bearer(keys["user"]))

    assert answer.status_code == 503
    assert answer.headers["Retry-After"] == "3"
    assert "busy" in answer.get_json()["detail"]


def test_a_body_over_the_size_limit_is_413_json(app, client, keys):
    big = {
        "model": "echo",
        "messages": [{"role": "user", "content": "x" * (app.config["MAX_CONTENT_LENGTH"] + 1)}],
    }
    answer = client.post("/v1/chat/completions", json=big, headers=bearer(keys["user"]))

    assert answer.status_code == 413 and answer.get_json()["detail"]


def test_a_body_that_is_not_json_is_400(client, keys):
    answer = client.post(
        "/v1/chat/completions",
        data="{not json",
        content_type="application/json",
        headers=bearer(keys["user"]),
    )

    assert answer.status_code == 400 and answer.get_json()["detail"]
