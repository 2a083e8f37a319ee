"""Valves forms: a function's JSON schema becomes form fields, and a submitted form becomes a valves object.

Flask-free on purpose, so the rules can be unit-tested against schemas shaped like real community functions. The
contract it keeps (SPEC §3 "valves update", §5):

- only what the user set is stored: a field left at its default, emptied when it may be null, or reset, is left out;
- a stored secret is never put back into a form: a password field renders empty and, left empty, keeps the stored
  value (the server copies it from what is stored, the browser never sees it);
- what cannot be parsed (``"abc"`` for an integer, broken JSON) is a field error before anything is validated by
  the function's own class, whose errors (``[{loc, msg, type}]``) are then mapped back to their fields;
- a stored number or JSON value that is emptied is a field error too, not a silent reset: resetting is the
  field's own "Reset to default" box. Number fields are text inputs, so a browser always sends what was typed
  (Chromium sends ``""`` for a ``type=number`` input it cannot parse, which read as "use the default").

Every field's input is named ``valve-<name>``; its reset checkbox ``reset-<name>``.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

INPUT_PREFIX = "valve-"
RESET_PREFIX = "reset-"

STORED_SECRET_PLACEHOLDER = "•••••• (stored — leave empty to keep)"
DEFAULT_SECRET_PLACEHOLDER = "•••••• (set by the function — type to replace)"

KINDS = ("text", "textarea", "password", "integer", "number", "boolean", "tristate", "select", "list", "json")

# Names that hold credentials in real functions (`openai_api_key`, `bearer_token`, `client_secret`, `serper_key`).
# Only string fields are masked by name: `max_tokens: int` is not a secret.
_SECRET_NAME = re.compile(
    r"(^|_)(api_?key|apikey|token|secret|password|passwd|pwd|credentials?|bearer|auth_header)($|_)|(^|_)key$",
    re.IGNORECASE,
)
_TEXTAREA_FORMATS = frozenset({"textarea", "multiline", "multi-line", "text"})
_SCALAR_ITEM_TYPES = frozenset({"string", "integer", "number"})
# Long or multi-line defaults (system prompts, templates) are easier to edit in a textarea.
_LONG_TEXT = 100


class _Unset:
    def __repr__(self) -> str:
        return "UNSET"

    def __bool__(self) -> bool:
        return False


UNSET: Any = _Unset()


@dataclass(frozen=True)
class Option:
    """One choice of a select: ``key`` is what the browser sends back, ``value`` what is stored."""

    key: str
    value: Any
    label: str


@dataclass
class ValveField:
    """What the form needs to know about one property of a ``Valves``/``UserValves`` schema."""

    name: str
    kind: str
    title: str
    description: str = ""
    required: bool = False
    nullable: bool = False
    default: Any = UNSET
    minimum: float | None = None
    maximum: float | None = None
    exclusive_minimum: float | None = None
    exclusive_maximum: float | None = None
    multiple_of: float | None = None
    min_length: int | None = None
    max_length: int | None = None
    options: list[Option] = field(default_factory=list)
    item_type: str | None = None
    unique_items: bool = False
    schema: dict = field(default_factory=dict)

    @property
    def input_id(self) -> str:
        return INPUT_PREFIX + self.name

    @property
    def reset_name(self) -> str:
        return RESET_PREFIX + self.name

    @property
    def has_default(self) -> bool:
        return self.default is not UNSET

    def bounds_text(self) -> str:
        """The allowed range in words, e.g. ``between 0 and 2`` or ``greater than 0``."""
        low = high = None
        if self.minimum is not None:
            low = f"at least {_number_text(self.minimum)}"
        elif self.exclusive_minimum is not None:
            low = f"greater than {_number_text(self.exclusive_minimum)}"
        if self.maximum is not None:
            high = f"at most {_number_text(self.maximum)}"
        elif self.exclusive_maximum is not None:
            high = f"less than {_number_text(self.exclusive_maximum)}"
        if self.minimum is not None and self.maximum is not None:
            parts = [f"between {_number_text(self.minimum)} and {_number_text(self.maximum)}"]
        else:
            parts = [part for part in (low, high) if part]
        if self.multiple_of is not None and self.kind in ("integer", "number"):
            parts.append(f"a multiple of {_number_text(self.multiple_of)}")
        if self.kind in ("text", "textarea", "password"):
            if self.min_length is not None:
                parts.append(f"at least {self.min_length} characters")
            if self.max_length is not None:
                parts.append(f"at most {self.max_length} characters")
        return ", ".join(parts)

    def default_text(self) -> str:
        """The default as a reader should see it; a secret default is never shown."""
        if not self.has_default:
            return "required" if self.required else "computed by the function"
        value = self.default
        if self.kind == "password":
            return "a value set by the function (hidden)" if value else "empty"
        if value is None:
            return "none"
        if isinstance(value, bool):
            return "on" if value else "off"
        if self.kind == "select":
            option = self.option_for(value)
            return option.label if option else json.dumps(value, ensure_ascii=False)
        if isinstance(value, str):
            return value if value else "empty"
        if isinstance(value, int | float):
            return _number_text(value)
        if isinstance(value, list) and not value:
            return "empty list"
        return json.dumps(value, ensure_ascii=False)

    def option_for(self, value: Any) -> Option | None:
        for option in self.options:
            if _same(option.value, value):
                return option
        return None

    def to_text(self, value: Any) -> str:
        """How a stored or default value appears in this field's text input (never used for secrets)."""
        if value is None or value is UNSET:
            return ""
        if self.kind == "list" and isinstance(value, list):
            return "\n".join(item if isinstance(item, str) else json.dumps(item) for item in value)
        if self.kind == "json":
            return json.dumps(value, indent=2, ensure_ascii=False)
        if (
            self.kind in ("integer", "number")
            and isinstance(value, int | float)
            and not isinstance(value, bool)
        ):
            return _number_text(value)
        if isinstance(value, str):
            return value
        return json.dumps(value, ensure_ascii=False)


# --- schema → fields ----------------------------------------------------------------------------------------


def describe(schema: Mapping | None) -> list[ValveField]:
    """The form fields of a valves JSON schema, in the class's order; ``[]`` for no schema."""
    if not isinstance(schema, Mapping):
        return []
    properties = schema.get("properties")
    if not isinstance(properties, Mapping):
        return []
    required = set(schema.get("required") or [])
    defs = schema.get("$defs") or schema.get("definitions") or {}
    return [
        _describe_property(str(name), prop if isinstance(prop, Mapping) else {}, name in required, defs)
        for name, prop in properties.items()
    ]


def _resolve(prop: Mapping, defs: Mapping, depth: int = 0) -> dict:
    """Inline ``$ref`` (and a lone ``allOf: [{$ref}]``), letting the property's own keys win."""
    prop = dict(prop)
    if depth > 8:
        return prop
    all_of = prop.get("allOf")
    if isinstance(all_of, list) and len(all_of) == 1 and isinstance(all_of[0], Mapping):
        prop.pop("allOf")
        prop = {**_resolve(all_of[0], defs, depth + 1), **prop}
    ref = prop.get("$ref")
    if isinstance(ref, str) and ref.startswith("#/"):
        target = ref.rsplit("/", 1)[-1]
        resolved = defs.get(target) if isinstance(defs, Mapping) else None
        if isinstance(resolved, Mapping):
            prop.pop("$ref")
            base = _resolve(resolved, defs, depth + 1)
            base.pop("title", None)  # a class name such as `Color` is no title for the field
            prop = {**base, **prop}
    return prop


def _split_nullable(prop: dict, defs: Mapping) -> tuple[dict, bool]:
    """``anyOf: [X, {type: null}]`` → (X with the outer keys, True); anything else unchanged."""
    for key in ("anyOf", "oneOf"):
        branches = prop.get(key)
        if not isinstance(branches, list):
            continue
        branches = [_resolve(b, defs) for b in branches if isinstance(b, Mapping)]
        non_null = [b for b in branches if b.get("type") != "null"]
        nullable = len(non_null) < len(branches)
        outer = {k: v for k, v in prop.items() if k != key}
        if len(non_null) == 1:
            return {**non_null[0], **outer}, nullable
        consts = [b for b in non_null if "const" in b or "enum" in b]
        if non_null and len(consts) == len(non_null):
            values: list = []
            for branch in consts:
                values.extend(branch["enum"] if "enum" in branch else [branch["const"]])
            return {**outer, "enum": values}, nullable
        return {**outer, key: non_null}, nullable
    types = prop.get("type")
    if isinstance(types, list):
        non_null_types = [t for t in types if t != "null"]
        if len(non_null_types) < len(types):
            prop = dict(prop)
            prop["type"] = non_null_types[0] if len(non_null_types) == 1 else non_null_types
            return prop, True
    return prop, False


def _input_hint(prop: Mapping) -> dict:
    hint = prop.get("input")
    return dict(hint) if isinstance(hint, Mapping) else {}


def _options(prop: Mapping) -> list[Option]:
    hint = _input_hint(prop)
    raw = hint.get("options") if hint.get("type") == "select" else None
    if not isinstance(raw, list):
        raw = prop.get("enum")
        if not isinstance(raw, list):
            raw = [prop["const"]] if "const" in prop else None
    if not isinstance(raw, list):
        return []
    options: list[Option] = []
    seen: set[str] = set()
    for item in raw:
        if isinstance(item, Mapping) and "value" in item:
            value = item["value"]
            label = item.get("label") or item.get("name") or _plain(value)
        else:
            value, label = item, _plain(item)
        key = _option_key(value)
        if key in seen:
            continue
        seen.add(key)
        options.append(Option(key=key, value=value, label=str(label)))
    return options


def _option_key(value: Any) -> str:
    return value if isinstance(value, str) else json.dumps(value, sort_keys=True)


def _plain(value: Any) -> str:
    return value if isinstance(value, str) else json.dumps(value, ensure_ascii=False)


def _is_secret(name: str, prop: Mapping) -> bool:
    if _input_hint(prop).get("type") == "password":
        return True
    if prop.get("format") == "password" or prop.get("writeOnly") is True:
        return True
    return bool(_SECRET_NAME.search(name))


def _kind(name: str, prop: dict, nullable: bool) -> str:
    hint = _input_hint(prop)
    json_type = prop.get("type")
    if _options(prop) and json_type not in ("array", "object"):
        return "select"
    if json_type == "boolean":
        return "tristate" if nullable else "boolean"
    if json_type == "integer":
        return "integer"
    if json_type == "number":
        return "number"
    if json_type == "string":
        if _is_secret(name, prop):
            return "password"
        multiline = (
            hint.get("type") == "textarea"
            or prop.get("multiline") is True
            or hint.get("multiline") is True
            or prop.get("format") in _TEXTAREA_FORMATS
        )
        default = prop.get("default")
        if isinstance(default, str) and ("\n" in default or len(default) > _LONG_TEXT):
            multiline = True
        return "textarea" if multiline else "text"
    if json_type == "array":
        items = prop.get("items")
        if isinstance(items, Mapping) and items.get("type") in _SCALAR_ITEM_TYPES:
            return "list"
    return "json"


def _describe_property(name: str, prop: Mapping, required: bool, defs: Mapping) -> ValveField:
    resolved, nullable = _split_nullable(_resolve(prop, defs), defs)
    kind = _kind(name, resolved, nullable)
    title = resolved.get("title") if isinstance(resolved.get("title"), str) else ""
    description = resolved.get("description")
    items = resolved.get("items") if isinstance(resolved.get("items"), Mapping) else {}
    return ValveField(
        name=name,
        kind=kind,
        title=title or humanise(name),
        description=description if isinstance(description, str) else "",
        required=required,
        nullable=nullable,
        default=resolved["default"] if "default" in resolved else UNSET,
        minimum=_num(resolved.get("minimum")),
        maximum=_num(resolved.get("maximum")),
        exclusive_minimum=_num(resolved.get("exclusiveMinimum")),
        exclusive_maximum=_num(resolved.get("exclusiveMaximum")),
        multiple_of=_num(resolved.get("multipleOf")),
        min_length=_int(resolved.get("minLength")),
        max_length=_int(resolved.get("maxLength")),
        options=_options(resolved) if kind == "select" else [],
        item_type=items.get("type") if kind == "list" else None,
        unique_items=bool(resolved.get("uniqueItems")),
        schema=resolved,
    )


def humanise(name: str) -> str:
    words = re.sub(r"[_\-]+", " ", name).strip()
    return (words[:1].upper() + words[1:]) if words else name


def _num(value: Any) -> float | None:
    return value if isinstance(value, int | float) and not isinstance(value, bool) else None


def _int(value: Any) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def _number_text(value: float) -> str:
    return repr(value) if isinstance(value, float) else str(value)


def _same(a: Any, b: Any) -> bool:
    """Equality that does not confuse ``True`` with ``1`` and compares JSON-ish values structurally."""
    if isinstance(a, bool) or isinstance(b, bool):
        return isinstance(a, bool) and isinstance(b, bool) and a == b
    return a == b


# --- a submitted form → values ------------------------------------------------------------------------------


# Kinds whose empty input has no value of its own (an empty string is not a number, nor JSON).
_EMPTY_IS_NO_VALUE = {
    "integer": "Enter a whole number",
    "number": "Enter a number",
    "json": "Enter a JSON value",
}


class FieldParseError(ValueError):
    """What the user typed cannot be read as this field's kind."""


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


def parse_submission(fields: list[ValveField], form: Any, stored: Mapping | None) -> Submission:
    """Turn a submitted form into the complete valves object to store, on top of what is stored now.

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

    for f in fields:
        if _ticked(form, f.reset_name):
            resets.add(f.name)
            values.pop(f.name, None)
            continue
        raw_values = _getlist(form, f.input_id)
        if not raw_values:
            continue  # not part of this submission: whatever is stored stays
        raw = raw_values[-1]  # a checkbox comes after its hidden "off" twin
        if f.kind == "password":
            secret = raw.strip()
            if secret:
                values[f.name] = secret
                secrets_typed.add(f.name)
            continue
        typed[f.name] = raw
        if f.kind == "select" and f.name in stored and raw == _option_key(stored[f.name]):
            # A stored value the options no longer offer stays as it is, for the function's class to judge.
            continue
        try:
            value = parse_value(f, raw)
        except FieldParseError as exc:
            errors[f.name] = str(exc)
            continue
        if value is UNSET and f.name in stored and not f.nullable and f.kind in _EMPTY_IS_NO_VALUE:
            # Emptying a stored number or JSON value is not a way to reset it: say how, and keep it.
            errors[f.name] = _EMPTY_IS_NO_VALUE[f.kind] + (
                "." if f.required else ", or tick Reset to default."
            )
            continue
        if value is UNSET or value is None:
            values.pop(f.name, None)
        elif f.name in stored:
            values[f.name] = value
        elif f.has_default and _equal(f, value, f.default):
            values.pop(f.name, None)  # left at its default: not something the user set
        elif not f.has_default and value in ("", []):
            values.pop(f.name, None)  # left empty, and the function computes its own default
        else:
            values[f.name] = value
    return Submission(values=values, errors=errors, typed=typed, resets=resets, secrets_typed=secrets_typed)


def _equal(f: ValveField, a: Any, b: Any) -> bool:
    if f.unique_items and isinstance(a, list) and isinstance(b, list):
        try:
            return len(a) == len(b) and {json.dumps(x) for x in a} == {json.dumps(x) for x in b}
        except TypeError:
            return False
    if f.kind in ("number", "integer") and isinstance(a, int | float) and isinstance(b, int | float):
        return not isinstance(a, bool) and not isinstance(b, bool) and a == b
    return _same(a, b)


def parse_value(f: ValveField, raw: str) -> Any:
    """One field's typed text as a value; ``UNSET`` (or ``None`` for a nullable field) when left empty."""
    kind = f.kind
    if kind in ("text", "textarea"):
        text = raw.replace("\r\n", "\n")
        if text == "" and f.nullable:
            return None
        return text
    if kind == "boolean":
        return raw.lower() in ("on", "true", "1", "yes")
    if kind == "tristate":
        if raw == "":
            return UNSET
        if raw in ("true", "false"):
            return raw == "true"
        raise FieldParseError("Choose Default, On or Off.")
    if kind == "select":
        if raw == "":
            return UNSET
        for option in f.options:
            if option.key == raw:
                return option.value
        raise FieldParseError("Choose one of the listed options.")
    stripped = raw.strip()
    if kind in ("integer", "number"):
        if not stripped:
            return UNSET
        return _parse_number(stripped, integer=kind == "integer")
    if kind == "list":
        if not stripped:
            return None if f.nullable else []
        return _parse_list(f, raw)
    # json
    if not stripped:
        return UNSET
    try:
        return json.loads(stripped)
    except json.JSONDecodeError as exc:
        raise FieldParseError(
            f"This is not valid JSON: {exc.msg} (line {exc.lineno}, column {exc.colno})."
        ) from None


def _parse_number(text: str, integer: bool) -> int | float:
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


def _parse_list(f: ValveField, raw: str) -> list:
    items: list = []
    for index, line in enumerate(raw.replace("\r\n", "\n").split("\n"), start=1):
        text = line.strip()
        if not text:
            continue
        if f.item_type in ("integer", "number"):
            try:
                items.append(_parse_number(text, integer=f.item_type == "integer"))
            except FieldParseError as exc:
                raise FieldParseError(f"Line {index}: {exc}") from None
        else:
            items.append(text)
    if f.unique_items:
        unique: list = []
        for item in items:
            if item not in unique:
                unique.append(item)
        items = unique
    return items


# --- validation errors → fields -----------------------------------------------------------------------------


def map_errors(fields: list[ValveField], errors: list[Mapping] | None) -> tuple[dict[str, str], list[str]]:
    """Split ``[{loc, msg, type}]`` into one message per field (by ``loc[0]``) and the rest (whole-form errors)."""
    known = {f.name for f in fields}
    by_field: dict[str, str] = {}
    general: list[str] = []
    for item in errors or []:
        if not isinstance(item, Mapping):
            continue
        loc = item.get("loc") or []
        msg = str(item.get("msg") or "Invalid value.")
        if loc and str(loc[0]) in known:
            name = str(loc[0])
            detail = ".".join(str(part) for part in loc[1:])
            text = f"{detail}: {msg}" if detail else msg
            by_field[name] = f"{by_field[name]} {text}" if name in by_field else text
        else:
            where = ".".join(str(part) for part in loc)
            general.append(f"{where}: {msg}" if where else msg)
    return by_field, general


def unknown_keys(fields: list[ValveField], stored: Mapping | None) -> list[str]:
    """Stored keys that the current class no longer has."""
    known = {f.name for f in fields}
    return sorted(key for key in (stored or {}) if key not in known)


# --- fields + stored values → what the template renders -----------------------------------------------------


# HTML `pattern`s (Chromium compiles them with the `v` flag, hence the escaped `-`). Whole floats such as `3.0`,
# which the server accepts for an integer, are allowed too.
_NUMBER_PATTERNS = {
    "integer": r"\s*[+\-]?\d+(\.0*)?\s*",
    "number": r"\s*[+\-]?(\d+(\.\d*)?|\.\d+)([eE][+\-]?\d+)?\s*",
}


@dataclass
class FieldView:
    """One field ready to render: the text to show (never a secret), its state and its error."""

    field: ValveField
    is_set: bool
    text: str = ""
    checked: bool = False
    selected: str = ""
    error: str | None = None
    reset: bool = False
    secret_stored: bool = False
    secret_typed: bool = False
    extra_option: Option | None = None

    def __getattr__(self, name: str) -> Any:
        # Lets templates write `view.title` for `view.field.title`.
        if name == "field":
            raise AttributeError(name)
        return getattr(self.field, name)

    @property
    def input_type(self) -> str:
        """The ``<input>`` type: ``password`` for secrets, else ``text``.

        Numbers too: a ``type=number`` input that cannot parse what was typed (``4e``, ``0.3-``) submits ``""``
        in Chromium, which the server could not tell from an emptied field. As text, the server sees what was
        typed and answers with the field's own error; ``inputmode`` and ``pattern`` keep the phone keyboard and
        the hint.
        """
        return "password" if self.field.kind == "password" else "text"

    @property
    def inputmode(self) -> str | None:
        return {"integer": "numeric", "number": "decimal"}.get(self.field.kind)

    @property
    def pattern(self) -> str | None:
        """What the server reads as this number (an HTML ``pattern``: marks the field invalid while typing)."""
        return _NUMBER_PATTERNS.get(self.field.kind)

    @property
    def rows(self) -> int:
        lines = self.text.count("\n") + 2
        return max(3 if self.field.kind == "list" else 5, min(lines, 16))

    @property
    def placeholder(self) -> str:
        f = self.field
        if f.kind == "password":
            if self.secret_stored:
                return STORED_SECRET_PLACEHOLDER
            if f.has_default and f.default:
                return DEFAULT_SECRET_PLACEHOLDER
            return "Not set"
        if not f.has_default and not f.required:
            return "Set by the function"
        if f.nullable:
            return "Not set"
        return ""

    @property
    def select_options(self) -> list[Option]:
        """The options, with the "use the default" choice first and a no-longer-offered stored value last."""
        f = self.field
        if f.kind == "tristate":
            default = "none" if not f.has_default or f.default is None else ("on" if f.default else "off")
            first = Option("", None, f"Default ({default})")
            return [first, Option("true", True, "On"), Option("false", False, "Off")]
        if f.has_default:
            first_label = f"Default ({f.default_text()})"
        elif f.nullable:
            first_label = "Not set"
        else:
            first_label = "Choose…"
        options = [Option("", None, first_label), *f.options]
        if self.extra_option is not None:
            options.append(self.extra_option)
        return options


def build_views(
    fields: list[ValveField],
    stored: Mapping | None,
    *,
    errors: Mapping[str, str] | None = None,
    submission: Submission | None = None,
) -> list[FieldView]:
    """The fields as the form shows them: stored values (secrets masked) or, after a failed save, what was typed."""
    stored = dict(stored or {})
    errors = dict(errors or {})
    views = []
    for f in fields:
        is_set = f.name in stored
        value = stored[f.name] if is_set else f.default
        view = FieldView(field=f, is_set=is_set, error=errors.get(f.name))
        if f.kind == "password":
            view.secret_stored = is_set and stored[f.name] not in (None, "")
            view.secret_typed = submission is not None and f.name in submission.secrets_typed
        else:
            raw = submission.typed.get(f.name) if submission is not None else None
            if f.kind == "boolean":
                view.checked = parse_value(f, raw) if raw is not None else bool(value is not UNSET and value)
            elif f.kind == "tristate":
                if raw is not None:
                    view.selected = raw
                elif is_set:
                    view.selected = "" if value is None else ("true" if value else "false")
            elif f.kind == "select":
                if is_set and f.option_for(value) is None:
                    view.extra_option = Option(
                        _option_key(value), value, f"{_plain(value)} (no longer offered)"
                    )
                if raw is not None:
                    view.selected = raw
                elif is_set:
                    view.selected = _option_key(value)
            else:
                view.text = raw if raw is not None else f.to_text(value)
        if submission is not None and f.name in submission.resets:
            view.reset = True
        views.append(view)
    return views


# --- secrets ------------------------------------------------------------------------------------------------

SECRET_MASK = "••••••"


def secret_values(fields: list[ValveField], *sources: Mapping | None) -> list[str]:
    """The values of the secret fields in ``sources`` (stored and submitted valves), to keep out of any page."""
    secrets: set[str] = set()
    for f in fields:
        if f.kind != "password":
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
