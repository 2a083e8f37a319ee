"""The functions JSON API (SPEC §3), mounted under both /api/functions and /api/v1/functions.

Routes parse, call one service function and answer; the rules live in ``services``.
"""

from __future__ import annotations

from typing import Any

from flask import Blueprint, Flask, current_app

from blueprints import api_schemas as s
from blueprints.access import api_caller
from blueprints.openapi import RouteRegistry, publish, register_docs
from services import functions as fs
from services import requirements_jobs, sync, url_loader
from services import valves as valves_service
from services import versions as versions_service

PREFIXES = ("/api/functions", "/api/v1/functions")

bp = Blueprint("api_functions", __name__)
api = RouteRegistry(bp, PREFIXES, tag="functions")
publish(api)


# --- lists and export -------------------------------------------------------------------------------------------


@api.route(
    "/",
    "GET",
    auth="user",
    summary="List functions",
    response=list[s.FunctionResponse],
    strict_slashes=False,
)
def list_functions():
    """Admins get every function; other users get the active ones."""
    return [fs.function_response(f) for f in fs.list_functions(api_caller())]


@api.route(
    "/list",
    "GET",
    auth="admin",
    summary="List functions with their creators",
    response=list[s.FunctionUserResponse],
)
def list_with_users():
    """Every function with its creator, newest change first."""
    return [fs.function_user_response(f, user) for f, user in fs.list_functions_with_users()]


@api.route(
    "/export",
    "GET",
    auth="admin",
    summary="Export every function",
    query=s.ExportQuery,
    response=list[s.FunctionModel] | list[s.FunctionWithValvesModel],
)
def export(query: s.ExportQuery):
    """FunctionModel[], or FunctionWithValvesModel[] with `include_valves=true`."""
    return fs.export_functions(include_valves=query.include_valves)


# --- create, read, update, delete -------------------------------------------------------------------------------


@api.route(
    "/create",
    "POST",
    auth="admin",
    summary="Create a function",
    body=s.FunctionCreateForm,
    response=s.FunctionResponse,
    errors=(400, 503),
)
def create(body: s.FunctionCreateForm):
    """Load the code, derive type and manifest, store it inactive with the caller as creator."""
    f = fs.create_function(
        api_caller(),
        id=body.id,
        name=body.name,
        content=body.content,
        meta=body.meta.to_dict() if body.meta is not None else None,
        commit_message=body.commit_message,
    )
    return fs.function_response(f)


@api.route("/id/<id>", "GET", auth="admin", summary="Get a function", response=s.FunctionModel, errors=(404,))
def get_function(id: str):
    """One function with its code."""
    return fs.function_model(fs.get_function(id))


@api.route(
    "/id/<id>/update",
    "POST",
    auth="admin",
    summary="Update a function",
    body=s.FunctionForm,
    query=s.UpdateQuery,
    response=s.FunctionModel,
    errors=(400, 404, 503),
)
def update(id: str, body: s.FunctionForm, query: s.UpdateQuery):
    """Replace name, code and meta; on any failure nothing changes."""
    f = fs.update_function(
        api_caller(),
        id,
        name=body.name,
        content=body.content,
        meta=body.meta.to_dict() if body.meta is not None else None,
        commit_message=body.commit_message,
        reset_incompatible_valves=query.reset_incompatible_valves,
    )
    return fs.function_model(f)


@api.route(
    "/id/<id>/toggle",
    "POST",
    auth="admin",
    summary="Switch a function on or off",
    response=s.FunctionModel,
    errors=(404,),
)
def toggle(id: str):
    """Flip `is_active` in one atomic update."""
    return fs.function_model(fs.toggle_active(id))


@api.route(
    "/id/<id>/toggle/global",
    "POST",
    auth="admin",
    summary="Make a function global or not",
    response=s.FunctionModel,
    errors=(404,),
)
def toggle_global(id: str):
    """Flip `is_global` in one atomic update."""
    return fs.function_model(fs.toggle_global(id))


@api.route(
    "/id/<id>/delete", "DELETE", auth="admin", summary="Delete a function", response=bool, errors=(404,)
)
def delete(id: str):
    """Delete the function, its user valves and its history."""
    return fs.delete_function(id)


# --- valves -----------------------------------------------------------------------------------------------------


@api.route(
    "/id/<id>/valves",
    "GET",
    auth="admin",
    summary="Get the admin valves",
    response=dict[str, Any],
    errors=(404,),
)
def get_valves(id: str):
    """The admin valves that were set (`{}` when none)."""
    return valves_service.get_valves(id)


@api.route(
    "/id/<id>/valves/spec",
    "GET",
    auth="admin",
    summary="JSON schema of the Valves class",
    response=dict[str, Any] | None,
    errors=(404, 503),
)
def valves_spec(id: str):
    """The `Valves` JSON schema, or null when the code has none."""
    return valves_service.valves_spec(id, api_caller())


@api.route(
    "/id/<id>/valves/update",
    "POST",
    auth="admin",
    summary="Set the admin valves",
    body=dict[str, Any],
    response=dict[str, Any],
    errors=(400, 404, 503),
)
def update_valves(id: str, body: dict[str, Any]):
    """Validate with the function's own class; store and answer exactly the keys set (nulls dropped)."""
    return valves_service.update_valves(id, body)


@api.route(
    "/id/<id>/valves/user",
    "GET",
    auth="user",
    summary="Get the caller's user valves",
    response=dict[str, Any],
    errors=(404,),
)
def get_user_valves(id: str):
    """The caller's own user valves (`{}` when none); an inactive function is not found for non-admins."""
    return valves_service.get_user_valves(api_caller(), id)


@api.route(
    "/id/<id>/valves/user/spec",
    "GET",
    auth="user",
    summary="JSON schema of the UserValves class",
    response=dict[str, Any] | None,
    errors=(404, 503),
)
def user_valves_spec(id: str):
    """The `UserValves` JSON schema, or null when the code has none."""
    return valves_service.user_valves_spec(api_caller(), id)


@api.route(
    "/id/<id>/valves/user/update",
    "POST",
    auth="user",
    summary="Set the caller's user valves",
    body=dict[str, Any],
    response=dict[str, Any],
    errors=(400, 404, 503),
)
def update_user_valves(id: str, body: dict[str, Any]):
    """Validate with the function's own `UserValves`; store the caller's keys only."""
    return valves_service.update_user_valves(api_caller(), id, body)


# --- load from URL and sync -------------------------------------------------------------------------------------


@api.route(
    "/load/url",
    "POST",
    auth="admin",
    summary="Fetch a function's code from a URL",
    body=s.LoadUrlForm,
    response=s.LoadUrlResponse,
    errors=(400,),
)
def load_url(body: s.LoadUrlForm):
    """Fetch code (GitHub links become raw links) and suggest a name; nothing is stored."""
    return url_loader.load_from_url(body.url, allow_private=current_app.config["SLUICE_ALLOW_PRIVATE_URLS"])


@api.route(
    "/sync",
    "POST",
    auth="admin",
    summary="Make the stored functions exactly the listed ones",
    body=s.SyncForm,
    query=s.SyncQuery,
    response=list[s.FunctionWithValvesModel] | s.SyncPlan,
    errors=(400, 503),
)
def sync_functions(body: s.SyncForm, query: s.SyncQuery):
    """Create or update every listed function and delete the others, in one transaction.

    An item without `valves` keeps the stored ones; if its new code refuses them, the sync fails as an update
    would, unless `reset_incompatible_valves=true` drops the refused values. With `dry_run=true` nothing is
    written and the answer lists the ids by outcome.
    """
    items = [item.model_dump() for item in body.functions]
    return sync.sync_functions(
        api_caller(),
        items,
        dry_run=query.dry_run,
        reset_incompatible_valves=query.reset_incompatible_valves,
    )


# --- history ----------------------------------------------------------------------------------------------------


@api.route(
    "/id/<id>/history",
    "GET",
    auth="admin",
    summary="A function's versions, newest first",
    query=s.HistoryQuery,
    response=list[s.VersionResponse],
    errors=(404,),
)
def history(id: str, query: s.HistoryQuery):
    """Twenty versions per page."""
    return versions_service.list_versions(id, query.page)


@api.route(
    "/id/<id>/history/diff",
    "GET",
    auth="admin",
    summary="Compare two versions",
    query=s.DiffQuery,
    response=s.VersionDiff,
    errors=(404,),
)
def history_diff(id: str, query: s.DiffQuery):
    """Name and meta before/after, and a unified diff of the code."""
    return versions_service.diff_versions(id, query.from_id, query.to_id)


@api.route(
    "/id/<id>/history/<version_id>",
    "GET",
    auth="admin",
    summary="One version with its snapshot",
    response=s.VersionModel,
    errors=(404,),
)
def history_entry(id: str, version_id: str):
    """The version and the name, code and meta it recorded."""
    return versions_service.version_model(versions_service.get_version(id, version_id))


@api.route(
    "/id/<id>/update/version",
    "POST",
    auth="admin",
    summary="Restore a version",
    body=s.VersionForm,
    query=s.UpdateQuery,
    response=s.FunctionModel,
    errors=(400, 404, 503),
)
def restore_version(id: str, body: s.VersionForm, query: s.UpdateQuery):
    """Make a saved version current again; its code is loaded as an update's is."""
    f = versions_service.restore_version(api_caller(), id, body.version_id, query.reset_incompatible_valves)
    return fs.function_model(f)


@api.route(
    "/id/<id>/history/<version_id>",
    "DELETE",
    auth="admin",
    summary="Delete a version",
    response=bool,
    errors=(400, 404),
)
def delete_version(id: str, version_id: str):
    """Any version but the current one can be deleted."""
    return versions_service.delete_version(id, version_id)


# --- requirements -----------------------------------------------------------------------------------------------


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


def register(app: Flask) -> None:
    app.register_blueprint(bp, url_prefix=PREFIXES[1], name="api_functions")
    app.register_blueprint(bp, url_prefix=PREFIXES[0], name="api_functions_legacy")
    register_docs(app)
