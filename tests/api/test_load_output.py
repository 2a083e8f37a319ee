"""A function whose code floods its output while loading is refused with a 400 that says so, and nothing is stored
(SLUICE_LOAD_OUTPUT_MB)."""

from __future__ import annotations

import uuid

import pytest

from tests import factories as F


def flood(megabytes: float) -> str:
    # A fresh comment each time, so that no cached answer stands in for the load.
    return (
        f"# {uuid.uuid4()}\nimport sys\nfor _ in range({int(megabytes * 1024)}):\n"
        "    sys.stdout.write('x' * 1023 + '\\n')\n" + F.FILTER
    )


def test_a_flood_at_load_is_a_400_and_nothing_is_stored(admin_api):
    response = admin_api.post("/create", F.form(id="flooder", content=flood(200)))
    assert response.status_code == 400
    answer = response.get_json()
    assert answer["error"]["type"] == "OutputLimit"
    assert "more than 1 MB of output" in answer["detail"] and "SLUICE_LOAD_OUTPUT_MB" in answer["detail"]
    assert admin_api.get("/id/flooder").status_code == 404


def test_an_update_that_floods_keeps_the_stored_code(admin_api, sample):
    before = admin_api.get("/id/sample_filter").get_json()
    response = admin_api.post("/id/sample_filter/update", F.form(content=flood(3)))
    assert response.status_code == 400 and response.get_json()["error"]["type"] == "OutputLimit"
    assert admin_api.get("/id/sample_filter").get_json() == before


@pytest.mark.parametrize("app_config", [{"SLUICE_LOAD_OUTPUT_MB": 4}])
def test_the_limit_comes_from_the_setting(admin_api, app_config):
    assert admin_api.post("/create", F.form(id="chatty", content=flood(2))).status_code == 200
    response = admin_api.post("/create", F.form(id="flooder", content=flood(5)))
    assert response.status_code == 400 and "more than 4 MB" in response.get_json()["detail"]
