"""
title: My Filter
author: your name
author_url: https://example.com
version: 0.1.0
license: MIT
description: Adjusts each request before it reaches the model and each reply before the user sees it.
"""

# A filter sits between the user and the model. Open WebUI calls `inlet` with the request body before the model
# runs, `stream` on each streamed chunk, and `outlet` with the finished conversation. Each hook returns the
# (possibly changed) object it was given.

from pydantic import BaseModel, Field


class Filter:
    class Valves(BaseModel):
        """Settings an administrator chooses once, on the function's valves page."""

        priority: int = Field(default=0, description="Filters with a lower priority run first.")
        max_turns: int = Field(default=20, ge=1, description="Keep at most this many messages in a request.")

    class UserValves(BaseModel):
        """Settings each user may choose for themselves, on their own valves page."""

        enabled: bool = Field(default=True, description="Apply this filter to my chats.")

    def __init__(self):
        self.valves = self.Valves()
        # A truthy `toggle` lets users switch the filter on and off from the chat input.
        self.toggle = False

    def inlet(self, body: dict, __user__: dict | None = None) -> dict:
        """Runs before the model: trim the conversation to the last `max_turns` messages."""
        user_valves = (__user__ or {}).get("valves")
        if user_valves is not None and not getattr(user_valves, "enabled", True):
            return body
        messages = body.get("messages", [])
        if len(messages) > self.valves.max_turns:
            body["messages"] = messages[-self.valves.max_turns :]
        return body

    def stream(self, event: dict) -> dict:
        """Runs on every streamed chunk; returned unchanged here."""
        return event

    def outlet(self, body: dict, __user__: dict | None = None) -> dict:
        """Runs after the model has answered; returned unchanged here."""
        return body
