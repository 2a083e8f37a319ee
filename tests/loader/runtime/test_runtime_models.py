"""What a pipe offers as models, an action's sub-actions, and the order filters run in."""

from __future__ import annotations

from loader.runtime import filter_order, filter_priority, list_pipes, sub_actions


def test_a_plain_pipe_is_one_model_with_its_stored_name(load, run):
    assert run(list_pipes(load("pipe_str"), "greeter", "Greeter")) == [
        {"id": "greeter", "name": "Greeter", "sub": None}
    ]


def test_a_manifold_list_gives_a_model_per_item_with_the_name_prefix(load, run):
    assert run(list_pipes(load("manifold_list"), "lst", "Stored")) == [
        {"id": "lst.small", "name": "Lister: Small", "sub": "small"},
        {"id": "lst.large", "name": "Lister: Large", "sub": "large"},
    ]


def test_a_sync_callable_manifold_sees_the_stored_valves(load, run):
    instance = load("manifold_sync")

    assert [model["id"] for model in run(list_pipes(instance, "m", "M"))] == ["m.a", "m.b"]
    assert run(list_pipes(instance, "m", "M", valves={"models": "z"})) == [
        {"id": "m.z", "name": "Z", "sub": "z"}
    ]


def test_an_async_callable_manifold_is_awaited(load, run):
    assert run(list_pipes(load("manifold_async"), "am", "AM")) == [{"id": "am.x", "name": "X", "sub": "x"}]


def test_a_raising_manifold_gives_no_models_and_says_why(load, run, capsys):
    assert run(list_pipes(load("manifold_raising"), "br", "Broken")) == []
    assert "pipes failed, no models: RuntimeError: no API key" in capsys.readouterr().err


def test_manifold_items_without_an_id_are_skipped_and_a_missing_name_is_the_id(run, capsys):
    class Pipe:
        pipes = [{"name": "no id"}, "text", {"id": 7}]

    assert run(list_pipes(Pipe(), "f", "F")) == [{"id": "f.7", "name": "7", "sub": "7"}]
    assert capsys.readouterr().err.count("skipped") == 2


def test_sub_actions(load):
    assert sub_actions(load("action_sub"), "rate", "Rate") == [
        {"id": "rate.up", "sub": "up", "name": "Good", "icon_url": None},
        {
            "id": "rate.down",
            "sub": "down",
            "name": "Rate (down)",
            "icon_url": "data:image/svg+xml;base64,AA==",
        },
    ]
    assert sub_actions(load("filter_sync"), "f", "F") == []


def test_filter_priority_from_instance_stored_values_or_schema(load):
    sync = load("filter_sync")  # Valves.priority defaults to 0
    asynchronous = load("filter_async")  # defaults to 5

    assert filter_priority({}, instance=asynchronous) == 5
    assert filter_priority({"priority": 2}, instance=asynchronous) == 2
    assert filter_priority({"priority": "bad"}, instance=sync) == 0
    assert filter_priority({}, instance=load("filter_kwargs_only")) == 0  # no Valves
    assert filter_priority({"priority": 3}) == 3
    assert filter_priority({}, valves_schema={"properties": {"priority": {"default": 4}}}) == 4
    assert filter_priority(None) == 0


def test_filter_order_is_ascending_priority_then_id(load):
    filters = [
        {"id": "zeta", "instance": load("filter_sync")},
        {"id": "alpha", "instance": load("filter_async")},
        {"id": "beta", "valves": {"priority": 5}},
        {"id": "gamma", "priority": -1},
        {"id": "delta", "valves_schema": {"properties": {"priority": {"default": "x"}}}},
    ]

    assert [item["id"] for item in filter_order(filters)] == ["gamma", "delta", "zeta", "alpha", "beta"]
