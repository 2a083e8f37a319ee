"""Create, read, update, toggle, delete, list and export, as SPEC §2–§3 describe them."""

from __future__ import annotations

import io
import threading
import time

import pytest

from tests import factories as F
from tests.api.conftest import (
    NOT_FOUND,
    PREFIXES,
    RESPONSE_KEYS,
    USER_RESPONSE_KEYS,
    WITH_VALVES_KEYS,
    Api,
)

MIB = 1024 * 1024
ID_FORMAT = "Only alphanumeric characters and underscores are allowed in the id"
ID_TAKEN = "Uh-oh! This id is already registered. Please choose another id string."


# --- create -------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("prefix", PREFIXES)
def test_create_answers_a_function_response(client, admin_key, admin_id, prefix):
    api = Api(client, admin_key, prefix)
    response = api.post(
        "/create",
        F.form(
            id="My_Filter",
            name="  My Filter  ",
            meta={"description": "Mine", "manifest": {"title": "forged"}, "toggle": True, "tags": ["a", 1]},
        ),
    )
    assert response.status_code == 200, response.get_json()
    body = response.get_json()
    assert list(body) == RESPONSE_KEYS
    assert body["id"] == "my_filter"
    assert body["name"] == "My Filter"
    assert body["type"] == "filter"
    assert body["user_id"] == admin_id
    assert body["is_active"] is False and body["is_global"] is False
    # The manifest comes from the code; `toggle` is not a toggle filter's; other keys are kept verbatim.
    assert body["meta"] == {
        "description": "Mine",
        "manifest": {
            "title": "Sample Filter",
            "author": "Sluice Tests",
            "version": "1.0.0",
            "description": "Adds a prefix to every message.",
        },
        "tags": ["a", 1],
    }
    assert isinstance(body["version_id"], str) and body["version_id"]
    assert body["created_at"] == body["updated_at"] and body["created_at"] > 1_600_000_000
    got = api.get("/id/my_filter").get_json()
    assert got["version_id"] == body["version_id"]


def test_create_sets_toggle_only_for_toggle_filters(admin_api):
    toggle = admin_api.create("toggler", F.TOGGLE_FILTER)
    assert toggle["meta"]["toggle"] is True
    pipe = admin_api.create("piper", F.PIPE, meta={"toggle": True})
    assert "toggle" not in pipe["meta"]
    assert pipe["type"] == "pipe"
    assert admin_api.create("actor", F.ACTION)["type"] == "action"


def test_create_rewrites_old_style_imports(admin_api):
    admin_api.create("old_imports", F.OLD_STYLE_IMPORTS)
    content = admin_api.get("/id/old_imports").get_json()["content"]
    assert "from open_webui.utils.misc import get_last_user_message" in content
    assert "\nfrom utils.misc" not in content


@pytest.mark.parametrize("bad_id", ["has space", "dash-ed", "", "a" * 65, "ünï", "semi;colon", "x/y"])
def test_create_refuses_ids_of_the_wrong_format(admin_api, bad_id):
    response = admin_api.post("/create", F.form(id=bad_id))
    assert response.status_code == 400
    assert response.get_json() == {"detail": ID_FORMAT}


@pytest.mark.parametrize("bad_id", ["  pad_id  ", "abc\n", "\tabc", "abc ", "abc\r\n"])
def test_create_refuses_ids_with_surrounding_whitespace(admin_api, bad_id):
    # Open WebUI refuses these; trimming them would store an id the client never sent.
    response = admin_api.post("/create", F.form(id=bad_id))
    assert response.status_code == 400
    assert response.get_json() == {"detail": ID_FORMAT}
    assert admin_api.get("/").get_json() == []


def test_create_refuses_a_duplicate_id_case_insensitively(admin_api, sample):
    for duplicate in ("sample_filter", "Sample_Filter"):
        response = admin_api.post("/create", F.form(id=duplicate))
        assert response.status_code == 400
        assert response.get_json() == {"detail": ID_TAKEN}


@pytest.mark.parametrize("other", [{"content": F.SYNTAX_ERROR}, {"name": "  "}])
def test_a_taken_id_is_reported_before_what_else_is_wrong(admin_api, sample, other):
    # The id is checked while the loader runs the code: its answer still comes first, as when it was checked first.
    response = admin_api.post("/create", F.form(id="sample_filter", **other))
    assert response.status_code == 400
    assert response.get_json() == {"detail": ID_TAKEN}


@pytest.mark.parametrize(
    "content, error_type, line",
    [
        (F.SYNTAX_ERROR, "SyntaxError", 2),
        (F.RAISES_AT_IMPORT, "RuntimeError", 2),
        (F.NO_CLASS, None, None),
    ],
)
def test_create_reports_why_the_code_does_not_load(app, admin_api, content, error_type, line):
    response = admin_api.post("/create", F.form(id="broken", content=content))
    assert response.status_code == 400
    body = response.get_json()
    assert list(body) == ["detail", "error"]
    assert set(body["error"]) >= {"type", "message", "line", "column"}
    if error_type:
        assert body["error"]["type"] == error_type
        assert body["error"]["line"] == line
        assert body["detail"].startswith(f"{error_type}: ")
        assert f"(line {line})" in body["detail"]
    else:
        assert "Pipe" in body["detail"] and "Filter" in body["detail"]
    assert "[ERROR" not in body["detail"]
    assert F.stored_function(app, "broken") is None


def test_create_fails_cleanly_on_code_that_never_finishes(app, admin_api):
    import loader

    loader.configure(timeout=1.0)
    try:
        response = admin_api.post("/create", F.form(id="looper", content=F.LOOPS_FOREVER))
    finally:
        loader.configure(timeout=app.config["SLUICE_LOAD_TIMEOUT"])
    assert response.status_code == 400
    assert response.get_json()["error"]["type"]
    # The server keeps serving.
    assert admin_api.get("/").status_code == 200


SLOW_TO_LOAD = F.source(
    """
    import time

    time.sleep(60)


    class Filter:
        pass
    """
)
BUSY = "Sluice is busy loading other functions; try again in a moment."


@pytest.mark.parametrize("app_config", [{"SLUICE_MAX_CONCURRENT_LOADS": 2}])
def test_loads_past_the_limit_are_503_and_other_requests_are_served(app, admin_api, app_config, monkeypatch):
    import loader
    from services import loading

    monkeypatch.setattr(loading, "LOAD_SLOT_WAIT_SECONDS", 0.3, raising=False)
    loader.configure(timeout=2.0)  # each slow load holds its slot for this long
    started_loads = threading.Semaphore(0)
    real_load = loader.load_function

    def counted_load(*args, **kwargs):
        started_loads.release()
        return real_load(*args, **kwargs)

    monkeypatch.setattr(loader, "load_function", counted_load)
    answers = []

    def create_slow(index):
        api = Api(app.test_client(), admin_api.key)
        answers.append(api.post("/create", F.form(id=f"slow_{index}", content=SLOW_TO_LOAD + f"# {index}\n")))

    slow = [threading.Thread(target=create_slow, args=(index,)) for index in range(2)]
    for thread in slow:
        thread.start()
    try:
        for _ in slow:
            assert started_loads.acquire(timeout=5), "the slow loads did not start"
        # Both slots are held by loads that take the whole load timeout: the next create is turned away quickly.
        began = time.monotonic()
        busy = admin_api.post("/create", F.form(id="waiting"))
        assert (busy.status_code, busy.get_json()) == (503, {"detail": BUSY})
        assert time.monotonic() - began < 1.5
        # Requests that load nothing are answered at once.
        began = time.monotonic()
        assert admin_api.get("/").status_code == 200
        assert time.monotonic() - began < 0.5
    finally:
        for thread in slow:
            thread.join(timeout=15)
        loader.configure(timeout=app.config["SLUICE_LOAD_TIMEOUT"])
    assert sorted(answer.status_code for answer in answers) == [400, 400]  # the load timeout
    # The slots are free again.
    assert admin_api.post("/create", F.form(id="waiting")).status_code == 200


@pytest.mark.parametrize("app_config", [{"SLUICE_MAX_CONCURRENT_LOADS": 1}])
def test_every_route_that_loads_code_answers_503_when_busy(app, admin_api, sample, app_config, monkeypatch):
    from services import loading

    monkeypatch.setattr(loading, "LOAD_SLOT_WAIT_SECONDS", 0.05)
    exported = admin_api.get("/export?include_valves=true").get_json()
    version = admin_api.get("/id/sample_filter/history").get_json()[0]["id"]
    with app.app_context():
        slots = loading._load_slots()
    assert slots.acquire(timeout=1)
    try:
        for path, body in [
            ("/create", F.form(id="another")),
            ("/id/sample_filter/update", F.form(name="Renamed")),
            ("/id/sample_filter/valves/update", {"priority": 1}),
            ("/id/sample_filter/valves/user/update", {"max_turns": 2}),
            ("/sync", {"functions": [{**exported[0], "content": F.FILTER + "# changed\n"}]}),
            ("/id/sample_filter/update/version", {"version_id": version}),
        ]:
            response = admin_api.post(path, body)
            assert (response.status_code, response.get_json()) == (503, {"detail": BUSY}), path
    finally:
        slots.release()
    assert admin_api.get("/id/sample_filter").get_json()["name"] == "Sample Filter"


@pytest.mark.parametrize("name", ["", "   ", "n" * 257])
def test_create_refuses_a_bad_name(admin_api, name):
    response = admin_api.post("/create", F.form(id="named", name=name))
    assert response.status_code == 400
    assert "name" in response.get_json()["detail"]


def test_create_refuses_code_over_one_mib(admin_api):
    content = F.FILTER + "#" * (1024 * 1024)
    response = admin_api.post("/create", F.form(id="big", content=content))
    assert response.status_code == 413
    assert "1 MiB" in response.get_json()["detail"]


@pytest.mark.parametrize("app_config", [{"SLUICE_MAX_REQUEST_MB": 1}])
def test_a_body_over_the_request_limit_is_413(admin_api, app_config):
    response = admin_api.post("/create", F.form(id="huge", content="#" * (2 * 1024 * 1024)))
    assert response.status_code == 413
    assert response.is_json and response.get_json()["detail"]


def _load_url_body(size: int) -> bytes:
    """A valid `/load/url` body of exactly ``size`` bytes (padded with JSON whitespace)."""
    body = b'{"url": "ftp://example.com/x.py"}'
    return body + b" " * (size - len(body))


def _chunked_post(api, path, body: bytes):
    # No Content-Length: what a chunked request looks like to the app behind a server that decodes chunks.
    return api.client.post(
        api.prefix + path,
        input_stream=io.BytesIO(body),
        headers=api.headers({"Content-Type": "application/json", "Transfer-Encoding": "chunked"}),
        environ_overrides={"wsgi.input_terminated": True},
    )


@pytest.mark.parametrize("app_config", [{"SLUICE_MAX_REQUEST_MB": 1}])
@pytest.mark.parametrize("over", [1, 1024 * 1024])
def test_a_chunked_body_over_the_request_limit_is_413(admin_api, app_config, over):
    response = _chunked_post(admin_api, "/load/url", _load_url_body(MIB + over))
    assert response.status_code == 413
    assert response.get_json() == {
        "detail": "The request body is larger than 1 MiB, the most Sluice accepts."
    }


@pytest.mark.parametrize("app_config", [{"SLUICE_MAX_REQUEST_MB": 1}])
def test_a_chunked_body_at_the_request_limit_is_read_whole(admin_api, app_config):
    response = _chunked_post(admin_api, "/load/url", _load_url_body(MIB))
    assert response.status_code == 400
    assert "Only http and https" in response.get_json()["detail"]


@pytest.mark.parametrize("app_config", [{"SLUICE_MAX_REQUEST_MB": 1}])
def test_a_chunked_body_over_the_limit_is_413_from_a_real_server(app, admin_key, app_config):
    import requests
    from werkzeug.serving import make_server

    server = make_server("127.0.0.1", 0, app, threaded=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    body = _load_url_body(MIB + 10)
    try:
        with requests.Session() as session:
            session.trust_env = False
            response = session.post(
                f"http://127.0.0.1:{server.server_port}/api/v1/functions/load/url",
                data=(body[i : i + 65536] for i in range(0, len(body), 65536)),  # a generator: sent chunked
                headers={"Authorization": f"Bearer {admin_key}", "Content-Type": "application/json"},
                timeout=30,
            )
    finally:
        server.shutdown()
        server.server_close()
    assert response.request.headers.get("Transfer-Encoding") == "chunked"
    assert response.status_code == 413
    assert "larger than 1 MiB" in response.json()["detail"]


@pytest.mark.parametrize(
    "data, loc",
    [
        ("{not json", ["body", 1]),
        ("", ["body"]),
        ("[]", ["body"]),
        ('{"id": "x", "name": "X"}', ["body", "content"]),
        ('{"id": 5, "name": "X", "content": "c"}', ["body", "id"]),
        ('{"id": "x", "name": "X", "content": "c", "meta": []}', ["body", "meta"]),
    ],
)
def test_create_with_a_body_of_the_wrong_shape_is_422(admin_api, data, loc):
    response = admin_api.client.post(
        admin_api.prefix + "/create",
        data=data,
        headers=admin_api.headers({"Content-Type": "application/json"}),
    )
    assert response.status_code == 422
    detail = response.get_json()["detail"]
    assert isinstance(detail, list) and detail
    assert all(set(item) >= {"loc", "msg", "type"} for item in detail)
    assert loc in [item["loc"] for item in detail]


@pytest.mark.parametrize("path", ["/create", "/id/sample_filter/update"])
@pytest.mark.parametrize("description", [5, ["a"], {"text": "a"}, True])
def test_a_description_that_is_not_a_string_is_422(admin_api, sample, path, description):
    response = admin_api.post(path, F.form(id="described", meta={"description": description}))
    assert response.status_code == 422
    detail = response.get_json()["detail"]
    assert [item["loc"] for item in detail] == [["body", "meta", "description"]]
    assert detail[0]["type"] == "string_type" and detail[0]["msg"]


def test_meta_keeps_a_description_and_other_keys_verbatim(admin_api):
    meta = {"tags": ["a", {"b": None}], "description": "Shouts", "manifest": "ignored", "n": 1.5}
    admin_api.create("described", meta=meta)
    stored = admin_api.get("/id/described").get_json()["meta"]
    assert stored["description"] == "Shouts"
    assert stored["tags"] == ["a", {"b": None}] and stored["n"] == 1.5
    assert stored["manifest"]["title"] == "Sample Filter"
    absent = admin_api.post("/id/described/update", F.form(meta={"k": 1})).get_json()["meta"]
    assert absent["description"] is None and absent["k"] == 1 and "tags" not in absent


def test_create_accepts_an_open_webui_export_item_unchanged(admin_api, sample):
    exported = admin_api.get("/export?include_valves=true").get_json()[0]
    exported["id"] = "copy_of_sample"
    response = admin_api.post("/create", exported)
    assert response.status_code == 200, response.get_json()
    assert response.get_json()["is_active"] is False


# --- get ----------------------------------------------------------------------------------------------------------


def test_get_answers_a_function_model(admin_api, sample):
    response = admin_api.get("/id/sample_filter")
    assert response.status_code == 200
    body = response.get_json()
    assert list(body) == F.FUNCTION_MODEL_KEYS
    assert body["content"] == F.FILTER
    assert admin_api.get("/id/SAMPLE_FILTER").get_json()["id"] == "sample_filter"


def test_get_unknown_is_404(admin_api):
    response = admin_api.get("/id/nope")
    assert response.status_code == 404
    assert response.get_json() == {"detail": NOT_FOUND}


# --- update -------------------------------------------------------------------------------------------------------


def test_update_answers_a_function_model_and_ignores_the_body_id(admin_api, sample):
    changed = F.FILTER.replace("Adds a prefix", "Adds a suffix")
    response = admin_api.post(
        "/id/sample_filter/update",
        {"id": "something_else", "name": "Renamed", "content": changed, "meta": {"description": "d", "x": 1}},
    )
    assert response.status_code == 200, response.get_json()
    body = response.get_json()
    assert list(body) == F.FUNCTION_MODEL_KEYS
    assert body["id"] == "sample_filter" and body["name"] == "Renamed"
    assert body["meta"]["manifest"]["description"] == "Adds a suffix to every message."
    assert body["meta"]["x"] == 1 and body["meta"]["description"] == "d"
    assert body["version_id"] != sample["version_id"]
    assert admin_api.get("/id/something_else").status_code == 404


def test_update_of_unknown_function_is_404(admin_api):
    response = admin_api.post("/id/nope/update", F.form())
    assert response.status_code == 404
    assert response.get_json() == {"detail": NOT_FOUND}


def test_a_failed_update_changes_nothing(app, admin_api, sample):
    admin_api.post("/id/sample_filter/toggle")
    assert admin_api.post("/id/sample_filter/valves/update", {"priority": 3}).status_code == 200
    before = admin_api.get("/id/sample_filter").get_json()
    response = admin_api.post("/id/sample_filter/update", F.form(content=F.SYNTAX_ERROR, name="Other"))
    assert response.status_code == 400
    assert response.get_json()["error"]["type"] == "SyntaxError"
    after = admin_api.get("/id/sample_filter").get_json()
    assert after == before
    assert after["is_active"] is True
    assert admin_api.get("/id/sample_filter/valves").get_json() == {"priority": 3}
    assert len(admin_api.get("/id/sample_filter/history").get_json()) == 1


def test_update_recomputes_and_removes_toggle(admin_api):
    admin_api.create("switch", F.TOGGLE_FILTER)
    response = admin_api.post("/id/switch/update", F.form(content=F.FILTER, meta={"toggle": True}))
    assert response.status_code == 200
    assert "toggle" not in response.get_json()["meta"]
    response = admin_api.post("/id/switch/update", F.form(content=F.TOGGLE_FILTER))
    assert response.get_json()["meta"]["toggle"] is True


def test_the_codes_icon_follows_every_save_of_its_code_and_stays_off_the_wire(app, admin_api):
    """Create, update, restore and sync all keep the icon the code names (one place stores a load's result)."""

    def icon():
        return F.stored_function(app, "icon_filter").icon

    created = admin_api.create("icon_filter", F.ICON_FILTER)
    assert icon() == F.SVG_ICON
    assert list(created) == RESPONSE_KEYS and "icon" not in created["meta"]

    update = F.form(id="icon_filter", name="Icon Filter", content=F.TOGGLE_FILTER)
    assert admin_api.post("/id/icon_filter/update", update).status_code == 200
    assert icon() is None  # the new code names none

    answer = admin_api.post("/id/icon_filter/update/version", {"version_id": created["version_id"]})
    assert answer.status_code == 200, answer.get_json()
    assert icon() == F.SVG_ICON

    synced = F.ICON_FILTER.replace(F.SVG_ICON, "https://example.com/synced.png")
    item = F.form(id="icon_filter", name="Icon Filter", content=synced)
    answer = admin_api.post("/sync", {"functions": [item]})
    assert answer.status_code == 200, answer.get_json()
    assert icon() == "https://example.com/synced.png"

    # Open WebUI's wire shapes (SPEC §2) are unchanged: the icon is the console's, no answer carries it.
    model = admin_api.get("/id/icon_filter").get_json()
    assert list(model) == F.FUNCTION_MODEL_KEYS
    assert "icon" not in model["meta"] and "icon" not in model["meta"]["manifest"]
    assert [list(item) for item in admin_api.get("/export").get_json()] == [F.FUNCTION_MODEL_KEYS]
    assert [list(item) for item in answer.get_json()] == [WITH_VALVES_KEYS]
    assert [list(item) for item in admin_api.get("/").get_json()] == [RESPONSE_KEYS]


def test_update_refuses_code_that_rejects_the_stored_valves(admin_api, sample):
    admin_api.post("/id/sample_filter/valves/update", {"priority": 7, "prefix": "!"})
    response = admin_api.post("/id/sample_filter/update", F.form(content=F.FILTER_STRICT_PRIORITY))
    assert response.status_code == 400
    detail = response.get_json()["detail"]
    assert detail.startswith("Current Valves are incompatible with this code: priority: ")
    assert admin_api.get("/id/sample_filter").get_json()["content"] == F.FILTER


def test_update_can_drop_only_the_incompatible_valves(admin_api, sample):
    admin_api.post("/id/sample_filter/valves/update", {"priority": 7, "prefix": "!"})
    response = admin_api.post(
        "/id/sample_filter/update?reset_incompatible_valves=true", F.form(content=F.FILTER_STRICT_PRIORITY)
    )
    assert response.status_code == 200, response.get_json()
    assert admin_api.get("/id/sample_filter/valves").get_json() == {"prefix": "!"}


def test_update_keeps_compatible_valves(admin_api, sample):
    admin_api.post("/id/sample_filter/valves/update", {"priority": 7})
    response = admin_api.post("/id/sample_filter/update", F.form(content=F.FILTER + "\n# edited\n"))
    assert response.status_code == 200
    assert admin_api.get("/id/sample_filter/valves").get_json() == {"priority": 7}


# --- toggles ------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("path, field", [("/toggle", "is_active"), ("/toggle/global", "is_global")])
def test_toggles_flip_and_answer_a_function_model(admin_api, sample, path, field):
    first = admin_api.post("/id/sample_filter" + path)
    assert first.status_code == 200
    assert list(first.get_json()) == F.FUNCTION_MODEL_KEYS
    assert first.get_json()[field] is True
    assert admin_api.post("/id/sample_filter" + path).get_json()[field] is False
    # Toggles make no versions.
    assert admin_api.get("/id/sample_filter").get_json()["version_id"] == sample["version_id"]


@pytest.mark.parametrize("path", ["/toggle", "/toggle/global"])
def test_toggle_of_unknown_function_is_404(admin_api, path):
    response = admin_api.post("/id/nope" + path)
    assert response.status_code == 404
    assert response.get_json() == {"detail": NOT_FOUND}


@pytest.mark.parametrize("path, field", [("/toggle", "is_active"), ("/toggle/global", "is_global")])
def test_concurrent_toggles_never_lose_a_flip(app, admin_key, sample, path, field):
    threads, per_thread = 10, 3  # 30 flips in all: an even number, so the flag ends where it started
    errors = []
    seen = []

    def worker():
        client = app.test_client()
        for _ in range(per_thread):
            response = client.post(
                f"/api/v1/functions/id/sample_filter{path}", headers={"Authorization": f"Bearer {admin_key}"}
            )
            if response.status_code != 200:
                errors.append(response.get_json())
            else:
                seen.append(response.get_json()[field])

    pool = [threading.Thread(target=worker) for _ in range(threads)]
    for thread in pool:
        thread.start()
    for thread in pool:
        thread.join()
    assert not errors
    assert getattr(F.stored_function(app, "sample_filter"), field) is False
    # Each answer shows its own flip: half the answers saw True, half False.
    assert seen.count(True) == seen.count(False) == threads * per_thread // 2
    # And one more flip makes it True.
    client = app.test_client()
    client.post(f"/api/v1/functions/id/sample_filter{path}", headers={"Authorization": f"Bearer {admin_key}"})
    assert getattr(F.stored_function(app, "sample_filter"), field) is True


# --- delete -------------------------------------------------------------------------------------------------------


def test_delete_removes_the_function_and_its_user_valves(app, admin_api, user_api, sample):
    admin_api.post("/id/sample_filter/toggle")
    assert user_api.post("/id/sample_filter/valves/user/update", {"max_turns": 9}).status_code == 200
    response = admin_api.delete("/id/sample_filter/delete")
    assert response.status_code == 200 and response.get_json() is True
    assert admin_api.get("/id/sample_filter").status_code == 404
    from sqlalchemy import func, select

    from extensions import db
    from models import FunctionVersion, UserValves

    with app.app_context():
        assert db.session.scalar(select(func.count()).select_from(UserValves)) == 0
        assert db.session.scalar(select(func.count()).select_from(FunctionVersion)) == 0
    again = admin_api.delete("/id/sample_filter/delete")
    assert again.status_code == 404
    assert again.get_json() == {"detail": NOT_FOUND}


def test_deleting_a_user_deletes_their_user_valves(app, admin_api, user_api, user_id, admin_id, sample):
    admin_api.post("/id/sample_filter/toggle")
    user_api.post("/id/sample_filter/valves/user/update", {"max_turns": 9})
    from sqlalchemy import func, select

    from extensions import db
    from models import User, UserValves
    from services import accounts

    with app.app_context():
        accounts.delete_user(db.session.get(User, admin_id), user_id)
        assert db.session.scalar(select(func.count()).select_from(UserValves)) == 0


# --- lists and export ---------------------------------------------------------------------------------------------


def test_list_for_admins_has_everything_and_for_users_only_active(admin_api, user_api):
    admin_api.create("one")
    admin_api.create("two")
    admin_api.post("/id/two/toggle")
    admin_list = admin_api.get("/").get_json()
    assert sorted(item["id"] for item in admin_list) == ["one", "two"]
    assert all(list(item) == RESPONSE_KEYS for item in admin_list)
    user_list = user_api.get("/").get_json()
    assert [item["id"] for item in user_list] == ["two"]
    assert list(user_list[0]) == RESPONSE_KEYS


def test_list_with_users_is_newest_first(admin_api, admin_id, app):
    admin_api.create("older")
    admin_api.create("newer")
    from extensions import db
    from models import Function

    with app.app_context():
        db.session.get(Function, "older").updated_at = 1_700_000_000
        db.session.get(Function, "newer").updated_at = 1_700_000_100
        db.session.commit()
    body = admin_api.get("/list").get_json()
    assert [item["id"] for item in body] == ["newer", "older"]
    assert list(body[0]) == USER_RESPONSE_KEYS
    assert body[0]["user"] == {
        "id": admin_id,
        "name": "Ada Admin",
        "role": "admin",
        "email": "admin@example.com",
    }


def test_list_shows_null_user_when_the_creator_is_gone(app, admin_api, user_id, admin_id):
    from extensions import db
    from models import User
    from tests.factories import make_function

    make_function(app, user_id, "orphan")
    from services import accounts

    with app.app_context():
        accounts.change_role(db.session.get(User, admin_id), user_id, "user")
        accounts.delete_user(db.session.get(User, admin_id), user_id)
    body = admin_api.get("/list").get_json()
    assert body[0]["id"] == "orphan" and body[0]["user"] is None


def test_export_with_and_without_valves(admin_api, sample):
    admin_api.post("/id/sample_filter/valves/update", {"priority": 2})
    plain = admin_api.get("/export").get_json()
    assert [list(item) for item in plain] == [F.FUNCTION_MODEL_KEYS]
    full = admin_api.get("/export?include_valves=true").get_json()
    assert [list(item) for item in full] == [WITH_VALVES_KEYS]
    assert full[0]["valves"] == {"priority": 2}
    assert admin_api.get("/export?include_valves=false").get_json() == plain
    assert admin_api.get("/export?include_valves=maybe").status_code == 422


def test_both_prefixes_see_the_same_functions(client, admin_key, sample):
    legacy = Api(client, admin_key, "/api/functions")
    current = Api(client, admin_key, "/api/v1/functions")
    assert legacy.get("/").get_json() == current.get("/").get_json()
    legacy.post("/id/sample_filter/toggle")
    assert current.get("/id/sample_filter").get_json()["is_active"] is True


def test_an_unexpected_failure_is_a_json_500(app, admin_api, sample, monkeypatch):
    from services import function_reads

    def broken(*args, **kwargs):
        raise RuntimeError("database went away")

    monkeypatch.setattr(function_reads, "function_model_as_key", broken)  # the read an API key makes
    app.config["PROPAGATE_EXCEPTIONS"] = False
    response = admin_api.get("/id/sample_filter")
    assert response.status_code == 500
    assert response.is_json
    assert "Traceback" not in response.get_data(as_text=True)
    assert "database went away" not in response.get_data(as_text=True)


def test_an_update_without_meta_keeps_the_stored_meta(admin_api):
    admin_api.create("kept", meta={"description": "Stays", "tags": ["a"]})
    response = admin_api.post("/id/kept/update", {"name": "Renamed", "content": F.FILTER})
    assert response.status_code == 200, response.get_json()
    meta = response.get_json()["meta"]
    assert (meta["description"], meta["tags"]) == ("Stays", ["a"])
    assert meta["manifest"]["title"] == "Sample Filter"  # still worked out from the code
    # An explicit meta replaces it, as before.
    replaced = admin_api.post(
        "/id/kept/update", F.form(name="Renamed", meta={"description": "New"})
    ).get_json()
    assert replaced["meta"]["description"] == "New" and "tags" not in replaced["meta"]


@pytest.mark.parametrize("body_id", [5, None, ["x"], "another_function"])
def test_the_update_bodys_id_is_ignored_whatever_it_holds(admin_api, sample, body_id):
    response = admin_api.post("/id/sample_filter/update", {**F.form(name="Renamed"), "id": body_id})
    assert response.status_code == 200, response.get_json()
    assert response.get_json()["id"] == "sample_filter"


def test_a_valves_update_moves_updated_at(admin_api, sample):
    import time

    before = admin_api.get("/id/sample_filter").get_json()["updated_at"]
    time.sleep(1.05)  # updated_at counts whole seconds
    assert admin_api.post("/id/sample_filter/valves/update", {"priority": 2}).status_code == 200
    assert admin_api.get("/id/sample_filter").get_json()["updated_at"] > before
