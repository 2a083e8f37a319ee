"""Running a function's method with a chat body: the whole answer as JSON, or server-sent events as it happens."""

from __future__ import annotations

import json
from collections.abc import Iterator

from flask import Response

from blueprints.api import api
from blueprints.api import schemas as s
from services import running
from web.access import NO_PERMISSION, ApiAuthError, api_caller


def sse(name: str, data) -> str:
    """One server-sent event: its name and one JSON line."""
    return f"event: {name}\ndata: {json.dumps(data, ensure_ascii=False, separators=(',', ':'))}\n\n"


def sse_frames(run: running.Run) -> Iterator[str]:
    """The loader's frames as server-sent events; the call is cancelled when the client goes away (the generator is
    closed) or anything else ends the answer early."""
    try:
        for frame in run:
            kind = frame.get("kind")
            if kind == "event":
                yield sse("event", frame.get("event"))
            elif kind == "chunk":
                item = frame.get("item") or ("text", "")
                yield sse("chunk", {"type": item[0], "value": item[1]})
            elif kind == "output":
                yield sse("output", {"text": frame.get("text") or ""})
            elif kind == "done":
                yield sse(
                    "done",
                    {"result": frame.get("result"), "ms": frame.get("ms"), "output": frame.get("output")},
                )
            elif kind == "error":
                yield sse(
                    "error",
                    {"error": frame.get("error"), "ms": frame.get("ms"), "output": frame.get("output")},
                )
    finally:
        run.close()


@api.route(
    "/id/<id>/run",
    "POST",
    auth="user",
    summary="Run one of the function's methods",
    body=s.RunForm,
    response=s.RunResponse,
    errors=(400, 403, 404, 413, 503),
    streams=True,
)
def run(id: str, body: s.RunForm):
    """Calls `method` (inlet, request, stream, outlet for filters; pipe; action) with `body` as Open WebUI would,
    with the function's admin valves and the caller's own user valves, in an isolated worker. Admins may run any
    function, and unsaved `content` under this id; other users an active function, never unsaved code.

    Answers `{result, events, output, ms, error}` (200 even when the function raised: `error` has its type, message,
    line and traceback). With `stream: true`, `text/event-stream`: `event` ({type, data}), `chunk` ({type, value}) and
    `output` ({text}) events as they happen, then one `done` ({result, ms, output}) or `error` ({error, ms,
    output}); closing the connection cancels the call. 503 with `Retry-After` when every worker stays busy.
    """
    caller = api_caller()
    if body.content is not None:
        if not caller.is_admin:
            raise ApiAuthError(NO_PERMISSION)
        target = running.Unsaved(body.content, id)
    else:
        target = id
    call = running.run_call(
        target,
        method=body.method,
        body=body.body,
        caller=caller,
        model=body.model,
        sub=body.sub,
        stream=body.stream,
    )
    if not body.stream:
        return running.collect(call)
    return Response(
        sse_frames(call),
        mimetype="text/event-stream",
        headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"},
    )
