"""The rules load answers and runtime results share: one JSON-safe copy, one way of finding a valves class."""

import dataclasses
import datetime
import json

import pytest
from pydantic import BaseModel

from loader.json_values import MAX_JSON_NODES, TooLarge, json_safe
from loader.runtime.context import CallContext, user_record
from loader.valves import valves_class


class Point(BaseModel):
    x: int = 1
    when: datetime.date = datetime.date(2024, 5, 6)


@dataclasses.dataclass
class Pair:
    left: int
    right: set


def test_json_safe_dumps_models_dates_and_dataclasses():
    value = {"model": Point(), "at": datetime.datetime(2024, 1, 2, 3, 4), "pair": Pair(1, {3, 2})}

    safe = json_safe(value)

    json.dumps(safe, allow_nan=False)
    assert safe == {
        "model": {"x": 1, "when": "2024-05-06"},
        "at": "2024-01-02T03:04:00",
        "pair": {"left": 1, "right": [2, 3]},
    }


def test_json_safe_refuses_more_parts_than_its_budget():
    with pytest.raises(TooLarge):
        json_safe(list(range(MAX_JSON_NODES + 1)))


def test_json_safe_treats_an_object_whose_getattr_raises_as_text():
    class Hostile:
        def __getattr__(self, name):
            raise RuntimeError(name)

        def __str__(self):
            return "hostile"

    assert json_safe({"h": Hostile()}) == {"h": "hostile"}


def test_a_valves_class_that_is_not_a_pydantic_model_is_ignored_by_loads_and_calls_alike():
    class Filter:
        class UserValves:  # not a pydantic model: loading says so and ignores it
            pass

    notes = []
    assert valves_class(Filter(), "UserValves", notes) is None
    assert notes == ["UserValves is not a pydantic model class; it is ignored"]
    record = user_record({"id": "u1"}, Filter(), CallContext(function_id="f", method="inlet"))
    assert "valves" not in record
