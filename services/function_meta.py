"""What the pages read from a function's ``meta`` JSON, by one rule wherever it is shown."""

from __future__ import annotations

import re
from typing import Any

from loader.results import MAX_ICON_CHARS

# An icon is shown as an <img> only: an SVG inside one never runs scripts. Only pictures inlined as data: URLs and
# https addresses are used (the Content-Security-Policy's img-src allows exactly these and Sluice's own files).
_DATA_IMAGE = re.compile(r"data:image/(png|jpeg|jpg|gif|webp|svg\+xml|x-icon|vnd\.microsoft\.icon)[;,]", re.I)
# The same bound the loader puts on an icon its code names, so an icon it kept is never too long to show.
MAX_ICON_URL = MAX_ICON_CHARS


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


def icon_url(meta: Any, code_icon: Any = None) -> str | None:
    """The function's icon, when one is safe to show as an image: its frontmatter's ``icon_url``, else the icon its
    code names (``self.icon``, kept in ``Function.icon``), else an ``icon_url`` given in ``meta``.

    The first two in Open WebUI's own order, so the console shows the icon Open WebUI shows beside a filter or an
    action in chat; ``meta.icon_url``, which Open WebUI never shows, only when neither gives one. A candidate that is
    not safe is passed over for the next.
    """
    meta = meta if isinstance(meta, dict) else {}
    for value in (manifest(meta).get("icon_url"), code_icon, meta.get("icon_url")):
        safe = safe_icon(value)
        if safe is not None:
            return safe
    return None


def safe_icon(value: Any) -> str | None:
    """``value`` trimmed when it is a data: image or an https address fit for an ``<img src>``, else None."""
    if not isinstance(value, str) or len(value) > MAX_ICON_URL:
        return None
    value = value.strip()
    if value.lower().startswith("https://") and not any(c in value for c in "\"'<> \n\r\t"):
        return value
    if _DATA_IMAGE.match(value):
        return value
    return None
