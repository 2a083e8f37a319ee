"""SLUICE_HISTORY_LIMIT: each function keeps its newest N versions; older ones go when a new one is recorded."""

from __future__ import annotations

import pytest

from tests import factories as F

LIMITED = [{"SLUICE_HISTORY_LIMIT": 3}]


def _history(admin_api, function_id="sample_filter"):
    return [v["id"] for v in admin_api.get(f"/id/{function_id}/history").get_json()]


def _save(admin_api, name, function_id="sample_filter"):
    response = admin_api.post(f"/id/{function_id}/update", F.form(id=function_id, name=name))
    assert response.status_code == 200, response.get_json()
    return response.get_json()["version_id"]


def test_without_a_limit_every_version_is_kept(admin_api, sample):
    saved = [_save(admin_api, f"Name {index}") for index in range(5)]
    assert _history(admin_api) == saved[::-1] + [sample["version_id"]]


@pytest.mark.parametrize("app_config", LIMITED)
def test_a_new_version_prunes_the_oldest_beyond_the_limit(admin_api, sample, app_config):
    saved = [_save(admin_api, f"Name {index}") for index in range(2)]
    assert _history(admin_api) == saved[::-1] + [sample["version_id"]]  # at the limit: nothing pruned yet
    saved += [_save(admin_api, f"Name {index}") for index in range(2, 5)]
    assert _history(admin_api) == saved[:1:-1]
    assert admin_api.get("/id/sample_filter").get_json()["version_id"] == saved[-1]
    gone = admin_api.get(f"/id/sample_filter/history/{sample['version_id']}")
    assert gone.status_code == 404


@pytest.mark.parametrize("app_config", LIMITED)
def test_the_limit_is_per_function(admin_api, sample, app_config):
    admin_api.create(id="other_filter")
    for index in range(4):
        _save(admin_api, f"Name {index}")
    assert len(_history(admin_api)) == 3
    assert len(_history(admin_api, "other_filter")) == 1


@pytest.mark.parametrize("app_config", LIMITED)
def test_a_refused_save_prunes_nothing(admin_api, sample, app_config):
    saved = [_save(admin_api, f"Name {index}") for index in range(2)]
    before = _history(admin_api)
    refused = admin_api.post("/id/sample_filter/update", F.form(content=F.SYNTAX_ERROR))
    assert refused.status_code == 400
    assert _history(admin_api) == before == saved[::-1] + [sample["version_id"]]


@pytest.mark.parametrize("app_config", LIMITED)
def test_a_restore_records_nothing_so_prunes_nothing(admin_api, sample, app_config):
    saved = [_save(admin_api, f"Name {index}") for index in range(2)]
    restored = admin_api.post("/id/sample_filter/update/version", {"version_id": sample["version_id"]})
    assert restored.status_code == 200, restored.get_json()
    assert _history(admin_api) == saved[::-1] + [sample["version_id"]]
    # The next save makes a new current version; the restored one, now the oldest, goes.
    newest = _save(admin_api, "After the restore")
    assert _history(admin_api) == [newest] + saved[::-1]


@pytest.mark.parametrize("app_config", [{"SLUICE_HISTORY_LIMIT": 1}])
def test_a_limit_of_one_keeps_only_the_current_version(admin_api, sample, app_config):
    newest = [_save(admin_api, f"Name {index}") for index in range(3)][-1]
    assert _history(admin_api) == [newest]


@pytest.mark.parametrize("app_config", LIMITED)
def test_sync_prunes_in_its_one_transaction(admin_api, sample, app_config):
    for index in range(2):
        _save(admin_api, f"Name {index}")
    item = {"id": "sample_filter", "name": "Synced", "content": F.FILTER, "meta": {}}
    response = admin_api.post("/sync", {"functions": [item]})
    assert response.status_code == 200, response.get_json()
    versions = _history(admin_api)
    assert len(versions) == 3
    assert versions[0] == admin_api.get("/id/sample_filter").get_json()["version_id"]
    assert sample["version_id"] not in versions
