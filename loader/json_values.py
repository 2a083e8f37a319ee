"""`json_safe`: the one copy of any value that `json.dumps` accepts, for load answers and for runtime results alike.

Function code returns and defines anything (sets, enums, bytes, NaN, pydantic models, dates, objects whose methods
raise), so both the load child (`loader.describe`, `loader.child`) and the runtime (`loader.runtime`) pass what it
gave through here, with a node budget and a depth limit so a hostile value cannot make the copy unbounded.
"""

from __future__ import annotations

import dataclasses
import datetime
import math
from collections.abc import Mapping
from enum import Enum

from loader.errors import safe_str

MAX_JSON_NODES = 200_000
MAX_JSON_DEPTH = 64


class TooLarge(Exception):
    """The value has more than `MAX_JSON_NODES` parts: too large to answer with."""

    def __init__(self, message: str = f"the value has more than {MAX_JSON_NODES} parts"):
        super().__init__(message)


def json_safe(value, budget: list[int] | None = None, depth: int = 0):
    """A copy of `value` that `json.dumps` accepts: models dumped, dates in ISO form, bytes decoded, NaN as None.

    Raises `TooLarge` past `MAX_JSON_NODES` parts; below `MAX_JSON_DEPTH` levels a value is shown as text.
    """
    if budget is None:
        budget = [MAX_JSON_NODES]
    budget[0] -= 1
    if budget[0] < 0:
        raise TooLarge
    if value is None or isinstance(value, (bool, int, str)):
        return value if type(value) in (bool, int, str) or value is None else _primitive(value)
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if depth >= MAX_JSON_DEPTH:
        return safe_str(value, 200)
    if isinstance(value, Mapping):
        return {_key(key): json_safe(item, budget, depth + 1) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [json_safe(item, budget, depth + 1) for item in value]
    if isinstance(value, (set, frozenset)):
        items = [json_safe(item, budget, depth + 1) for item in value]
        try:
            return sorted(items)
        except TypeError:
            return items
    if isinstance(value, Enum):
        return json_safe(value.value, budget, depth + 1)
    if isinstance(value, (bytes, bytearray)):
        return bytes(value).decode("utf-8", "replace")
    if isinstance(value, (datetime.datetime, datetime.date, datetime.time)):
        return value.isoformat()
    if is_model(value):
        try:
            dumped = value.model_dump(mode="json") if hasattr(value, "model_dump") else value.dict()
        except Exception:  # a serializer that fails: show the model as text
            return safe_str(value, 1000)
        return json_safe(dumped, budget, depth + 1)
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        try:
            fields = dataclasses.asdict(value)
        except Exception:  # a field deepcopy refuses
            return safe_str(value, 1000)
        return json_safe(fields, budget, depth + 1)
    return safe_str(value, 1000)


def is_model(value) -> bool:
    """A pydantic model instance (v2 or v1)."""
    if isinstance(value, type):
        return False
    try:
        return hasattr(value, "model_dump") or hasattr(value, "__fields_set__")
    except Exception:  # a __getattr__ raising something odd means "not a model"
        return False


def _primitive(value):
    """Plain bool/int/str for subclasses (IntEnum, str-based secrets), whose own methods must not run on dump."""
    if isinstance(value, bool):
        return bool(value)
    if isinstance(value, int):
        return int(value)
    return str.__str__(value)


def _key(key) -> str:
    if isinstance(key, str):
        return str.__str__(key)
    if isinstance(key, Enum):
        key = key.value
    return safe_str(key, 200)
