"""The calls Open WebUI's own admin pages make (src/lib/apis/functions), in their order, with their bodies.

Open WebUI's client sends `Accept` and `Content-Type: application/json` with a bearer token, throws the JSON body of
any non-2xx answer and shows its `detail`; every answer here must therefore be JSON, and every error a `detail`
string.
"""

from __future__ import annotations

from tests import factories as F
from tests.api.conftest import RESPONSE_KEYS, USER_RESPONSE_KEYS, WITH_VALVES_KEYS
from tests.factories import FUNCTION_MODEL_KEYS


class OpenWebUIClient:
    """What `src/lib/apis/functions/index.ts` does, over Flask's test client."""

    def __init__(self, client, token):
        self.client = client
        self.headers = {
            "Accept": "application/json",
            "Content-Type": "application/json",
            "authorization": f"Bearer {token}",
        }
        self.base = "/api/v1/functions"

    def _answer(self, response):
        assert response.mimetype == "application/json", response.data[:200]
        body = response.get_json()
        if not 200 <= response.status_code < 300:
            assert isinstance(body["detail"], str) and body["detail"]
            return ("error", response.status_code, body["detail"])
        return body

    def get(self, path):
        return self._answer(self.client.get(self.base + path, headers=self.headers))

    def post(self, path, body=None):
        return self._answer(self.client.post(self.base + path, json=body, headers=self.headers))

    def delete(self, path):
        return self._answer(self.client.delete(self.base + path, headers=self.headers))


def test_the_admin_pages_sequence(app, admin_key, user_key):
    owui = OpenWebUIClient(app.test_client(), admin_key)

    # Functions page: the list, then the store's list.
    assert owui.get("/list") == []
    assert owui.get("/") == []

    # Create page: {id, name, meta, content, commit_message} with the description the form has.
    created = owui.post(
        "/create",
        {
            "id": "prefixer",
            "name": "Prefixer",
            "meta": {"description": "Adds a prefix", "manifest": {}},
            "content": F.FILTER,
            "commit_message": "",
        },
    )
    assert list(created) == RESPONSE_KEYS
    assert created["meta"]["description"] == "Adds a prefix"
    assert created["meta"]["manifest"]["title"] == "Sample Filter"
    listed = owui.get("/list")
    assert [list(item) for item in listed] == [USER_RESPONSE_KEYS]
    assert listed[0]["user"]["name"] == "Ada Admin"
    assert [item["id"] for item in owui.get("/")] == ["prefixer"]

    # A second create with the same id: the page shows the detail in a toast.
    assert owui.post("/create", {"id": "prefixer", "name": "P", "meta": {}, "content": F.FILTER}) == (
        "error",
        400,
        "Uh-oh! This id is already registered. Please choose another id string.",
    )

    # Edit page: get, then update with the whole form (its `id` included).
    function = owui.get("/id/prefixer")
    assert list(function) == FUNCTION_MODEL_KEYS
    updated = owui.post(
        "/id/prefixer/update",
        {
            "id": function["id"],
            "name": "Prefixer 2",
            "meta": function["meta"],
            "content": function["content"].replace(">> ", "=> "),
        },
    )
    assert list(updated) == FUNCTION_MODEL_KEYS and updated["name"] == "Prefixer 2"
    failing = owui.post(
        "/id/prefixer/update", {"id": "prefixer", "name": "Prefixer 2", "meta": {}, "content": F.SYNTAX_ERROR}
    )
    assert failing[:2] == ("error", 400) and failing[2].startswith("SyntaxError")

    # Switches on the list.
    assert owui.post("/id/prefixer/toggle")["is_active"] is True
    assert owui.post("/id/prefixer/toggle/global")["is_global"] is True

    # Valves modal: spec, current values, save (the modal sends every field it shows).
    spec = owui.get("/id/prefixer/valves/spec")
    assert set(spec["properties"]) == {"priority", "prefix", "api_key"}
    assert owui.get("/id/prefixer/valves") == {}
    saved = owui.post("/id/prefixer/valves/update", {"priority": 2, "prefix": "> ", "api_key": None})
    assert saved == {"priority": 2, "prefix": "> "}
    assert owui.get("/id/prefixer/valves") == saved

    # A user's chat controls: user valves of an active function.
    user = OpenWebUIClient(app.test_client(), user_key)
    assert user.get("/id/prefixer/valves/user/spec")["title"] == "UserValves"
    assert user.get("/id/prefixer/valves/user") == {}
    assert user.post("/id/prefixer/valves/user/update", {"enabled": False, "max_turns": 4}) == {
        "enabled": False,
        "max_turns": 4,
    }
    assert user.get("/") and user.get("/list")[:2] == ("error", 401)

    # History panel.
    history = owui.get("/id/prefixer/history?page=1")
    assert len(history) == 2
    diff = owui.get(f"/id/prefixer/history/diff?from_id={history[1]['id']}&to_id={history[0]['id']}")
    assert "=> " in diff["content_diff"]
    restored = owui.post("/id/prefixer/update/version", {"version_id": history[1]["id"]})
    assert restored["version_id"] == history[1]["id"]

    # Export, delete, then the page's import: create per item, unwrapping community items.
    exported = owui.get("/export")
    assert [list(item) for item in exported] == [FUNCTION_MODEL_KEYS]
    assert [list(item) for item in owui.get("/export?include_valves=true")] == [WITH_VALVES_KEYS]
    assert owui.delete("/id/prefixer/delete") is True
    assert owui.get("/id/prefixer") == ("error", 404, "We could not find what you're looking for :/")
    for item in exported + [{"function": {**exported[0], "id": "from_community"}}]:
        if "function" in item:
            item = item["function"]
        imported = owui.post("/create", item)
        assert list(imported) == RESPONSE_KEYS
        assert imported["is_active"] is False
    assert sorted(item["id"] for item in owui.get("/")) == ["from_community", "prefixer"]
    assert owui.get("/id/prefixer")["content"] == exported[0]["content"]
