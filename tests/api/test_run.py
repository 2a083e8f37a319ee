"""POST /id/{id}/run: each method kind, streaming as server-sent events, access, unsaved code, and failures."""

from __future__ import annotations

import json
import threading
import time

import pytest

from tests import factories as F
from tests.api.conftest import NO_PERMISSION, NOT_FOUND, PREFIXES

FILTER = F.source(
    '''
    """
    title: Tagging Filter
    """

    from pydantic import BaseModel


    class Filter:
        class Valves(BaseModel):
            prefix: str = ">> "

        class UserValves(BaseModel):
            suffix: str = ""

        def __init__(self):
            self.valves = self.Valves()

        async def inlet(self, body: dict, __user__: dict, __event_emitter__, __metadata__: dict) -> dict:
            await __event_emitter__({"type": "status", "data": {"description": "tagging", "done": False}})
            print("inlet for", __user__["email"])
            last = body["messages"][-1]
            last["content"] = self.valves.prefix + last["content"] + __user__["valves"].suffix
            body["seen"] = {"user": __user__["name"], "chat_id": __metadata__["chat_id"]}
            await __event_emitter__({"type": "status", "data": {"description": "tagged", "done": True}})
            return body

        def outlet(self, body: dict) -> dict:
            body["messages"][-1]["content"] += " [checked]"
            return body

        def stream(self, event: dict) -> dict:
            event["seen"] = True
            return event
    '''
)

STREAM_PIPE = F.source(
    '''
    """
    title: Counting Pipe
    """

    import time


    class Pipe:
        def pipes(self):
            return [{"id": "fast", "name": "Fast"}, {"id": "slow", "name": "Slow"}]

        async def pipe(self, body: dict, __event_emitter__):
            await __event_emitter__({"type": "status", "data": {"description": "counting", "done": False}})
            print("model", body["model"])
            for word in ("one ", "two ", "three"):
                yield word
                time.sleep(0.05)
    '''
)

ACTION = F.source(
    '''
    """
    title: Shouting Action
    """


    class Action:
        actions = [{"id": "loud", "name": "Loud"}]

        async def action(self, body: dict, __id__: str, __event_emitter__) -> dict:
            await __event_emitter__({"type": "notification", "data": {"type": "info", "content": __id__}})
            return {"content": body["messages"][-1]["content"].upper(), "id": __id__}
    '''
)

RAISER = F.source(
    '''
    """
    title: Failing Filter
    """


    class Filter:
        def inlet(self, body: dict) -> dict:
            print("about to fail")
            raise ValueError("no messages here")
    '''
)

SLEEPER = F.source(
    '''
    """
    title: Sleeping Pipe
    """

    import time


    class Pipe:
        def pipe(self, body: dict) -> str:
            time.sleep(float(body.get("sleep", 0)))
            return "awake"
    '''
)

CHAT = {
    "model": "gpt-4o",
    "messages": [{"role": "user", "content": "hello"}],
    "stream": False,
    "metadata": {"chat_id": "chat-1", "message_id": "msg-1", "session_id": "sess-1"},
}


def parse_sse(data: bytes) -> list[tuple[str, object]]:
    frames = []
    for block in data.decode().split("\n\n"):
        if not block.strip():
            continue
        lines = dict(line.split(": ", 1) for line in block.split("\n"))
        frames.append((lines["event"], json.loads(lines["data"])))
    return frames


@pytest.fixture
def functions(admin_api):
    admin_api.create("tagger", FILTER)
    admin_api.create("counter", STREAM_PIPE)
    admin_api.create("shouter", ACTION)
    admin_api.create("raiser", RAISER)
    for function_id in ("tagger", "counter", "shouter", "raiser"):
        assert admin_api.post(f"/id/{function_id}/toggle").get_json()["is_active"] is True
    return admin_api


@pytest.mark.parametrize("prefix", PREFIXES)
def test_filter_inlet_with_valves_events_and_output(functions, user_api, prefix):
    functions.post("/id/tagger/valves/update", {"prefix": "## "})
    user_api.post("/id/tagger/valves/user/update", {"suffix": "!"})
    response = user_api.with_prefix(prefix).post("/id/tagger/run", {"method": "inlet", "body": CHAT})
    assert response.status_code == 200, response.get_json()
    answer = response.get_json()
    assert answer["error"] is None
    assert answer["result"]["messages"][-1]["content"] == "## hello!"
    assert answer["result"]["seen"] == {"user": "Uma User", "chat_id": "chat-1"}
    assert [event["data"]["description"] for event in answer["events"]] == ["tagging", "tagged"]
    assert answer["output"] == "inlet for user@example.com\n"
    assert answer["ms"] >= 0
    # The admin's own user valves are not the user's.
    admin_answer = functions.post("/id/tagger/run", {"method": "inlet", "body": CHAT}).get_json()
    assert admin_answer["result"]["messages"][-1]["content"] == "## hello"


def test_ids_are_generated_when_the_body_has_none(functions):
    body = {"model": "gpt-4o", "messages": [{"role": "user", "content": "hi"}]}
    answer = functions.post("/id/tagger/run", {"method": "inlet", "body": body}).get_json()
    chat_id = answer["result"]["seen"]["chat_id"]
    assert len(chat_id) == 36
    # The body gets the call's metadata, as Open WebUI's chat body has it.
    metadata = answer["result"]["metadata"]
    assert metadata["chat_id"] == chat_id and len(metadata["message_id"]) == 36
    assert metadata["user_id"] == functions.get("/id/tagger").get_json()["user_id"]


def test_filter_outlet_and_stream(functions):
    outlet_body = {
        "model": "gpt-4o",
        "messages": [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "Hello!"}],
        "chat_id": "chat-1",
        "id": "msg-2",
    }
    answer = functions.post("/id/tagger/run", {"method": "outlet", "body": outlet_body}).get_json()
    assert answer["result"]["messages"][-1]["content"] == "Hello! [checked]"
    chunk = {"choices": [{"delta": {"content": "x"}}]}
    answer = functions.post("/id/tagger/run", {"method": "stream", "body": chunk}).get_json()
    assert answer["result"] == {**chunk, "seen": True}


def test_filter_without_the_method_passes_the_body_on(functions):
    answer = functions.post("/id/tagger/run", {"method": "request", "body": CHAT}).get_json()
    assert answer["error"] is None and answer["result"] == CHAT


def test_pipe_whole_answer_with_sub_pipe(functions):
    answer = functions.post("/id/counter/run", {"method": "pipe", "body": CHAT, "sub": "slow"}).get_json()
    assert answer["error"] is None
    assert answer["text"] == "one two three"
    assert answer["result"] == [["text", "one "], ["text", "two "], ["text", "three"]]
    assert answer["output"] == "model counter.slow\n"
    assert answer["events"][0]["type"] == "status"


def test_pipe_streams_server_sent_events_in_order(functions, user_api):
    response = user_api.post("/id/counter/run", {"method": "pipe", "body": CHAT, "stream": True})
    assert response.status_code == 200
    assert response.mimetype == "text/event-stream"
    frames = parse_sse(response.data)
    names = [name for name, _ in frames]
    assert names[0] == "event" and names[-1] == "done"
    chunks = [data["value"] for name, data in frames if name == "chunk"]
    assert chunks == ["one ", "two ", "three"]
    assert names.index("event") < names.index("chunk")
    output = "".join(data["text"] for name, data in frames if name == "output")
    assert output == "model gpt-4o\n"
    assert frames[-1][1]["ms"] >= 0


def test_a_stream_is_cancelled_when_the_client_goes_away(functions, monkeypatch):
    from blueprints.api import running as route
    from services import running

    closed = threading.Event()
    original = running.Run.close

    def close(self):
        closed.set()
        original(self)

    monkeypatch.setattr(running.Run, "close", close)
    response = functions.post(
        "/id/counter/run", {"method": "pipe", "body": CHAT, "stream": True}, buffered=False
    )
    assert response.status_code == 200
    first = next(iter(response.response))
    assert b"event:" in first
    response.close()  # what the server does when the client goes away: the generator is closed
    assert closed.wait(5)
    assert route.sse_frames  # the route's generator is the one that closes the call


def test_action_with_sub_action(functions):
    body = {"model": "gpt-4o", "messages": [{"role": "assistant", "content": "quiet"}], "id": "m1"}
    answer = functions.post("/id/shouter/run", {"method": "action", "body": body, "sub": "loud"}).get_json()
    assert answer["result"] == {"content": "QUIET", "id": "loud"}
    assert answer["events"] == [{"type": "notification", "data": {"type": "info", "content": "loud"}}]


def test_the_function_raising_is_the_runs_answer_with_its_line(functions):
    response = functions.post("/id/raiser/run", {"method": "inlet", "body": CHAT})
    assert response.status_code == 200
    answer = response.get_json()
    assert answer["result"] is None
    assert answer["error"]["type"] == "ValueError"
    assert answer["error"]["message"] == "no messages here"
    assert answer["error"]["line"] == 9
    assert "raise ValueError" in answer["error"]["traceback"]
    assert answer["output"] == "about to fail\n"


def test_a_failing_stream_ends_with_an_error_frame(functions):
    response = functions.post("/id/raiser/run", {"method": "inlet", "body": CHAT, "stream": True})
    frames = parse_sse(response.data)
    assert frames[-1][0] == "error"
    assert frames[-1][1]["error"]["line"] == 9


@pytest.mark.parametrize(
    "function_id, method",
    [("tagger", "pipe"), ("tagger", "action"), ("counter", "inlet"), ("shouter", "outlet")],
)
def test_a_method_the_type_has_not_is_400(functions, function_id, method):
    response = functions.post(f"/id/{function_id}/run", {"method": method, "body": CHAT})
    assert response.status_code == 400, response.get_json()
    assert method in response.get_json()["detail"]


def test_unknown_method_is_refused_by_the_body_shape(functions):
    response = functions.post("/id/tagger/run", {"method": "nope", "body": CHAT})
    assert response.status_code == 422
    assert response.get_json()["detail"][0]["loc"] == ["body", "method"]


def test_unknown_function_is_404(functions, user_api):
    for api in (functions, user_api):
        response = api.post("/id/nothing/run", {"method": "inlet", "body": CHAT})
        assert response.status_code == 404 and response.get_json()["detail"] == NOT_FOUND


def test_users_run_only_active_functions(functions, user_api):
    functions.post("/id/tagger/toggle")  # now inactive
    response = user_api.post("/id/tagger/run", {"method": "inlet", "body": CHAT})
    assert response.status_code == 404
    assert functions.post("/id/tagger/run", {"method": "inlet", "body": CHAT}).status_code == 200


def test_unsaved_content_for_admins_only(functions, user_api):
    code = FILTER.replace('">> "', '"draft: "')
    answer = functions.post("/id/tagger/run", {"method": "inlet", "body": CHAT, "content": code}).get_json()
    assert answer["result"]["messages"][-1]["content"] == "draft: hello"
    # Stored valves still apply to unsaved code of a stored function.
    functions.post("/id/tagger/valves/update", {"prefix": "## "})
    answer = functions.post("/id/tagger/run", {"method": "inlet", "body": CHAT, "content": code}).get_json()
    assert answer["result"]["messages"][-1]["content"] == "## hello"
    # The stored code is unchanged.
    assert functions.get("/id/tagger").get_json()["content"] == FILTER
    # A function not saved yet runs on its defaults.
    answer = functions.post(
        "/id/brand_new/run", {"method": "pipe", "body": CHAT, "content": F.PIPE}
    ).get_json()
    assert answer["text"] == "hello"
    response = user_api.post("/id/tagger/run", {"method": "inlet", "body": CHAT, "content": code})
    assert response.status_code == 401 and response.get_json()["detail"] == NO_PERMISSION


def test_unsaved_code_that_does_not_load_fails_with_its_line(functions):
    response = functions.post("/id/tagger/run", {"method": "inlet", "body": CHAT, "content": F.SYNTAX_ERROR})
    assert response.status_code == 200
    error = response.get_json()["error"]
    assert error["type"] == "SyntaxError" and error["line"]


@pytest.mark.parametrize("app_config", [{"SLUICE_RUNTIME_WORKERS": 1, "SLUICE_RUN_BUSY_WAIT": 0.2}])
def test_busy_runtime_is_503_with_retry_after(app, functions):
    import loader

    functions.create("sleeper", SLEEPER)
    functions.create("sleeper_two", SLEEPER)
    started = threading.Event()
    results = {}

    def slow():
        client = app.test_client()
        started.set()
        results["slow"] = client.post(
            "/api/v1/functions/id/sleeper/run",
            json={"method": "pipe", "body": {"sleep": 3}},
            headers=functions.headers(),
        )

    thread = threading.Thread(target=slow)
    thread.start()
    started.wait()
    try:
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            response = functions.post("/id/sleeper_two/run", {"method": "pipe", "body": {}})
            if response.status_code == 503:
                break
            time.sleep(0.2)
        assert response.status_code == 503, response.get_json()
        assert int(response.headers["Retry-After"]) >= 1
        assert "busy" in response.get_json()["detail"]
    finally:
        thread.join(15)
        loader.configure(runtime_workers=4, busy_wait=2.0)
    assert results["slow"].get_json()["result"] == [["text", "awake"]]


def test_a_type_without_runnable_methods_is_refused():
    from services import running

    with pytest.raises(running.BadMethod, match="has no method Sluice can run"):
        running.check_method("inlet", "event")
    assert running.check_method("inlet", None) == "inlet"  # code that does not load: the run itself says why
