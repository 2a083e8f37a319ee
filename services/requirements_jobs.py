"""A function's `requirements:`: what is valid, installed and missing, and admin-started install jobs.

pip never runs in a request: ``loader.installer`` starts a detached job whose state lives in files under the
instance folder, so any worker can report on it.
"""

from __future__ import annotations

import os

from flask import current_app

import loader
from services import function_reads
from services.errors import Forbidden, NotFound, ServiceError

INSTALL_DISABLED = "Installing requirements is turned off. The operator can allow it by setting SLUICE_ALLOW_PIP_INSTALL=true."
JOB_NOT_FOUND = "There is no such install job."


def _packages_dir() -> str:
    return current_app.config["SLUICE_FUNCTION_PACKAGES_DIR"]


def jobs_dir() -> str:
    """Where install jobs keep their state: `SLUICE_INSTALL_JOBS_DIR`, or `install-jobs` in the instance folder."""
    return current_app.config.get("SLUICE_INSTALL_JOBS_DIR") or os.path.join(
        current_app.instance_path, "install-jobs"
    )


def requirements_status(function_id: str) -> dict:
    """The function's requirements, each checked: `valid` (with installed versions), `missing`, `invalid`."""
    f = function_reads.get_function(function_id)
    manifest = (f.meta or {}).get("manifest") or {}
    value = manifest.get("requirements") if isinstance(manifest, dict) else None
    return {"id": f.id, **_status_of(value if isinstance(value, str) else None)}


def _status_of(value: str | None) -> dict:
    report = loader.parse_requirements(value, packages_dir=_packages_dir())
    data = report.to_dict()
    return {
        "requirements": value,
        "valid": data["requirements"],
        "missing": data["missing"],
        "invalid": data["invalid"],
        "ok": report.ok,
        "install_allowed": bool(current_app.config["SLUICE_ALLOW_PIP_INSTALL"]),
    }


def start_install(function_id: str) -> dict:
    """Start installing the function's missing requirements in the background; refused unless allowed."""
    if not current_app.config["SLUICE_ALLOW_PIP_INSTALL"]:
        raise Forbidden(INSTALL_DISABLED)
    return _start(requirements_status(function_id))


def start_install_for_content(content: str) -> dict:
    """Start installing what the `requirements:` line of code not yet saved lists and is missing.

    Code that needs a missing package does not load, so it cannot be saved, and only a saved function has an
    install button: this is the way forward for it (the load error names it).
    """
    if not current_app.config["SLUICE_ALLOW_PIP_INSTALL"]:
        raise Forbidden(INSTALL_DISABLED)
    if not isinstance(content, str):
        raise ServiceError("content must be the function's code, as a string.")
    value = loader.parse_frontmatter(content).get("requirements")
    if not value or not value.strip():
        raise ServiceError(
            "The code has no `requirements:` line in its frontmatter, so there is nothing to install."
        )
    return _start(_status_of(value))


def _start(status: dict) -> dict:
    if status["invalid"]:
        reasons = "; ".join(f"{item['requirement']}: {item['reason']}" for item in status["invalid"])
        raise ServiceError(f"Some requirements are not valid, so nothing was installed: {reasons}")
    if not status["missing"]:
        return {"job_id": None, "status": "satisfied"}
    from loader import installer

    try:
        job_id = installer.start_install(status["missing"], _packages_dir(), jobs_dir())
    except ValueError as error:  # RequirementError: the installer re-validates what it is given
        raise ServiceError(f"Not installed: {error}") from None
    job = installer.get_job(job_id, jobs_dir()) or {"status": "queued"}
    return {"job_id": job_id, "status": job.get("status", "queued")}


def get_job(job_id: str) -> dict:
    from loader import installer

    job = installer.get_job(job_id, jobs_dir())
    if job is None:
        raise NotFound(JOB_NOT_FOUND)
    return {
        "job_id": job.get("id", job_id),
        "status": job.get("status"),
        "requirements": job.get("requirements") or [],
        "created_at": job.get("created_at"),
        "started_at": job.get("started_at"),
        "ended_at": job.get("ended_at"),
        "exit_code": job.get("exit_code"),
        "error": job.get("error"),
        "output": job.get("output") or "",
        "output_truncated": bool(job.get("output_truncated")),
    }
