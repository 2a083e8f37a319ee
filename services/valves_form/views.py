"""Fields and stored values as the valves form renders them: the text to show (never a secret), the state and the
error of each, and the kind's partial that draws its input."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from services.valves_form.field import ValveField
from services.valves_form.submission import Submission
from services.valves_form.values import Option


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
    pinned: bool = False  # the pin box was ticked in a submission shown again
    same_as_default: bool = False  # stored, and equal to the default: pinned rather than following it
    secret_stored: bool = False
    secret_typed: bool = False
    extra_option: Option | None = None

    def __getattr__(self, name: str) -> Any:
        # Lets templates write `view.title` for `view.field.title`.
        if name == "field":
            raise AttributeError(name)
        return getattr(self.field, name)

    @property
    def partial(self) -> str:
        """The template that draws this field's input."""
        return self.field.field_kind.template

    @property
    def labels_itself(self) -> bool:
        return self.field.field_kind.labels_itself

    @property
    def input_type(self) -> str:
        """The ``<input>`` type: ``password`` for secrets, ``number`` for numbers, else ``text``."""
        return self.field.field_kind.input_type

    @property
    def limits(self) -> dict[str, str]:
        """A number input's ``min``/``max``/``step`` from the schema (empty for other kinds)."""
        limits = getattr(self.field.field_kind, "limits", None)
        return limits(self.field) if limits else {}

    @property
    def rows(self) -> int:
        lines = self.text.count("\n") + 2
        return max(self.field.field_kind.min_rows, min(lines, 16))

    @property
    def placeholder(self) -> str:
        return self.field.field_kind.placeholder(self)

    @property
    def select_options(self) -> list[Option]:
        return self.field.field_kind.select_options(self)

    @property
    def hints(self) -> list[str]:
        return self.field.field_kind.hints(self.field)

    @property
    def reset_label(self) -> str:
        return self.field.field_kind.reset_label


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
        raw = submission.typed.get(f.name) if submission is not None else None
        f.field_kind.fill_view(view, value, raw, submission)
        if submission is not None and f.name in submission.resets:
            view.reset = True
        if submission is not None and f.name in submission.pins:
            view.pinned = True
        if is_set and f.has_default and not f.field_kind.secret:
            view.same_as_default = f.field_kind.equal(f, value, f.default)
        views.append(view)
    return views
