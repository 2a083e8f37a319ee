"""How the pages show times: absolute, ISO for `<time datetime>`, and relative for lists."""

from __future__ import annotations

import time
from datetime import UTC, datetime


def absolute_time(timestamp: int | None) -> str:
    if not timestamp:
        return ""
    return datetime.fromtimestamp(timestamp, UTC).strftime("%Y-%m-%d %H:%M UTC")


def iso_time(timestamp: int | None) -> str:
    return datetime.fromtimestamp(timestamp or 0, UTC).isoformat()


def relative_time(timestamp: int | None, now: float | None = None) -> str:
    """ "just now", "5 minutes ago", "3 days ago" … then the date, for the list's last-update column."""
    if not timestamp:
        return "never"
    seconds = int((now if now is not None else time.time()) - timestamp)
    if seconds < 0:
        return "just now" if seconds > -60 else absolute_time(timestamp)
    for limit, size, unit in (
        (60, 1, None),
        (3600, 60, "minute"),
        (86400, 3600, "hour"),
        (86400 * 30, 86400, "day"),
        (86400 * 365, 86400 * 30, "month"),
    ):
        if seconds < limit:
            if unit is None:
                return "just now"
            count = seconds // size
            return f"{count} {unit}{'s' if count != 1 else ''} ago"
    years = seconds // (86400 * 365)
    return f"{years} year{'s' if years != 1 else ''} ago"
