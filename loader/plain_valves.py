"""Plain valves classes: those whose checking depends on nothing but their fields' types, so the server can check
values itself, without a child, with a class it builds from a description ("spec") the load child gives.

A valves update used to run the function's code in a child each time, only to build its `Valves` class again. Most
valves classes are plain: `int`, `str`, `bool`, `Literal[...]`, `Optional[...]`, lists and dicts of those, with
bounds such as `ge=0`; no validator, no custom type, no configuration. For such a class a child answers, with its
first check, a spec in a small JSON grammar (`plain_spec`), and the client (loader/client.py) builds the same
pydantic class from it (`plain_class`) and checks later values with it in its own process: no function code runs
there, only pydantic on a class made from plain types.

Why the answers cannot differ: pydantic validates and dumps entirely from a class's core schema. The child builds
the class from the spec with `plain_class` (the code the server uses) and gives the spec only when both classes'
core schemas are equal but for what does not change a check (JSON schema metadata, references, defaults, which
`exclude_unset` never dumps and `validate_default` would show). A validator, a `model_post_init`, an alias,
`strict`, `extra="forbid"`, a nested model, any type outside the grammar, changes the core schema, and then there is
no spec and every check goes to a child as before.

The spec comes from a process that ran untrusted code, so the server trusts none of it: `plain_class` accepts only
the grammar below, bounded, and at worst builds a class that checks that function's own valves differently, which
the function's author could always do with a validator.

    spec   = {"name": identifier, "fields": {name: {"type": type, "required": bool, "constraints": {...}}}}
    type   = "str" | "int" | "float" | "bool" | "any" | "list" | "dict"
           | ["optional", type] | ["list", type] | ["dict", type] | ["literal", [str | int | bool, ...]]
    constraints: ge, gt, le, lt, multiple_of (finite numbers), min_length, max_length (non-negative integers)
"""

from __future__ import annotations

import keyword
import math
import types
import typing
import warnings
from typing import Any, Literal, Optional

MAX_FIELDS = 200
MAX_DEPTH = 4
MAX_LITERALS = 500
MAX_TEXT = 1000

_SIMPLE = {"str": str, "int": int, "float": float, "bool": bool, "any": Any, "list": list, "dict": dict}
_SIMPLE_NAMES = {value: name for name, value in _SIMPLE.items()}
_NUMBER_BOUNDS = ("ge", "gt", "le", "lt", "multiple_of")
_LENGTH_BOUNDS = ("min_length", "max_length")
# Core schema keys that never change what a check accepts or what it stores (see the module docstring).
_IGNORED_KEYS = {"metadata", "ref", "default", "default_factory", "default_factory_takes_data"}


class NotPlain(ValueError):
    """The class or spec is outside the grammar: values must be checked in a child."""


# --- in the load child: describe a class -------------------------------------------------------------------------


def plain_spec(cls: type) -> dict | None:
    """The spec of `cls` when it is a plain pydantic v2 model (see the module docstring), else None."""
    try:
        with warnings.catch_warnings():
            # A class that warns when built would warn in the server's log each time it is built there.
            warnings.simplefilter("error")
            spec = _describe(cls)
            rebuilt = plain_class(spec)
            if not _same_checks(cls, rebuilt):
                return None
    except Exception:  # anything unexpected: not plain, the child keeps checking
        return None
    return spec


def _describe(cls: type) -> dict:
    from pydantic import BaseModel
    from pydantic_core import SchemaValidator

    if not (isinstance(cls, type) and issubclass(cls, BaseModel)) or type(cls) is not type(BaseModel):
        raise NotPlain("not a pydantic v2 model")
    # The check calls these (loader/valves.py): they must be pydantic's own, reading the core schema.
    for name in ("model_validate", "model_dump"):
        if _function(getattr(cls, name)) is not _function(getattr(BaseModel, name)):
            raise NotPlain(f"{name} is overridden")
    if not cls.__pydantic_complete__ or type(cls.__pydantic_validator__) is not SchemaValidator:
        raise NotPlain("not fully built")
    fields = {}
    for name, info in cls.model_fields.items():
        constraints = {}
        for item in info.metadata:
            constraints.update(_constraint(item))
        fields[name] = {
            "type": _type_spec(info.annotation, 0),
            "required": info.is_required(),
            "constraints": constraints,
        }
    return {"name": cls.__name__, "fields": fields}


def _function(method: object) -> object:
    return getattr(method, "__func__", method)


def _constraint(item: object) -> dict:
    import annotated_types

    kinds = {
        annotated_types.Ge: "ge",
        annotated_types.Gt: "gt",
        annotated_types.Le: "le",
        annotated_types.Lt: "lt",
        annotated_types.MultipleOf: "multiple_of",
        annotated_types.MinLen: "min_length",
        annotated_types.MaxLen: "max_length",
    }
    name = kinds.get(type(item))
    if name is None:
        raise NotPlain(f"constraint {type(item).__name__}")
    return {name: getattr(item, name)}


def _type_spec(annotation: object, depth: int):
    if depth > MAX_DEPTH:
        raise NotPlain("too deep")
    if annotation is Any or (type(annotation) is type and annotation in _SIMPLE_NAMES):
        return _SIMPLE_NAMES[annotation]
    origin, args = typing.get_origin(annotation), typing.get_args(annotation)
    if origin is Literal:
        return ["literal", list(args)]
    if origin in (typing.Union, types.UnionType) and len(args) == 2 and type(None) in args:
        inner = args[0] if args[1] is type(None) else args[1]
        return ["optional", _type_spec(inner, depth + 1)]
    if origin is list and len(args) == 1:
        return ["list", _type_spec(args[0], depth + 1)]
    if origin is dict and len(args) == 2 and args[0] is str:
        return ["dict", _type_spec(args[1], depth + 1)]
    raise NotPlain(f"type {annotation!r}")


def _same_checks(cls: type, rebuilt: type) -> bool:
    return _shape(cls.__pydantic_core_schema__, cls) == _shape(rebuilt.__pydantic_core_schema__, rebuilt)


def _shape(schema: object, cls: type) -> object:
    """The core schema with what cannot change a check left out, and the class itself as a marker."""
    if isinstance(schema, dict):
        return {key: _shape(value, cls) for key, value in schema.items() if key not in _IGNORED_KEYS}
    if isinstance(schema, list):
        return [_shape(value, cls) for value in schema]
    if schema is cls:
        return "<the class>"
    if isinstance(schema, (str, int, float, bool, type(None), tuple)):
        return schema
    # A function or another object: equal only to itself, so never to anything in a rebuilt class.
    return ("<object>", id(schema))


# --- in the server: build a class from a spec ----------------------------------------------------------------------


def plain_class(spec: object) -> type:
    """A pydantic model class built from `spec` alone; `NotPlain` if the spec is outside the grammar."""
    from pydantic import BaseModel, Field, create_model

    if not isinstance(spec, dict) or set(spec) != {"name", "fields"}:
        raise NotPlain("not a spec")
    name, fields = spec["name"], spec["fields"]
    if not _identifier(name) or not isinstance(fields, dict) or len(fields) > MAX_FIELDS:
        raise NotPlain("bad name or fields")
    definitions = {}
    for field_name, field in fields.items():
        if not _identifier(field_name) or field_name.startswith("_") or hasattr(BaseModel, field_name):
            raise NotPlain(f"field name {field_name!r}")
        if field_name.startswith(("model_validate", "model_dump")):
            raise NotPlain(f"field name {field_name!r}")
        if not isinstance(field, dict) or set(field) != {"type", "required", "constraints"}:
            raise NotPlain("bad field")
        if not isinstance(field["required"], bool) or not isinstance(field["constraints"], dict):
            raise NotPlain("bad field")
        annotation = _annotation(field["type"], 0)
        bounds = {key: _bound(key, value) for key, value in field["constraints"].items()}
        default = ... if field["required"] else None
        definitions[field_name] = (annotation, Field(default, **bounds))
    return create_model(name, **definitions)


def _identifier(value: object) -> bool:
    return (
        isinstance(value, str)
        and 0 < len(value) <= MAX_TEXT
        and value.isidentifier()
        and value.isascii()
        and not keyword.iskeyword(value)
    )


def _annotation(spec: object, depth: int):
    if depth > MAX_DEPTH:
        raise NotPlain("too deep")
    if isinstance(spec, str) and spec in _SIMPLE:
        return _SIMPLE[spec]
    if not isinstance(spec, list) or len(spec) != 2:
        raise NotPlain("bad type")
    kind, inner = spec
    if kind == "literal":
        if not isinstance(inner, list) or not 0 < len(inner) <= MAX_LITERALS:
            raise NotPlain("bad literal")
        for value in inner:
            if type(value) not in (str, int, bool) or (isinstance(value, str) and len(value) > MAX_TEXT):
                raise NotPlain("bad literal")
        return Literal[tuple(inner)]
    if kind == "optional":
        return Optional[_annotation(inner, depth + 1)]  # noqa: UP045 - built at run time from a spec
    if kind == "list":
        return list[_annotation(inner, depth + 1)]
    if kind == "dict":
        return dict[str, _annotation(inner, depth + 1)]
    raise NotPlain("bad type")


def _bound(key: object, value: object):
    if key in _NUMBER_BOUNDS and type(value) in (int, float) and math.isfinite(value):
        return value
    if key in _LENGTH_BOUNDS and type(value) is int and value >= 0:
        return value
    raise NotPlain(f"bad constraint {key!r}")
