"""A function's package requirements: which are missing, and installing them in the background."""

from __future__ import annotations

from blueprints.api import api
from blueprints.api import schemas as s
from services import requirements_jobs


@api.route(
    "/id/<id>/requirements",
    "GET",
    auth="admin",
    summary="The function's requirements and which are missing",
    response=s.RequirementsStatus,
    errors=(404,),
)
def requirements(id: str):
    """Each `requirements:` item of the manifest, validated and checked against what is installed."""
    return requirements_jobs.requirements_status(id)


@api.route(
    "/id/<id>/requirements/install",
    "POST",
    auth="admin",
    summary="Install the missing requirements in the background",
    response=s.InstallStarted,
    errors=(400, 403, 404),
)
def install_requirements(id: str):
    """Starts a background job (only when the operator allowed installs); poll the job for its state."""
    return requirements_jobs.start_install(id)


@api.route(
    "/requirements/install",
    "POST",
    auth="admin",
    summary="Install the missing requirements of code not saved yet",
    body=s.RequirementsInstallForm,
    response=s.InstallStarted,
    errors=(400, 403),
)
def install_requirements_for_content(body: s.RequirementsInstallForm):
    """For code that cannot be saved because a package its `requirements:` line lists is missing."""
    return requirements_jobs.start_install_for_content(body.content)


@api.route(
    "/requirements/jobs/<job_id>",
    "GET",
    auth="admin",
    summary="An install job's state and output",
    response=s.InstallJob,
    errors=(404,),
)
def install_job(job_id: str):
    """Status and the tail of pip's output."""
    return requirements_jobs.get_job(job_id)
