"""What the pages read from a function's ``meta`` JSON, by one rule wherever it is shown."""

from __future__ import annotations

import re
from typing import Any

# An icon is shown as an <img> only: an SVG inside one never runs scripts. Only pictures inlined as data: URLs and
# https addresses are used (the Content-Security-Policy's img-src allows exactly these and Sluice's own files).
_DATA_IMAGE = re.compile(r"data:image/(png|jpeg|jpg|gif|webp|svg\+xml|x-icon|vnd\.microsoft\.icon)[;,]", re.I)
MAX_ICON_URL = 256 * 1024


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


def icon_url(meta: Any) -> str | None:
    """The function's icon (``icon_url`` in its frontmatter, or in ``meta``) when it is safe to show as an image."""
    if not isinstance(meta, dict):
        return None
    for value in (manifest(meta).get("icon_url"), meta.get("icon_url")):
        if not isinstance(value, str) or len(value) > MAX_ICON_URL:
            continue
        value = value.strip()
        if value.lower().startswith("https://") and not any(c in value for c in "\"'<> \n\r\t"):
            return value
        if _DATA_IMAGE.match(value):
            return value
    return None
