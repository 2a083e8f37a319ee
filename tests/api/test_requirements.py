"""A function's requirements: status in the API, and install jobs only when the operator allows them."""

from __future__ import annotations

import sys
import time

import pytest

from tests import factories as F

NEEDS = F.PIPE.replace(
    "requirements: requests",
    "requirements: requests>=1, sluice-surely-missing-pkg>=2, [List of dependencies], git+https://x.test/r.git",
)


def finished_job(admin_api, job_id: str, timeout: float = 30) -> dict:
    """The install job's answer once it has succeeded or failed (or as it stands after ``timeout`` seconds)."""
    deadline = time.monotonic() + timeout
    while True:
        job = admin_api.get(f"/requirements/jobs/{job_id}").get_json()
        if job["status"] in ("succeeded", "failed") or time.monotonic() > deadline:
            return job
        time.sleep(0.1)


def test_requirements_status(admin_api):
    admin_api.create("needy", NEEDS)
    response = admin_api.get("/id/needy/requirements")
    assert response.status_code == 200
    body = response.get_json()
    assert list(body) == ["id", "requirements", "valid", "missing", "invalid", "ok", "install_allowed"]
    assert body["id"] == "needy"
    assert [item["name"] for item in body["valid"]] == ["requests", "sluice-surely-missing-pkg"]
    assert body["valid"][0]["satisfied"] is True and body["valid"][0]["installed_version"]
    assert body["missing"] == ["sluice-surely-missing-pkg>=2"]
    assert [item["requirement"] for item in body["invalid"]] == [
        "[List of dependencies]",
        "git+https://x.test/r.git",
    ]
    assert body["ok"] is False and body["install_allowed"] is False


def test_no_requirements(admin_api, sample):
    body = admin_api.get("/id/sample_filter/requirements").get_json()
    assert body["requirements"] is None and body["valid"] == [] and body["ok"] is True


def test_install_is_refused_unless_the_operator_allows_it(admin_api):
    admin_api.create("needy", NEEDS)
    response = admin_api.post("/id/needy/requirements/install")
    assert response.status_code == 403
    assert "SLUICE_ALLOW_PIP_INSTALL" in response.get_json()["detail"]


def test_requirements_of_unknown_function_are_404(admin_api):
    assert admin_api.get("/id/nope/requirements").status_code == 404
    assert admin_api.get("/requirements/jobs/20260101T000000-abcdef12").status_code == 404
    assert admin_api.get("/requirements/jobs/..%2F..%2Fetc").status_code == 404


@pytest.fixture
def app_config(request, tmp_path):
    """Installs allowed (``@allowed``), their jobs and packages in the test's own folder, which pytest removes."""
    if getattr(request, "param", None) != "installs-allowed":
        return {}
    return {
        "SLUICE_ALLOW_PIP_INSTALL": True,
        "SLUICE_INSTALL_JOBS_DIR": str(tmp_path / "jobs"),
        "SLUICE_FUNCTION_PACKAGES_DIR": str(tmp_path / "packages"),
    }


allowed = pytest.mark.parametrize("app_config", ["installs-allowed"], indirect=True)


@pytest.fixture
def fake_pip(monkeypatch):
    from loader import installer

    monkeypatch.setattr(
        installer, "PIP_COMMAND", [sys.executable, "-c", "import sys; print('fake pip', *sys.argv[1:])"]
    )


@allowed
def test_install_starts_a_background_job(admin_api, fake_pip, app_config):
    only_missing = F.PIPE.replace(
        "requirements: requests", "requirements: requests, sluice-surely-missing-pkg"
    )
    admin_api.create("needy", only_missing)
    response = admin_api.post("/id/needy/requirements/install")
    assert response.status_code == 200, response.get_json()
    started = response.get_json()
    assert list(started) == ["job_id", "status"] and started["job_id"]
    job = finished_job(admin_api, started["job_id"])
    assert job["status"] == "succeeded", job
    assert job["requirements"] == ["sluice-surely-missing-pkg"]
    assert "fake pip install" in job["output"]


@allowed
def test_install_refuses_invalid_requirements(admin_api, fake_pip, app_config):
    admin_api.create("needy", NEEDS)
    response = admin_api.post("/id/needy/requirements/install")
    assert response.status_code == 400
    assert "[List of dependencies]" in response.get_json()["detail"]


@allowed
def test_install_with_nothing_missing(admin_api, fake_pip, app_config):
    admin_api.create("piper", F.PIPE)
    response = admin_api.post("/id/piper/requirements/install")
    assert response.get_json() == {"job_id": None, "status": "satisfied"}


# Code that imports a package its `requirements:` line lists and that is not installed: it cannot be saved (it
# does not load), so the install route for code not yet saved is its way forward.
UNSAVED_NEEDY = F.PIPE.replace("requirements: requests", "requirements: sluice-surely-missing-pkg").replace(
    "from pydantic import BaseModel", "import sluice_surely_missing_pkg\nfrom pydantic import BaseModel"
)


def test_code_missing_a_package_is_not_saved_and_the_error_names_the_install_route(admin_api):
    response = admin_api.post(
        "/create", {"id": "needy", "name": "Needy", "content": UNSAVED_NEEDY, "meta": {}}
    )

    assert response.status_code == 400
    detail = response.get_json()["detail"]
    assert "needs the package 'sluice-surely-missing-pkg'" in detail
    assert "Its `requirements:` line lists it" in detail
    assert 'POST /api/v1/functions/requirements/install {"content": <the code>}' in detail


def test_install_for_unsaved_code_is_refused_unless_the_operator_allows_it(admin_api):
    response = admin_api.post("/requirements/install", {"content": UNSAVED_NEEDY})
    assert response.status_code == 403
    assert "SLUICE_ALLOW_PIP_INSTALL" in response.get_json()["detail"]


def test_install_for_unsaved_code_needs_an_admin(user_api):
    assert user_api.post("/requirements/install", {"content": UNSAVED_NEEDY}).status_code in (401, 403)


@allowed
def test_install_for_unsaved_code_installs_what_its_requirements_line_lists(admin_api, fake_pip, app_config):
    content = UNSAVED_NEEDY.replace("sluice-surely-missing-pkg", "requests, sluice-surely-missing-pkg", 1)
    response = admin_api.post("/requirements/install", {"content": content})
    assert response.status_code == 200, response.get_json()
    started = response.get_json()
    job = finished_job(admin_api, started["job_id"])
    assert job["status"] == "succeeded", job
    assert job["requirements"] == ["sluice-surely-missing-pkg"]  # requests is installed already


@allowed
def test_install_for_unsaved_code_without_a_requirements_line_is_refused(admin_api, fake_pip, app_config):
    response = admin_api.post("/requirements/install", {"content": F.FILTER})
    assert response.status_code == 400
    assert "no `requirements:` line" in response.get_json()["detail"]
