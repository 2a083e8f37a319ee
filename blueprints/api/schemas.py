"""Wire shapes of the functions API as pydantic models: request bodies are parsed with them, and the OpenAPI
document is generated from them, so the description and the behaviour cannot drift apart.

Field order is the wire order of SPEC §2 (Open WebUI 0.12's order).
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from models import FUNCTION_TYPES, ID_PATTERN
from services.running import ALL_METHODS
from services.versions import MAX_HISTORY_PAGE
from web.openapi import no_nul

# Declared in the document, checked by the services (a bad id is Open WebUI's 400, not a 422): so these patterns
# are `json_schema_extra`, which pydantic does not enforce.
ID_RULE = {"pattern": f"^{ID_PATTERN.pattern}$", "maxLength": 64}
URL_RULE = {"pattern": no_nul(r"^\s*\S.*$"), "minLength": 1}

FunctionType = Literal[FUNCTION_TYPES]


class FunctionMeta(BaseModel):
    """`description`, `manifest` (the code's frontmatter), `toggle` when set; other keys are kept verbatim."""

    model_config = ConfigDict(extra="allow")

    description: str | None = None
    manifest: dict[str, Any] | None = Field(default=None, description="Derived from the code's frontmatter.")
    toggle: bool | None = Field(default=None, description="Present (true) only for toggle filters.")


class FunctionModel(BaseModel):
    version_id: str | None
    id: str
    user_id: str
    name: str
    type: FunctionType
    content: str
    meta: FunctionMeta
    is_active: bool
    is_global: bool
    updated_at: int
    created_at: int


class FunctionWithValvesModel(BaseModel):
    version_id: str | None
    id: str
    user_id: str
    name: str
    type: FunctionType
    content: str
    meta: FunctionMeta
    valves: dict[str, Any]
    is_active: bool
    is_global: bool
    updated_at: int
    created_at: int


class FunctionResponse(BaseModel):
    version_id: str | None
    id: str
    user_id: str
    type: FunctionType
    name: str
    meta: FunctionMeta
    is_active: bool
    is_global: bool
    updated_at: int
    created_at: int


class UserPublic(BaseModel):
    id: str
    name: str
    role: str
    email: str


class FunctionUserResponse(FunctionResponse):
    user: UserPublic | None


class FunctionMetaForm(BaseModel):
    """`meta` as a client sends it: `description` is a string or null; every other key is kept verbatim.

    `manifest` and `toggle` are derived from the code, so what a client sends under them is not checked here.
    """

    model_config = ConfigDict(extra="allow")

    description: str | None = None

    def to_dict(self) -> dict[str, Any]:
        """The keys the client sent, in its order, values unchanged."""
        return self.model_dump(exclude_unset=True)


class FunctionForm(BaseModel):
    """Body of update: the `id`, if any, is ignored, whatever it holds; without `meta` the stored meta is kept."""

    id: Any = Field(default=None, description="Ignored: the id is the one in the path.")
    name: str
    content: str
    meta: FunctionMetaForm | None = Field(
        default=None,
        description="Replaces the stored meta; when left out (or null), the stored meta is kept.",
    )
    commit_message: str | None = None


class FunctionCreateForm(FunctionForm):
    """Body of create: the id is required; without `meta` the function starts with none."""

    id: str = Field(json_schema_extra=ID_RULE, description="1 to 64 letters, digits and underscores.")
    meta: FunctionMetaForm | None = None


class LoadUrlForm(BaseModel):
    url: str = Field(json_schema_extra=URL_RULE, description="Not empty: an http(s) address.")


class LoadUrlResponse(BaseModel):
    name: str
    content: str


def _unwrap_function(data: Any) -> Any:
    """Accept the community site's format, where the function sits under a `function` key."""
    if isinstance(data, dict) and isinstance(data.get("function"), dict) and "content" not in data:
        inner = dict(data["function"])
        for key in ("id", "name"):
            if key not in inner and key in data:
                inner[key] = data[key]
        return inner
    return data


class SyncItem(BaseModel):
    """One function of a sync body: FunctionWithValvesModel, an Open WebUI export item or a community item.

    `type`, `user_id`, timestamps and `version_id` may be present but are never taken from the client.
    """

    id: str
    name: str
    content: str
    meta: FunctionMetaForm = Field(default_factory=FunctionMetaForm)
    valves: dict[str, Any] | None = None
    is_active: bool = False
    is_global: bool = False

    @model_validator(mode="before")
    @classmethod
    def unwrap(cls, data: Any) -> Any:
        return _unwrap_function(data)


class SyncForm(BaseModel):
    functions: list[SyncItem]


class SyncPlan(BaseModel):
    """What a sync would do (`?dry_run=true`): function ids by outcome."""

    created: list[str]
    updated: list[str]
    deleted: list[str]
    unchanged: list[str]


class SyncItemError(BaseModel):
    id: str | None
    detail: str
    error: dict[str, Any] | None = None
    errors: list[dict[str, Any]] | None = None


class SyncErrorResponse(BaseModel):
    detail: str
    errors: list[SyncItemError]


class VersionForm(BaseModel):
    version_id: str


class VersionAuthor(BaseModel):
    name: str


class VersionResponse(BaseModel):
    id: str
    function_id: str
    parent_id: str | None
    user_id: str
    commit_message: str | None
    created_at: int
    user: VersionAuthor | None


class VersionSnapshot(BaseModel):
    name: str
    content: str
    meta: dict[str, Any]


class VersionModel(VersionResponse):
    snapshot: VersionSnapshot


class DiffChange(BaseModel):
    before: Any
    after: Any


class VersionDiff(BaseModel):
    from_id: str
    to_id: str
    metadata: dict[str, DiffChange]
    content_diff: str
    line_endings_only: bool


class RequirementState(BaseModel):
    requirement: str
    name: str
    specifier: str
    extras: list[str]
    marker: str | None
    url: str | None
    applies: bool
    installed_version: str | None
    satisfied: bool


class InvalidRequirement(BaseModel):
    requirement: str
    reason: str


class RequirementsStatus(BaseModel):
    id: str
    requirements: str | None = Field(description="The manifest's `requirements:` value, as written.")
    valid: list[RequirementState]
    missing: list[str] = Field(description="Specifiers of applicable requirements not installed.")
    invalid: list[InvalidRequirement]
    ok: bool
    install_allowed: bool


class RequirementsInstallForm(BaseModel):
    content: str = Field(
        description="The function's code; what its `requirements:` line lists and is missing."
    )


class InstallStarted(BaseModel):
    job_id: str | None = Field(description="None when nothing was missing.")
    status: str


class InstallJob(BaseModel):
    job_id: str
    status: str
    requirements: list[str]
    created_at: int | None
    started_at: int | None
    ended_at: int | None
    exit_code: int | None
    error: str | None
    output: str
    output_truncated: bool


# --- query strings ----------------------------------------------------------------------------------------------


class ExportQuery(BaseModel):
    include_valves: bool = False


class UpdateQuery(BaseModel):
    reset_incompatible_valves: bool = False


class SyncQuery(BaseModel):
    dry_run: bool = False
    reset_incompatible_valves: bool = False


class HistoryQuery(BaseModel):
    page: int = Field(default=1, ge=1, le=MAX_HISTORY_PAGE)


class DiffQuery(BaseModel):
    from_id: str
    to_id: str


# --- running ----------------------------------------------------------------------------------------------------

RunMethod = Literal[ALL_METHODS]


class RunForm(BaseModel):
    """A call of one of the function's methods with a chat body (Open WebUI's shapes, see the README)."""

    method: RunMethod = Field(
        description="inlet, request, stream or outlet (filters), pipe (pipes), action (actions)"
    )
    body: dict[str, Any] = Field(
        default_factory=dict,
        description="The chat body the method gets (for `stream`: the chunk, the event).",
    )
    model: str | dict[str, Any] | None = Field(
        default=None, description="`__model__`: a model dict, or a model id; default: the body's `model`."
    )
    sub: str | None = Field(default=None, description="A manifold's sub-pipe, or an action's sub-action.")
    stream: bool = Field(
        default=False,
        description="Answer `text/event-stream`: event, chunk and output frames, then done or error.",
    )
    content: str | None = Field(
        default=None, description="Admins only: code to run instead of the stored code (not saved)."
    )


class RunError(BaseModel):
    """The function's own failure (or the runtime's: Timeout, Crashed, Exit, OutputLimit, MemoryError, ...)."""

    model_config = ConfigDict(extra="allow")

    type: str
    message: str
    line: int | None = None
    column: int | None = None
    traceback: str | None = None


class RunEvent(BaseModel):
    model_config = ConfigDict(extra="allow")

    type: str | None = None
    data: Any = None


class RunResponse(BaseModel):
    """The whole call. A pipe's `result` is the list of its items (`[type, value]`, type text, json or sse) and
    `text` their text; the function's own exception is `error`, with the line in its code."""

    result: Any
    events: list[RunEvent]
    output: str
    ms: float
    error: RunError | None
    text: str | None = None


# --- errors -----------------------------------------------------------------------------------------------------


class LoadErrorInfo(BaseModel):
    type: str
    message: str
    line: int | None
    column: int | None


class FieldError(BaseModel):
    loc: list[str | int]
    msg: str
    type: str


class HTTPError(BaseModel):
    """Every error answer: `detail` is a sentence; load failures add `error`, refused valves add `errors`."""

    model_config = ConfigDict(extra="allow")

    detail: str
    error: LoadErrorInfo | None = None
    errors: list[dict[str, Any]] | None = None


class ValidationErrorResponse(BaseModel):
    """422: the body or query does not fit the route's shape (FastAPI's convention)."""

    detail: list[FieldError]
