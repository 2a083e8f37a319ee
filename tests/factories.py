"""Sample function sources, the wire shape of a function, and helpers that create or read functions in tests."""

from __future__ import annotations

import textwrap


def source(text: str) -> str:
    return textwrap.dedent(text).lstrip("\n")


FILTER = source(
    '''
    """
    title: Sample Filter
    author: Sluice Tests
    version: 1.0.0
    description: Adds a prefix to every message.
    """

    from pydantic import BaseModel, Field


    class Filter:
        class Valves(BaseModel):
            priority: int = Field(default=0, description="Order among filters")
            prefix: str = Field(default=">> ", description="Text put in front")
            api_key: str = Field(default="", json_schema_extra={"input": {"type": "password"}})

        class UserValves(BaseModel):
            enabled: bool = Field(default=True, description="Use the filter for me")
            max_turns: int = Field(default=4, ge=1, le=100)

        def __init__(self):
            self.valves = self.Valves()

        def inlet(self, body: dict, __user__: dict | None = None) -> dict:
            return body
    '''
)

TOGGLE_FILTER = source(
    '''
    """
    title: Toggle Filter
    """

    from pydantic import BaseModel


    class Filter:
        class Valves(BaseModel):
            level: int = 1

        def __init__(self):
            self.toggle = True
            self.valves = self.Valves()

        def inlet(self, body: dict) -> dict:
            return body
    '''
)

# A red square as a data: URL, set the way real filters set their icon: `self.icon` in `__init__`.
SVG_ICON = "data:image/svg+xml;base64,PHN2ZyB4bWxucz0iaHR0cDovL3d3dy53My5vcmcvMjAwMC9zdmciIHZpZXdCb3g9IjAgMCAxIDEiPjxyZWN0IHdpZHRoPSIxIiBoZWlnaHQ9IjEiIGZpbGw9InJlZCIvPjwvc3ZnPg=="

ICON_FILTER = source(
    f'''
    """
    title: Icon Filter
    """

    from pydantic import BaseModel


    class Filter:
        class Valves(BaseModel):
            level: int = 1

        class UserValves(BaseModel):
            loud: bool = False

        def __init__(self):
            self.valves = self.Valves()
            self.toggle = True
            self.icon = "{SVG_ICON}"

        def inlet(self, body: dict) -> dict:
            return body
    '''
)

PIPE = source(
    '''
    """
    title: Echo Pipe
    requirements: requests
    """

    from pydantic import BaseModel


    class Pipe:
        class Valves(BaseModel):
            model: str = "echo"

        def __init__(self):
            self.valves = self.Valves()

        def pipe(self, body: dict) -> str:
            return body["messages"][-1]["content"]
    '''
)

ACTION = source(
    '''
    """
    title: Sample Action
    """


    class Action:
        def __init__(self):
            pass

        async def action(self, body: dict) -> None:
            return None
    '''
)

# Valves that a later version of the code no longer accepts (`priority` must now be a bool).
FILTER_STRICT_PRIORITY = FILTER.replace(
    'priority: int = Field(default=0, description="Order among filters")',
    "priority: bool = False",
)

OLD_STYLE_IMPORTS = source(
    '''
    """
    title: Old Imports
    """

    from utils.misc import get_last_user_message


    class Filter:
        def inlet(self, body: dict) -> dict:
            get_last_user_message(body.get("messages", []))
            return body
    '''
)

OPTIONS_METHOD = source(
    """
    from pydantic import BaseModel, Field


    class Pipe:
        class Valves(BaseModel):
            model: str = Field(default="a", json_schema_extra={"input": {"type": "select", "options": "models"}})

            @classmethod
            def models(cls, __user__=None):
                return ["a", "b", "c"]

        def __init__(self):
            self.valves = self.Valves()

        def pipe(self, body: dict) -> str:
            return ""
    """
)

SYNTAX_ERROR = source(
    """
    class Filter:
        def inlet(self, body)
            return body
    """
)

RAISES_AT_IMPORT = source(
    """
    x = 1
    raise RuntimeError("boom at import")


    class Filter:
        pass
    """
)

NO_CLASS = source(
    """
    def helper():
        return 1
    """
)

LOOPS_FOREVER = source(
    """
    while True:
        pass
    """
)


# FunctionModel's keys in the order Open WebUI's clients see them (export, create, update, history).
FUNCTION_MODEL_KEYS = [
    "version_id",
    "id",
    "user_id",
    "name",
    "type",
    "content",
    "meta",
    "is_active",
    "is_global",
    "updated_at",
    "created_at",
]


def form(id: str = "sample_filter", name: str = "Sample Filter", content: str = FILTER, meta=None, **extra):
    """A FunctionForm body."""
    body = {"id": id, "name": name, "content": content, "meta": meta if meta is not None else {}}
    body.update(extra)
    return body


def api_create(
    client, key: str, id: str = "sample_filter", content: str = FILTER, name: str | None = None, **kw
):
    """Create a function through `POST /api/v1/functions/create` and return its JSON; fails the test on error."""
    response = client.post(
        "/api/v1/functions/create",
        json=form(id=id, name=name or id.replace("_", " ").title(), content=content, **kw),
        headers={"Authorization": f"Bearer {key}"},
    )
    assert response.status_code == 200, response.get_json()
    return response.get_json()


def make_function(
    app,
    user_id: str,
    id: str = "sample_filter",
    content: str = FILTER,
    name: str | None = None,
    meta: dict | None = None,
    active: bool = False,
    is_global: bool = False,
):
    """Create a function through the service layer (code loaded for real) and return its id."""
    from extensions import db
    from models import User
    from services import functions

    with app.app_context():
        user = db.session.get(User, user_id)
        f = functions.create_function(
            user, id=id, name=name or id.replace("_", " ").title(), content=content, meta=meta or {}
        )
        if active:
            functions.toggle_active(f.id)
        if is_global:
            functions.toggle_global(f.id)
        return f.id


def stored_function(app, function_id: str):
    """The stored function as the database holds it now (detached), or None."""
    from extensions import db
    from models import Function

    with app.app_context():
        f = db.session.get(Function, function_id)
        if f is None:
            return None
        db.session.expunge(f)
        return f
