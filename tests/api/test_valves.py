"""Admin valves and user valves: reading, schemas, validation by the function's own classes, isolation."""

from __future__ import annotations

import threading

import pytest

from tests import factories as F
from tests.api.conftest import NOT_FOUND, Api


@pytest.fixture
def active(admin_api, sample):
    admin_api.post("/id/sample_filter/toggle")
    return sample


# --- admin valves -------------------------------------------------------------------------------------------------


def test_valves_start_empty_and_spec_is_the_valves_schema(admin_api, sample):
    assert admin_api.get("/id/sample_filter/valves").get_json() == {}
    spec = admin_api.get("/id/sample_filter/valves/spec").get_json()
    assert spec["title"] == "Valves"
    assert list(spec["properties"]) == ["priority", "prefix", "api_key"]
    assert spec["properties"]["priority"]["default"] == 0
    assert spec["properties"]["api_key"]["input"] == {"type": "password"}


def test_valves_spec_is_null_without_a_valves_class(admin_api):
    admin_api.create("actor", F.ACTION)
    response = admin_api.get("/id/actor/valves/spec")
    assert response.status_code == 200 and response.get_json() is None
    assert admin_api.get("/id/actor/valves/user/spec").get_json() is None


def test_valves_spec_resolves_options_methods(admin_api):
    admin_api.create("chooser", F.OPTIONS_METHOD)
    spec = admin_api.get("/id/chooser/valves/spec").get_json()
    assert spec["properties"]["model"]["input"]["options"] == ["a", "b", "c"]


def test_valves_update_drops_nulls_coerces_and_stores_only_what_was_set(app, admin_api, sample):
    response = admin_api.post("/id/sample_filter/valves/update", {"priority": "5", "prefix": None, "junk": 1})
    assert response.status_code == 200
    assert response.get_json() == {"priority": 5}
    assert admin_api.get("/id/sample_filter/valves").get_json() == {"priority": 5}
    # Replaces rather than merges, as Open WebUI does.
    admin_api.post("/id/sample_filter/valves/update", {"prefix": "$ "})
    assert admin_api.get("/id/sample_filter/valves").get_json() == {"prefix": "$ "}
    # Valves changes make no versions.
    assert len(admin_api.get("/id/sample_filter/history").get_json()) == 1


def test_valves_update_reports_each_refused_field(admin_api, sample):
    admin_api.post("/id/sample_filter/valves/update", {"priority": 1})
    response = admin_api.post("/id/sample_filter/valves/update", {"priority": "high", "prefix": ["x"]})
    assert response.status_code == 400
    body = response.get_json()
    assert "priority" in body["detail"] and "prefix" in body["detail"]
    assert sorted(item["loc"][0] for item in body["errors"]) == ["prefix", "priority"]
    assert all(set(item) == {"loc", "msg", "type"} for item in body["errors"])
    assert admin_api.get("/id/sample_filter/valves").get_json() == {"priority": 1}


def test_valves_update_without_a_valves_class_is_refused(admin_api):
    admin_api.create("actor", F.ACTION)
    response = admin_api.post("/id/actor/valves/update", {"x": 1})
    assert response.status_code == 400
    assert "no Valves class" in response.get_json()["detail"]


@pytest.mark.parametrize("body", [[1, 2], "text", 5])
def test_valves_update_needs_an_object(admin_api, sample, body):
    response = admin_api.post("/id/sample_filter/valves/update", body)
    assert response.status_code == 422
    assert response.get_json()["detail"][0]["loc"] == ["body"]


@pytest.mark.parametrize("path", ["/valves", "/valves/spec", "/valves/user", "/valves/user/spec"])
def test_valves_routes_of_unknown_function_are_404(admin_api, path):
    response = admin_api.get("/id/nope" + path)
    assert response.status_code == 404 and response.get_json() == {"detail": NOT_FOUND}


@pytest.mark.parametrize("path", ["/valves/update", "/valves/user/update"])
def test_valves_writes_to_unknown_function_are_404(admin_api, path):
    response = admin_api.post("/id/nope" + path, {"a": 1})
    assert response.status_code == 404 and response.get_json() == {"detail": NOT_FOUND}


def test_a_failed_valves_write_is_an_error_not_a_200(app, admin_api, sample, monkeypatch):
    from sqlalchemy.exc import OperationalError

    from extensions import db

    admin_api.get("/")  # the key's first use is recorded now, not during the broken write below

    def failing_commit():
        raise OperationalError("COMMIT", {}, Exception("disk I/O error"))

    with app.app_context():
        monkeypatch.setattr(db.session, "commit", failing_commit)
        app.config["PROPAGATE_EXCEPTIONS"] = False
        response = admin_api.post("/id/sample_filter/valves/update", {"priority": 4})
    monkeypatch.undo()
    assert response.status_code == 500 and response.is_json
    assert admin_api.get("/id/sample_filter/valves").get_json() == {}


# --- user valves --------------------------------------------------------------------------------------------------


def test_user_valves_round_trip(user_api, active):
    assert user_api.get("/id/sample_filter/valves/user").get_json() == {}
    spec = user_api.get("/id/sample_filter/valves/user/spec").get_json()
    assert spec["title"] == "UserValves" and list(spec["properties"]) == ["enabled", "max_turns"]
    response = user_api.post("/id/sample_filter/valves/user/update", {"max_turns": "12", "enabled": None})
    assert response.status_code == 200 and response.get_json() == {"max_turns": 12}
    assert user_api.get("/id/sample_filter/valves/user").get_json() == {"max_turns": 12}


def test_user_valves_are_validated(user_api, active):
    response = user_api.post("/id/sample_filter/valves/user/update", {"max_turns": 1000})
    assert response.status_code == 400
    body = response.get_json()
    assert "max_turns" in body["detail"]
    assert body["errors"][0]["loc"] == ["max_turns"]


def test_user_valves_without_a_user_valves_class_are_refused(admin_api, user_api):
    admin_api.create("piper", F.PIPE)
    admin_api.post("/id/piper/toggle")
    response = user_api.post("/id/piper/valves/user/update", {"x": 1})
    assert response.status_code == 400
    assert "no UserValves class" in response.get_json()["detail"]


def test_inactive_function_does_not_exist_for_users(admin_api, user_api, sample):
    for path in ("/valves/user", "/valves/user/spec"):
        response = user_api.get("/id/sample_filter" + path)
        assert response.status_code == 404 and response.get_json() == {"detail": NOT_FOUND}
    response = user_api.post("/id/sample_filter/valves/user/update", {"max_turns": 2})
    assert response.status_code == 404
    # Admins still reach their own user valves of an inactive function.
    assert admin_api.post("/id/sample_filter/valves/user/update", {"max_turns": 2}).status_code == 200


def test_users_never_see_each_others_valves(admin_api, user_api, other_api, active):
    user_api.post("/id/sample_filter/valves/user/update", {"max_turns": 3})
    other_api.post("/id/sample_filter/valves/user/update", {"enabled": False})
    admin_api.post("/id/sample_filter/valves/user/update", {"max_turns": 50})
    assert user_api.get("/id/sample_filter/valves/user").get_json() == {"max_turns": 3}
    assert other_api.get("/id/sample_filter/valves/user").get_json() == {"enabled": False}
    assert admin_api.get("/id/sample_filter/valves/user").get_json() == {"max_turns": 50}
    # Admin valves are a different thing altogether.
    assert admin_api.get("/id/sample_filter/valves").get_json() == {}


def test_concurrent_user_valves_writes_by_several_users(app, admin_api, active):
    """Six users, each writing from two places at once (two tabs): no lost rows, no errors, one row each."""
    from extensions import db
    from models import User, UserValves
    from services import accounts
    from tests.conftest import PASSWORD

    keys = []
    with app.app_context():
        for index in range(6):
            user = accounts.create_user(f"U{index}", f"u{index}@example.com", PASSWORD, role="user")
            keys.append(accounts.create_api_key(db.session.get(User, user.id), "t")[1])
    errors = []
    written: dict[int, set[int]] = {index: set() for index in range(len(keys))}
    barrier = threading.Barrier(len(keys) * 2)

    def worker(index, key, tab):
        api = Api(app.test_client(), key)
        barrier.wait()
        for turn in range(3):
            value = index * 10 + tab * 5 + turn + 1
            written[index].add(value)
            response = api.post("/id/sample_filter/valves/user/update", {"max_turns": value})
            if response.status_code != 200:
                errors.append(response.get_json())

    pool = [
        threading.Thread(target=worker, args=(i, key, tab)) for i, key in enumerate(keys) for tab in (0, 1)
    ]
    for thread in pool:
        thread.start()
    for thread in pool:
        thread.join()
    assert not errors
    for index, key in enumerate(keys):
        stored = Api(app.test_client(), key).get("/id/sample_filter/valves/user").get_json()
        assert set(stored) == {"max_turns"} and stored["max_turns"] in written[index]
    from sqlalchemy import func, select

    with app.app_context():
        assert db.session.scalar(select(func.count()).select_from(UserValves)) == len(keys)
