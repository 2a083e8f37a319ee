"""The API's JSON writer (web/json_provider.py) writes what Flask's own provider writes, faster, with its fallbacks."""

from __future__ import annotations

import dataclasses
import datetime
import decimal
import json
import uuid

import pytest
from flask import Flask, jsonify
from flask.json.provider import DefaultJSONProvider

from web.json_provider import FastJSONProvider, install_json_provider


@pytest.fixture
def app():
    app = Flask(__name__)
    app.json.sort_keys = False
    install_json_provider(app)
    return app


@dataclasses.dataclass
class Point:
    x: int
    y: int


VALUES = [
    {"version_id": None, "id": "a", "type": "filter", "name": "n", "meta": {"z": 1, "a": [1.5, True, None]}},
    {"text": 'héllo ✓ 🙂 \u2028 \x00 "quoted" \\ </script>'},
    {"big": 2**80, "small": -(2**63), "edge": 2**64 - 1},
    {"lone surrogate": "\ud800"},
    {1: "int key", "b": {2.5: "float key"}},
    {
        "when": datetime.datetime(2026, 12, 5, 8, 0, tzinfo=datetime.UTC),
        "day": datetime.date(2026, 1, 2),
    },
    {"id": uuid.UUID(int=7), "price": decimal.Decimal("1.10"), "point": Point(1, 2)},
    [],
    "plain",
    12.5,
]


@pytest.mark.parametrize("value", VALUES)
def test_same_document_as_flasks_provider(app, value):
    flask_provider = DefaultJSONProvider(app)
    flask_provider.sort_keys = False
    with app.app_context():
        ours = app.json.dumps(value)
        theirs = flask_provider.dumps(value)
    assert json.loads(ours) == json.loads(theirs)
    # Key order is part of the wire contract.
    if isinstance(value, dict):
        assert list(json.loads(ours)) == list(json.loads(theirs))


def test_responses_are_compact_utf8_with_a_newline(app):
    with app.app_context():
        response = jsonify({"name": "Zoë", "b": 1, "a": 2})
    assert response.mimetype == "application/json"
    assert response.get_data() == '{"name":"Zoë","b":1,"a":2}\n'.encode()


def test_values_it_cannot_write_fall_back_to_the_standard_library(app):
    with app.app_context():
        assert jsonify({"big": 2**80}).get_data() == b'{"big":1208925819614629174706176}\n'
        assert jsonify({"s": "\ud800"}).get_data() == b'{"s":"\\ud800"}\n'


def test_unknown_types_are_still_refused(app):
    with app.app_context(), pytest.raises(TypeError):
        app.json.dumps({"x": object()})


def test_sorted_keys_and_debug_indentation_are_kept(app):
    with app.app_context():
        app.json.sort_keys = True
        assert app.json.dumps({"b": 1, "a": 2}) == '{"a": 2, "b": 1}'
        app.json.sort_keys = False
        app.debug = True
        assert b"\n  " in jsonify({"b": 1}).get_data()


def test_the_app_uses_it(tmp_path):
    from app import create_app

    app = create_app(
        {"TESTING": True, "SQLALCHEMY_DATABASE_URI": f"sqlite:///{tmp_path}/db", "SECRET_KEY": "k" * 32}
    )
    assert isinstance(app.json, FastJSONProvider)
    assert app.json.sort_keys is False
