"""Plain valves classes are checked in the caller after a child described them, with the answers a child gives."""

from __future__ import annotations

import json
from typing import Literal, Optional

import pytest
from pydantic import BaseModel, ConfigDict, Field, SecretStr, field_validator, model_validator

from loader.plain_valves import NotPlain, plain_class, plain_spec
from tests.loader.support import unique

PLAIN = """
from typing import Any, Literal, Optional

from pydantic import BaseModel, Field


class Filter:
    class Valves(BaseModel):
        priority: int = Field(default=0, ge=0, le=100, description="Order among filters")
        ratio: float = Field(default=0.5, gt=0, multiple_of=0.25)
        mode: Literal["append", "prepend", 3, True] = "append"
        prefix: str = Field(default="", max_length=8, json_schema_extra={"input": {"type": "password"}})
        note: Optional[str] = None
        maybe: int | None = None
        tags: list[str] = Field(default_factory=list, min_length=1)
        weights: dict[str, float] = {}
        anything: Any = None
        loose: list = []
        enabled: bool = True
        required_name: str

    class UserValves(BaseModel):
        shout: bool = False
"""

# Values a caller may send, valid or not: each is checked by a child and in the caller, and the answers compared.
VALUES = [
    {"required_name": "x"},
    {"required_name": "x", "priority": "5", "ratio": "0.75", "enabled": "yes", "unknown": 1},
    {"required_name": "x", "priority": 5.0, "maybe": "7", "note": None},
    {"required_name": "x", "priority": 5.5},
    {"required_name": "x", "priority": -1, "ratio": 0.3, "mode": "other", "prefix": "far too long"},
    {"required_name": "x", "mode": 3, "tags": ["a", 1], "weights": {"a": "1.5", "b": "x"}},
    {
        "required_name": "x",
        "mode": True,
        "tags": [],
        "anything": {"deep": [1, {"x": None}]},
        "loose": [1, "a"],
    },
    {"priority": 10**30, "enabled": "maybe", "tags": "not a list", "weights": []},
    {"required_name": 5, "note": ["not", "text"], "maybe": "seven"},
    {"required_name": "ünïcode ✓", "prefix": "\u00e9", "ratio": float("nan")},
    {"required_name": "x", "ratio": float("inf"), "priority": True},
    {},
]


@pytest.mark.parametrize("values", VALUES, ids=range(len(VALUES)))
def test_a_check_in_the_caller_answers_exactly_as_a_child_does(loader_fast, values):
    warm = unique(PLAIN)
    loader_fast.validate_valves(warm, {"required_name": "first"})  # a child checks, and describes the class
    jobs, here = loader_fast.stats()["jobs"], loader_fast.stats()["checked_here"]

    in_caller = loader_fast.validate_valves(warm, values)
    assert loader_fast.stats()["jobs"] == jobs, "the second check of the same code went to a child"
    assert loader_fast.stats()["checked_here"] == here + 1

    # Other code (a comment differs): no class is known for it, so a child checks.
    in_child = loader_fast.validate_valves(unique(PLAIN), values)
    assert in_caller.to_dict() == in_child.to_dict()


def test_user_valves_are_described_apart_from_the_admin_valves(loader_fast):
    content = unique(PLAIN)
    assert loader_fast.validate_valves(content, {"shout": "on"}, kind="user_valves").values == {"shout": True}
    jobs = loader_fast.stats()["jobs"]

    assert loader_fast.validate_valves(content, {"shout": "off"}, kind="user_valves").values == {
        "shout": False
    }
    assert loader_fast.stats()["jobs"] == jobs
    admin = loader_fast.validate_valves(content, {"required_name": "x"})  # the admin class: not known yet
    assert admin.ok and loader_fast.stats()["jobs"] == jobs + 1


VALIDATED = """
from pydantic import BaseModel, field_validator


class Filter:
    class Valves(BaseModel):
        api_key: str = ""

        @field_validator("api_key")
        @classmethod
        def key_shape(cls, value):
            if value and not value.startswith("sk-"):
                raise ValueError("the key must start with sk-")
            return value.strip()
"""


def test_a_class_with_a_validator_is_checked_by_a_child_every_time(loader_fast):
    content = unique(VALIDATED)
    assert loader_fast.validate_valves(content, {"api_key": "sk-1 "}).values == {"api_key": "sk-1"}
    jobs = loader_fast.stats()["jobs"]

    refused = loader_fast.validate_valves(content, {"api_key": "nope"})
    assert not refused.ok and "sk-" in refused.errors[0]["msg"]
    assert loader_fast.validate_valves(content, {"api_key": "sk-2 "}).values == {"api_key": "sk-2"}
    assert loader_fast.stats()["jobs"] == jobs + 2


def test_a_forgotten_cache_sends_checks_to_a_child_again(loader_fast):
    content = unique(PLAIN)
    loader_fast.validate_valves(content, {"required_name": "a"})
    loader_fast.clear_cache()  # e.g. after packages were installed: the code may define something else now
    jobs = loader_fast.stats()["jobs"]

    loader_fast.validate_valves(content, {"required_name": "b"})
    assert loader_fast.stats()["jobs"] == jobs + 1


# --- which classes are plain ---------------------------------------------------------------------------------------


class Plain(BaseModel):
    priority: int = Field(default=0, ge=0)
    mode: Literal["a", "b"] = "a"
    note: Optional[str] = None  # noqa: UP045 - the typing spelling must be recognised too
    other: str | None = Field(default=None, max_length=3)
    tags: list[str] = Field(default_factory=list)


class WithValidator(BaseModel):
    a: int = 0

    @field_validator("a")
    @classmethod
    def plus_one(cls, value):
        return value + 1


class WithModelValidator(BaseModel):
    a: int = 0

    @model_validator(mode="after")
    def check(self):
        return self


class Forbidding(BaseModel):
    model_config = ConfigDict(extra="forbid")
    a: int = 0


class Stripping(BaseModel):
    model_config = ConfigDict(str_strip_whitespace=True)
    a: str = ""


class Aliased(BaseModel):
    a: int = Field(0, alias="b")


class Strict(BaseModel):
    a: int = Field(0, strict=True)


class Secret(BaseModel):
    a: SecretStr = SecretStr("")


class PostInit(BaseModel):
    a: int = 0

    def model_post_init(self, context):
        self.a += 1


class Excluded(BaseModel):
    a: int = Field(0, exclude=True)


class DefaultValidated(BaseModel):
    a: int = Field(0, validate_default=True)


class Nested(BaseModel):
    inner: Plain = Plain()


class BaseWithValidator(BaseModel):
    @field_validator("*")
    @classmethod
    def anything(cls, value):
        return value


class InheritsValidator(BaseWithValidator):
    a: int = 0


class OverridesValidate(BaseModel):
    a: int = 0

    @classmethod
    def model_validate(cls, *args, **kwargs):
        return super().model_validate(*args, **kwargs)


def test_a_plain_class_has_a_spec_that_builds_a_class_checking_the_same():
    spec = plain_spec(Plain)
    assert spec is not None
    rebuilt = plain_class(json.loads(json.dumps(spec)))  # as it travels from the child
    for values in ({"priority": "3", "tags": ["x"]}, {"priority": -1, "mode": "c", "other": "long"}):
        try:
            expected = Plain.model_validate(values).model_dump(exclude_unset=True, mode="json")
        except Exception as exc:
            expected = exc.errors(include_url=False)
        try:
            got = rebuilt.model_validate(values).model_dump(exclude_unset=True, mode="json")
        except Exception as exc:
            got = exc.errors(include_url=False)
        assert got == expected


@pytest.mark.parametrize(
    "cls",
    [
        WithValidator,
        WithModelValidator,
        Forbidding,
        Stripping,
        Aliased,
        Strict,
        Secret,
        PostInit,
        Excluded,
        DefaultValidated,
        Nested,
        InheritsValidator,
        OverridesValidate,
        int,
    ],
)
def test_a_class_whose_checks_depend_on_more_than_its_types_has_no_spec(cls):
    assert plain_spec(cls) is None


def spec_with(field: dict | None = None, name: str = "a", **top) -> dict:
    field = {"type": "int", "required": False, "constraints": {}} if field is None else field
    return {"name": "Valves", "fields": {name: field}, **top}


@pytest.mark.parametrize(
    "spec",
    [
        None,
        [],
        spec_with(extra=1),
        {"name": "not an identifier", "fields": {}},
        {"name": "class", "fields": {}},
        spec_with(name="__class__"),
        spec_with(name="_private"),
        spec_with(name="model_config"),
        spec_with(name="model_validate_json"),
        spec_with(name="copy"),
        spec_with(name="a b"),
        spec_with({"type": "int", "required": False, "constraints": {}, "default": 1}),
        spec_with({"type": "int", "required": "no", "constraints": {}}),
        spec_with({"type": "object", "required": False, "constraints": {}}),
        spec_with({"type": ["eval", "1"], "required": False, "constraints": {}}),
        spec_with({"type": ["literal", []], "required": False, "constraints": {}}),
        spec_with({"type": ["literal", [1.5]], "required": False, "constraints": {}}),
        spec_with({"type": ["literal", list(range(501))], "required": False, "constraints": {}}),
        spec_with(
            {
                "type": ["list", ["list", ["list", ["list", ["list", ["list", "int"]]]]]],
                "required": False,
                "constraints": {},
            }
        ),
        spec_with({"type": "int", "required": False, "constraints": {"pattern": ".*"}}),
        spec_with({"type": "int", "required": False, "constraints": {"ge": "1"}}),
        spec_with({"type": "int", "required": False, "constraints": {"ge": True}}),
        spec_with({"type": "str", "required": False, "constraints": {"max_length": -1}}),
        {
            "name": "Valves",
            "fields": {f"f{n}": {"type": "int", "required": False, "constraints": {}} for n in range(201)},
        },
    ],
)
def test_a_spec_outside_the_grammar_builds_nothing(spec):
    """The spec comes from a process that ran untrusted code: only the grammar is built."""
    with pytest.raises(NotPlain):
        plain_class(spec)
