"""Valves field kinds: the registry holds every kind with its partial, and a new kind is one class and one partial."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

import pytest
from jinja2 import ChoiceLoader, DictLoader, Environment, FileSystemLoader
from pydantic import BaseModel, Field
from werkzeug.datastructures import MultiDict

from services import valves_form as vf
from tests.unit.test_valves_form import SCHEMA

TEMPLATES = Path(__file__).resolve().parents[2] / "templates"
BUILT_IN = {
    "text",
    "textarea",
    "password",
    "integer",
    "number",
    "boolean",
    "tristate",
    "select",
    "list",
    "json",
}


def render_fields(views: list[vf.FieldView], extra_templates: dict[str, str] | None = None) -> dict[str, str]:
    """Each view through `_forms.html`'s `valve_field` macro, as the pages render it, by field name."""
    env = Environment(
        loader=ChoiceLoader([DictLoader(extra_templates or {}), FileSystemLoader(TEMPLATES)]), autoescape=True
    )
    macro = env.get_template("_forms.html").module.valve_field
    return {view.name: str(macro(view)) for view in views}


def test_the_registry_holds_every_built_in_kind_in_detection_order_with_json_last():
    assert set(vf.REGISTRY.names()) == BUILT_IN
    assert vf.KINDS == vf.REGISTRY.names()
    assert vf.REGISTRY.names()[-1] == "json" and vf.REGISTRY.get("json").fallback


@pytest.mark.parametrize("kind", sorted(BUILT_IN))
def test_every_kind_has_its_partial(kind):
    assert (TEMPLATES / vf.REGISTRY.get(kind).template).is_file()


def test_a_community_schema_reaches_every_kind_and_each_renders_through_its_partial():
    fields = vf.describe(SCHEMA)
    assert {f.kind for f in fields} == set(vf.REGISTRY.names())
    html = render_fields(vf.build_views(fields, {}))
    for f in fields:
        assert f'data-kind="{f.kind}"' in html[f.name]
        assert f'id="valve-{f.name}"' in html[f.name], f.kind


class ColorKind(vf.FieldKind):
    """A test-only kind: a `#rrggbb` colour, for `format: color` strings."""

    name = "color"

    def matches(self, name, prop, nullable):
        return prop.get("type") == "string" and prop.get("format") == "color"

    def parse(self, field, raw):
        text = raw.strip().lower()
        if not text:
            return vf.UNSET
        if not re.fullmatch(r"#[0-9a-f]{6}", text):
            raise vf.FieldParseError("Enter a colour as #rrggbb.")
        return text


COLOR_PARTIAL = '<input id="{{ id }}" name="{{ id }}" type="color" value="{{ v.text }}">'


class Themed(BaseModel):
    accent: str = Field(default="#112233", json_schema_extra={"format": "color"})
    name: str = "plain"


@pytest.fixture
def color_kind() -> Iterator[None]:
    vf.register(ColorKind, before="text")  # the one addition, besides the partial
    try:
        yield
    finally:
        vf.REGISTRY.unregister("color")


def test_a_new_kind_registers_with_one_addition_and_is_used_for_detection_parsing_and_rendering(color_kind):
    fields = {f.name: f for f in vf.describe(Themed.model_json_schema())}
    assert (fields["accent"].kind, fields["name"].kind) == ("color", "text")

    submission = vf.parse_submission(list(fields.values()), MultiDict({"valve-accent": "#AABBCC"}), {})
    assert submission.values == {"accent": "#aabbcc"}
    refused = vf.parse_submission(list(fields.values()), MultiDict({"valve-accent": "red"}), {})
    assert refused.errors == {"accent": "Enter a colour as #rrggbb."}

    views = vf.build_views(list(fields.values()), {"accent": "#445566"})
    html = render_fields(views, {"valves/fields/_color.html": COLOR_PARTIAL})
    assert 'type="color" value="#445566"' in html["accent"]
    assert "Default: <span" in html["accent"] and "Reset to default" in html["accent"]  # the shared layout


def test_a_new_kind_goes_before_the_fallback_by_default_and_names_are_unique():
    class Anything(ColorKind):
        name = "anything"

    vf.register(Anything)
    try:
        assert vf.REGISTRY.names()[-2:] == ("anything", "json")
        with pytest.raises(ValueError, match="registered already"):
            vf.register(Anything)
    finally:
        vf.REGISTRY.unregister("anything")
    assert set(vf.REGISTRY.names()) == BUILT_IN
