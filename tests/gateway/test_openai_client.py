"""The gateway seen by the `openai` client library against a running Sluice: models, chats with and without
streaming through pipes and filters, events inline, errors inside a stream, keys and whom a chat runs for."""

from __future__ import annotations

import json
import time

import openai
import pytest
import requests

MESSAGES = [{"role": "user", "content": "good morning"}]


def raw_stream(gateway, body: dict, key: str = "user") -> list:
    """The server-sent events of a streaming chat, parsed (``"[DONE]"`` kept as the string)."""
    with requests.Session() as session:
        session.trust_env = False
        response = session.post(
            gateway.base + "/chat/completions",
            json={**body, "stream": True},
            headers={"Authorization": f"Bearer {gateway.keys[key]}"},
            stream=True,
            timeout=60,
        )
        assert response.status_code == 200, response.text
        assert response.headers["Content-Type"].startswith("text/event-stream")
        frames = []
        for line in response.iter_lines(decode_unicode=True):
            if line.startswith("data: "):
                data = line[6:]
                frames.append(data if data == "[DONE]" else json.loads(data))
        return frames


def test_models_lists_the_active_pipes_and_a_manifolds_sub_pipes(gateway):
    models = gateway.client().models.list()
    by_id = {model.id: model for model in models.data}

    assert {"echo", "multi.small", "multi.large", "broken", "whoami"} <= set(by_id)
    assert by_id["multi.small"].name == "Multi/Small"
    assert by_id["echo"].name == "Echo"
    assert by_id["echo"].owned_by == "openai"
    assert by_id["echo"].pipeline == {"type": "pipe", "valves": False}
    assert by_id["multi.large"].pipeline == {"type": "pipe", "valves": True}
    assert "multi" not in by_id  # a manifold is its sub-pipes


def test_models_has_the_pipelines_fields_for_open_webui(gateway):
    answer = requests.get(
        gateway.base + "/models", headers={"Authorization": f"Bearer {gateway.keys['user']}"}, timeout=30
    ).json()

    assert answer["pipelines"] is True and answer["object"] == "list"
    filters = {
        item["id"]: item["pipeline"] for item in answer["data"] if item["pipeline"]["type"] == "filter"
    }
    assert filters["marker"] == {"type": "filter", "valves": True, "pipelines": ["*"], "priority": 0}
    assert filters["upper"]["pipelines"] == []  # a toggle filter: Open WebUI never switches it on
    assert "refuser" not in filters  # inactive
    assert all("pipe" not in item for item in answer["data"])


def test_a_chat_without_streaming_runs_the_inlets_the_pipe_and_the_outlets(gateway):
    completion = gateway.client().chat.completions.create(model="echo", messages=MESSAGES)

    assert completion.object == "chat.completion"
    assert completion.model == "echo"
    assert completion.id.startswith("echo-")
    choice = completion.choices[0]
    assert choice.finish_reason == "stop" and choice.message.role == "assistant"
    # The marker's inlet changed the message the pipe echoed; its outlet marked the answer.
    assert choice.message.content == "echo: good morning [in]  [out]"


def test_a_streaming_chat_sends_chunks_then_stop_then_done(gateway):
    stream = gateway.client().chat.completions.create(model="echo", messages=MESSAGES, stream=True)
    text, finish = "", []
    for part in stream:
        if getattr(part, "choices", None):
            text += part.choices[0].delta.content or ""
            finish.append(part.choices[0].finish_reason)

    assert text == "echo: good morning [in] "
    assert finish[-1] == "stop" and set(finish[:-1]) == {None}


def test_the_chunks_have_open_webuis_shape_and_events_come_inline(gateway):
    frames = raw_stream(gateway, {"model": "echo", "messages": MESSAGES})

    assert frames[-1] == "[DONE]"
    chunks = [frame for frame in frames[:-1] if "event" not in frame]
    events = [frame["event"] for frame in frames[:-1] if "event" in frame]
    first = chunks[0]
    assert first["object"] == "chat.completion.chunk" and first["model"] == "echo"
    assert first["id"].startswith("echo-") and isinstance(first["created"], int)
    assert first["choices"] == [
        {"index": 0, "delta": {"content": "echo: "}, "logprobs": None, "finish_reason": None}
    ]
    assert chunks[-1]["choices"] == [{"index": 0, "delta": {}, "logprobs": None, "finish_reason": "stop"}]
    # The filter's inlet event first, then the pipe's, in order.
    assert [event["data"]["description"] for event in events] == ["marking", "thinking", "done"]
    assert all(event["type"] == "status" for event in events)


def test_a_manifold_sub_pipe_is_a_model_of_its_own(gateway):
    completion = gateway.client().chat.completions.create(model="multi.large", messages=MESSAGES)

    assert completion.choices[0].message.content == "model multi.large [out]"


def test_a_pipes_own_completion_object_is_answered_as_it_is_with_the_outlets_change(gateway):
    completion = gateway.client().chat.completions.create(model="proxy", messages=MESSAGES)

    assert completion.id == "upstream-1" and completion.model == "gpt-x"
    assert completion.usage.total_tokens == 5
    assert completion.choices[0].message.content == "from upstream [out]"


def test_a_pipes_other_dict_is_answered_as_it_is(gateway):
    answer = requests.post(
        gateway.base + "/chat/completions",
        json={"model": "proxy", "messages": [{"role": "user", "content": "plain"}]},
        headers={"Authorization": f"Bearer {gateway.keys['user']}"},
        timeout=60,
    )

    assert answer.status_code == 200 and answer.json() == {"answer": 42}


def test_an_unknown_model_is_404_with_a_detail(gateway):
    with pytest.raises(openai.NotFoundError) as caught:
        gateway.client().chat.completions.create(model="multi.huge", messages=MESSAGES)

    assert "multi.huge" in caught.value.body["detail"]


def test_an_error_inside_a_stream_is_an_error_chunk_then_done(gateway):
    frames = raw_stream(gateway, {"model": "broken", "messages": MESSAGES})

    assert frames[-1] == "[DONE]"
    assert "the upstream went away" in frames[-2]["error"]["detail"]
    chunks = [frame for frame in frames[:-2] if "event" not in frame]
    assert [chunk["choices"][0]["delta"]["content"] for chunk in chunks] == ["partial "]


def test_an_error_without_streaming_is_a_json_detail(gateway):
    with pytest.raises(openai.BadRequestError) as caught:
        gateway.client().chat.completions.create(model="broken", messages=MESSAGES)

    assert "the upstream went away" in caught.value.body["detail"]


def test_a_failing_inlet_fails_the_chat_with_its_text(gateway):
    gateway.switch("refuser", active=True)
    try:
        with pytest.raises(openai.BadRequestError) as caught:
            gateway.client().chat.completions.create(model="echo", messages=MESSAGES, stream=True)
    finally:
        gateway.switch("refuser", active=False)

    assert "this chat is not allowed" in caught.value.body["detail"]


def test_a_toggle_filter_runs_only_when_the_chat_names_it_and_filters_each_chunk(gateway):
    client = gateway.client()
    plain = client.chat.completions.create(model="echo", messages=MESSAGES, stream=True)
    upper = client.chat.completions.create(
        model="echo", messages=MESSAGES, stream=True, extra_body={"filter_ids": ["upper"]}
    )

    def text(stream):
        return "".join(
            part.choices[0].delta.content or "" for part in stream if getattr(part, "choices", None)
        )

    assert text(plain) == "echo: good morning [in] "
    assert text(upper) == "ECHO: GOOD MORNING [IN] [UPPER] "


@pytest.mark.parametrize("key", [None, "sk-not-a-real-key-0123456789012345678901234567", "not even a key"])
def test_every_route_needs_a_valid_key(gateway, key):
    headers = {} if key is None else {"Authorization": f"Bearer {key}"}
    for method, path in [
        ("GET", "/models"),
        ("POST", "/chat/completions"),
        ("GET", "/pipelines"),
        ("POST", "/marker/filter/inlet"),
        ("GET", "/marker/valves"),
    ]:
        response = requests.request(method, gateway.base + path, headers=headers, json={}, timeout=30)
        assert response.status_code == 401, (method, path, response.text)
        assert response.json()["detail"]


def test_the_client_library_reports_a_bad_key_as_authentication_error(gateway):
    with pytest.raises(openai.AuthenticationError):
        gateway.client("sk-not-a-real-key-0123456789012345678901234567").models.list()


def whoami(gateway, key: str, claimed: dict | None = None, stream: bool = False) -> str:
    extra = {"user": claimed} if claimed else {}
    answer = gateway.client(key).chat.completions.create(
        model="whoami", messages=MESSAGES, stream=stream, extra_body=extra
    )
    if stream:
        return "".join(p.choices[0].delta.content or "" for p in answer if getattr(p, "choices", None))
    return answer.choices[0].message.content


def test_a_chat_runs_as_the_keys_owner_with_their_user_valves(gateway):
    assert whoami(gateway, "user") == "hi user@example.com [out]"
    assert whoami(gateway, "other", stream=True) == "ahoy other@example.com"


def test_a_users_key_claiming_another_user_still_runs_as_itself(gateway):
    claimed = {"id": "x", "email": "other@example.com", "name": "Otto", "role": "user"}

    # ... and its filters run: only a connection that may speak for others has run them through the routes.
    assert whoami(gateway, "user", claimed) == "hi user@example.com [out]"


@pytest.mark.parametrize("key", ["admin", "connection"])
def test_an_admin_or_connection_key_acts_for_the_claimed_user_with_their_valves(gateway, key):
    claimed = {"id": "owui-1", "email": "Other@Example.com", "name": "Otto", "role": "user"}

    assert whoami(gateway, key, claimed) == "ahoy other@example.com"


def test_an_unknown_claimed_user_runs_with_default_user_valves(gateway):
    claimed = {"id": "owui-2", "email": "stranger@elsewhere.org", "name": "Stranger", "role": "user"}

    assert whoami(gateway, "connection", claimed) == "hello stranger@elsewhere.org"


def test_a_connection_key_is_refused_by_the_json_api(gateway):
    response = requests.get(
        gateway.url + "/api/v1/functions/",
        headers={"Authorization": f"Bearer {gateway.keys['connection']}"},
        timeout=30,
    )

    assert response.status_code == 401


def test_function_code_sees_the_request_headers_but_not_the_key(gateway):
    completion = gateway.client().chat.completions.create(
        model="whoami",
        messages=[{"role": "user", "content": "headers"}],
        extra_headers={"X-OpenWebUI-Chat-Id": "chat-42"},
    )

    assert completion.choices[0].message.content == "None|chat-42 [out]"


def test_a_client_that_goes_away_stops_the_pipe(gateway):
    from loader.runtime.client import worker_summary

    with requests.post(
        gateway.base + "/chat/completions",
        json={"model": "endless", "messages": MESSAGES, "stream": True},
        headers={"Authorization": f"Bearer {gateway.keys['user']}"},
        stream=True,
        timeout=60,
    ) as response:
        lines = response.iter_lines(decode_unicode=True)
        assert any(line.startswith("data: ") and '"0 "' in line for line in lines)
        assert worker_summary().get("busy", 0) >= 1
    deadline = time.monotonic() + 10
    while worker_summary().get("busy", 0) and time.monotonic() < deadline:
        time.sleep(0.1)

    assert worker_summary().get("busy", 0) == 0
