"""
title: My Pipe
author: your name
author_url: https://example.com
version: 0.1.0
license: MIT
description: A custom model: answers chat requests with code instead of (or in front of) a provider.
"""

# A pipe shows up as a model in the model list. Open WebUI calls `pipe` with the chat request body and shows
# what it returns: a string, or a generator/iterator of strings for a streamed answer. Define `pipes` to offer
# several models from one function.

from collections.abc import Iterator

from pydantic import BaseModel, Field


class Pipe:
    class Valves(BaseModel):
        """Settings an administrator chooses once, on the function's valves page."""

        MODEL_PREFIX: str = Field(default="echo", description="Prefix of the model names this pipe offers.")
        API_KEY: str = Field(
            default="",
            description="Key for an upstream provider, if the pipe calls one.",
            # Shown as a masked field; a stored secret is never sent back to the browser.
            json_schema_extra={"input": {"type": "password"}},
        )

    class UserValves(BaseModel):
        """Settings each user may choose for themselves, on their own valves page."""

        shout: bool = Field(default=False, description="Answer in capital letters.")

    def __init__(self):
        self.valves = self.Valves()

    def pipes(self) -> list[dict]:
        """The models this pipe offers; each appears in the model list as `<function id>.<id>`."""
        return [{"id": "echo", "name": f"{self.valves.MODEL_PREFIX}: repeat the last message"}]

    def pipe(self, body: dict, __user__: dict | None = None) -> str | Iterator[str]:
        """Answer with the last user message, streamed word by word when the client asked for a stream."""
        user_valves = (__user__ or {}).get("valves")
        messages = body.get("messages", [])
        text = str(messages[-1].get("content", "")) if messages else ""
        if getattr(user_valves, "shout", False):
            text = text.upper()
        if body.get("stream"):
            return (word + " " for word in text.split())
        return text
