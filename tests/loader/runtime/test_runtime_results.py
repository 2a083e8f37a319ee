"""What a pipe returns, in every style, as the items the worker streams on."""

from __future__ import annotations

import pytest

from loader.runtime import CallContext, invoke, iterate_result

USER = {"id": "u1", "email": "ada@example.com", "name": "Ada", "role": "user"}
METADATA = {"chat_id": "c1", "message_id": "m9", "session_id": "s1", "files": [{"id": "f"}], "task": "title"}


def context(body=None, **fields):
    body = {"model": "fn", "messages": [{"role": "user", "content": "hi"}], "metadata": METADATA} | (
        body or {}
    )
    return CallContext(function_id="fn", method="pipe", body=body, **fields)


def items_of(run, value):
    async def collect():
        return [item async for item in iterate_result(value)]

    return run(collect())


def test_string_pipe_gets_the_pipe_arguments_and_metadata_is_popped(load, run):
    instance = load("pipe_str")
    ctx = context(user=USER, user_valves={"name": "Ada"}, tools={"t": {}})

    items = run(invoke(instance, "pipe", ctx))

    assert items == [("text", "Hello, Ada (key unset)")]
    seen = instance.seen
    assert "metadata" not in seen["body"] and "metadata" in ctx.body
    assert seen["metadata"] == METADATA
    assert (seen["chat_id"], seen["message_id"], seen["session_id"]) == ("c1", "m9", "s1")
    assert seen["files"] == [{"id": "f"}]
    assert seen["tools"] == {"t": {}}
    assert seen["task"] == "title" and seen["task_body"] is None
    assert seen["model"] is None and seen["id"] is None  # not offered to pipes: their defaults stay


def test_dict_pipe_is_one_json_item(load, run, sink):
    items = run(invoke(load("pipe_dict"), "pipe", context(), sink))
    assert items == [
        ("json", {"id": "x", "object": "chat.completion", "choices": [{"message": {"content": "as a dict"}}]})
    ]
    assert sink.of("chunk") == items


def test_pydantic_model_pipe_is_one_json_item(load, run):
    assert run(invoke(load("pipe_model"), "pipe", context())) == [
        ("json", {"content": "from a model", "tokens": 3})
    ]


def test_generator_pipe_gives_each_element(load, run, sink):
    instance = load("pipe_generator")

    items = run(invoke(instance, "pipe", context(), sink))

    assert items == [
        ("text", "Hel"),
        ("text", "lo"),
        ("json", {"choices": [{"delta": {"content": " dict"}}]}),
        ("json", {"n": 1}),
        ("json", {"choices": [{"delta": {"content": " sse"}}]}),
    ]
    assert sink.of("chunk") == items
    assert instance.closed


def test_async_generator_pipe_gives_each_element_and_its_events(load, run, sink):
    items = run(invoke(load("pipe_async_generator"), "pipe", context(), sink))

    assert items == [("text", "one"), ("text", "two")]
    assert [kind for kind, _ in sink.sent] == ["event", "chunk", "chunk", "event"]


def test_streaming_response_pipe_gives_its_server_sent_events(load, run):
    items = run(invoke(load("pipe_streaming_response"), "pipe", context()))

    assert items == [
        ("json", {"choices": [{"delta": {"content": "Hi"}}]}),
        ("json", {"choices": [{"delta": {"content": " there"}}]}),
        ("sse", "data: not json"),
    ]


def test_json_response_pipe_gives_its_body(load, run):
    assert run(invoke(load("pipe_streaming_response"), "pipe", context({"plain": True}))) == [
        ("json", {"answer": "plain json"})
    ]


def test_collect_false_only_streams(load, run, sink):
    assert run(invoke(load("pipe_generator"), "pipe", context(), sink, collect=False)) is None
    assert len(sink.of("chunk")) == 5


def test_plain_text_streaming_response_and_response(run):
    from starlette.responses import PlainTextResponse, Response, StreamingResponse

    def words():
        yield "é".encode()[:1]  # a character split between two chunks
        yield "é".encode()[1:] + b" ok"

    assert items_of(run, StreamingResponse(words(), media_type="text/plain")) == [("text", "é ok")]
    assert items_of(run, PlainTextResponse("plain")) == [("text", "plain")]
    assert items_of(run, Response(b'data: {"a": 1}\n\n', media_type="text/event-stream")) == [
        ("json", {"a": 1})
    ]


def test_event_stream_parsing_handles_crlf_multiline_data_and_comments(run):
    from starlette.responses import StreamingResponse

    async def body():
        yield ": keep-alive\r\n\r"
        yield '\nevent: x\r\ndata: {"a":\r\ndata: 1}\r\n\r\n'
        yield "data: tail\r"

    assert items_of(run, StreamingResponse(body(), media_type="text/event-stream")) == [
        ("json", {"a": 1}),
        ("sse", "data: tail"),
    ]


def test_data_lines_under_another_media_type_are_still_events(run):
    from starlette.responses import StreamingResponse

    async def body():
        yield 'data: {"b": 2}\n\n'

    assert items_of(run, StreamingResponse(body(), media_type="text/plain")) == [("json", {"b": 2})]


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (None, []),
        ("", [("text", "")]),
        (b"bytes", [("text", "bytes")]),
        ([1, 2], [("json", [1, 2])]),
        (42, [("text", "42")]),
        (iter(["a", None, 3]), [("text", "a"), ("text", "3")]),
        ({"nan": float("nan")}, [("json", {"nan": None})]),
    ],
)
def test_other_return_values(run, value, expected):
    assert items_of(run, value) == expected


def test_a_sync_method_returning_a_coroutine_is_awaited(run):
    async def later():
        return "awaited"

    class Pipe:
        def pipe(self, body):
            return later()

    assert run(invoke(Pipe(), "pipe", context())) == [("text", "awaited")]


def test_a_pipe_error_propagates_with_its_type(run):
    class Pipe:
        async def pipe(self, body):
            raise ValueError("upstream said no")

    with pytest.raises(ValueError, match="upstream said no"):
        run(invoke(Pipe(), "pipe", context()))


def test_an_error_inside_a_generator_closes_it_and_propagates(run, sink):
    closed = []

    class Pipe:
        def pipe(self, body):
            try:
                yield "partial"
                raise RuntimeError("mid-stream")
            finally:
                closed.append(True)

    with pytest.raises(RuntimeError, match="mid-stream"):
        run(invoke(Pipe(), "pipe", context(), sink))
    assert sink.of("chunk") == [("text", "partial")] and closed == [True]
