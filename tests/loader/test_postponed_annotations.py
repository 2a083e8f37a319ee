"""Function code is compiled with postponed annotations, as Open WebUI's exec gives it, and valves still resolve."""

from __future__ import annotations

import textwrap

from tests.loader.support import unique

VALVES = textwrap.dedent(
    """
    import enum
    from typing import Dict, List, Literal, Optional, Union

    from pydantic import BaseModel, Field


    class Colour(str, enum.Enum):
        RED = "red"
        BLUE = "blue"


    class Retry(BaseModel):
        attempts: int = Field(default=3, ge=0, le=10)
        backoff: Optional[float] = None


    class Endpoint(BaseModel):
        url: str = "https://example.com"
        headers: Dict[str, str] = {}


    class Pipe:
        class Valves(BaseModel):
            MODE: Literal["fast", "careful"] = "fast"
            LIMIT: Optional[int] = Field(default=None, ge=1, description="how many")
            COLOUR: Colour = Colour.RED
            RETRY: Retry = Field(default_factory=Retry)
            ENDPOINTS: List[Endpoint] = []
            EITHER: Union[int, str] = 1
            TAGS: list[str] | None = None

        class UserValves(BaseModel):
            STYLE: Optional[Literal["short", "long"]] = None

        def __init__(self):
            self.valves = self.Valves()
    """
)


def eager_schemas() -> tuple[dict, dict]:
    """The schemas pydantic gives the same classes with annotations evaluated at once, in this process."""
    namespace: dict = {"__name__": "eager_valves"}
    exec(compile(VALVES, "<valves>", "exec", dont_inherit=True), namespace)
    pipe = namespace["Pipe"]
    return pipe.Valves.model_json_schema(), pipe.UserValves.model_json_schema()


def test_valves_give_the_same_schema_as_with_annotations_evaluated_at_once(loader_fast):
    result = loader_fast.load_function(unique(VALVES))

    assert result.ok, result.error
    valves, user_valves = eager_schemas()
    assert result.valves_schema == valves
    assert result.user_valves_schema == user_valves
    assert set(result.valves_schema["$defs"]) == {"Colour", "Endpoint", "Retry"}


def test_an_annotation_naming_a_class_imported_inside_the_method_loads(loader_fast):
    code = textwrap.dedent(
        """
        class Filter:
            def inlet(self, body: dict, __request__: Request = None) -> dict:
                from starlette.requests import Request

                return body
        """
    )

    result = loader_fast.load_function(unique(code))

    assert result.ok, result.error
    assert result.type == "filter"


def test_function_code_sees_its_annotations_as_strings_as_in_open_webui(loader_fast):
    code = textwrap.dedent(
        """
        class Pipe:
            def pipe(self, body: dict) -> str:
                return body

        assert Pipe.pipe.__annotations__ == {"body": "dict", "return": "str"}, Pipe.pipe.__annotations__
        """
    )

    result = loader_fast.load_function(unique(code))

    assert result.ok, result.error
