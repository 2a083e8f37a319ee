"""A submitted valves form read back into the valves object to store, and the function's own validation errors
mapped back onto the fields. How each field's text becomes a value is its kind's ``parse``."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from services.valves_form.field import ValveField
from services.valves_form.values import UNSET, FieldParseError


@dataclass
class Submission:
    """The outcome of reading a valves form.

    ``values`` is the complete object to send to the service (stored keys kept, untouched secrets copied from
    what is stored); ``errors`` are the parse errors per field; ``typed`` what was typed (secrets excluded), to
    put back in the form when it has to be shown again; ``resets`` the fields whose reset box was ticked.
    """

    values: dict[str, Any]
    errors: dict[str, str]
    typed: dict[str, Any]
    resets: set[str]
    secrets_typed: set[str]
    pins: set[str] = field(default_factory=set)

    @property
    def ok(self) -> bool:
        return not self.errors


def _getlist(form: Any, key: str) -> list[str]:
    if hasattr(form, "getlist"):
        return [str(v) for v in form.getlist(key)]
    value = form.get(key) if isinstance(form, Mapping) else None
    if value is None:
        return []
    if isinstance(value, list | tuple):
        return [str(v) for v in value]
    return [str(value)]


def _ticked(form: Any, key: str) -> bool:
    return any(v not in ("", "0", "off", "false") for v in _getlist(form, key))


def parse_value(f: ValveField, raw: str) -> Any:
    """One field's typed text as a value; ``UNSET`` (or ``None`` for a nullable field) when left empty."""
    return f.field_kind.parse(f, raw)


def parse_submission(fields: list[ValveField], form: Any, stored: Mapping | None) -> Submission:
    """Turn a submitted form into the complete valves object to store, on top of what is stored now.

    A value equal to the default is stored only when its field's "pin" box (``pin-<name>``) is ticked: then it
    stays even when a new version of the function changes the default.

    Keys the current schema does not know are not carried over: they would be dropped by the function's class
    anyway, and the page lists them so that this is never silent.
    """
    stored = dict(stored or {})
    known = {f.name for f in fields}
    values: dict[str, Any] = {k: v for k, v in stored.items() if k in known}
    errors: dict[str, str] = {}
    typed: dict[str, Any] = {}
    resets: set[str] = set()
    secrets_typed: set[str] = set()
    pins: set[str] = set()

    for f in fields:
        kind = f.field_kind
        if _ticked(form, f.reset_name):
            resets.add(f.name)
            values.pop(f.name, None)
            continue
        raw_values = _getlist(form, f.input_id)
        if not raw_values:
            continue  # not part of this submission: whatever is stored stays
        raw = raw_values[-1]  # a checkbox comes after its hidden "off" twin
        if kind.secret:
            secret = kind.parse(f, raw)
            if secret is not UNSET:
                values[f.name] = secret
                secrets_typed.add(f.name)
            continue  # left empty: the stored secret stays
        typed[f.name] = raw
        if f.can_pin and _ticked(form, f.pin_name):
            pins.add(f.name)
        if f.name in stored and kind.keeps_stored(f, raw, stored[f.name]):
            continue
        try:
            value = kind.parse(f, raw)
        except FieldParseError as exc:
            errors[f.name] = str(exc)
            continue
        if value is UNSET and f.name in stored and not f.nullable and kind.empty_error:
            # Emptying a stored number or JSON value is not a way to reset it: say how, and keep it.
            errors[f.name] = kind.empty_error + ("." if f.required else ", or tick Reset to default.")
            continue
        if value is UNSET or value is None:
            values.pop(f.name, None)
        elif f.name in stored:
            values[f.name] = value
        elif f.has_default and kind.equal(f, value, f.default) and f.name not in pins:
            values.pop(f.name, None)  # left at its default, and not pinned: not something the user set
        elif not f.has_default and value in ("", []):
            values.pop(f.name, None)  # left empty, and the function computes its own default
        else:
            values[f.name] = value
    return Submission(
        values=values, errors=errors, typed=typed, resets=resets, secrets_typed=secrets_typed, pins=pins
    )


def map_errors(fields: list[ValveField], errors: list[Mapping] | None) -> tuple[dict[str, str], list[str]]:
    """Split ``[{loc, msg, type}]`` into one message per field (by ``loc[0]``) and the rest (whole-form errors).

    A field's message is a plain sentence (``plain_message``): the same style as the form's own parse errors, never
    pydantic's wording.
    """
    by_name = {f.name: f for f in fields}
    by_field: dict[str, str] = {}
    general: list[str] = []
    for item in errors or []:
        if not isinstance(item, Mapping):
            continue
        loc = item.get("loc") or []
        msg = str(item.get("msg") or "Invalid value.")
        if loc and str(loc[0]) in by_name:
            name = str(loc[0])
            text = plain_message(by_name[name], item)
            if text not in by_field.get(name, ""):
                by_field[name] = f"{by_field[name]} {text}" if name in by_field else text
        else:
            where = ".".join(str(part) for part in loc)
            general.append(f"{where}: {msg}" if where else msg)
    return by_field, general


# The prefixes pydantic puts before the message of a function's own validator (`raise ValueError("…")`).
_VALIDATOR_PREFIXES = ("Value error, ", "Assertion failed, ")
_RANGE_TYPES = frozenset(
    {"greater_than", "greater_than_equal", "less_than", "less_than_equal", "multiple_of"}
)


def plain_message(f: ValveField, item: Mapping) -> str:
    """One validation error of the function's class as a sentence a person can act on, by its ``type``."""
    kind = str(item.get("type") or "")
    msg = str(item.get("msg") or "")
    where = [part for part in (item.get("loc") or [])[1:]]
    noun = getattr(f.field_kind, "error_noun", lambda field: "a value")(f)
    bounds = f.bounds_text()
    if kind in _RANGE_TYPES and not where and hasattr(f.field_kind, "range_error"):
        text = f.field_kind.range_error(f)
    elif kind in _RANGE_TYPES and not where:
        text = f"Enter {noun} {bounds}." if bounds else f"Enter {noun} in the allowed range."
    elif kind in ("int_parsing", "int_from_float", "int_type"):
        text = "Enter a whole number."
    elif kind in ("float_parsing", "float_type", "finite_number"):
        text = "Enter a number."
    elif kind in ("string_too_short", "string_too_long") and not where and bounds:
        text = f"Enter {bounds}."
    elif kind == "missing":
        text = "This value is required."
    elif kind in ("literal_error", "enum"):
        text = "Choose one of the values offered."
    elif kind in ("bool_parsing", "bool_type"):
        text = "Choose on or off."
    else:
        for prefix in _VALIDATOR_PREFIXES:
            if msg.startswith(prefix):
                msg = msg[len(prefix) :]
                break
        text = _sentence(msg or "This value is not accepted")
    if where:
        place = " ".join(f"item {part + 1}" if isinstance(part, int) else f"“{part}”" for part in where)
        text = f"In {place}: {text[:1].lower()}{text[1:]}"
    return text


def _sentence(text: str) -> str:
    text = text.strip()
    text = text[:1].upper() + text[1:]
    return text if text.endswith((".", "!", "?")) else text + "."


def unknown_keys(fields: list[ValveField], stored: Mapping | None) -> list[str]:
    """Stored keys that the current class no longer has."""
    known = {f.name for f in fields}
    return sorted(key for key in (stored or {}) if key not in known)
