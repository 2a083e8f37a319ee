"""Safe mode (``SLUICE_SAFE_MODE``): Sluice starts without loading or running any function code, so an operator can
switch off or delete a function that breaks things.

Every function is then treated as inactive: nothing runs (the run route and the gateway answer 503), users see no
function and no personal valves, and whatever needs the loader (saving code, checking valves, syncing, importing)
is refused with 503 rather than stored unchecked, since code that was never loaded must never be stored as if it
loaded. What needs no code still works: reading, switching off and on (a switch takes effect when safe mode ends),
deleting, history, accounts and keys. The stored ``is_active`` is untouched, so turning safe mode
off brings back exactly what was on.
"""

from __future__ import annotations

from flask import current_app, has_app_context

from services.errors import ServiceError


class SafeModeOn(ServiceError):
    """Something that would load or run function code, asked for while safe mode is on: 503."""

    status = 503
    kind = "safe_mode"

    def __init__(self, what: str):
        super().__init__(
            f"Safe mode is on (SLUICE_SAFE_MODE): Sluice loads and runs no function code, so {what} is not possible "
            "until an operator turns it off. Switching functions off and deleting them still work."
        )


def is_on() -> bool:
    if not has_app_context():
        return False
    return bool(current_app.extensions["sluice.settings"].get("SLUICE_SAFE_MODE"))


def refuse(what: str) -> None:
    """Raise ``SafeModeOn`` when safe mode is on."""
    if is_on():
        raise SafeModeOn(what)
