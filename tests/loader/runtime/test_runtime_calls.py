"""Calling filters and actions with Open WebUI's conventions: arguments, valves, user valves, events."""

from __future__ import annotations

import asyncio
import sys

import pytest

from loader.runtime import CallContext, build_kwargs, invoke, offered_names
from loader.runtime.context import RequestStandIn

USER = {"id": "u1", "email": "ada@example.com", "name": "Ada", "role": "user"}


def chat(text="hi", **extra):
    return {
        "model": "m1",
        "messages": [{"role": "user", "content": text}],
        "metadata": {"chat_id": "c1", "message_id": "m9", "session_id": "s1", "files": [{"id": "f"}]},
        **extra,
    }


def context(method, body=None, **fields):
    return CallContext(function_id="fn", method=method, body=chat() if body is None else body, **fields)


def test_inlet_gets_body_and_only_the_names_it_takes(load, run):
    instance = load("filter_sync")
    ctx = context("inlet", user=USER, model={"id": "m1"}, headers={"X-Test": "yes"}, oauth_token={"t": 1})

    result = run(invoke(instance, "inlet", ctx))

    assert result["messages"][-1]["content"] == "[sync] hi"
    seen = instance.seen["inlet"]
    assert seen["id"] == "fn"
    assert seen["model"] == {"id": "m1"}
    assert seen["chat_id"] == "c1" and seen["message_id"] == "m9"
    assert seen["metadata"]["session_id"] == "s1"
    assert seen["oauth_token"] == {"t": 1}
    assert seen["user"]["email"] == "ada@example.com"
    assert seen["request"].headers["x-test"] == "yes"


def test_offered_names_follow_the_table():
    assert "__body__" in offered_names("stream") and "__body__" not in offered_names("inlet")
    assert "__features__" in offered_names("request") and "__features__" not in offered_names("stream")
    assert "__chat_id__" not in offered_names("outlet")
    assert "__session_id__" in offered_names("pipe") and "__session_id__" not in offered_names("inlet")
    assert "__model__" not in offered_names("pipe") and "__id__" not in offered_names("pipe")
    assert "__metadata__" not in offered_names("action") and "__files__" not in offered_names("action")
    with pytest.raises(ValueError):
        offered_names("tool")


def test_stream_gets_event_and_body(load, run):
    instance = load("filter_sync")
    event = {"choices": [{"delta": {"content": "abc"}}]}
    ctx = context("stream", body=event, request_body={"model": "m1"})

    result = run(invoke(instance, "stream", ctx))

    assert result == {"choices": [{"delta": {"content": "ABC"}}]}
    assert instance.seen["stream"] == {"body": {"model": "m1"}}


def test_request_gets_features(load, run):
    instance = load("filter_sync")
    ctx = context("request", body=chat(features={"web_search": True}))

    result = run(invoke(instance, "request", ctx))

    assert result["requested"] is True
    assert instance.seen["request"] == {"features": {"web_search": True}}


def test_outlet_is_not_offered_chat_id(load, run):
    instance = load("filter_sync")
    body = {"model": "m1", "messages": [{"role": "assistant", "content": "done"}], "chat_id": "c1"}

    result = run(
        invoke(instance, "outlet", context("outlet", body=body, user=USER, user_valves={"tag": "blue"}))
    )

    assert result["messages"][-1]["content"] == "done (blue)"
    assert instance.seen["outlet"]["chat_id"] == "not offered"


def test_async_filter_phases_are_awaited_and_a_falsy_stream_comes_back(load, run, sink):
    instance = load("filter_async")

    inlet = run(invoke(instance, "inlet", context("inlet"), sink))
    request = run(invoke(instance, "request", context("request")))
    kept = run(invoke(instance, "stream", context("stream", body={"x": 1})))
    dropped = run(invoke(instance, "stream", context("stream", body={"drop": True})))

    assert inlet["messages"][-1]["content"] == "hi!"
    assert request["async_request"] is True
    assert kept == {"x": 1, "seen": True}
    assert dropped is None
    assert [event["data"]["done"] for event in sink.of("event")] == [False, True]


def test_a_missing_filter_phase_passes_the_body_on(load, run):
    instance = load("filter_kwargs_only")
    body = {"choices": []}
    assert run(invoke(instance, "stream", context("stream", body=body))) == body


def test_a_missing_pipe_method_is_an_error(load, run):
    instance = load("filter_kwargs_only")
    with pytest.raises(AttributeError, match="no pipe"):
        run(invoke(instance, "pipe", context("pipe")))


def test_kwargs_catch_all_receives_nothing(load, run):
    instance = load("filter_kwargs_only")

    run(invoke(instance, "inlet", context("inlet", user=USER)))
    outlet = run(invoke(instance, "outlet", context("outlet", user=USER)))

    assert instance.got == {}
    assert outlet == {"outlet_kwargs": ["body"]}  # the first argument is always passed by name


def test_user_valves_is_a_user_valves_instance_with_stored_values_and_defaults(load, run):
    instance = load("filter_sync")

    run(invoke(instance, "inlet", context("inlet", user=USER, user_valves={"tag": "red"})))

    valves = instance.seen["inlet"]["user"]["valves"]
    assert isinstance(valves, instance.UserValves)
    assert valves.tag == "red" and valves.shout is False


def test_user_valves_are_defaults_when_none_are_stored(load, run):
    instance = load("filter_sync")

    run(invoke(instance, "inlet", context("inlet", user=None)))

    valves = instance.seen["inlet"]["user"]["valves"]
    assert isinstance(valves, instance.UserValves)
    assert valves.tag == "none"


def test_an_invalid_stored_user_value_falls_back_to_its_default_and_is_noted(load, run, capsys):
    instance = load("filter_sync")
    ctx = context("inlet", user=USER, user_valves={"tag": "kept", "shout": "not a bool"})

    run(invoke(instance, "inlet", ctx))

    valves = instance.seen["inlet"]["user"]["valves"]
    assert valves.tag == "kept" and valves.shout is False
    assert ctx.notes == ["UserValves: stored value refused, default used for shout"]
    assert "default used for shout" in capsys.readouterr().err


def test_each_call_gets_its_own_user_dict(load, run):
    instance = load("filter_sync")
    user = dict(USER)

    run(invoke(instance, "inlet", context("inlet", user=user, user_valves={"tag": "a"})))
    first = instance.seen["inlet"]["user"]
    run(invoke(instance, "inlet", context("inlet", user=user, user_valves={"tag": "b"})))

    assert first["valves"].tag == "a"
    assert instance.seen["inlet"]["user"] is not first
    assert "valves" not in user


def test_admin_valves_are_set_before_each_call_and_never_leak(load, run):
    instance = load("pipe_str")

    first = run(
        invoke(instance, "pipe", context("pipe", user=USER, admin_valves={"api_key": "k1", "greeting": "Hi"}))
    )
    second = run(invoke(instance, "pipe", context("pipe", user=USER, admin_valves={})))
    third = run(invoke(instance, "pipe", context("pipe", user=USER, admin_valves={"api_key": None})))

    assert first == [("text", "Hi, stranger (key k1)")]
    assert second == [("text", "Hello, stranger (key unset)")]
    assert third == second  # stored None values are dropped


def test_an_invalid_stored_admin_value_falls_back_to_its_default(load, run, capsys):
    instance = load("filter_async")
    ctx = context("inlet", admin_valves={"priority": "high", "suffix": "?"})

    result = run(invoke(instance, "inlet", ctx))

    assert result["messages"][-1]["content"] == "hi?"
    assert instance.valves.priority == 5
    assert ctx.notes == ["Valves: stored value refused, default used for priority"]
    capsys.readouterr()


def test_request_stand_in_has_headers_and_app_state_and_names_what_is_missing():
    from loader.runtime.context import not_available

    request = RequestStandIn({"Authorization": "Bearer x"})

    assert request.headers["authorization"] == "Bearer x"
    assert request.headers.get("AUTHORIZATION") == "Bearer x"
    assert getattr(request.app.state, "config", None) is None
    with pytest.raises(NotImplementedError, match=r"request\.app\.state\.config is not available in Sluice"):
        request.app.state.config  # noqa: B018
    with pytest.raises(NotImplementedError, match=r"request\.url is not available in Sluice"):
        request.url  # noqa: B018
    request.app.state.mine = 1
    assert request.app.state.mine == 1
    assert isinstance(not_available("x"), AttributeError)


def test_not_available_is_the_compat_layers_error_when_that_is_loaded(monkeypatch):
    import importlib.util
    import pathlib

    from loader.runtime import context as module

    path = pathlib.Path(module.__file__).parents[1] / "compat" / "open_webui" / "_unavailable.py"
    spec = importlib.util.spec_from_file_location("open_webui._unavailable", path)
    compat = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(compat)
    monkeypatch.setitem(sys.modules, "open_webui._unavailable", compat)

    with pytest.raises(compat.NotAvailableInSluice):
        RequestStandIn().app.state.config  # noqa: B018


def test_user_is_dumped_as_open_webuis_user_model_when_the_compat_layer_is_loaded(monkeypatch, load, run):
    import types

    from pydantic import BaseModel

    class UserModel(BaseModel):
        id: str
        email: str
        name: str
        role: str = "pending"
        bio: str | None = None
        created_at: int

    monkeypatch.setitem(sys.modules, "open_webui.models.users", types.SimpleNamespace(UserModel=UserModel))
    instance = load("filter_sync")

    run(invoke(instance, "inlet", context("inlet", user=USER)))

    user = instance.seen["inlet"]["user"]
    assert user["bio"] is None and user["created_at"] == 0 and user["role"] == "user"


def test_action_gets_its_sub_id_model_and_event_call_records_the_question(load, run, sink):
    instance = load("action_sub")
    ctx = context("action", user=USER, model={"id": "m1"}, sub_id="up", user_valves={"weight": 3})

    result = run(invoke(instance, "action", ctx, sink))

    assert result == {"rated": "up", "answer": None, "weight": 3, "metadata": None, "model": {"id": "m1"}}
    assert [event["type"] for event in ctx.events] == ["confirmation", "notification"]
    assert ctx.events[0]["data"] == {"title": "Sure?", "message": "Rate it"}
    assert sink.of("event") == ctx.events


def test_event_call_can_be_answered(load, run):
    instance = load("action_sub")

    async def answer(question):
        return question["type"] == "confirmation"

    result = run(invoke(instance, "action", context("action", sub_id="down"), answer=answer))

    assert result["answer"] is True and result["rated"] == "down"


def test_action_id_is_the_function_id_without_a_sub_id(load, run):
    instance = load("action_sub")
    assert run(invoke(instance, "action", context("action")))["rated"] == "fn"


def test_events_reach_the_sink_before_the_method_returns(load, run):
    instance = load("pipe_async_generator")
    instance.gate = None
    seen_before_return = []

    async def scenario():
        gate = asyncio.Event()
        instance.gate = gate
        sent = []

        def sink(kind, payload):
            sent.append((kind, payload))
            if len(sent) == 2:  # the event and the first chunk are out while the pipe still waits
                seen_before_return.extend(sent)
                gate.set()

        task = asyncio.create_task(invoke(instance, "pipe", context("pipe"), sink))
        items = await task
        return sent, items

    sent, items = run(scenario())

    assert seen_before_return == [
        ("event", {"type": "status", "data": {"description": "starting", "done": False}}),
        ("chunk", ("text", "one")),
    ]
    assert [kind for kind, _ in sent] == ["event", "chunk", "chunk", "event"]
    assert items == [("text", "one"), ("text", "two")]


def test_an_event_is_forwarded_while_a_filter_still_runs(run):
    async def scenario():
        release = asyncio.Event()
        observed = []

        class Filter:
            async def inlet(self, body, __event_emitter__):
                await __event_emitter__({"type": "status", "data": {"description": "working"}})
                await release.wait()
                return body

        async def sink(kind, payload):
            observed.append(payload["data"]["description"])
            release.set()

        result = await asyncio.wait_for(invoke(Filter(), "inlet", context("inlet"), sink), 5)
        return observed, result

    observed, result = run(scenario())
    assert observed == ["working"] and result["model"] == "m1"


def test_an_event_that_is_not_a_dict_fails_clearly(run):
    class Filter:
        async def inlet(self, body, __event_emitter__):
            await __event_emitter__("status")

    with pytest.raises(TypeError, match=r"__event_emitter__ takes a dict"):
        run(invoke(Filter(), "inlet", context("inlet")))


def test_cancelling_a_streaming_pipe_closes_its_generator(load, run):
    instance = load("pipe_async_generator")

    async def scenario():
        instance.gate = asyncio.Event()  # never set
        first = asyncio.Event()

        def sink(kind, payload):
            if kind == "chunk":
                first.set()

        task = asyncio.create_task(invoke(instance, "pipe", context("pipe"), sink))
        await asyncio.wait_for(first.wait(), 5)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task

    run(scenario())
    assert instance.closed is True


def test_pipes_without_chat_ids_get_no_emitter_when_following_open_webui_exactly():
    def pipe(body, __event_emitter__=None, __event_call__=None):
        pass

    from loader.runtime import EventRecorder

    events = EventRecorder()
    bare = CallContext(function_id="fn", method="pipe", body={"model": "fn"}, always_emit=False)
    with_ids = context("pipe", always_emit=False)

    assert build_kwargs("pipe", pipe, bare, events=events)["__event_emitter__"] is None
    assert build_kwargs("pipe", pipe, with_ids, events=events)["__event_call__"] == events.call
    assert (
        build_kwargs("pipe", pipe, bare.__class__(function_id="fn", method="pipe"), events=events)[
            "__event_emitter__"
        ]
        == events.emit
    )


def test_context_from_a_frame_ignores_unknown_keys():
    ctx = CallContext.from_dict(
        {"function_id": "fn", "method": "inlet", "body": {}, "future": 1, "events": [1]}
    )
    assert ctx.function_id == "fn" and ctx.events == []


def test_a_valves_class_is_not_set_on_an_instance_without_valves(run):
    from pydantic import BaseModel

    class Filter:
        class Valves(BaseModel):
            level: int = 1

        def inlet(self, body):
            return body

    instance = Filter()
    run(invoke(instance, "inlet", context("inlet", admin_valves={"level": 2})))
    assert not hasattr(instance, "valves")


def test_user_valves_stored_as_something_else_than_a_mapping_are_defaults(load, run, capsys):
    instance = load("filter_sync")
    ctx = context("inlet", user=USER, user_valves=["tag", "x"])

    run(invoke(instance, "inlet", ctx))

    assert instance.seen["inlet"]["user"]["valves"].tag == "none"
    assert ctx.notes == ["UserValves: stored values are not a mapping (list); defaults used"]
    capsys.readouterr()
