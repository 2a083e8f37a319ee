"""A valves field: what the form knows about one property of a ``Valves``/``UserValves`` schema, and ``describe``,
which reads them all from the schema (the kind of each is the first registered kind that recognises it)."""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from services.valves_form import schema
from services.valves_form.registry import REGISTRY, FieldKind
from services.valves_form.values import (
    INPUT_PREFIX,
    PIN_PREFIX,
    RESET_PREFIX,
    UNSET,
    Option,
    number_text,
    same,
)


@dataclass
class ValveField:
    """One property of a valves schema, as the form needs it; ``kind`` names its registered ``FieldKind``."""

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
    def field_kind(self) -> FieldKind:
        return REGISTRY.get(self.kind)

    @property
    def input_id(self) -> str:
        return INPUT_PREFIX + self.name

    @property
    def reset_name(self) -> str:
        return RESET_PREFIX + self.name

    @property
    def pin_name(self) -> str:
        return PIN_PREFIX + self.name

    @property
    def can_pin(self) -> bool:
        """Whether a value equal to the default can be stored explicitly (a secret is stored whenever typed)."""
        return self.has_default and not self.field_kind.secret

    @property
    def has_default(self) -> bool:
        return self.default is not UNSET

    def bounds_text(self) -> str:
        """The allowed range in words, e.g. ``between 0 and 2`` or ``greater than 0``."""
        low = high = None
        if self.minimum is not None:
            low = f"at least {number_text(self.minimum)}"
        elif self.exclusive_minimum is not None:
            low = f"greater than {number_text(self.exclusive_minimum)}"
        if self.maximum is not None:
            high = f"at most {number_text(self.maximum)}"
        elif self.exclusive_maximum is not None:
            high = f"less than {number_text(self.exclusive_maximum)}"
        if self.minimum is not None and self.maximum is not None:
            parts = [f"between {number_text(self.minimum)} and {number_text(self.maximum)}"]
        else:
            parts = [part for part in (low, high) if part]
        return ", ".join(parts + self.field_kind.bounds(self))

    def default_text(self) -> str:
        """The default as a reader should see it; a secret default is never shown."""
        if not self.has_default:
            return "required" if self.required else "computed by the function"
        return self.field_kind.default_text(self, self.default)

    def option_for(self, value: Any) -> Option | None:
        for option in self.options:
            if same(option.value, value):
                return option
        return None

    def to_text(self, value: Any) -> str:
        """How a stored or default value appears in this field's text input (never used for secrets)."""
        if value is None or value is UNSET:
            return ""
        return self.field_kind.to_text(self, value)


def describe(valves_schema: Mapping | None) -> list[ValveField]:
    """The form fields of a valves JSON schema, in the class's order; ``[]`` for no schema."""
    if not isinstance(valves_schema, Mapping):
        return []
    properties = valves_schema.get("properties")
    if not isinstance(properties, Mapping):
        return []
    required = set(valves_schema.get("required") or [])
    defs = valves_schema.get("$defs") or valves_schema.get("definitions") or {}
    return [
        _describe_property(str(name), prop if isinstance(prop, Mapping) else {}, name in required, defs)
        for name, prop in properties.items()
    ]


def _describe_property(name: str, prop: Mapping, required: bool, defs: Mapping) -> ValveField:
    resolved, nullable = schema.split_nullable(schema.resolve(prop, defs), defs)
    kind = REGISTRY.detect(name, resolved, nullable)
    title = resolved.get("title") if isinstance(resolved.get("title"), str) else ""
    description = resolved.get("description")
    valve = ValveField(
        name=name,
        kind=kind.name,
        title=title or humanise(name),
        description=description if isinstance(description, str) else "",
        required=required,
        nullable=nullable,
        default=resolved["default"] if "default" in resolved else UNSET,
        minimum=schema.number(resolved.get("minimum")),
        maximum=schema.number(resolved.get("maximum")),
        exclusive_minimum=schema.number(resolved.get("exclusiveMinimum")),
        exclusive_maximum=schema.number(resolved.get("exclusiveMaximum")),
        multiple_of=schema.number(resolved.get("multipleOf")),
        min_length=schema.integer(resolved.get("minLength")),
        max_length=schema.integer(resolved.get("maxLength")),
        unique_items=bool(resolved.get("uniqueItems")),
        schema=resolved,
    )
    kind.read_schema(valve, resolved)
    return valve


def humanise(name: str) -> str:
    words = re.sub(r"[_\-]+", " ", name).strip()
    return (words[:1].upper() + words[1:]) if words else name
