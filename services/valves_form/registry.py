"""The registry of valves field kinds, and the base every kind builds on.

A kind says in one class how a schema property is recognised as it (``matches``), how what the browser sends is
read back into a value (``parse``), how a value is written into the form, and names the one template partial that
draws its input (``templates/valves/fields/_<name>.html`` unless it says otherwise). ``_forms.html``'s
``valve_field`` macro lays out every field the same way (label, state, description, default, error, reset) and
includes the kind's partial where the input goes.

Adding a kind is one class registered with ``register`` and one partial; detection tries the kinds in registration
order, and the fallback kind (JSON) always comes last.
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Mapping
from typing import TYPE_CHECKING, Any, ClassVar

from services.valves_form.values import Option, number_text, same

if TYPE_CHECKING:
    from services.valves_form.field import ValveField
    from services.valves_form.submission import Submission
    from services.valves_form.views import FieldView


class FieldKind:
    """One kind of valves field. The defaults suit a field typed as text into a single input."""

    name: ClassVar[str] = ""
    # The partial that draws the input; `valves/fields/_<name>.html` when None.
    partial: ClassVar[str | None] = None
    # The kind detection falls back to when no other kind matches; stays last in the registry.
    fallback: ClassVar[bool] = False
    # A secret is never written into a page: its input is always empty and, left empty, keeps what is stored.
    secret: ClassVar[bool] = False
    # The input carries the field's title itself (a checkbox's own label) instead of a label above it.
    labels_itself: ClassVar[bool] = False
    # What an emptied stored value is told, for kinds whose empty input has no value of its own.
    empty_error: ClassVar[str | None] = None
    input_type: ClassVar[str] = "text"
    min_rows: ClassVar[int] = 5
    reset_label: ClassVar[str] = "Reset to default"

    @property
    def template(self) -> str:
        return self.partial or f"valves/fields/_{self.name}.html"

    # --- schema → field

    def matches(self, name: str, prop: Mapping, nullable: bool) -> bool:
        """Whether the schema property ``prop`` (resolved, ``null`` split off) is a field of this kind."""
        raise NotImplementedError

    def read_schema(self, field: ValveField, prop: Mapping) -> None:
        """Take from the property what only this kind needs (a select's options, a list's item type)."""

    # --- form → value

    def parse(self, field: ValveField, raw: str) -> Any:
        """What was typed as a value; ``UNSET`` (or ``None`` for a nullable field) when left empty."""
        raise NotImplementedError

    def keeps_stored(self, field: ValveField, raw: str, stored: Any) -> bool:
        """Whether ``raw`` stands for the stored value as it is, without being parsed."""
        return False

    def equal(self, field: ValveField, a: Any, b: Any) -> bool:
        """Whether two values are the same for this field (a value equal to the default is not stored)."""
        if field.unique_items and isinstance(a, list) and isinstance(b, list):
            try:
                return len(a) == len(b) and {json.dumps(x) for x in a} == {json.dumps(x) for x in b}
            except TypeError:
                return False
        return same(a, b)

    # --- value → form

    def to_text(self, field: ValveField, value: Any) -> str:
        """How a stored or default value (never ``None``) appears in this field's text input."""
        if isinstance(value, str):
            return value
        return json.dumps(value, ensure_ascii=False)

    def default_text(self, field: ValveField, value: Any) -> str:
        """The default as a reader should see it."""
        if value is None:
            return "none"
        if isinstance(value, bool):
            return "on" if value else "off"
        if isinstance(value, str):
            return value if value else "empty"
        if isinstance(value, int | float):
            return number_text(value)
        if isinstance(value, list) and not value:
            return "empty list"
        return json.dumps(value, ensure_ascii=False)

    def bounds(self, field: ValveField) -> list[str]:
        """Limits beyond a minimum and a maximum, in words."""
        return []

    def hints(self, field: ValveField) -> list[str]:
        """Short notes after the default and the bounds (how to type it, what empty means)."""
        return ["leave empty for the default"] if field.nullable else []

    def fill_view(self, view: FieldView, value: Any, raw: str | None, submission: Submission | None) -> None:
        """Set the view's state from the stored or default ``value``, or from ``raw``, what was typed."""
        view.text = raw if raw is not None else view.field.to_text(value)

    def placeholder(self, view: FieldView) -> str:
        f = view.field
        if not f.has_default and not f.required:
            return "Set by the function"
        if f.nullable:
            return "Not set"
        return ""

    def select_options(self, view: FieldView) -> list[Option]:
        return []


class Registry:
    """The field kinds by name, in detection order."""

    def __init__(self) -> None:
        self._kinds: dict[str, FieldKind] = {}

    def register(self, kind: FieldKind, *, before: str | None = None) -> FieldKind:
        """Add ``kind``; detection tries it before ``before`` (by default, just before the fallback kind)."""
        if not kind.name:
            raise ValueError("A field kind needs a name.")
        if kind.name in self._kinds:
            raise ValueError(f"A field kind named {kind.name!r} is registered already.")
        kinds = list(self._kinds.values())
        if before is None and not kind.fallback:
            before = next((k.name for k in kinds if k.fallback), None)
        at = len(kinds) if before is None else [k.name for k in kinds].index(before)
        kinds.insert(at, kind)
        self._kinds = {k.name: k for k in kinds}
        return kind

    def unregister(self, name: str) -> None:
        del self._kinds[name]

    def get(self, name: str) -> FieldKind:
        return self._kinds[name]

    def detect(self, name: str, prop: Mapping, nullable: bool) -> FieldKind:
        """The first kind that recognises the property (the fallback kind takes anything)."""
        for kind in self._kinds.values():
            if kind.fallback or kind.matches(name, prop, nullable):
                return kind
        raise LookupError(f"No field kind for {name!r}.")

    def names(self) -> tuple[str, ...]:
        return tuple(self._kinds)

    def __iter__(self) -> Iterator[FieldKind]:
        return iter(list(self._kinds.values()))

    def __contains__(self, name: object) -> bool:
        return name in self._kinds


REGISTRY = Registry()


def register(kind: type[FieldKind] | FieldKind, *, before: str | None = None) -> Any:
    """Register a kind (a class, so this works as a decorator, or an instance); returns what it was given."""
    REGISTRY.register(kind() if isinstance(kind, type) else kind, before=before)
    return kind
