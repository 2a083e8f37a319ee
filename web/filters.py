"""What every template can call: times (absolute, ISO for `<time datetime>`, relative for lists) and the
function id pattern, so that a page's `pattern=` attribute is the rule the services check, not a copy of it."""

from __future__ import annotations

import time
from datetime import UTC, datetime

from flask import Flask

from models import ID_PATTERN


def install_template_helpers(app: Flask) -> None:
    app.jinja_env.globals.update(
        absolute_time=absolute_time,
        iso_time=iso_time,
        relative_time=relative_time,
        # `ID_PATTERN` is used with fullmatch, as a browser uses a `pattern` attribute: whole value, no anchors.
        function_id_pattern=ID_PATTERN.pattern,
    )


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
