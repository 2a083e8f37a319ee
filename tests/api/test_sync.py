"""Sync: the listed functions become exactly what is stored, all or nothing; dry runs write nothing."""

from __future__ import annotations

import pytest

from tests import factories as F
from tests.api.conftest import WITH_VALVES_KEYS


def item(id, content=F.FILTER, name=None, **extra):
    return {"id": id, "name": name or id.title(), "content": content, "meta": {}, **extra}


def _state(admin_api):
    return admin_api.get("/export?include_valves=true").get_json()


def test_sync_creates_updates_and_deletes(app, admin_api, user_id, admin_id):
    from tests.factories import make_function

    make_function(app, user_id, "keep", F.FILTER)  # created by another account
    make_function(app, admin_id, "drop", F.ACTION)
    original = admin_api.get("/id/keep").get_json()
    response = admin_api.post(
        "/sync",
        {
            "functions": [
                item("keep", F.FILTER, name="Kept", valves={"priority": "3"}, is_active=True),
                item("fresh", F.TOGGLE_FILTER, is_global=True, type="pipe", user_id="forged"),
            ]
        },
    )
    assert response.status_code == 200, response.get_json()
    body = response.get_json()
    assert [list(f) for f in body] == [WITH_VALVES_KEYS, WITH_VALVES_KEYS]
    keep, fresh = body
    assert keep["id"] == "keep" and keep["name"] == "Kept"
    assert keep["valves"] == {"priority": 3} and keep["is_active"] is True
    # Existing functions keep their creator and created_at.
    assert keep["user_id"] == user_id and keep["created_at"] == original["created_at"]
    # Type, manifest and toggle come from the code, never from the item.
    assert fresh["type"] == "filter" and fresh["meta"]["toggle"] is True
    assert fresh["meta"]["manifest"] == {"title": "Toggle Filter"}
    assert fresh["user_id"] == admin_id and fresh["is_global"] is True and fresh["is_active"] is False
    assert admin_api.get("/id/drop").status_code == 404
    assert sorted(f["id"] for f in _state(admin_api)) == ["fresh", "keep"]


def test_sync_with_an_empty_list_deletes_everything(admin_api, sample):
    response = admin_api.post("/sync", {"functions": []})
    assert response.status_code == 200 and response.get_json() == []
    assert admin_api.get("/").get_json() == []


def test_a_failing_item_changes_nothing_and_is_reported(admin_api, sample):
    admin_api.post("/id/sample_filter/valves/update", {"priority": 1})
    before = _state(admin_api)
    response = admin_api.post(
        "/sync",
        {
            "functions": [
                item("sample_filter", F.FILTER, name="Changed"),
                item("good_new", F.PIPE),
                item("broken", F.SYNTAX_ERROR),
                item("bad_valves", F.FILTER, valves={"priority": "lots"}),
                item("bad id", F.FILTER),
                item("good_new", F.PIPE),
            ]
        },
    )
    assert response.status_code == 400
    body = response.get_json()
    assert body["detail"] == "4 of 6 functions could not be synced, so nothing was changed."
    errors = {entry["id"]: entry for entry in body["errors"]}
    assert set(errors) == {"broken", "bad_valves", "bad id", "good_new"}
    assert errors["broken"]["error"]["type"] == "SyntaxError"
    assert errors["broken"]["detail"].startswith("SyntaxError")
    assert errors["bad_valves"]["errors"][0]["loc"] == ["priority"]
    assert "alphanumeric" in errors["bad id"]["detail"]
    assert "more than once" in errors["good_new"]["detail"]
    assert _state(admin_api) == before


def test_dry_run_says_what_would_happen_and_writes_nothing(app, admin_api, admin_id):
    from tests.factories import make_function

    make_function(app, admin_id, "same", F.FILTER, name="Same")
    make_function(app, admin_id, "changes", F.FILTER)
    make_function(app, admin_id, "goes", F.ACTION)
    before = _state(admin_api)
    same = next(f for f in before if f["id"] == "same")
    response = admin_api.post(
        "/sync?dry_run=true",
        {"functions": [same, item("changes", F.PIPE), item("arrives", F.ACTION)]},
    )
    assert response.status_code == 200
    assert response.get_json() == {
        "created": ["arrives"],
        "updated": ["changes"],
        "deleted": ["goes"],
        "unchanged": ["same"],
    }
    assert _state(admin_api) == before


def test_dry_run_reports_failures_like_a_real_sync(admin_api):
    response = admin_api.post("/sync?dry_run=true", {"functions": [item("broken", F.SYNTAX_ERROR)]})
    assert response.status_code == 400
    assert response.get_json()["errors"][0]["id"] == "broken"


def test_an_export_syncs_back_unchanged_without_loading_the_code_again(admin_api, sample, monkeypatch):
    admin_api.post("/id/sample_filter/valves/update", {"priority": 2})
    admin_api.post("/id/sample_filter/toggle")
    before = _state(admin_api)
    import loader

    calls = []
    real = loader.load_function

    def counting(*args, **kwargs):
        calls.append(args)
        return real(*args, **kwargs)

    monkeypatch.setattr(loader, "load_function", counting)
    response = admin_api.post("/sync", {"functions": before})
    assert response.status_code == 200
    assert response.get_json() == before
    assert calls == []
    dry = admin_api.post("/sync?dry_run=true", {"functions": before}).get_json()
    assert dry["unchanged"] == ["sample_filter"] and dry["updated"] == []


def test_sync_accepts_the_community_wrapper(admin_api):
    wrapped = {
        "id": "community_item",
        "function": {"id": "community_item", "name": "Community", "content": F.PIPE},
    }
    response = admin_api.post("/sync", {"functions": [wrapped]})
    assert response.status_code == 200, response.get_json()
    assert response.get_json()[0]["name"] == "Community"
    assert response.get_json()[0]["type"] == "pipe"


def test_sync_without_valves_keeps_the_stored_ones(admin_api, sample):
    admin_api.post("/id/sample_filter/valves/update", {"priority": 2})
    response = admin_api.post("/sync", {"functions": [item("sample_filter", F.FILTER)]})
    assert response.get_json()[0]["valves"] == {"priority": 2}


def test_sync_records_versions_for_changed_code(admin_api, sample):
    admin_api.post("/sync", {"functions": [item("sample_filter", F.PIPE, name="Sample Filter")]})
    assert len(admin_api.get("/id/sample_filter/history").get_json()) == 2


@pytest.mark.parametrize(
    "body",
    [{}, {"functions": {}}, {"functions": [{"id": "x"}]}, {"functions": [5]}],
)
def test_sync_with_a_body_of_the_wrong_shape_is_422(admin_api, body):
    response = admin_api.post("/sync", body)
    assert response.status_code == 422
    assert isinstance(response.get_json()["detail"], list)


def test_an_item_whose_description_is_not_a_string_is_422(admin_api, sample):
    body = {"functions": [item("sample_filter", meta={"description": 5})]}
    response = admin_api.post("/sync", body)
    assert response.status_code == 422
    assert [entry["loc"] for entry in response.get_json()["detail"]] == [
        ["body", "functions", 0, "meta", "description"]
    ]
    assert admin_api.get("/id/sample_filter").get_json()["meta"]["description"] is None


def test_an_item_without_valves_keeps_them_when_the_new_code_has_no_valves_class(admin_api, sample):
    # As an update does: the stored values apply to nothing, but they are not checked against a missing class.
    admin_api.post("/id/sample_filter/valves/update", {"priority": 2})
    response = admin_api.post("/sync", {"functions": [item("sample_filter", F.ACTION, name="Sample Filter")]})
    assert response.status_code == 200, response.get_json()
    assert response.get_json()[0]["type"] == "action"
    assert response.get_json()[0]["valves"] == {"priority": 2}


def test_an_item_that_sets_valves_needs_a_valves_class(admin_api, sample):
    body = {"functions": [item("sample_filter", F.ACTION, valves={"priority": 2})]}
    response = admin_api.post("/sync", body)
    assert response.status_code == 400
    assert "no Valves class" in response.get_json()["errors"][0]["detail"]


def test_an_item_without_valves_is_refused_when_its_code_rejects_the_stored_ones(admin_api, sample):
    admin_api.post("/id/sample_filter/valves/update", {"priority": 7, "prefix": "!"})
    before = _state(admin_api)
    response = admin_api.post("/sync", {"functions": [item("sample_filter", F.FILTER_STRICT_PRIORITY)]})
    assert response.status_code == 400
    [error] = response.get_json()["errors"]
    assert error["id"] == "sample_filter"
    assert error["detail"].startswith("Current Valves are incompatible with this code: priority: ")
    assert [entry["loc"] for entry in error["errors"]] == [["priority"]]
    assert _state(admin_api) == before


def test_sync_can_drop_only_the_incompatible_stored_valves(admin_api, sample):
    admin_api.post("/id/sample_filter/valves/update", {"priority": 7, "prefix": "!"})
    response = admin_api.post(
        "/sync?reset_incompatible_valves=true",
        {"functions": [item("sample_filter", F.FILTER_STRICT_PRIORITY)]},
    )
    assert response.status_code == 200, response.get_json()
    assert response.get_json()[0]["valves"] == {"prefix": "!"}


def test_syncs_sent_at_once_take_turns(app, admin_api, admin_key, sample, monkeypatch):
    """Each sync deletes what it does not list: run together, the end state must still be one of theirs."""
    import threading
    import time

    from services import sync
    from tests.api.conftest import Api

    real_plan = sync._plan_item

    def slow_plan(*args, **kwargs):  # widen the window between reading what is stored and writing
        time.sleep(0.2)
        return real_plan(*args, **kwargs)

    monkeypatch.setattr(sync, "_plan_item", slow_plan)
    base = [item("sample_filter")]
    bodies = {
        "a": {"functions": [*base, item("only_in_a", F.ACTION)]},
        "b": {"functions": [*base, item("only_in_b", F.ACTION)]},
    }
    answers = {}

    def run(name):
        answers[name] = Api(app.test_client(), admin_key).post("/sync", bodies[name])

    threads = [threading.Thread(target=run, args=(name,)) for name in bodies]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)

    assert {name: answer.status_code for name, answer in answers.items()} == {"a": 200, "b": 200}
    final = sorted(f["id"] for f in _state(admin_api))
    assert final in (["only_in_a", "sample_filter"], ["only_in_b", "sample_filter"])


def test_a_sync_waiting_too_long_for_another_is_503(app, admin_api, sample, monkeypatch):
    import threading

    from extensions import db
    from services import sync

    monkeypatch.setattr(sync, "SYNC_WAIT_SECONDS", 0.2)
    holding, done = threading.Event(), threading.Event()

    def another_sync():  # in its own thread, so with its own database session, as in another request
        with app.app_context():
            with sync._one_sync_at_a_time():
                holding.set()
                done.wait(10)
            db.session.rollback()

    holder = threading.Thread(target=another_sync)
    holder.start()
    try:
        assert holding.wait(10)
        response = admin_api.post("/sync", {"functions": [item("sample_filter")]})
    finally:
        done.set()
        holder.join(10)
    assert (response.status_code, response.get_json()) == (503, {"detail": sync.SYNC_BUSY_ERROR})
    assert admin_api.post("/sync", {"functions": [item("sample_filter")]}).status_code == 200


@pytest.mark.parametrize(
    ("valves", "detail"),
    [
        (
            {"prefix": "a\ud800b"},
            "valves.prefix must not contain a lone surrogate, which is not a character.",
        ),
        ({"prefix": "a\x00b"}, "valves.prefix must not contain a NUL character."),
    ],
)
def test_valves_no_database_can_store_are_refused_per_item(app, sample, valves, detail):
    from extensions import db
    from models import User
    from services import sync
    from services.errors import ServiceError

    with app.app_context():
        admin = db.session.scalars(db.select(User)).first()
        with pytest.raises(ServiceError) as caught:
            sync.sync_functions(admin, [item("sample_filter", valves=valves)])
    assert caught.value.extra["errors"][0]["detail"] == detail


def test_sync_reads_whole_only_the_functions_it_lists(app, admin_api, user_id, admin_id):
    """Functions a sync does not list are deleted by id: their code is never read. Reading every stored function
    whole to sync a few held all of them in the server's memory at once (10,000 functions: over 100 MiB)."""
    from sqlalchemy import event

    from extensions import db
    from tests.factories import make_function

    for name in ("keep", "gone_a", "gone_b"):
        make_function(app, admin_id, name, F.FILTER)
    reads: list[tuple[str, object]] = []

    def listen(_connection, _cursor, statement, parameters, *_args):
        if statement.lstrip().upper().startswith("SELECT") and "functions.content" in statement:
            reads.append((statement, parameters))

    with app.app_context():
        engine = db.engine
    event.listen(engine, "before_cursor_execute", listen)
    try:
        response = admin_api.post("/sync", {"functions": [item("KEEP", F.FILTER), item("new_one")]})
    finally:
        event.remove(engine, "before_cursor_execute", listen)

    assert response.status_code == 200, response.get_json()
    assert sorted(f["id"] for f in _state(admin_api)) == ["keep", "new_one"]
    assert reads, "the listed function that exists is read"
    for statement, parameters in reads:
        assert " IN " in statement.upper()
        assert set(parameters if isinstance(parameters, (list, tuple)) else parameters.values()) == {"keep"}
