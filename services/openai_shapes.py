"""The OpenAI chat-completion shapes the gateway answers in: completion ids, ``chat.completion`` objects, stream
chunks (and the event chunks Open WebUI reads inline in a stream), and server-sent-event framing (RUNTIME.md §7).
"""

from __future__ import annotations

import json
import time
import uuid
from typing import Any


def completion_id(model_id: str) -> str:
    return f"{model_id}-{uuid.uuid4()}"


def chunk(cid: str, model_id: str, delta: dict, finish_reason: str | None = None) -> dict:
    return {
        "id": cid,
        "object": "chat.completion.chunk",
        "created": int(time.time()),
        "model": model_id,
        "choices": [{"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish_reason}],
    }


def event_chunk(cid: str, model_id: str, event: dict) -> dict:
    """An event as Open WebUI reads one inline in a stream: a chunk with a top-level ``event``."""
    return {
        "id": cid,
        "object": "chat.completion.chunk",
        "created": int(time.time()),
        "model": model_id,
        "choices": [],
        "event": event,
    }


def sse(data: Any) -> str:
    text = data if isinstance(data, str) else json.dumps(data, ensure_ascii=False, separators=(",", ":"))
    return f"data: {text}\n\n"


def completion(cid: str, model_id: str, content: str) -> dict:
    """A finished answer as a ``chat.completion`` object: one assistant message, stopped."""
    return {
        "id": cid,
        "object": "chat.completion",
        "created": int(time.time()),
        "model": model_id,
        "choices": [
            {
                "index": 0,
                "message": {"role": "assistant", "content": content},
                "logprobs": None,
                "finish_reason": "stop",
            }
        ],
    }
