"""`GET /api/v1/audit` (and /api/audit): admins only, filtered by function, user, action and time, paginated."""

from __future__ import annotations

import jsonschema
import pytest

from tests.api.conftest import INVALID, NO_PERMISSION, NOT_AUTHENTICATED
from tests.conftest import bearer

AUDIT_PREFIXES = ("/api/audit", "/api/v1/audit")


def add_entries(app, rows: list[dict]) -> None:
    """Store entries directly, each with its own time, so that filters can be checked to the second."""
    from extensions import db
    from models import AuditEntry

    with app.app_context():
        for row in rows:
            db.session.add(
                AuditEntry(
                    created_at=row.get("at", 1_000),
                    actor_id=row.get("actor_id"),
                    actor_email=row.get("email"),
                    actor_name=row.get("name"),
                    face=row.get("face", "console"),
                    action=row["action"],
                    target_kind=row.get("kind", "function"),
                    target_id=row.get("target"),
                    details=row.get("details", {}),
                )
            )
        db.session.commit()


@pytest.fixture
def audit_api(client, admin_key):
    def get(query: str = "", prefix: str = "/api/v1/audit"):
        response = client.get(prefix + query, headers=bearer(admin_key))
        assert response.status_code == 200, response.get_json()
        return response.get_json()

    return get


@pytest.fixture
def history(app, admin_key):
    """Six entries from two accounts over four days, besides those the fixtures' own set-up recorded."""
    add_entries(
        app,
        [
            {
                "at": 86_400 * 1,
                "action": "function.created",
                "target": "alpha",
                "actor_id": "a1",
                "email": "a@x.io",
            },
            {
                "at": 86_400 * 2,
                "action": "function.activated",
                "target": "alpha",
                "actor_id": "a1",
                "email": "a@x.io",
            },
            {
                "at": 86_400 * 2 + 5,
                "action": "function.created",
                "target": "beta",
                "actor_id": "b2",
                "email": "b@x.io",
            },
            {"at": 86_400 * 3, "action": "function.valves_changed", "target": "beta", "actor_id": "b2"},
            {"at": 86_400 * 4, "action": "user.sign_in_failed", "kind": "user", "email": "stranger@x.io"},
            {
                "at": 86_400 * 4 + 1,
                "action": "function.deleted",
                "target": "alpha",
                "actor_id": "b2",
                "face": "cli",
            },
        ],
    )


def ids_of(answer) -> list[tuple[str, str | None]]:
    return [(e["action"], e["target_id"]) for e in answer["entries"]]


@pytest.mark.parametrize("prefix", AUDIT_PREFIXES)
def test_only_admins_may_read_the_trail(client, admin_key, user_key, pending_key, prefix):
    assert client.get(prefix).get_json() == {"detail": NOT_AUTHENTICATED}
    assert client.get(prefix).status_code == 401
    for key in (user_key, pending_key):
        refused = client.get(prefix, headers=bearer(key))
        assert (refused.status_code, refused.get_json()) == (401, {"detail": NO_PERMISSION})
    assert client.get(prefix, headers=bearer("sk-" + "x" * 43)).get_json() == {"detail": INVALID}
    assert client.get(prefix, headers=bearer(admin_key)).status_code == 200


def test_entries_come_newest_first_with_who_when_what_and_face(app, audit_api, history):
    answer = audit_api("?per_page=5")
    # Newest by time: the admin's account and key, made today by the fixtures, come before the six back-dated ones.
    assert [action for action, _target in ids_of(answer)[:2]] == ["api_key.created", "user.created"]
    assert ids_of(answer)[2:] == [
        ("function.deleted", "alpha"),
        ("user.sign_in_failed", None),
        ("function.valves_changed", "beta"),
    ]
    assert answer["entries"][2] == {
        "id": answer["entries"][2]["id"],
        "created_at": 86_400 * 4 + 1,
        "user": {"id": "b2", "email": None, "name": None},
        "face": "cli",
        "action": "function.deleted",
        "target_kind": "function",
        "target_id": "alpha",
        "details": {},
    }
    # Besides the six: the admin's account and key, which the fixtures made outside any request.
    assert answer["total"] == 6 + 2 and (answer["page"], answer["per_page"]) == (1, 5)


def test_filters_by_function_user_action_and_time(app, audit_api, history):
    assert ids_of(audit_api("?function=alpha")) == [
        ("function.deleted", "alpha"),
        ("function.activated", "alpha"),
        ("function.created", "alpha"),
    ]
    assert ids_of(audit_api("?function=ALPHA&action=function.created")) == [("function.created", "alpha")]
    assert ids_of(audit_api("?user=b2")) == [
        ("function.deleted", "alpha"),
        ("function.valves_changed", "beta"),
        ("function.created", "beta"),
    ]
    # An address finds what was done under it, failed sign-ins included.
    assert ids_of(audit_api("?user=Stranger@x.io")) == [("user.sign_in_failed", None)]
    assert ids_of(audit_api(f"?since={86_400 * 2}&until={86_400 * 2 + 5}")) == [
        ("function.created", "beta"),
        ("function.activated", "alpha"),
    ]
    assert audit_api("?function=gamma") == {"entries": [], "total": 0, "page": 1, "per_page": 50}


def test_pages_split_the_matching_entries(audit_api, history):
    pages = [audit_api(f"?function=alpha&per_page=2&page={n}") for n in (1, 2, 3)]
    assert [ids_of(page) for page in pages] == [
        [("function.deleted", "alpha"), ("function.activated", "alpha")],
        [("function.created", "alpha")],
        [],
    ]
    assert {page["total"] for page in pages} == {3}
    assert audit_api("?function=alpha&per_page=2", prefix="/api/audit") == pages[0]


@pytest.mark.parametrize(
    "query", ["?action=function.exploded", "?per_page=0", "?per_page=201", "?page=0", "?since=-1", "?until=x"]
)
def test_a_query_that_does_not_fit_is_answered_422(client, admin_key, query):
    response = client.get("/api/v1/audit" + query, headers=bearer(admin_key))
    assert response.status_code == 422
    assert response.get_json()["detail"][0]["loc"][0] == "query"


def test_the_openapi_document_describes_the_route_under_both_prefixes(client, admin_key, history):
    document = client.get("/api/openapi.json").get_json()
    for prefix in AUDIT_PREFIXES:
        operation = document["paths"][prefix]["get"]
        assert operation["x-sluice-auth"] == "admin"
        assert {"function", "user", "action", "since", "until", "page", "per_page"} <= {
            p["name"] for p in operation["parameters"]
        }
        assert {"200", "401", "422"} <= set(operation["responses"])
    schema = document["paths"]["/api/v1/audit"]["get"]["responses"]["200"]["content"]["application/json"][
        "schema"
    ]
    answer = client.get("/api/v1/audit", headers=bearer(admin_key)).get_json()
    jsonschema.Draft202012Validator({**schema, "components": document["components"]}).validate(answer)
    refused = client.get("/api/v1/audit?page=0", headers=bearer(admin_key)).get_json()
    invalid = document["paths"]["/api/v1/audit"]["get"]["responses"]["422"]["content"]["application/json"]
    jsonschema.Draft202012Validator({**invalid["schema"], "components": document["components"]}).validate(
        refused
    )
