"""Version history (SPEC §3.1): recorded on create and real updates, listed, compared, restored, deleted."""

from __future__ import annotations

import pytest

from tests import factories as F
from tests.api.conftest import NOT_FOUND
from tests.factories import FUNCTION_MODEL_KEYS

VERSION_KEYS = ["id", "function_id", "parent_id", "user_id", "commit_message", "created_at", "user"]
EDITED = F.FILTER.replace('prefix: str = Field(default=">> "', 'prefix: str = Field(default="-> "')


@pytest.fixture
def edited(admin_api, sample):
    """The sample with a second version (new code and a commit message)."""
    response = admin_api.post(
        "/id/sample_filter/update", F.form(content=EDITED, commit_message="Arrow prefix")
    )
    assert response.status_code == 200
    return response.get_json()


def test_create_records_the_first_version(admin_api, admin_id):
    created = admin_api.create(commit_message="First")
    versions = admin_api.get("/id/sample_filter/history").get_json()
    assert len(versions) == 1
    assert list(versions[0]) == VERSION_KEYS
    assert versions[0]["id"] == created["version_id"]
    assert versions[0]["commit_message"] == "First"
    assert versions[0]["user_id"] == admin_id
    assert versions[0]["user"] == {"name": "Ada Admin"}
    assert versions[0]["parent_id"] is None


def test_only_real_changes_make_versions(admin_api, sample, edited):
    admin_api.post("/id/sample_filter/toggle")
    admin_api.post("/id/sample_filter/toggle/global")
    admin_api.post("/id/sample_filter/valves/update", {"priority": 1})
    same = admin_api.post("/id/sample_filter/update", F.form(content=EDITED))
    assert same.get_json()["version_id"] == edited["version_id"]
    renamed = admin_api.post("/id/sample_filter/update", F.form(content=EDITED, name="Renamed"))
    meta = admin_api.post("/id/sample_filter/update", F.form(content=EDITED, name="Renamed", meta={"k": 1}))
    versions = admin_api.get("/id/sample_filter/history").get_json()
    assert [v["id"] for v in versions] == [
        meta.get_json()["version_id"],
        renamed.get_json()["version_id"],
        edited["version_id"],
        sample["version_id"],
    ]
    assert [v["parent_id"] for v in versions] == [v["id"] for v in versions[1:]] + [None]


def test_history_pages_hold_twenty(admin_api, sample):
    for index in range(21):
        admin_api.post("/id/sample_filter/update", F.form(name=f"Name {index}"))
    first = admin_api.get("/id/sample_filter/history?page=1").get_json()
    second = admin_api.get("/id/sample_filter/history?page=2").get_json()
    assert len(first) == 20 and len(second) == 2
    assert second[-1]["id"] == sample["version_id"]
    assert first[-1]["parent_id"] == second[0]["id"]
    assert admin_api.get("/id/sample_filter/history?page=zero").status_code == 422
    assert admin_api.get("/id/sample_filter/history?page=0").status_code == 422


@pytest.mark.parametrize("page", ["99999999999999999999", "1000001", "-99999999999999999999"])
def test_a_page_number_out_of_range_is_422_not_500(admin_api, sample, page):
    response = admin_api.get(f"/id/sample_filter/history?page={page}")
    assert response.status_code == 422
    assert response.get_json()["detail"][0]["loc"] == ["query", "page"]


def test_a_page_beyond_the_last_is_an_empty_list(admin_api, sample):
    assert admin_api.get("/id/sample_filter/history?page=2").get_json() == []
    last = admin_api.get("/id/sample_filter/history?page=1000000")
    assert last.status_code == 200 and last.get_json() == []


def test_the_service_answers_an_empty_page_for_any_huge_number(app, admin_api, sample):
    # The console calls the service directly; a number no database can offset by is simply past the end.
    from services import versions

    with app.app_context():
        assert versions.list_versions("sample_filter", 10**20) == []


def test_one_version_has_its_snapshot(admin_api, sample, edited):
    response = admin_api.get(f"/id/sample_filter/history/{sample['version_id']}")
    assert response.status_code == 200
    body = response.get_json()
    assert list(body) == VERSION_KEYS + ["snapshot"]
    assert body["snapshot"]["content"] == F.FILTER
    assert body["snapshot"]["name"] == "Sample Filter"
    assert body["snapshot"]["meta"]["manifest"]["title"] == "Sample Filter"


def test_unknown_version_and_unknown_function(admin_api, sample):
    response = admin_api.get("/id/sample_filter/history/nope")
    assert response.status_code == 404 and response.get_json() == {"detail": "Version not found"}
    response = admin_api.get("/id/nope/history")
    assert response.status_code == 404 and response.get_json() == {"detail": NOT_FOUND}


def test_diff_between_versions(admin_api, sample, edited):
    old, new = sample["version_id"], edited["version_id"]
    response = admin_api.get(f"/id/sample_filter/history/diff?from_id={old}&to_id={new}")
    assert response.status_code == 200
    body = response.get_json()
    assert list(body) == ["from_id", "to_id", "metadata", "content_diff", "line_endings_only"]
    assert (body["from_id"], body["to_id"]) == (old, new)
    assert '-        prefix: str = Field(default=">> "' in body["content_diff"]
    assert '+        prefix: str = Field(default="-> "' in body["content_diff"]
    assert body["metadata"] == {} and body["line_endings_only"] is False
    assert admin_api.get("/id/sample_filter/history/diff?from_id=" + old).status_code == 422
    missing = admin_api.get(f"/id/sample_filter/history/diff?from_id={old}&to_id=nope")
    assert missing.status_code == 404 and missing.get_json() == {"detail": "Version not found"}


def test_diff_notices_line_endings_only(admin_api, sample):
    crlf = admin_api.post("/id/sample_filter/update", F.form(content=F.FILTER.replace("\n", "\r\n")))
    body = admin_api.get(
        f"/id/sample_filter/history/diff?from_id={sample['version_id']}&to_id={crlf.get_json()['version_id']}"
    ).get_json()
    assert body["line_endings_only"] is True and body["content_diff"] == ""


def test_restore_a_version(admin_api, sample, edited):
    response = admin_api.post("/id/sample_filter/update/version", {"version_id": sample["version_id"]})
    assert response.status_code == 200, response.get_json()
    body = response.get_json()
    assert list(body) == FUNCTION_MODEL_KEYS
    assert body["version_id"] == sample["version_id"]
    assert body["content"] == F.FILTER
    # Restoring makes no new version: the saved one is current again.
    assert len(admin_api.get("/id/sample_filter/history").get_json()) == 2


def test_restore_unknown_version_is_404(admin_api, sample):
    response = admin_api.post("/id/sample_filter/update/version", {"version_id": "nope"})
    assert response.status_code == 404 and response.get_json() == {"detail": "Version not found"}
    assert admin_api.post("/id/sample_filter/update/version", {}).status_code == 422


def test_restore_refuses_a_version_that_no_longer_loads(app, admin_api, sample, edited):
    from extensions import db
    from models import FunctionVersion

    with app.app_context():
        db.session.get(FunctionVersion, sample["version_id"]).content = F.SYNTAX_ERROR
        db.session.commit()
    response = admin_api.post("/id/sample_filter/update/version", {"version_id": sample["version_id"]})
    assert response.status_code == 400
    assert response.get_json()["error"]["type"] == "SyntaxError"
    assert admin_api.get("/id/sample_filter").get_json()["version_id"] == edited["version_id"]


def test_delete_a_version_but_never_the_current_one(admin_api, sample, edited):
    current = admin_api.delete(f"/id/sample_filter/history/{edited['version_id']}")
    assert current.status_code == 400
    assert current.get_json() == {"detail": "Cannot delete the current version"}
    response = admin_api.delete(f"/id/sample_filter/history/{sample['version_id']}")
    assert response.status_code == 200 and response.get_json() is True
    versions = admin_api.get("/id/sample_filter/history").get_json()
    assert [v["id"] for v in versions] == [edited["version_id"]]
    again = admin_api.delete(f"/id/sample_filter/history/{sample['version_id']}")
    assert again.status_code == 404 and again.get_json() == {"detail": "Version not found"}
