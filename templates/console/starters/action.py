"""
title: My Action
author: your name
author_url: https://example.com
version: 0.1.0
license: MIT
description: Adds a button under each assistant message that does something with that message.
"""

# An action appears as a button under assistant messages. Open WebUI calls `action` when the user presses it,
# with the chat so far in `body`. `__event_emitter__` sends status lines and messages back to the chat while
# the action runs.

from pydantic import BaseModel, Field


class Action:
    class Valves(BaseModel):
        """Settings an administrator chooses once, on the function's valves page."""

        priority: int = Field(default=0, description="Buttons with a lower priority are shown first.")
        prefix: str = Field(default="Word count", description="Text shown before the result.")

    class UserValves(BaseModel):
        """Settings each user may choose for themselves, on their own valves page."""

        show_status: bool = Field(default=True, description="Show a status line while the action runs.")

    def __init__(self):
        self.valves = self.Valves()

    async def action(
        self,
        body: dict,
        __user__: dict | None = None,
        __event_emitter__=None,
    ) -> dict | None:
        """Count the words of the last message and report the result in the chat."""
        user_valves = (__user__ or {}).get("valves")
        show_status = getattr(user_valves, "show_status", True)
        messages = body.get("messages", [])
        text = messages[-1].get("content", "") if messages else ""

        if __event_emitter__ and show_status:
            await __event_emitter__({"type": "status", "data": {"description": "Counting…", "done": False}})

        result = f"{self.valves.prefix}: {len(str(text).split())}"

        if __event_emitter__:
            if show_status:
                await __event_emitter__({"type": "status", "data": {"description": "Done", "done": True}})
            await __event_emitter__({"type": "message", "data": {"content": "\n\n" + result}})
        return None
