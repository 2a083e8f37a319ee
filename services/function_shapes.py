"""How a function goes out on the wire: FunctionModel, FunctionWithValvesModel and FunctionResponse, each in the key
order SPEC §2 gives (the order is the contract).
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any

from models import Function


def _dict_or_empty(value: Any) -> dict:
    return value if isinstance(value, dict) else {}


# How a stored value becomes its wire value, where the two differ.
_WIRE_VALUE = {"meta": _dict_or_empty, "valves": _dict_or_empty, "is_active": bool, "is_global": bool}
_FLAGS_AND_TIMES = ("is_active", "is_global", "updated_at", "created_at")
_HEAD = ("version_id", "id", "user_id")
FUNCTION_MODEL = _HEAD + ("name", "type", "content", "meta") + _FLAGS_AND_TIMES
FUNCTION_WITH_VALVES_MODEL = _HEAD + ("name", "type", "content", "meta", "valves") + _FLAGS_AND_TIMES
FUNCTION_RESPONSE = _HEAD + ("type", "name", "meta") + _FLAGS_AND_TIMES


def _shape(f: Function, keys: tuple[str, ...]) -> dict:
    """The wire shape ``keys`` (its order is the contract) of a model."""
    return _wire(keys, [getattr(f, key) for key in keys])


def _wire(keys: tuple[str, ...], values) -> dict:
    shaped = dict(zip(keys, values, strict=True))
    for key, convert in _conversions(keys):
        shaped[key] = convert(shaped[key])
    return shaped


@functools.cache
def _conversions(keys: tuple[str, ...]) -> tuple[tuple[str, Callable], ...]:
    return tuple((key, convert) for key, convert in _WIRE_VALUE.items() if key in keys)


def function_model(f: Function) -> dict:
    return _shape(f, FUNCTION_MODEL)


def function_with_valves_model(f: Function) -> dict:
    return _shape(f, FUNCTION_WITH_VALVES_MODEL)


def function_response(f: Function) -> dict:
    return _shape(f, FUNCTION_RESPONSE)
