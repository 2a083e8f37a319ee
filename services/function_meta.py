"""What the pages read from a function's ``meta`` JSON, by one rule wherever it is shown."""

from __future__ import annotations

from typing import Any


def manifest(meta: Any) -> dict[str, Any]:
    """The frontmatter of the code as stored under ``meta.manifest`` (``{}`` when there is none)."""
    value = meta.get("manifest") if isinstance(meta, dict) else None
    return value if isinstance(value, dict) else {}


def description(meta: Any) -> str:
    """The function's description: the one given with it (``meta.description``), else its frontmatter's."""
    if not isinstance(meta, dict):
        return ""
    for value in (meta.get("description"), manifest(meta).get("description")):
        if isinstance(value, str) and value.strip():
            return value.strip()
    return ""
