"""Open WebUI's pure helpers for chat messages and small chores, written for Sluice to behave the same way.

Messages are OpenAI-style dicts: ``{"role": "user", "content": "text"}`` or, for multimodal input, ``content``
as a list of parts such as ``{"type": "text", "text": "..."}`` and ``{"type": "image_url", ...}``.
"""

from __future__ import annotations

import collections.abc
import hashlib
import json
import re
import time
import uuid
from datetime import timedelta
from functools import wraps
from pathlib import Path
from typing import Any

from .. import _catalogue

# ----------------------------------------------------------------------------------------------- dictionaries


def deep_update(d: dict, u: collections.abc.Mapping) -> dict:
    """Merge ``u`` into ``d`` recursively (nested mappings merge, anything else replaces) and return ``d``."""
    for key, value in u.items():
        d[key] = deep_update(d.get(key, {}), value) if isinstance(value, collections.abc.Mapping) else value
    return d


def merge_model_params(base: dict, override: dict) -> dict:
    """``base`` overlaid with ``override``; their ``custom_params`` dicts are merged rather than replaced."""
    merged = {**base, **override}
    base_custom, override_custom = base.get("custom_params"), override.get("custom_params")
    if isinstance(base_custom, dict) and (override_custom is None or isinstance(override_custom, dict)):
        merged["custom_params"] = {**base_custom, **(override_custom or {})}
    return merged


def freeze(value: Any) -> Any:
    """A hashable version of nested dicts and lists."""
    if isinstance(value, dict):
        return frozenset((key, freeze(item)) for key, item in value.items())
    if isinstance(value, list):
        return tuple(freeze(item) for item in value)
    return value


# ---------------------------------------------------------------------------------------------------- messages


def _output_text(output: Any) -> str:
    """Text of the ``message`` items of a Responses-API style ``output`` list."""
    if not isinstance(output, list):
        return ""
    texts = []
    for item in output:
        if (
            not isinstance(item, dict)
            or item.get("type") != "message"
            or not isinstance(item.get("content"), list)
        ):
            continue
        text = "".join(
            str(p["text"]) for p in item["content"] if isinstance(p, dict) and p.get("text") is not None
        )
        if text.strip():
            texts.append(text)
    return "\n".join(texts)


get_output_text = _output_text


def get_content_from_message(message: dict) -> str | None:
    """The text of a message: the first text part of a multimodal message, else its string content."""
    content = message.get("content")
    if isinstance(content, list):
        for part in content:
            if isinstance(part, dict) and part.get("type") == "text":
                return part.get("text")
    elif content:
        return content
    return _output_text(message.get("output")) or (content if isinstance(content, str) else None)


def _last_item(messages: list[dict], role: str) -> dict | None:
    return next((message for message in reversed(messages) if message["role"] == role), None)


def get_last_user_message_item(messages: list[dict]) -> dict | None:
    """The last message with role ``user``, or None."""
    return _last_item(messages, "user")


def get_last_assistant_message_item(messages: list[dict]) -> dict | None:
    """The last message with role ``assistant``, or None."""
    return _last_item(messages, "assistant")


def get_last_user_message(messages: list[dict]) -> str | None:
    """The text of the last user message, or None if there is none."""
    message = _last_item(messages, "user")
    return None if message is None else get_content_from_message(message)


def get_last_assistant_message(messages: list[dict]) -> str | None:
    """The text of the last assistant message, or None if there is none."""
    message = _last_item(messages, "assistant")
    return None if message is None else get_content_from_message(message)


def set_last_user_message_content(content: str, messages: list[dict]) -> list[dict]:
    """Replace the text of the last user message in place (its first text part, if multimodal)."""
    message = next((m for m in reversed(messages) if m.get("role") == "user"), None)
    if message is not None:
        if isinstance(message.get("content"), list):
            part = next((p for p in message["content"] if p.get("type") == "text"), None)
            if part is not None:
                part["text"] = content
        else:
            message["content"] = content
    return messages


def get_messages_content(messages: list[dict]) -> str:
    """The conversation as text, one ``ROLE: text`` line per message."""
    return "\n".join(
        f"{message['role'].upper()}: {get_content_from_message(message)}" for message in messages
    )


def get_message_list(messages_map: dict | None, message_id: str | None) -> list[dict]:
    """The chain of messages from the root to ``message_id``, following ``parentId`` links in a message map."""
    if not messages_map:
        return []
    chain: list[dict] = []
    seen: set[str] = set()
    current = messages_map.get(message_id)
    while current and message_id not in seen:
        seen.add(message_id)
        chain.append(current)
        message_id = current.get("parentId")
        current = messages_map.get(message_id) if message_id else None
    chain.reverse()
    return chain


def get_system_message(messages: list[dict]) -> dict | None:
    """The first system message, or None."""
    return next((message for message in messages if message["role"] == "system"), None)


def remove_system_message(messages: list[dict]) -> list[dict]:
    """A new list without the system messages."""
    return [message for message in messages if message["role"] != "system"]


def pop_system_message(messages: list[dict]) -> tuple[dict | None, list[dict]]:
    """``(first system message or None, the other messages)``; the given list is left as it was."""
    return get_system_message(messages), remove_system_message(messages)


def merge_system_messages(messages: list[dict]) -> list[dict]:
    """All non-empty system texts joined into one system message placed first."""
    system_texts = []
    others = []
    for message in messages:
        if message.get("role") == "system":
            text = get_content_from_message(message)
            if text:
                system_texts.append(text)
        else:
            others.append(message)
    if not system_texts:
        return others
    return [{"role": "system", "content": "\n".join(system_texts)}, *others]


def update_message_content(message: dict, content: str, append: bool = True) -> dict:
    """Add ``content`` on a new line after (or before) the message's text, in every text part if multimodal."""

    def joined(existing: str) -> str:
        return f"{existing}\n{content}" if append else f"{content}\n{existing}"

    if isinstance(message["content"], list):
        for part in message["content"]:
            if part["type"] == "text":
                part["text"] = joined(part["text"])
    else:
        message["content"] = joined(message["content"])
    return message


def replace_system_message_content(content: str, messages: list[dict]) -> list[dict]:
    """Set the content of the first system message, if any."""
    message = get_system_message(messages)
    if message is not None:
        message["content"] = content
    return messages


def add_or_update_system_message(content: str, messages: list[dict], append: bool = False) -> list[dict]:
    """Put ``content`` before (or after, with ``append``) a leading system message, or insert a new one first."""
    if messages and messages[0].get("role") == "system":
        messages[0] = update_message_content(messages[0], content, append)
    else:
        messages.insert(0, {"role": "system", "content": content})
    return messages


def add_or_update_user_message(content: str, messages: list[dict], append: bool = True) -> list[dict]:
    """Add ``content`` after (or before) a trailing user message, or append a new user message."""
    if messages and messages[-1].get("role") == "user":
        messages[-1] = update_message_content(messages[-1], content, append)
    else:
        messages.append({"role": "user", "content": content})
    return messages


def prepend_to_first_user_message_content(content: str, messages: list[dict]) -> list[dict]:
    """Put ``content`` on a line before the first user message's text."""
    message = next((m for m in messages if m["role"] == "user"), None)
    if message is not None:
        update_message_content(message, content, append=False)
    return messages


def append_or_update_assistant_message(content: str, messages: list[dict]) -> list[dict]:
    """Add ``content`` on a new line of a trailing assistant message, or append a new assistant message."""
    if messages and messages[-1].get("role") == "assistant":
        messages[-1]["content"] = f"{messages[-1]['content']}\n{content}"
    else:
        messages.append({"role": "assistant", "content": content})
    return messages


def strip_empty_content_blocks(messages: list[dict]) -> list[dict]:
    """Drop blank text parts from multimodal messages (keeping the content if nothing else would remain)."""
    for message in messages:
        content = message.get("content")
        if isinstance(content, list):
            kept = [
                part
                for part in content
                if not (
                    isinstance(part, dict) and part.get("type") == "text" and not part.get("text", "").strip()
                )
            ]
            if kept:
                message["content"] = kept
    return messages


# ------------------------------------------------------------------------------------ OpenAI response templates


def openai_chat_message_template(model: str, message_id: str | None = None) -> dict:
    """The fields every OpenAI chat completion (or chunk) carries."""
    return {
        "id": message_id or f"{model}-{uuid.uuid4()}",
        "created": int(time.time()),
        "model": model,
        "choices": [{"index": 0, "logprobs": None, "finish_reason": None}],
    }


def openai_chat_chunk_message_template(
    model: str,
    content: str | None = None,
    reasoning_content: str | None = None,
    tool_calls: list[dict] | None = None,
    usage: dict | None = None,
    message_id: str | None = None,
) -> dict:
    """A streaming ``chat.completion.chunk``; a chunk with nothing in it is the closing ``stop`` chunk."""
    chunk = openai_chat_message_template(model, message_id)
    chunk["object"] = "chat.completion.chunk"
    choice = chunk["choices"][0]
    delta: dict[str, Any] = {}
    if content:
        delta["content"] = content
    if reasoning_content:
        delta["reasoning_content"] = reasoning_content
    if tool_calls:
        delta["tool_calls"] = tool_calls
    choice["delta"] = delta
    if not delta:
        choice["finish_reason"] = "stop"
    if usage:
        chunk["usage"] = usage
    return chunk


def openai_chat_completion_message_template(
    model: str,
    message: str | None = None,
    reasoning_content: str | None = None,
    tool_calls: list[dict] | None = None,
    usage: dict | None = None,
) -> dict:
    """A complete (non-streaming) ``chat.completion``."""
    completion = openai_chat_message_template(model)
    completion["object"] = "chat.completion"
    choice = completion["choices"][0]
    if message is not None:
        choice["message"] = {"role": "assistant", "content": message}
        if reasoning_content:
            choice["message"]["reasoning_content"] = reasoning_content
        if tool_calls:
            choice["message"]["tool_calls"] = tool_calls
    choice["finish_reason"] = "tool_calls" if tool_calls else "stop"
    if usage:
        completion["usage"] = usage
    return completion


# ------------------------------------------------------------------------------------------------------ strings


def get_gravatar_url(email: str) -> str:
    digest = hashlib.sha256(str(email).strip().lower().encode()).hexdigest()
    return f"https://www.gravatar.com/avatar/{digest}?d=mp"


def calculate_sha256(file_path: str | Path, chunk_size: int) -> str:
    digest = hashlib.sha256()
    with open(file_path, "rb") as handle:
        for block in iter(lambda: handle.read(chunk_size), b""):
            digest.update(block)
    return digest.hexdigest()


def calculate_sha256_string(string: str) -> str:
    return hashlib.sha256(string.encode("utf-8")).hexdigest()


def validate_email_format(email: str) -> bool:
    return email.endswith("@localhost") or re.match(r"[^@]+@[^@]+\.[^@]+", email) is not None


def sanitize_filename(file_name: str) -> str:
    """Lower-case, drop punctuation, spaces to dashes: ``"My File!.txt"`` → ``"my-filetxt"``."""
    return re.sub(r"\s+", "-", re.sub(r"[^\w\s]", "", file_name.lower()))


def extract_folders_after_data_docs(path: str | Path) -> list[str]:
    """The cumulative folder names between ``data/docs`` and the file: ``a``, ``a/b`` …"""
    parts = Path(path).parts
    try:
        start = parts.index("docs", parts.index("data") + 1) + 1
    except ValueError:
        return []
    folders = parts[start:-1]
    return ["/".join(folders[: i + 1]) for i in range(len(folders))]


_DURATION_UNITS = {
    "ms": "milliseconds",
    "s": "seconds",
    "m": "minutes",
    "h": "hours",
    "d": "days",
    "w": "weeks",
}


def parse_duration(duration: str) -> timedelta | None:
    """``"1h30m"`` → 90 minutes; ``"-1"`` and ``"0"`` mean no expiry (None); anything unreadable raises."""
    if duration in ("-1", "0"):
        return None
    pairs = re.findall(r"(-?\d+(?:\.\d+)?)(ms|s|m|h|d|w)", duration)
    if not pairs:
        raise ValueError("Invalid duration string")
    return sum((timedelta(**{_DURATION_UNITS[unit]: float(number)}) for number, unit in pairs), timedelta())


def convert_logit_bias_input_to_json(logit_bias_input: str | dict | None) -> str | None:
    """``"50256:-100, 11:5"`` → ``'{"50256": -100, "11": 5}'``, each bias clamped to [-100, 100]."""
    if not logit_bias_input:
        return None
    if isinstance(logit_bias_input, dict):
        return json.dumps(logit_bias_input)
    biases = {}
    for pair in logit_bias_input.split(","):
        token, bias = pair.split(":")
        biases[token.strip()] = max(-100, min(100, int(bias.strip())))
    return json.dumps(biases)


def extract_urls(text: str) -> list[str]:
    return re.findall(r"https?://[^\s]+", text, re.IGNORECASE)


def throttle(interval: float = 10.0):
    """Decorator for a coroutine function: a repeat call with the same arguments within ``interval`` seconds
    returns None instead of running. Zero or a negative interval turns it off."""

    def decorator(func):
        if interval <= 0:
            return func
        last_run: dict[Any, float] = {}

        @wraps(func)
        async def wrapper(*args, **kwargs):
            key = (args, freeze(kwargs))
            now = time.time()
            if now - last_run.get(key, 0) < interval:
                return None
            last_run[key] = now
            return await func(*args, **kwargs)

        return wrapper

    return decorator


__getattr__ = _catalogue.module_getattr(__name__)
