"""A function's versions: list, compare, read, restore and delete."""

from __future__ import annotations

from blueprints.api import api
from blueprints.api import schemas as s
from services import function_shapes
from services import versions as versions_service
from web.access import api_caller


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
    "/id/<id>/history/<except(diff):version_id>",
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
    return function_shapes.function_model(f)


@api.route(
    "/id/<id>/history/<except(diff):version_id>",
    "DELETE",
    auth="admin",
    summary="Delete a version",
    response=bool,
    errors=(400, 404),
)
def delete_version(id: str, version_id: str):
    """Any version but the current one can be deleted."""
    return versions_service.delete_version(id, version_id)
