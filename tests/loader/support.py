"""Helpers shared by the loader's tests."""

from __future__ import annotations

import textwrap
import uuid


def unique(text: str) -> str:
    """Dedent an inline function source and make it unique, so that no cached result answers it."""
    return textwrap.dedent(text).lstrip("\n") + f"\n# {uuid.uuid4().hex}\n"


def defaults(result) -> dict:
    """The defaults of a loaded function's Valves, by field; the load must have worked."""
    assert result.ok, result.error
    return {name: prop.get("default") for name, prop in result.valves_schema["properties"].items()}
