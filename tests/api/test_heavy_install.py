"""The whole way forward for a function that needs a heavy package Open WebUI ships (sentence-transformers, which
pulls in torch): refused with the install action named, installed through the API with real pip, then loaded and
run under the default memory cap.

Opt-in (`SLUICE_TEST_HEAVY=1 .venv/bin/python -m pytest tests/api/test_heavy_install.py`): it installs about 1.5 GB
(the CPU build of torch among them) from the configured package index, which takes a minute or more.
"""

from __future__ import annotations

import os
import time

import pytest

from tests.api.test_requirements import finished_job

pytestmark = pytest.mark.skipif(
    os.environ.get("SLUICE_TEST_HEAVY") != "1", reason="installs torch: set SLUICE_TEST_HEAVY=1 to run it"
)


@pytest.fixture
def app_config(tmp_path):
    """Installs allowed, into SLUICE_TEST_HEAVY_DIR when it names a folder (kept, so that a second run only checks),
    else into this test's temporary folder."""
    root = os.environ.get("SLUICE_TEST_HEAVY_DIR") or str(tmp_path)
    os.makedirs(root, exist_ok=True)
    os.chmod(root, 0o755)  # the load user must read the packages folder, or function code stays root
    return {
        "SLUICE_ALLOW_PIP_INSTALL": True,
        "SLUICE_INSTALL_JOBS_DIR": os.path.join(root, "jobs"),
        "SLUICE_FUNCTION_PACKAGES_DIR": os.path.join(root, "packages"),
    }


EMBEDDER = '''"""
title: Similarity Tagger
requirements: sentence-transformers
"""
import torch
from pydantic import BaseModel
from sentence_transformers import util


class Filter:
    class Valves(BaseModel):
        threshold: float = 0.5

    def __init__(self):
        self.valves = self.Valves()

    def inlet(self, body: dict) -> dict:
        one, other = torch.tensor([[1.0, 0.0]]), torch.tensor([[1.0, 0.0], [0.0, 1.0]])
        body["similarity"] = util.cos_sim(one, other).tolist()
        body["torch"] = torch.__version__
        return body
'''


def test_a_function_needing_torch_is_installed_loaded_and_run(admin_api):
    created = admin_api.post("/create", {"id": "tagger", "name": "Tagger", "content": EMBEDDER, "meta": {}})
    if created.status_code == 400:  # not installed yet (a persistent folder may already hold it)
        detail = created.get_json()["detail"]
        assert "needs the package 'sentence-transformers'" in detail or "'torch'" in detail, detail
        assert 'POST /api/v1/functions/requirements/install {"content": <the code>}' in detail

        started = time.monotonic()
        response = admin_api.post("/requirements/install", {"content": EMBEDDER})
        assert response.status_code == 200, response.get_json()
        job = finished_job(admin_api, response.get_json()["job_id"], timeout=1200)
        assert job["status"] == "succeeded", job["output"][-3000:]
        print(f"install took {time.monotonic() - started:.1f} s")

        created = admin_api.post(
            "/create", {"id": "tagger", "name": "Tagger", "content": EMBEDDER, "meta": {}}
        )
    assert created.status_code == 200, created.get_json()

    ran = admin_api.post("/id/tagger/run", {"method": "inlet", "body": {"messages": []}})
    assert ran.status_code == 200, ran.get_json()
    answer = ran.get_json()
    assert answer["result"]["similarity"] == [[1.0, 0.0]]
    assert answer["result"]["torch"].endswith("+cpu")
