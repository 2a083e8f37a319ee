"""What the pool of runtime workers (loader/runtime/pool.py) keeps: `Call`, one call from the client until it is
answered (its message for the worker, its settings, its clocks and captured output), and `Worker`, one worker
process, the key of the instance it holds and the call it serves.
"""

from __future__ import annotations

import codecs
import time

from loader.protocol import DEFAULT_OUTPUT_CAP, DEFAULT_RESULT_CAP


class Call:
    __slots__ = (
        "id",
        "key",
        "function_id",
        "message",
        "stream",
        "settings",
        "worker",
        "queued_until",
        "sent",
        "deadline",
        "idle_deadline",
        "output",
        "dropped",
        "total",
        "decoder",
        "notices",
    )

    def __init__(self, request: dict):
        self.id = request.get("id")
        self.key = str(request.get("key") or "")
        self.function_id = str(request.get("function_id") or "function")
        self.stream = bool(request.get("stream"))
        self.message = {
            "op": "call",
            "function_id": self.function_id,
            "method": request.get("method"),
            "ctx": request.get("ctx") or {},
            "admin_valves": request.get("admin_valves"),
            "user_valves": request.get("user_valves"),
            "stream": self.stream,
        }
        self.settings = {
            "content": request.get("content") or "",
            "timeout": _number(request.get("timeout"), 10.0),
            "run_timeout": _number(request.get("run_timeout"), 60.0),
            "idle_timeout": _number(request.get("idle_timeout"), 30.0),
            "busy_wait": _number(request.get("busy_wait"), 2.0, minimum=0.0),
            "worker_idle": _number(request.get("worker_idle"), 300.0, minimum=0.0),
            "workers": max(1, int(_number(request.get("workers"), 4))),
            "memory_mb": int(_number(request.get("memory_mb"), 1024)),
            "output_cap": int(_number(request.get("output_cap"), DEFAULT_OUTPUT_CAP, minimum=0)),
            "result_cap": int(_number(request.get("result_cap"), DEFAULT_RESULT_CAP)),
            "packages_dir": request.get("packages_dir"),
            "homes_dir": request.get("homes_dir"),
            "hidden_paths": request.get("hidden_paths") or [],
        }
        self.worker: Worker | None = None
        self.queued_until = 0.0
        self.sent = 0.0
        self.deadline = 0.0
        self.idle_deadline = 0.0
        self.output = bytearray()
        self.dropped = 0
        self.total = 0
        self.decoder = codecs.getincrementaldecoder("utf-8")("replace")
        self.notices: list[str] = []


class Worker:
    __slots__ = (
        "child",
        "key",
        "function_id",
        "state",
        "call",
        "last_used",
        "buffer",
        "outbox",
        "load_deadline",
        "load_output",
        "load_timeout",
        "stale",
        "exit_error",
        "result_cap",
    )

    def __init__(self, child, call: Call):
        self.child = child
        self.key = call.key
        self.function_id = call.function_id
        self.state = "starting"  # then "idle" or "busy"; "dead" once killed or gone
        self.call: Call | None = None
        self.last_used = time.monotonic()
        self.buffer = bytearray()
        self.outbox = bytearray()
        self.load_timeout = call.settings["timeout"]
        self.load_deadline = self.last_used + self.load_timeout
        self.load_output = bytearray()
        self.stale = False
        self.exit_error: dict | None = None
        self.result_cap = call.settings["result_cap"]


def _number(value, default: float, minimum: float | None = None) -> float:
    try:
        number = float(value)
    except (TypeError, ValueError):
        return default
    if minimum is None:
        return number if number > 0 else default
    return max(number, minimum)
