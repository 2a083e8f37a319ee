"""Text and JSON that every database can store and every JSON parser can read back.

Python's ``json`` module accepts more than JSON: ``NaN`` and ``Infinity``, and ``\\ud800``-style escapes that decode
to a lone surrogate, which is no character at all. Stored, the first come back out as bare ``NaN`` that strict
clients (browsers, Go, serde) refuse, and the second cannot be encoded as UTF-8 (a 500 on commit, or text that is
not Unicode in every later answer). NUL is valid Unicode but PostgreSQL refuses it in text. Every way in (the API's
bodies, the console's import files, the service layer) refuses all three.
"""

from __future__ import annotations

import json
import math
import re
from dataclasses import dataclass
from typing import Any

_SURROGATE = re.compile("[\ud800-\udfff]")


class NotStrictJson(ValueError):
    """A constant that is not JSON (NaN, Infinity, -Infinity)."""

    def __init__(self, constant: str):
        super().__init__(f"{constant} is not a JSON value; send a number or null")


def _refuse_constant(constant: str) -> Any:
    raise NotStrictJson(constant)


def loads(raw: str | bytes) -> Any:
    """``json.loads`` that refuses ``NaN``, ``Infinity`` and ``-Infinity`` (``NotStrictJson``, a ``ValueError``)."""
    return json.loads(raw, parse_constant=_refuse_constant)


def text_problem(text: str) -> str | None:
    """Why ``text`` cannot be stored ("a NUL character", "a lone surrogate …"), or None when it can."""
    if "\x00" in text:
        return "a NUL character"
    found = _SURROGATE.search(text)
    if found:
        return f"a lone surrogate (\\u{ord(found.group()):04x}), which is not a character"
    return None


@dataclass(frozen=True)
class Problem:
    loc: tuple
    kind: str  # "nul", "surrogate" or "number"
    in_key: bool  # the key at `loc`, not its value

    @property
    def reason(self) -> str:
        what = {
            "nul": "a NUL character",
            "surrogate": "a lone surrogate, which is not a character",
            "number": "NaN or an infinity, which are not JSON numbers",
        }[self.kind]
        return f"a key with {what}" if self.in_key else what

    def sentence(self, what: str) -> str:
        """ "meta.x must not contain a NUL character." for ``what`` = "meta"."""
        return f"{join(what, self.loc)} must not contain {self.reason}."


def _kind(text: str) -> str | None:
    if "\x00" in text:
        return "nul"
    if _SURROGATE.search(text):
        return "surrogate"
    return None


def problems(data: Any) -> list[Problem]:
    """Every string, key or number in ``data`` that cannot be stored, sorted by location.

    Not recursive, so JSON nested a thousand deep cannot exhaust the stack.
    """
    found: list[Problem] = []
    pending: list[tuple[Any, tuple]] = [(data, ())]
    while pending:
        value, where = pending.pop()
        if isinstance(value, str):
            kind = _kind(value)
            if kind:
                found.append(Problem(where, kind, False))
        elif isinstance(value, float):
            if not math.isfinite(value):
                found.append(Problem(where, "number", False))
        elif isinstance(value, dict):
            for key, item in value.items():
                kind = _kind(key) if isinstance(key, str) else None
                if kind:
                    found.append(Problem((*where, key), kind, True))
                pending.append((item, (*where, key)))
        elif isinstance(value, list | tuple):
            pending.extend((item, (*where, index)) for index, item in enumerate(value))
    return sorted(found, key=lambda problem: [str(part) for part in problem.loc])


def join(what: str, loc: tuple) -> str:
    """``("x", 0)`` under ``meta`` as ``meta.x[0]``, for messages; a key that is not plain text is left out."""
    text = what
    for part in loc:
        if isinstance(part, int):
            text += f"[{part}]"
        elif isinstance(part, str) and _kind(part) is None:
            text += f".{part}"
        else:
            text += ".…"
    return text


def first_problem(data: Any, what: str) -> str | None:
    """The sentence for the first thing in ``data`` that cannot be stored, or None when everything can."""
    found = problems(data)
    return found[0].sentence(what) if found else None
