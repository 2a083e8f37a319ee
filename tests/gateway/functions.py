"""The functions the gateway tests run: pipes of each return style, a manifold, a failing stream, filters."""

from __future__ import annotations

from tests.factories import source

# Streams its answer word by word and reports its progress through __event_emitter__.
ECHO = source(
    '''
    """
    title: Echo
    """

    import asyncio


    class Pipe:
        async def pipe(self, body: dict, __event_emitter__=None):
            await __event_emitter__({"type": "status", "data": {"description": "thinking", "done": False}})
            text = body["messages"][-1]["content"]
            for word in ("echo:", *text.split()):
                yield word + " "
                await asyncio.sleep(0)
            await __event_emitter__({"type": "status", "data": {"description": "done", "done": True}})
    '''
)

# A manifold: one model per item of `pipes`, each answering with the model it was asked for.
MULTI = source(
    '''
    """
    title: Multi
    """

    from pydantic import BaseModel


    class Pipe:
        class Valves(BaseModel):
            sizes: str = "small,large"

        def __init__(self):
            self.name = "Multi/"
            self.valves = self.Valves()

        def pipes(self):
            return [{"id": size, "name": size.title()} for size in self.valves.sizes.split(",")]

        def pipe(self, body: dict) -> str:
            return "model " + body["model"]
    '''
)

# Fails after the first chunk.
BROKEN = source(
    '''
    """
    title: Broken
    """


    class Pipe:
        def pipe(self, body: dict):
            yield "partial "
            raise ValueError("the upstream went away")
    '''
)

# Says whom it runs for and with which of that user's valves.
WHOAMI = source(
    '''
    """
    title: Who Am I
    """

    from pydantic import BaseModel


    class Pipe:
        class UserValves(BaseModel):
            greeting: str = "hello"

        def pipe(self, body: dict, __user__: dict, __request__=None) -> str:
            if body["messages"][-1]["content"].startswith("headers"):
                headers = __request__.headers
                return f"{headers.get('authorization')}|{headers.get('x-openwebui-chat-id')}"
            return f"{__user__['valves'].greeting} {__user__['email']}"
    '''
)

# A global filter: the inlet marks the last user message and says who it ran for; the outlet marks the answer.
MARKER = source(
    '''
    """
    title: Marker
    """

    from pydantic import BaseModel


    class Filter:
        class Valves(BaseModel):
            priority: int = 0
            mark: str = "[in]"

        class UserValves(BaseModel):
            tag: str = "plain"

        def __init__(self):
            self.valves = self.Valves()

        async def inlet(self, body: dict, __user__: dict, __event_emitter__=None) -> dict:
            await __event_emitter__({"type": "status", "data": {"description": "marking", "done": True}})
            last = body["messages"][-1]
            last["content"] = f"{last['content']} {self.valves.mark}"
            body["messages"].insert(0, {"role": "system", "content": f"tag={__user__['valves'].tag}"})
            return body

        def outlet(self, body: dict) -> dict:
            body["messages"][-1]["content"] += " [out]"
            return body
    '''
)

# A toggle filter (runs only when a chat's filter_ids name it) with a stream phase: upper-cases each chunk.
UPPER = source(
    '''
    """
    title: Upper
    """


    class Filter:
        def __init__(self):
            self.toggle = True

        def inlet(self, body: dict) -> dict:
            body["messages"][-1]["content"] += " [upper]"
            return body

        def stream(self, event: dict) -> dict:
            for choice in event.get("choices", []):
                delta = choice.get("delta") or {}
                if isinstance(delta.get("content"), str):
                    delta["content"] = delta["content"].upper()
            return event
    '''
)

# A filter whose inlet refuses every chat.
REFUSER = source(
    '''
    """
    title: Refuser
    """


    class Filter:
        def inlet(self, body: dict) -> dict:
            raise ValueError("this chat is not allowed")
    '''
)

# Answers with a dict: an upstream's completion object, or (asked for "plain") any other object.
PROXY = source(
    '''
    """
    title: Proxy
    """


    class Pipe:
        def pipe(self, body: dict) -> dict:
            if body["messages"][-1]["content"].startswith("plain"):
                return {"answer": 42}
            message = {"role": "assistant", "content": "from upstream"}
            return {
                "id": "upstream-1",
                "object": "chat.completion",
                "model": "gpt-x",
                "choices": [{"index": 0, "message": message, "finish_reason": "stop"}],
                "usage": {"prompt_tokens": 3, "completion_tokens": 2, "total_tokens": 5},
            }
    '''
)

# Streams for as long as it is read, slowly.
ENDLESS = source(
    '''
    """
    title: Endless
    """

    import asyncio


    class Pipe:
        async def pipe(self, body: dict):
            for n in range(600):
                yield f"{n} "
                await asyncio.sleep(0.05)
    '''
)
