"""Keeping secret valves out of pages: the values of the secret fields, and a mask for messages that may quote
them (a function's validator may put what was typed into its error)."""

from __future__ import annotations

import re
from collections.abc import Mapping

from services.valves_form.field import ValveField

SECRET_MASK = "••••••"


def secret_values(fields: list[ValveField], *sources: Mapping | None) -> list[str]:
    """The values of the secret fields in ``sources`` (stored and submitted valves), to keep out of any page."""
    secrets: set[str] = set()
    for f in fields:
        if not f.field_kind.secret:
            continue
        for source in sources:
            value = (source or {}).get(f.name)
            if isinstance(value, str) and value:
                secrets.add(value)
    return sorted(secrets, key=len, reverse=True)


def mask_secrets(text: str, secrets: list[str]) -> str:
    """``text`` with every secret replaced by a mask, for messages that a function's validator may fill with input.

    A very short secret is masked only as a whole word, so that a one-letter value does not garble the message.
    """
    for secret in secrets:
        if len(secret) >= 4:
            text = text.replace(secret, SECRET_MASK)
        else:
            text = re.sub(rf"(?<!\w){re.escape(secret)}(?!\w)", SECRET_MASK, text)
    return text
