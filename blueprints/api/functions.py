"""The functions API: list, export, create, read, update, switch, delete, load from a URL and sync."""

from __future__ import annotations

from flask import current_app

from blueprints.api import api
from blueprints.api import schemas as s
from services import function_reads, function_shapes, sync, url_loader
from services import functions as fs
from web.access import api_caller, read_as_caller

# --- lists and export -------------------------------------------------------------------------------------------


@api.route(
    "/",
    "GET",
    auth="user",
    summary="List functions",
    response=list[s.FunctionResponse],
    strict_slashes=False,
    authenticated_by_view=True,
)
def list_functions():
    """Admins get every function; other users get the active ones."""
    return read_as_caller("user", function_reads.list_functions, function_reads.list_functions_as_key)


@api.route(
    "/list",
    "GET",
    auth="admin",
    summary="List functions with their creators",
    response=list[s.FunctionUserResponse],
)
def list_with_users():
    """Every function with its creator, newest change first."""
    return function_reads.list_functions_with_users()


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
    return function_reads.export_functions(include_valves=query.include_valves)


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
    return function_shapes.function_response(f)


@api.route(
    "/id/<id>",
    "GET",
    auth="admin",
    summary="Get a function",
    response=s.FunctionModel,
    errors=(404,),
    authenticated_by_view=True,
)
def get_function(id: str):
    """One function with its code."""
    return read_as_caller(
        "admin",
        lambda _caller: function_reads.function_model_by_id(id),
        lambda digest: function_reads.function_model_as_key(digest, id),
    )


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
    return function_shapes.function_model(f)


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
    return function_shapes.function_model(fs.toggle_active(id))


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
    return function_shapes.function_model(fs.toggle_global(id))


@api.route(
    "/id/<id>/delete", "DELETE", auth="admin", summary="Delete a function", response=bool, errors=(404,)
)
def delete(id: str):
    """Delete the function, its user valves and its history."""
    return fs.delete_function(id)


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
