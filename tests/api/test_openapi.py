"""The OpenAPI document: valid OpenAPI, complete, and what the routes really answer fits what it declares."""

from __future__ import annotations

import jsonschema
import pytest

from tests import factories as F
from tests.api.conftest import PREFIXES
from web.openapi import openapi_path


@pytest.fixture
def document(client):
    response = client.get("/api/openapi.json")
    assert response.status_code == 200 and response.is_json
    return response.get_json()


def test_the_document_is_valid_openapi(document):
    from openapi_spec_validator import validate

    validate(document)
    assert document["openapi"].startswith("3.")


def test_the_document_lists_every_route_under_both_prefixes(document):
    from blueprints.api import api

    for route in api.routes:
        path = openapi_path(route.rule)
        for prefix in PREFIXES:
            operation = document["paths"][prefix + path][route.method.lower()]
            assert operation["x-sluice-auth"] == route.auth
            assert "401" in operation["responses"]
            if route.body is not None:
                assert {"413", "422"} <= set(operation["responses"])


def test_the_document_needs_no_credentials(client):
    assert client.get("/api/openapi.json").status_code == 200


class Checker:
    """Validates real answers against the schema the document declares for that operation and status."""

    def __init__(self, document, api):
        self.document = document
        self.api = api
        self.checked: set[tuple[str, str]] = set()

    def __call__(self, method, template, response):
        operation = self.document["paths"][self.api.prefix + template][method.lower()]
        status = str(response.status_code)
        assert status in operation["responses"], (method, template, status, response.get_json())
        schema = operation["responses"][status]["content"]["application/json"]["schema"]
        rooted = {**schema, "components": self.document["components"]}
        jsonschema.Draft202012Validator(rooted).validate(response.get_json())
        self.checked.add((method, template))
        return response


def test_real_answers_fit_the_declared_schemas(app, client, admin_key, document, monkeypatch):
    from blueprints.api import api as registry
    from tests.api.conftest import Api

    admin = Api(client, admin_key)
    check = Checker(document, admin)
    check("GET", "/", admin.get("/"))
    check("POST", "/create", admin.post("/create", F.form()))
    check("POST", "/create", admin.post("/create", F.form(id="toggler", content=F.TOGGLE_FILTER)))
    check("POST", "/create", admin.post("/create", F.form(id="broken", content=F.SYNTAX_ERROR)))
    check("POST", "/create", admin.post("/create", {"id": 1}))
    check("GET", "/", admin.get("/"))
    check("GET", "/list", admin.get("/list"))
    check("GET", "/export", admin.get("/export"))
    check("GET", "/export", admin.get("/export?include_valves=true"))
    check("GET", "/id/{id}", admin.get("/id/sample_filter"))
    check("GET", "/id/{id}", admin.get("/id/nope"))
    check("POST", "/id/{id}/update", admin.post("/id/sample_filter/update", F.form(name="Renamed")))
    check("POST", "/id/{id}/toggle", admin.post("/id/sample_filter/toggle"))
    check("POST", "/id/{id}/toggle/global", admin.post("/id/sample_filter/toggle/global"))
    check("GET", "/id/{id}/valves", admin.get("/id/sample_filter/valves"))
    check("GET", "/id/{id}/valves/spec", admin.get("/id/sample_filter/valves/spec"))
    check("POST", "/id/{id}/valves/update", admin.post("/id/sample_filter/valves/update", {"priority": 1}))
    check("POST", "/id/{id}/valves/update", admin.post("/id/sample_filter/valves/update", {"priority": "x"}))
    check(
        "POST",
        "/id/{id}/update",
        admin.post("/id/sample_filter/update", F.form(content=F.FILTER_STRICT_PRIORITY)),
    )
    check("GET", "/id/{id}/valves/user", admin.get("/id/sample_filter/valves/user"))
    check("GET", "/id/{id}/valves/user/spec", admin.get("/id/sample_filter/valves/user/spec"))
    check(
        "POST",
        "/id/{id}/valves/user/update",
        admin.post("/id/sample_filter/valves/user/update", {"max_turns": 3}),
    )
    versions = check("GET", "/id/{id}/history", admin.get("/id/sample_filter/history")).get_json()
    first, second = versions[-1]["id"], versions[0]["id"]
    check("GET", "/id/{id}/history/{version_id}", admin.get(f"/id/sample_filter/history/{first}"))
    check(
        "GET",
        "/id/{id}/history/diff",
        admin.get(f"/id/sample_filter/history/diff?from_id={first}&to_id={second}"),
    )
    check(
        "POST",
        "/id/{id}/update/version",
        admin.post("/id/sample_filter/update/version", {"version_id": first}),
    )
    check("DELETE", "/id/{id}/history/{version_id}", admin.delete(f"/id/sample_filter/history/{second}"))
    check("GET", "/id/{id}/requirements", admin.get("/id/sample_filter/requirements"))
    check("POST", "/id/{id}/requirements/install", admin.post("/id/sample_filter/requirements/install"))
    check("POST", "/requirements/install", admin.post("/requirements/install", {"content": F.PIPE}))
    check(
        "GET",
        "/requirements/jobs/{job_id}",
        admin.get("/requirements/jobs/20260101T000000-abcdef12"),
    )
    check("POST", "/load/url", admin.post("/load/url", {"url": "http://127.0.0.1/x.py"}))
    from services import url_loader

    monkeypatch.setattr(url_loader, "fetch", lambda url, **kw: F.PIPE)
    check("POST", "/load/url", admin.post("/load/url", {"url": "https://github.com/o/r/blob/main/p.py"}))
    exported = admin.get("/export?include_valves=true").get_json()
    check("POST", "/sync", admin.post("/sync?dry_run=true", {"functions": exported}))
    check("POST", "/sync", admin.post("/sync", {"functions": exported}))
    check("POST", "/sync", admin.post("/sync", {"functions": [{"id": "x", "name": "X", "content": "nope("}]}))
    check("POST", "/id/{id}/run", admin.post("/id/sample_filter/run", {"method": "inlet", "body": {"a": 1}}))
    check("POST", "/id/{id}/run", admin.post("/id/sample_filter/run", {"method": "pipe", "body": {}}))
    check("POST", "/id/{id}/run", admin.post("/id/nope/run", {"method": "inlet", "body": {}}))
    check("POST", "/id/{id}/run", admin.post("/id/x/run", {"method": "pipe", "content": F.PIPE}))
    check("POST", "/id/{id}/run", admin.post("/id/x/run", {"method": "inlet", "content": F.RAISES_AT_IMPORT}))
    check("DELETE", "/id/{id}/delete", admin.delete("/id/sample_filter/delete"))
    check("DELETE", "/id/{id}/delete", admin.delete("/id/sample_filter/delete"))
    check("GET", "/", Api(client, None).get("/"))

    declared = {(route.method, openapi_path(route.rule)) for route in registry.routes}
    assert check.checked == declared


def test_a_wrong_answer_would_be_caught(document, admin_api, sample):
    """The conformance check above can fail: a FunctionModel without `content` does not fit."""
    response = admin_api.get("/id/sample_filter")
    body = response.get_json()
    del body["content"]
    schema = document["paths"]["/api/v1/functions/id/{id}"]["get"]["responses"]["200"]["content"][
        "application/json"
    ]["schema"]
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.Draft202012Validator({**schema, "components": document["components"]}).validate(body)


def _strings(node):
    """Every string schema in a part of the document."""
    if isinstance(node, dict):
        if node.get("type") == "string":
            yield node
        for value in node.values():
            yield from _strings(value)
    elif isinstance(node, list):
        for value in node:
            yield from _strings(value)


def test_the_document_declares_the_rules_the_server_enforces(document, admin_api):
    """So that clients and fuzzers know them: the id pattern, no NUL anywhere, a non-empty `url`."""
    import re

    from models import ID_PATTERN

    for path, operations in document["paths"].items():
        for operation in operations.values():
            for parameter in operation.get("parameters", []):
                if parameter["name"] == "id":
                    assert parameter["schema"]["pattern"] == f"^{ID_PATTERN.pattern}$", path
                if parameter["name"] == "version_id":
                    pattern = parameter["schema"]["pattern"]
                    assert not re.search(pattern, "diff") and re.search(pattern, "diffs")
    operations = [op for ops in document["paths"].values() for op in ops.values()]
    requests = [[op.get("parameters"), op.get("requestBody")] for op in operations]
    for schema in _strings([document["components"], requests]):
        if "pattern" in schema:
            assert not re.search(schema["pattern"], "a\x00b"), schema
        else:
            assert {"enum", "const"} & schema.keys(), schema
    create = document["components"]["schemas"]["FunctionCreateForm"]["properties"]["id"]
    for bad_id in ("has-dash", "x" * 65, ""):
        assert not re.search(create["pattern"], bad_id)
        assert admin_api.post("/create", F.form(id=bad_id)).status_code == 400
    url = document["components"]["schemas"]["LoadUrlForm"]["properties"]["url"]
    for blank in ("", "   "):
        assert not re.search(url["pattern"], blank)
        assert admin_api.post("/load/url", {"url": blank}).status_code == 400


def test_the_document_is_also_at_the_conventional_address(client):
    root = client.get("/openapi.json")
    assert root.status_code == 200
    assert root.get_json() == client.get("/api/openapi.json").get_json()


def test_the_document_can_be_browsed_as_a_page(client):
    page = client.get("/api/docs")
    assert page.status_code == 200
    assert b"GET /api/v1/functions/id/{id}" in page.data
    assert b"/openapi.json" in page.data
