"""Valves forms: schema → fields, form → values, secret masking and error mapping, on real pydantic schemas."""

from __future__ import annotations

import os
from typing import Any, Literal, Optional, Union  # noqa: UP035 - community functions write it this way

import pytest
from pydantic import BaseModel, Field, GetCoreSchemaHandler, ValidationError
from pydantic_core import core_schema
from werkzeug.datastructures import MultiDict

from services import valves_form as vf


class EncryptedStr(str):
    """The str subclass a quarter of community functions use for secrets (Fernet left out here)."""

    @classmethod
    def __get_pydantic_core_schema__(cls, _source: Any, _handler: GetCoreSchemaHandler):
        return core_schema.union_schema(
            [
                core_schema.is_instance_schema(cls),
                core_schema.chain_schema(
                    [core_schema.str_schema(), core_schema.no_info_plain_validator_function(lambda v: cls(v))]
                ),
            ],
            serialization=core_schema.plain_serializer_function_ser_schema(lambda v: str(v)),
        )


class CommunityValves(BaseModel):
    """One of each pattern counted in REAL-FUNCTIONS.md."""

    openai_api_key: EncryptedStr = Field(default="", description="Your key.\nGet one at https://example.com")
    base_url: str = Field(default=os.getenv("SLUICE_TEST_UNSET_BASE_URL", "https://api.example.com/v1"))
    model: Literal["gpt-4o", "gpt-4o-mini"] = "gpt-4o"
    fallback_model: Optional[Literal["small", "large"]] = None  # noqa: UP045
    system_prompt: str = Field(default="You are helpful.", json_schema_extra={"input": {"type": "textarea"}})
    user_agent: str | None = None
    nickname: Optional[str] = Field(default="bot", title="Nick name")  # noqa: UP045
    temperature: float = Field(default=0.7, ge=0, le=2, description="Sampling temperature")
    max_turns: int = Field(default=4, gt=0, lt=100)
    retries: Optional[int] = Field(default=None, ge=0)  # noqa: UP045
    enabled: bool = True
    stream: Optional[bool] = None  # noqa: UP045
    stop_words: list[str] = Field(default_factory=list)
    weights: list[float] = [0.5, 0.5]
    tags: set[str] = {"a", "b"}
    secret_header: str = Field(default="", json_schema_extra={"input": {"type": "password"}})
    voice: str = Field(
        default="alloy", json_schema_extra={"input": {"type": "select", "options": ["alloy", "echo"]}}
    )
    region: str = Field(
        default="eu",
        json_schema_extra={
            "input": {"type": "select", "options": [{"value": "eu", "label": "Europe"}, "us"]}
        },
    )
    style: str = Field(default="short", json_schema_extra={"enum": ["short", "long"]})
    level: Literal[1, 2, 3] = 2
    headers: dict[str, str] = {}
    either: Union[int, str] = 1  # noqa: UP007
    mode: Literal["only"] = "only"


SCHEMA = CommunityValves.model_json_schema()


def fields_by_name(schema: dict = SCHEMA) -> dict[str, vf.ValveField]:
    return {f.name: f for f in vf.describe(schema)}


# --- schema → fields ----------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "kind"),
    [
        ("openai_api_key", "password"),  # EncryptedStr is a plain string; the name marks it secret
        ("base_url", "text"),
        ("model", "select"),
        ("fallback_model", "select"),
        ("system_prompt", "textarea"),
        ("user_agent", "text"),
        ("nickname", "text"),
        ("temperature", "number"),
        ("max_turns", "integer"),
        ("retries", "integer"),
        ("enabled", "boolean"),
        ("stream", "tristate"),
        ("stop_words", "list"),
        ("weights", "list"),
        ("tags", "list"),
        ("secret_header", "password"),
        ("voice", "select"),
        ("region", "select"),
        ("style", "select"),
        ("level", "select"),
        ("headers", "json"),
        ("either", "json"),
        ("mode", "select"),
    ],
)
def test_each_pattern_gets_its_kind(name, kind):
    assert fields_by_name()[name].kind == kind


def test_fields_keep_the_class_order():
    assert [f.name for f in vf.describe(SCHEMA)] == list(CommunityValves.model_fields)


def test_titles_descriptions_defaults_and_required():
    fields = fields_by_name()
    assert fields["nickname"].title == "Nick name"
    assert fields["base_url"].title == "Base Url"
    assert fields["openai_api_key"].description.startswith("Your key.\n")
    assert fields["temperature"].default == 0.7
    assert fields["base_url"].default == "https://api.example.com/v1"  # from os.getenv's fallback
    assert not fields["stop_words"].has_default  # default_factory leaves no default in the schema
    assert fields["stop_words"].default_text() == "computed by the function"
    assert not any(f.required for f in fields.values())

    class Required(BaseModel):
        endpoint: str

    (endpoint,) = vf.describe(Required.model_json_schema())
    assert endpoint.required and endpoint.default_text() == "required"


def test_nullable_fields_are_marked():
    fields = fields_by_name()
    assert fields["user_agent"].nullable and fields["retries"].nullable and fields["fallback_model"].nullable
    assert not fields["base_url"].nullable
    assert fields["retries"].minimum == 0


def test_numeric_bounds_in_words():
    fields = fields_by_name()
    assert fields["temperature"].bounds_text() == "between 0 and 2"
    assert fields["max_turns"].bounds_text() == "greater than 0, less than 100"

    class Stepped(BaseModel):
        step: float = Field(default=0.5, ge=0, le=2, multiple_of=0.5)

    (step,) = vf.describe(Stepped.model_json_schema())
    assert step.bounds_text() == "between 0 and 2, a multiple of 0.5"


def test_numbers_carry_min_max_and_step_from_the_schema():
    views = {v.name: v for v in vf.build_views(vf.describe(SCHEMA), {})}
    assert views["temperature"].input_type == "number"
    assert views["temperature"].limits == {"min": "0", "max": "2", "step": "any"}
    # gt=0, lt=100 on an integer: the browser's inclusive bounds are the next whole numbers.
    assert views["max_turns"].limits == {"min": "1", "max": "99", "step": "1"}
    assert views["retries"].limits == {"min": "0", "step": "1"}
    assert views["base_url"].limits == {}

    class Stepped(BaseModel):
        half: float = Field(default=0.5, ge=0, le=2, multiple_of=0.5)
        odd_base: float = Field(default=0.5, ge=0.25, multiple_of=0.5)

    stepped = {f.name: f for f in vf.describe(Stepped.model_json_schema())}
    assert stepped["half"].field_kind.limits(stepped["half"]) == {"min": "0", "max": "2", "step": "0.5"}
    # A browser counts steps from `min`; 0.25 is no multiple of 0.5, so the step is left to the server.
    assert stepped["odd_base"].field_kind.limits(stepped["odd_base"])["step"] == "any"


def test_select_options_from_enum_literal_and_input_options():
    fields = fields_by_name()
    assert [(o.key, o.label) for o in fields["model"].options] == [
        ("gpt-4o", "gpt-4o"),
        ("gpt-4o-mini", "gpt-4o-mini"),
    ]
    assert [o.value for o in fields["fallback_model"].options] == ["small", "large"]
    assert [(o.key, o.label) for o in fields["region"].options] == [("eu", "Europe"), ("us", "us")]
    assert [o.value for o in fields["voice"].options] == ["alloy", "echo"]
    assert [o.value for o in fields["style"].options] == ["short", "long"]
    assert [(o.key, o.value) for o in fields["level"].options] == [("1", 1), ("2", 2), ("3", 3)]
    assert [o.value for o in fields["mode"].options] == ["only"]  # a one-value Literal is a `const`


def test_options_named_by_an_unresolved_method_fall_back_to_text():
    schema = {
        "properties": {
            "model": {"type": "string", "default": "a", "input": {"type": "select", "options": "models"}}
        }
    }
    (model,) = vf.describe(schema)
    assert model.kind == "text"


def test_secret_hints():
    schema = {
        "properties": {
            "api_key": {"type": "string"},
            "bearer_token": {"type": "string"},
            "client_secret": {"type": "string"},
            "serper_key": {"type": "string"},
            "wo": {"type": "string", "writeOnly": True},
            "fmt": {"type": "string", "format": "password"},
            "max_tokens": {"type": "integer"},
            "key_name": {"type": "string"},
            "tokenizer": {"type": "string"},
            "pat": {"anyOf": [{"type": "string"}, {"type": "null"}], "input": {"type": "password"}},
        }
    }
    kinds = {f.name: f.kind for f in vf.describe(schema)}
    assert kinds == {
        "api_key": "password",
        "bearer_token": "password",
        "client_secret": "password",
        "serper_key": "password",
        "wo": "password",
        "fmt": "password",
        "max_tokens": "integer",
        "key_name": "text",
        "tokenizer": "text",
        "pat": "password",
    }


def test_multiline_hints_and_long_defaults():
    schema = {
        "properties": {
            "a": {"type": "string", "multiline": True},
            "b": {"type": "string", "format": "textarea"},
            "c": {"type": "string", "default": "line one\nline two"},
            "d": {"type": "string", "default": "x" * 150},
            "e": {"type": "string", "default": "short"},
        }
    }
    assert [f.kind for f in vf.describe(schema)] == ["textarea", "textarea", "textarea", "textarea", "text"]


def test_refs_enums_and_unions():
    from enum import Enum

    class Color(str, Enum):  # noqa: UP042 - the spelling community functions use
        red = "red"
        blue = "blue"

    class Inner(BaseModel):
        x: int = 1

    class WithRefs(BaseModel):
        color: Color = Color.red
        maybe_color: Color | None = None
        inner: Inner = Inner()
        pairs: list[dict[str, int]] = []
        choice: Literal["a"] | Literal["b"] = "a"
        numbers: list[int] | None = None
        mixed: int | str | None = None

    fields = fields_by_name(WithRefs.model_json_schema())
    assert fields["color"].kind == "select" and fields["color"].title == "Color"
    assert [o.value for o in fields["color"].options] == ["red", "blue"]
    assert fields["maybe_color"].kind == "select" and fields["maybe_color"].nullable
    assert fields["inner"].kind == "json" and fields["inner"].default == {"x": 1}
    assert fields["pairs"].kind == "json"
    assert fields["choice"].kind == "select"
    assert (
        fields["numbers"].kind == "list"
        and fields["numbers"].nullable
        and fields["numbers"].item_type == "integer"
    )
    assert fields["mixed"].kind == "json" and fields["mixed"].nullable


def test_no_schema_means_no_fields():
    assert vf.describe(None) == []
    assert vf.describe({}) == []
    assert vf.describe({"properties": "nonsense"}) == []


# --- form → values ------------------------------------------------------------------------------------------


def untouched_form(schema: dict = SCHEMA, stored: dict | None = None) -> MultiDict:
    """What a browser submits for a form rendered from ``stored`` and then left alone."""
    data = MultiDict()
    for view in vf.build_views(vf.describe(schema), stored or {}):
        if view.kind == "password":
            data.add(view.input_id, "")
        elif view.kind == "boolean":
            data.add(view.input_id, "off")
            if view.checked:
                data.add(view.input_id, "on")
        elif view.kind in ("select", "tristate"):
            data.add(view.input_id, view.selected)
        else:
            data.add(view.input_id, view.text)
    return data


def parse(data: MultiDict, stored: dict | None = None, schema: dict = SCHEMA) -> vf.Submission:
    return vf.parse_submission(vf.describe(schema), data, stored or {})


def test_an_untouched_form_sets_nothing():
    result = parse(untouched_form())
    assert result.ok, result.errors
    assert result.values == {}


def test_an_untouched_form_keeps_what_is_stored():
    stored = {
        "openai_api_key": "sk-stored",
        "temperature": 1.5,
        "stop_words": ["x"],
        "enabled": False,
        "level": 3,
    }
    result = parse(untouched_form(stored=stored), stored)
    assert result.ok, result.errors
    assert result.values == stored


def test_typed_values_are_coerced():
    data = untouched_form()
    data.setlist("valve-temperature", ["1.25"])
    data.setlist("valve-max_turns", [" 7 "])
    data.setlist("valve-retries", ["3"])
    data.setlist("valve-stop_words", ["stop\r\n\n  end  \n"])
    data.setlist("valve-weights", ["1\n2.5"])
    data.setlist("valve-tags", ["z\nz\ny"])
    data.setlist("valve-headers", ['{"X-Test": "1"}'])
    data.setlist("valve-either", ['"text"'])
    data.setlist("valve-level", ["3"])
    data.setlist("valve-region", ["us"])
    data.setlist("valve-stream", ["false"])
    data.setlist("valve-enabled", ["off"])  # the checkbox was unticked: only its hidden twin is sent
    data.setlist("valve-system_prompt", ["Line 1\r\nLine 2"])
    result = parse(data)
    assert result.ok, result.errors
    assert result.values == {
        "temperature": 1.25,
        "max_turns": 7,
        "retries": 3,
        "stop_words": ["stop", "end"],
        "weights": [1, 2.5],
        "tags": ["z", "y"],
        "headers": {"X-Test": "1"},
        "either": "text",
        "level": 3,
        "region": "us",
        "stream": False,
        "enabled": False,
        "system_prompt": "Line 1\nLine 2",
    }
    CommunityValves.model_validate(result.values)  # what the form produces is what the class accepts


def test_a_value_equal_to_the_default_is_not_set_unless_it_was_stored():
    data = untouched_form()
    data.setlist("valve-temperature", ["0.70"])
    assert parse(data).values == {}
    assert parse(data, {"temperature": 1.0}).values == {"temperature": 0.7}


def test_a_value_equal_to_the_default_is_stored_when_pinned():
    data = untouched_form()
    data.setlist("valve-temperature", ["0.7"])
    data.setlist("pin-temperature", ["1"])
    submission = parse(data)
    assert submission.values == {"temperature": 0.7}
    assert submission.pins == {"temperature"}
    # Shown as set, and as the default's value: pinned, not following the default.
    (view,) = [v for v in vf.build_views(vf.describe(SCHEMA), submission.values) if v.name == "temperature"]
    assert view.is_set and view.same_as_default
    # A secret has no pin: whatever is typed into it is stored anyway.
    assert not {f.name: f for f in vf.describe(SCHEMA)}["openai_api_key"].can_pin


def test_emptying_fields():
    stored = {
        "user_agent": "bot/1",
        "retries": 2,
        "base_url": "https://x",
        "stop_words": ["a"],
    }
    data = untouched_form(stored=stored)
    for name in stored:
        data.setlist(f"valve-{name}", [""])
    result = parse(data, stored)
    assert result.ok, result.errors
    # Optional fields emptied fall back to their default ("leave empty for the default"); a stored string or list
    # emptied is kept as the empty value the user asked for.
    assert result.values == {"base_url": "", "stop_words": []}


def test_emptying_a_stored_number_or_json_value_is_an_error_not_a_reset():
    stored = {"temperature": 1.5, "max_turns": 9, "headers": {"a": "b"}, "model": "gpt-4o-mini"}
    data = untouched_form(stored=stored)
    for name in ("temperature", "max_turns", "headers"):
        data.setlist(f"valve-{name}", [""])
    result = parse(data, stored)
    assert result.errors == {
        "temperature": "Enter a number, or tick Reset to default.",
        "max_turns": "Enter a whole number, or tick Reset to default.",
        "headers": "Enter a JSON value, or tick Reset to default.",
    }
    # Not stored, an emptied number is simply left at its default; ticking reset is the way to drop a stored one.
    fresh = untouched_form()
    fresh.setlist("valve-max_turns", [""])
    assert parse(fresh).values == {}
    data.add("reset-temperature", "1")
    data.add("reset-max_turns", "1")
    data.add("reset-headers", "1")
    assert parse(data, stored).values == {"model": "gpt-4o-mini"}


def test_emptying_a_stored_required_number_asks_for_a_number():
    class Required(BaseModel):
        port: int

    result = parse(MultiDict([("valve-port", "")]), {"port": 80}, Required.model_json_schema())
    assert result.errors == {"port": "Enter a whole number."}


def test_emptying_a_string_with_a_default_stores_the_empty_string():
    data = untouched_form()
    data.setlist("valve-base_url", [""])
    assert parse(data).values == {"base_url": ""}


def test_reset_removes_the_key_whatever_was_typed():
    stored = {"temperature": 1.5, "openai_api_key": "sk-stored", "model": "gpt-4o-mini"}
    data = untouched_form(stored=stored)
    data.setlist("valve-temperature", ["not even a number"])
    data.add("reset-temperature", "1")
    data.add("reset-openai_api_key", "1")
    result = parse(data, stored)
    assert result.ok
    assert result.values == {"model": "gpt-4o-mini"}
    assert result.resets == {"temperature", "openai_api_key"}


def test_a_password_left_empty_keeps_the_stored_secret_and_a_typed_one_replaces_it():
    stored = {"openai_api_key": "sk-stored", "secret_header": "h"}
    data = untouched_form(stored=stored)
    data.setlist("valve-secret_header", ["  new-secret \n"])
    result = parse(data, stored)
    assert result.values == {"openai_api_key": "sk-stored", "secret_header": "new-secret"}
    assert "secret_header" not in result.typed and "openai_api_key" not in result.typed
    assert result.secrets_typed == {"secret_header"}


def test_fields_missing_from_the_submission_keep_their_stored_value():
    stored = {"temperature": 1.5, "enabled": False}
    result = parse(MultiDict([("valve-max_turns", "9")]), stored)
    assert result.values == {"temperature": 1.5, "enabled": False, "max_turns": 9}


def test_keys_the_class_no_longer_has_are_not_carried_over_and_are_reported():
    stored = {"temperature": 1.5, "old_setting": "x"}
    result = parse(untouched_form(stored=stored), stored)
    assert result.values == {"temperature": 1.5}
    assert vf.unknown_keys(vf.describe(SCHEMA), stored) == ["old_setting"]


@pytest.mark.parametrize(
    ("name", "typed", "message"),
    [
        ("max_turns", "abc", "Enter a whole number."),
        ("max_turns", "2.5", "Enter a whole number."),
        ("temperature", "warm", "Enter a number."),
        ("temperature", "inf", "Enter a finite number."),
        ("weights", "1\nx", "Line 2: Enter a number."),
        ("headers", "{not json", "This is not valid JSON"),
        ("model", "gpt-5", "Choose one of the listed options."),
        ("stream", "maybe", "Choose Default, On or Off."),
    ],
)
def test_parse_errors_are_field_errors_and_keep_what_was_typed(name, typed, message):
    data = untouched_form()
    data.setlist(f"valve-{name}", [typed])
    result = parse(data)
    assert not result.ok
    assert set(result.errors) == {name}
    assert result.errors[name].startswith(message)
    views = {
        v.name: v for v in vf.build_views(vf.describe(SCHEMA), {}, errors=result.errors, submission=result)
    }
    assert views[name].error == result.errors[name]
    if views[name].kind in ("select", "tristate"):
        assert views[name].selected == typed
    else:
        assert views[name].text == typed


def test_integer_given_as_a_whole_float_is_accepted():
    data = untouched_form()
    data.setlist("valve-max_turns", ["5.0"])
    assert parse(data).values == {"max_turns": 5}


def test_required_text_left_empty_is_not_set():
    class Required(BaseModel):
        endpoint: str
        tags: list[str] = Field(default_factory=list)

    schema = Required.model_json_schema()
    data = MultiDict([("valve-endpoint", ""), ("valve-tags", "")])
    result = parse(data, {}, schema)
    assert result.values == {}
    with pytest.raises(ValidationError):
        Required.model_validate(result.values)  # the class, not the form, says "Field required"


def test_a_stored_select_value_no_longer_offered_is_shown_and_kept_for_the_class_to_judge():
    stored = {"model": "gpt-3.5"}
    fields = vf.describe(SCHEMA)
    (view,) = [v for v in vf.build_views(fields, stored) if v.name == "model"]
    assert view.selected == "gpt-3.5"
    assert view.select_options[-1].label == "gpt-3.5 (no longer offered)"
    result = parse(untouched_form(stored=stored), stored)
    assert result.ok and result.values == stored


# --- rendering state ----------------------------------------------------------------------------------------


def test_views_prefill_defaults_and_stored_values_but_never_secrets():
    stored = {
        "openai_api_key": "sk-stored",
        "temperature": 1.5,
        "stop_words": ["a", "b"],
        "headers": {"k": 1},
    }
    views = {v.name: v for v in vf.build_views(vf.describe(SCHEMA), stored)}
    assert views["openai_api_key"].text == "" and views["openai_api_key"].secret_stored
    assert views["openai_api_key"].placeholder == vf.STORED_SECRET_PLACEHOLDER
    assert views["secret_header"].placeholder == "Not set"
    assert views["temperature"].text == "1.5" and views["temperature"].is_set
    assert views["max_turns"].text == "4" and not views["max_turns"].is_set
    assert views["stop_words"].text == "a\nb"
    assert views["headers"].text == '{\n  "k": 1\n}'
    assert views["enabled"].checked
    assert views["base_url"].text == "https://api.example.com/v1"
    assert views["user_agent"].placeholder == "Not set"
    assert views["stop_words"].placeholder == "Set by the function"
    assert all("sk-stored" not in repr(v.text) for v in views.values())


def test_a_secret_default_is_never_shown():
    class Secretive(BaseModel):
        api_key: str = "sk-from-environment"

    (view,) = vf.build_views(vf.describe(Secretive.model_json_schema()), {})
    assert view.text == ""
    assert "sk-from-environment" not in view.field.default_text()
    assert view.placeholder == vf.DEFAULT_SECRET_PLACEHOLDER


def test_select_views_offer_the_default_first():
    views = {v.name: v for v in vf.build_views(vf.describe(SCHEMA), {"level": 3})}
    assert [(o.key, o.label) for o in views["region"].select_options] == [
        ("", "Default (Europe)"),
        ("eu", "Europe"),
        ("us", "us"),
    ]
    assert views["region"].selected == ""
    assert views["level"].selected == "3"
    assert [o.label for o in views["stream"].select_options] == ["Default (none)", "On", "Off"]
    assert views["fallback_model"].select_options[0].label == "Default (none)"


def test_default_texts():
    fields = fields_by_name()
    assert fields["enabled"].default_text() == "on"
    assert fields["user_agent"].default_text() == "none"
    assert fields["temperature"].default_text() == "0.7"
    assert fields["openai_api_key"].default_text() == "empty"
    assert fields["region"].default_text() == "Europe"
    assert fields["weights"].default_text() == "[0.5, 0.5]"
    assert fields["headers"].default_text() == "{}"


# --- validation errors → fields -----------------------------------------------------------------------------


def test_service_errors_map_to_their_fields():
    try:
        CommunityValves.model_validate({"temperature": 5, "weights": ["x"]})
    except ValidationError as exc:
        errors = [{"loc": list(e["loc"]), "msg": e["msg"], "type": e["type"]} for e in exc.errors()]
    by_field, general = vf.map_errors(
        vf.describe(SCHEMA), errors + [{"loc": [], "msg": "Whole model is off"}]
    )
    # Plain sentences in the form's own style, never pydantic's wording.
    assert by_field["temperature"] == "Enter a number between 0 and 2."
    assert by_field["weights"] == "In item 1: enter a number."
    assert general == ["Whole model is off"]


@pytest.mark.parametrize(
    ("values", "name", "sentence"),
    [
        ({"max_turns": 100}, "max_turns", "Enter a whole number greater than 0, less than 100."),
        ({"max_turns": "x"}, "max_turns", "Enter a whole number."),
        ({"retries": -1}, "retries", "Enter a whole number at least 0."),
        ({"temperature": "warm"}, "temperature", "Enter a number."),
    ],
)
def test_each_refusal_of_the_class_is_a_plain_sentence(values, name, sentence):
    try:
        CommunityValves.model_validate(values)
    except ValidationError as exc:
        errors = [{"loc": list(e["loc"]), "msg": e["msg"], "type": e["type"]} for e in exc.errors()]
    by_field, _general = vf.map_errors(vf.describe(SCHEMA), errors)
    assert by_field[name] == sentence
    assert "Input should" not in by_field[name]


def test_a_validators_own_message_loses_pydantics_prefix():
    fields = vf.describe(SCHEMA)
    error = {
        "loc": ["user_agent"],
        "msg": "Value error, must start with a product name",
        "type": "value_error",
    }
    assert vf.map_errors(fields, [error])[0] == {"user_agent": "Must start with a product name."}


def test_secrets_are_masked_in_messages():
    fields = vf.describe(SCHEMA)
    secrets = vf.secret_values(
        fields, {"openai_api_key": "sk-stored", "temperature": 1}, {"secret_header": "ab"}
    )
    assert secrets == ["sk-stored", "ab"]
    message = "Key sk-stored is wrong; ab is too short; about tab"
    assert vf.mask_secrets(message, secrets) == "Key •••••• is wrong; •••••• is too short; about tab"
