"""Errors under /api/ are JSON with a `detail`; a client's mistake is a 4xx, never a 500 (on either database)."""

from __future__ import annotations

import pytest

from tests import factories as F
from tests.api.conftest import NOT_FOUND

SERVER_ERROR = "Something went wrong on our side; the error has been logged."

# Every route with a function id in its path, with a body of the right shape where it takes one.
ID_ROUTES = [
    ("GET", "/id/{id}", None),
    ("POST", "/id/{id}/update", F.form()),
    ("POST", "/id/{id}/toggle", None),
    ("POST", "/id/{id}/toggle/global", None),
    ("DELETE", "/id/{id}/delete", None),
    ("GET", "/id/{id}/valves", None),
    ("GET", "/id/{id}/valves/spec", None),
    ("POST", "/id/{id}/valves/update", {}),
    ("GET", "/id/{id}/valves/user", None),
    ("GET", "/id/{id}/valves/user/spec", None),
    ("POST", "/id/{id}/valves/user/update", {}),
    ("GET", "/id/{id}/history", None),
    ("GET", "/id/{id}/history/v", None),
    ("GET", "/id/{id}/history/diff?from_id=a&to_id=b", None),
    ("POST", "/id/{id}/update/version", {"version_id": "v"}),
    ("DELETE", "/id/{id}/history/v", None),
    ("GET", "/id/{id}/requirements", None),
]


@pytest.mark.parametrize("method, path, body", ID_ROUTES)
@pytest.mark.parametrize("bad_id", ["%00", "sample%00filter", "sample_filter%00"])
def test_an_id_with_a_nul_character_is_not_found(admin_api, sample, method, path, body, bad_id):
    # PostgreSQL refuses NUL in a query; such an id cannot exist, so it is a 404 like any unknown id.
    response = admin_api.client.open(
        admin_api.prefix + path.format(id=bad_id), method=method, json=body, headers=admin_api.headers()
    )
    assert response.status_code == 404, response.get_json()
    assert response.get_json() == {"detail": NOT_FOUND}


@pytest.mark.parametrize(
    "method, path, body",
    [
        ("GET", "/id/sample_filter/history/a%00b", None),
        ("GET", "/id/sample_filter/history/diff?from_id=a%00b&to_id=b", None),
        ("DELETE", "/id/sample_filter/history/a%00b", None),
    ],
)
def test_a_version_id_with_a_nul_character_is_not_found(admin_api, sample, method, path, body):
    response = admin_api.client.open(
        admin_api.prefix + path, method=method, json=body, headers=admin_api.headers()
    )
    assert response.status_code == 404
    assert response.get_json() == {"detail": "Version not found"}


@pytest.mark.parametrize(
    "path, body, loc",
    [
        ("/create", F.form(id="nul", name="Sample\x00Filter"), ["body", "name"]),
        ("/create", F.form(id="nul", meta={"description": "a\x00"}), ["body", "meta", "description"]),
        ("/create", F.form(id="nul", meta={"tags": ["ok", "b\x00d"]}), ["body", "meta", "tags", 1]),
        ("/create", F.form(id="nul", meta={"k\x00": 1}), ["body", "meta"]),
        ("/create", F.form(id="nul", commit_message="\x00"), ["body", "commit_message"]),
        ("/id/sample_filter/update", F.form(name="N\x00"), ["body", "name"]),
        ("/id/sample_filter/valves/update", {"prefix": "\x00"}, ["body", "prefix"]),
        ("/id/sample_filter/valves/user/update", {"enabled": True, "x": {"y": "\x00"}}, ["body", "x", "y"]),
        ("/sync", {"functions": [F.form(id="nul", name="\x00")]}, ["body", "functions", 0, "name"]),
        ("/load/url", {"url": "https://example.com/\x00.py"}, ["body", "url"]),
        ("/id/sample_filter/update/version", {"version_id": "a\x00b"}, ["body", "version_id"]),
    ],
)
def test_text_with_a_nul_character_is_422(app, admin_api, sample, path, body, loc):
    before = admin_api.get("/export?include_valves=true").get_json()
    response = admin_api.post(path, body)
    assert response.status_code == 422, response.get_json()
    detail = response.get_json()["detail"]
    assert [item["loc"] for item in detail] == [loc]
    assert detail[0]["type"] == "string_nul" and "NUL" in detail[0]["msg"]
    assert admin_api.get("/export?include_valves=true").get_json() == before


def raw_post(api, path, text):
    return api.client.post(
        api.prefix + path, data=text.encode(), headers=api.headers({"Content-Type": "application/json"})
    )


@pytest.mark.parametrize(
    "path, text, loc",
    [
        (
            "/create",
            '{"id": "s", "name": "x\\ud800y", "content": "class Filter: pass", "meta": {}}',
            ["body", "name"],
        ),
        ("/create", '{"id": "s", "name": "x", "content": "# \\udfff", "meta": {}}', ["body", "content"]),
        (
            "/create",
            '{"id": "s", "name": "x", "content": "class Filter: pass", "meta": {"a\\ud800": 1}}',
            ["body", "meta"],
        ),
        (
            "/id/sample_filter/update",
            '{"name": "N", "content": "x", "commit_message": "\\ud800"}',
            ["body", "commit_message"],
        ),
        ("/id/sample_filter/valves/update", '{"prefix": "\\udc00"}', ["body", "prefix"]),
        ("/id/sample_filter/valves/user/update", '{"x": ["\\ud800"]}', ["body", "x", 0]),
        (
            "/sync",
            '{"functions": [{"id": "s", "name": "\\ud800", "content": "c", "meta": {}}]}',
            ["body", "functions", 0, "name"],
        ),
    ],
)
def test_text_with_a_lone_surrogate_is_422(admin_api, sample, path, text, loc):
    """`\\ud800` alone is valid JSON syntax but no character: it can be neither stored nor sent back as UTF-8."""
    before = admin_api.get("/export?include_valves=true").get_json()
    response = raw_post(admin_api, path, text)
    assert response.status_code == 422, response.get_json()
    detail = response.get_json()["detail"]
    assert [item["loc"] for item in detail] == [loc]
    assert detail[0]["type"] == "string_unicode"
    assert admin_api.get("/export?include_valves=true").get_json() == before


def test_a_surrogate_pair_is_an_ordinary_character(admin_api):
    text = (
        '{"id": "emoji", "name": "Fish \\ud83d\\udc1f", "content": "class Filter:\\n    pass\\n", "meta": {}}'
    )
    response = raw_post(admin_api, "/create", text)
    assert response.status_code == 200, response.get_json()
    assert response.get_json()["name"] == "Fish \U0001f41f"


@pytest.mark.parametrize("constant", ["NaN", "Infinity", "-Infinity"])
@pytest.mark.parametrize(
    "path, template",
    [
        ("/create", '{"id": "n", "name": "x", "content": "class Filter: pass", "meta": {"x": %s}}'),
        ("/id/sample_filter/valves/update", '{"priority": %s}'),
        ("/sync", '{"functions": [{"id": "n", "name": "x", "content": "c", "meta": {"x": %s}}]}'),
    ],
)
def test_nan_and_infinity_are_not_json(admin_api, sample, path, template, constant):
    """Python's parser accepts them, but stored they would break every strict client that reads them back."""
    before = admin_api.get("/export?include_valves=true").get_json()
    response = raw_post(admin_api, path, template % constant)
    assert response.status_code == 422
    detail = response.get_json()["detail"]
    assert detail[0]["type"] == "json_invalid"
    assert f"{constant} is not a JSON value" in detail[0]["msg"]
    assert admin_api.get("/export?include_valves=true").get_json() == before


def test_a_number_too_large_for_a_float_is_422(admin_api, sample):
    response = raw_post(admin_api, "/id/sample_filter/valves/update", '{"priority": 1e400}')
    assert response.status_code == 422
    assert response.get_json()["detail"][0]["type"] == "finite_number"


@pytest.mark.parametrize("bad_id", ["a\x00b", "a\ud800b"])
def test_an_id_no_database_can_store_gets_the_id_rule(admin_api, bad_id):
    response = (
        admin_api.post("/create", F.form(id=bad_id))
        if "\x00" in bad_id
        else raw_post(
            admin_api,
            "/create",
            '{"id": "a\\ud800b", "name": "x", "content": "class Filter: pass", "meta": {}}',
        )
    )
    assert (response.status_code, response.get_json()) == (
        400,
        {"detail": "Only alphanumeric characters and underscores are allowed in the id"},
    )


def test_json_nested_too_deeply_is_422(admin_api, sample):
    depth = 100_000
    response = admin_api.client.post(
        admin_api.prefix + "/id/sample_filter/valves/update",
        data='{"prefix": ' + "[" * depth + "]" * depth + "}",
        headers=admin_api.headers({"Content-Type": "application/json"}),
    )
    assert response.status_code == 422
    assert response.get_json()["detail"][0]["type"] == "json_invalid"


@pytest.mark.parametrize(
    "method, path, body",
    [
        ("GET", "/id/sample_filter", None),
        ("POST", "/id/sample_filter/update", F.form()),
        ("POST", "/id/sample_filter/valves/update", {"priority": 1}),
        ("GET", "/id/sample_filter/history", None),
        ("POST", "/sync", {"functions": []}),
        ("POST", "/create", F.form(id="another")),
    ],
)
def test_an_unexpected_failure_anywhere_is_a_json_500(
    app, admin_api, sample, monkeypatch, method, path, body
):
    from services import function_reads, sync

    def broken(*args, **kwargs):
        raise RuntimeError("the database went away")

    monkeypatch.setattr(function_reads, "get_function", broken)
    monkeypatch.setattr(function_reads, "function_exists", broken)
    monkeypatch.setattr(function_reads, "function_model_by_id", broken)
    monkeypatch.setattr(function_reads, "function_model_as_key", broken)
    monkeypatch.setattr(sync, "_apply", broken)
    app.config["PROPAGATE_EXCEPTIONS"] = False
    response = admin_api.client.open(
        admin_api.prefix + path, method=method, json=body, headers=admin_api.headers()
    )
    assert response.status_code == 500
    assert response.get_json() == {"detail": SERVER_ERROR}
