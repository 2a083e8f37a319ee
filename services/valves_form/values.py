"""The small values every part of the valves form shares: "not set", a select's option, a parse error, and how a
number or a JSON value is written and compared."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

# Every field's input is named `valve-<name>`; its reset checkbox `reset-<name>`, its pin checkbox `pin-<name>`.
INPUT_PREFIX = "valve-"
RESET_PREFIX = "reset-"
# The box that stores a value even when it equals the default ("pinned"), instead of following the default.
PIN_PREFIX = "pin-"


class _Unset:
    def __repr__(self) -> str:
        return "UNSET"

    def __bool__(self) -> bool:
        return False


UNSET: Any = _Unset()


@dataclass(frozen=True)
class Option:
    """One choice of a select: ``key`` is what the browser sends back, ``value`` what is stored."""

    key: str
    value: Any
    label: str


class FieldParseError(ValueError):
    """What the user typed cannot be read as this field's kind."""


def option_key(value: Any) -> str:
    """What a select sends back for ``value``: a string as it is, anything else as JSON."""
    return value if isinstance(value, str) else json.dumps(value, sort_keys=True)


def plain(value: Any) -> str:
    return value if isinstance(value, str) else json.dumps(value, ensure_ascii=False)


def number_text(value: float) -> str:
    return repr(value) if isinstance(value, float) else str(value)


def same(a: Any, b: Any) -> bool:
    """Equality that does not confuse ``True`` with ``1`` and compares JSON-ish values structurally."""
    if isinstance(a, bool) or isinstance(b, bool):
        return isinstance(a, bool) and isinstance(b, bool) and a == b
    return a == b
