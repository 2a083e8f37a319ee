"""The built-in valves field kinds, one class each, registered at the bottom in detection order.

Each draws its input with its own partial under ``templates/valves/fields/``; kinds drawn alike share one (the
two number kinds; ``tristate`` and ``select``).

"Optional" is not a kind of its own: any field may be nullable (``Optional[...]``), and each kind says what an
empty input means for it; only an optional boolean needs its own input (Default/On/Off), the ``tristate`` kind.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from services.valves_form import schema
from services.valves_form.registry import FieldKind, register
from services.valves_form.values import UNSET, FieldParseError, Option, number_text, option_key, plain

if TYPE_CHECKING:
    from services.valves_form.field import ValveField
    from services.valves_form.submission import Submission
    from services.valves_form.views import FieldView

_TEXTAREA_FORMATS = frozenset({"textarea", "multiline", "multi-line", "text"})
_SCALAR_ITEM_TYPES = frozenset({"string", "integer", "number"})
# Long or multi-line defaults (system prompts, templates) are easier to edit in a textarea.
_LONG_TEXT = 100

STORED_SECRET_PLACEHOLDER = "•••••• (stored — leave empty to keep)"
DEFAULT_SECRET_PLACEHOLDER = "•••••• (set by the function — type to replace)"


# --- strings --------------------------------------------------------------------------------------------------


class TextKind(FieldKind):
    """A single line of text."""

    name = "text"

    def matches(self, name: str, prop: Mapping, nullable: bool) -> bool:
        return prop.get("type") == "string"

    def parse(self, field: ValveField, raw: str) -> Any:
        text = raw.replace("\r\n", "\n")
        if text == "" and field.nullable:
            return None
        return text

    def bounds(self, field: ValveField) -> list[str]:
        parts = []
        if field.min_length is not None:
            parts.append(f"at least {field.min_length} characters")
        if field.max_length is not None:
            parts.append(f"at most {field.max_length} characters")
        return parts


class TextareaKind(TextKind):
    """Several lines of text: asked for by ``input.type: textarea`` or a format, or implied by a long default."""

    name = "textarea"

    def matches(self, name: str, prop: Mapping, nullable: bool) -> bool:
        if prop.get("type") != "string":
            return False
        hint = schema.input_hint(prop)
        default = prop.get("default")
        return (
            hint.get("type") == "textarea"
            or prop.get("multiline") is True
            or hint.get("multiline") is True
            or prop.get("format") in _TEXTAREA_FORMATS
            or (isinstance(default, str) and ("\n" in default or len(default) > _LONG_TEXT))
        )


class PasswordKind(TextKind):
    """A secret string: never written into a page, kept when left empty."""

    name = "password"
    secret = True
    input_type = "password"
    reset_label = "Clear the stored secret (use the default)"

    def matches(self, name: str, prop: Mapping, nullable: bool) -> bool:
        return prop.get("type") == "string" and schema.is_secret(name, prop)

    def parse(self, field: ValveField, raw: str) -> Any:
        return raw.strip() or UNSET

    def default_text(self, field: ValveField, value: Any) -> str:
        return "a value set by the function (hidden)" if value else "empty"

    def fill_view(self, view: FieldView, value: Any, raw: str | None, submission: Submission | None) -> None:
        view.secret_stored = view.is_set and value not in (None, "")
        view.secret_typed = submission is not None and view.field.name in submission.secrets_typed

    def placeholder(self, view: FieldView) -> str:
        if view.secret_stored:
            return STORED_SECRET_PLACEHOLDER
        if view.field.has_default and view.field.default:
            return DEFAULT_SECRET_PLACEHOLDER
        return "Not set"


# --- numbers --------------------------------------------------------------------------------------------------


def parse_number(text: str, integer: bool) -> int | float:
    """``text`` (stripped) as a number; a whole float such as ``3.0`` is an integer's ``3``."""
    try:
        number = float(text)
    except ValueError:
        raise FieldParseError("Enter a whole number." if integer else "Enter a number.") from None
    if not math.isfinite(number):
        raise FieldParseError("Enter a finite number.")
    if integer:
        try:
            return int(text)
        except ValueError:
            if number.is_integer():
                return int(number)
            raise FieldParseError("Enter a whole number.") from None
    if re.fullmatch(r"[+-]?\d+", text):
        return int(text)
    return number


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _limit_text(value: float) -> str:
    return number_text(int(value) if isinstance(value, float) and value.is_integer() else value)


class NumberKind(FieldKind):
    """A number: a ``type=number`` input carrying the schema's ``min``, ``max`` and ``step``, so the browser
    checks the range before anything is sent.

    The form is validated by the browser (not ``novalidate``): Chromium submits ``""`` for a number input it cannot
    parse (``4e``), which the server could not tell from an emptied field, and native validation stops such a
    submission (``badInput``) before it is sent. The server still parses and range-checks whatever arrives.
    """

    name = "number"
    partial = "valves/fields/_number.html"
    json_type = "number"
    empty_error = "Enter a number"
    input_type = "number"
    noun = "a number"

    def matches(self, name: str, prop: Mapping, nullable: bool) -> bool:
        return prop.get("type") == self.json_type

    def parse(self, field: ValveField, raw: str) -> Any:
        stripped = raw.strip()
        if not stripped:
            return UNSET
        return parse_number(stripped, integer=self.json_type == "integer")

    def equal(self, field: ValveField, a: Any, b: Any) -> bool:
        if isinstance(a, int | float) and isinstance(b, int | float):
            return _is_number(a) and _is_number(b) and a == b
        return super().equal(field, a, b)

    def to_text(self, field: ValveField, value: Any) -> str:
        return number_text(value) if _is_number(value) else super().to_text(field, value)

    def bounds(self, field: ValveField) -> list[str]:
        return [] if field.multiple_of is None else [f"a multiple of {number_text(field.multiple_of)}"]

    def limits(self, field: ValveField) -> dict[str, str]:
        """The ``min``, ``max`` and ``step`` attributes the schema gives (exclusive bounds only where whole)."""
        integer = self.json_type == "integer"
        low, high = field.minimum, field.maximum
        if low is None and field.exclusive_minimum is not None and integer:
            low = math.floor(field.exclusive_minimum) + 1
        if high is None and field.exclusive_maximum is not None and integer:
            high = math.ceil(field.exclusive_maximum) - 1
        limits = {}
        if low is not None:
            limits["min"] = _limit_text(low)
        if high is not None:
            limits["max"] = _limit_text(high)
        step = field.multiple_of
        # A browser counts steps from `min`: a multiple of the step only when `min` is one too.
        if step is not None and step > 0 and (low is None or math.isclose(low / step, round(low / step))):
            limits["step"] = _limit_text(step)
        else:
            limits["step"] = "1" if integer else "any"
        return limits

    def error_noun(self, field: ValveField) -> str:
        return self.noun

    def range_error(self, field: ValveField) -> str:
        """What the browser's range or step check tells, in the words the server uses for the same refusal."""
        bounds = field.bounds_text()
        return f"Enter {self.noun} {bounds}." if bounds else f"Enter {self.noun}."


class IntegerKind(NumberKind):
    """A whole number (a whole float such as ``3.0``, which the server accepts, passes the browser's check too)."""

    name = "integer"
    json_type = "integer"
    empty_error = "Enter a whole number"
    noun = "a whole number"


# --- choices --------------------------------------------------------------------------------------------------


class BooleanKind(FieldKind):
    """On or off: a checkbox, after a hidden ``off`` twin so that an unticked box is sent too."""

    name = "boolean"
    labels_itself = True

    def matches(self, name: str, prop: Mapping, nullable: bool) -> bool:
        return prop.get("type") == "boolean" and not nullable

    def parse(self, field: ValveField, raw: str) -> Any:
        return raw.lower() in ("on", "true", "1", "yes")

    def fill_view(self, view: FieldView, value: Any, raw: str | None, submission: Submission | None) -> None:
        view.checked = self.parse(view.field, raw) if raw is not None else bool(value is not UNSET and value)


class TristateKind(FieldKind):
    """An optional boolean: Default, On or Off."""

    name = "tristate"
    partial = "valves/fields/_select.html"

    def matches(self, name: str, prop: Mapping, nullable: bool) -> bool:
        return prop.get("type") == "boolean" and nullable

    def parse(self, field: ValveField, raw: str) -> Any:
        if raw == "":
            return UNSET
        if raw in ("true", "false"):
            return raw == "true"
        raise FieldParseError("Choose Default, On or Off.")

    def hints(self, field: ValveField) -> list[str]:
        return []

    def fill_view(self, view: FieldView, value: Any, raw: str | None, submission: Submission | None) -> None:
        if raw is not None:
            view.selected = raw
        elif view.is_set:
            view.selected = "" if value is None else ("true" if value else "false")

    def select_options(self, view: FieldView) -> list[Option]:
        f = view.field
        default = "none" if not f.has_default or f.default is None else ("on" if f.default else "off")
        return [
            Option("", None, f"Default ({default})"),
            Option("true", True, "On"),
            Option("false", False, "Off"),
        ]


class SelectKind(FieldKind):
    """One of a list: ``Literal``/``enum``, ``const``, or ``input: {type: select, options}`` (a list, or the
    name of a method the loader has already called)."""

    name = "select"

    def matches(self, name: str, prop: Mapping, nullable: bool) -> bool:
        return bool(schema.options(prop)) and prop.get("type") not in ("array", "object")

    def read_schema(self, field: ValveField, prop: Mapping) -> None:
        field.options = schema.options(prop)

    def parse(self, field: ValveField, raw: str) -> Any:
        if raw == "":
            return UNSET
        for option in field.options:
            if option.key == raw:
                return option.value
        raise FieldParseError("Choose one of the listed options.")

    def keeps_stored(self, field: ValveField, raw: str, stored: Any) -> bool:
        # A stored value the options no longer offer stays as it is, for the function's class to judge.
        return raw == option_key(stored)

    def default_text(self, field: ValveField, value: Any) -> str:
        if value is None or isinstance(value, bool):
            return super().default_text(field, value)
        option = field.option_for(value)
        return option.label if option else json.dumps(value, ensure_ascii=False)

    def hints(self, field: ValveField) -> list[str]:
        return []

    def fill_view(self, view: FieldView, value: Any, raw: str | None, submission: Submission | None) -> None:
        f = view.field
        if view.is_set and f.option_for(value) is None:
            view.extra_option = Option(option_key(value), value, f"{plain(value)} (no longer offered)")
        if raw is not None:
            view.selected = raw
        elif view.is_set:
            view.selected = option_key(value)

    def select_options(self, view: FieldView) -> list[Option]:
        """The options, with the "use the default" choice first and a no-longer-offered stored value last."""
        f = view.field
        if f.has_default:
            first_label = f"Default ({f.default_text()})"
        elif f.nullable:
            first_label = "Not set"
        else:
            first_label = "Choose…"
        options = [Option("", None, first_label), *f.options]
        if view.extra_option is not None:
            options.append(view.extra_option)
        return options


# --- structures -----------------------------------------------------------------------------------------------


class ListKind(FieldKind):
    """A list of strings or numbers, one per line."""

    name = "list"
    min_rows = 3

    def matches(self, name: str, prop: Mapping, nullable: bool) -> bool:
        items = prop.get("items")
        return (
            prop.get("type") == "array"
            and isinstance(items, Mapping)
            and items.get("type") in _SCALAR_ITEM_TYPES
        )

    def read_schema(self, field: ValveField, prop: Mapping) -> None:
        field.item_type = prop["items"].get("type")

    def parse(self, field: ValveField, raw: str) -> Any:
        if not raw.strip():
            return None if field.nullable else []
        items: list = []
        for index, line in enumerate(raw.replace("\r\n", "\n").split("\n"), start=1):
            text = line.strip()
            if not text:
                continue
            if field.item_type in ("integer", "number"):
                try:
                    items.append(parse_number(text, integer=field.item_type == "integer"))
                except FieldParseError as exc:
                    raise FieldParseError(f"Line {index}: {exc}") from None
            else:
                items.append(text)
        if field.unique_items:
            unique: list = []
            for item in items:
                if item not in unique:
                    unique.append(item)
            items = unique
        return items

    def to_text(self, field: ValveField, value: Any) -> str:
        if isinstance(value, list):
            return "\n".join(item if isinstance(item, str) else json.dumps(item) for item in value)
        return super().to_text(field, value)

    def hints(self, field: ValveField) -> list[str]:
        one = "number" if field.item_type in ("integer", "number") else "item"
        line = f"one {one} per line" + (", duplicates removed" if field.unique_items else "")
        return [line, *super().hints(field)]


class JsonKind(FieldKind):
    """Anything else (objects, unions, lists of objects): typed as JSON."""

    name = "json"
    fallback = True
    empty_error = "Enter a JSON value"

    def matches(self, name: str, prop: Mapping, nullable: bool) -> bool:
        return True

    def parse(self, field: ValveField, raw: str) -> Any:
        stripped = raw.strip()
        if not stripped:
            return UNSET
        try:
            return json.loads(stripped)
        except json.JSONDecodeError as exc:
            raise FieldParseError(
                f"This is not valid JSON: {exc.msg} (line {exc.lineno}, column {exc.colno})."
            ) from None

    def to_text(self, field: ValveField, value: Any) -> str:
        return json.dumps(value, indent=2, ensure_ascii=False)

    def hints(self, field: ValveField) -> list[str]:
        return ["JSON", *super().hints(field)]


# The one place built-in kinds are registered, in detection order: the first whose `matches` says yes wins, so
# a select's options beat its type, a secret or multi-line string beats plain text, and JSON takes the rest.
for _kind in (
    SelectKind,
    BooleanKind,
    TristateKind,
    IntegerKind,
    NumberKind,
    PasswordKind,
    TextareaKind,
    TextKind,
    ListKind,
    JsonKind,
):
    register(_kind)
del _kind
