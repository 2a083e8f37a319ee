"""A registry of JSON API routes and the OpenAPI 3.1 document built from it.

Each route declares its method, path, who may call it, its query, body and response types and its error
statuses. The same declaration parses requests (pydantic, FastAPI-style 422 answers) and generates the document,
so what the document says is what the routes do.

Why not flask-openapi3 (4.3.2, measured December 2026): it is as fast (Flask test client, 5 rounds of 5,000 requests
of a GET list and a POST with ``FunctionCreateForm``, in CPU time on a loaded machine: 3,267 and 3,645 requests per
CPU-second against this registry's 3,201 and 3,541), and a validation callback gives the same 422 ``detail`` list,
key order, both prefixes (one blueprint per prefix) and the list route with and without its slash. But its body
validation replaces ours: a JSON body sent with another content type, or malformed JSON, becomes a ``model_type``
error instead of being read or answered ``json_invalid``; NUL, lone surrogates and infinite numbers reach the
services (no ``string_nul`` / ``string_unicode`` / ``finite_number``); a chunked body over the limit is not answered
413; a plain ``dict`` body (the valves routes) needs a root model; and the app must become its ``OpenAPI`` class.
Keeping those answers would mean running this module's parser beside it, so the library would only write the
document, which ``build_document`` and its helpers do in about 110 lines. The way over, if its UI packages are
wanted: make ``create_app`` build ``flask_openapi3.OpenAPI``, declare each route on an ``APIBlueprint`` per prefix
with ``responses``, ``security`` and ``openapi_extensions={"x-sluice-auth": ...}``, and keep ``parse_json_body`` as
a ``before_request`` of those blueprints so that the library's own body check only ever sees valid, storable JSON.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import cache, lru_cache, wraps
from typing import Any

from flask import Blueprint, Response, jsonify, request
from pydantic import BaseModel, TypeAdapter, ValidationError
from werkzeug.exceptions import RequestEntityTooLarge
from werkzeug.routing import BaseConverter

from services import storable
from services.errors import ServiceError
from web.access import api_admin_required, api_user_required

MIB = 1024 * 1024
REF_TEMPLATE = "#/components/schemas/{model}"
AUTH_LEVELS = ("public", "user", "admin")
STATUS_TEXT = {
    400: "The request was refused; `detail` says why.",
    401: "Not authenticated, an invalid key or session, or not allowed.",
    403: "Turned off by the operator, or a missing CSRF token on a cookie call.",
    404: "No such function (or version, or job).",
    413: "The body, or the function's code, is too large.",
    422: "The body or query string does not fit the route's shape.",
    500: "An unexpected failure, logged on the server.",
    503: "Every load slot of this process is taken; try again in a moment.",
}


class RequestInvalid(ServiceError):
    """A body or query string that does not fit: answered 422 with a list of `{type, loc, msg}`."""

    status = 422

    def __init__(self, errors: list[dict]):
        super().__init__("The request could not be understood")
        self.detail = errors


@cache
def adapter(tp: Any) -> TypeAdapter:
    return TypeAdapter(tp)


def _field_errors(error: ValidationError, where: str) -> list[dict]:
    return [
        {"type": item["type"], "loc": [where, *item["loc"]], "msg": item["msg"]}
        for item in error.errors(include_url=False)
    ]


class BodyTooLarge(ServiceError):
    """A request body over `SLUICE_MAX_REQUEST_MB`: answered 413."""

    status = 413

    def __init__(self, limit: int):
        super().__init__(f"The request body is larger than {limit / MIB:g} MiB, the most Sluice accepts.")


def read_body() -> bytes:
    """The whole request body, or ``BodyTooLarge``, with or without a Content-Length."""
    limit = request.max_content_length
    try:
        raw = request.get_data(cache=True)  # a Content-Length over the limit raises here
    except RequestEntityTooLarge:
        raise BodyTooLarge(limit) from None
    if limit is not None and request.content_length is None and len(raw) >= limit:
        # A chunked body has no Content-Length: the stream silently stops at the limit. One more byte from the
        # server's own (terminated) input says whether the client sent more than that.
        if request.environ.get("wsgi.input_terminated") and request.environ["wsgi.input"].read(1):
            raise BodyTooLarge(limit)
    return raw


def parse_json_body(tp: Any) -> Any:
    """The request body, parsed as JSON whatever its content type, then validated as ``tp``."""
    raw = read_body()
    if not raw.strip():
        raise RequestInvalid([{"type": "missing", "loc": ["body"], "msg": "Field required"}])
    try:
        data = storable.loads(raw)
    except (ValueError, UnicodeDecodeError) as error:
        position = getattr(error, "pos", 0)
        reason = getattr(error, "msg", None) or str(error)
        raise RequestInvalid(
            [{"type": "json_invalid", "loc": ["body", position], "msg": f"JSON decode error: {reason}"}]
        ) from None
    except RecursionError:
        raise RequestInvalid(
            [{"type": "json_invalid", "loc": ["body"], "msg": "JSON decode error: nested too deeply"}]
        ) from None
    unstorable = _unstorable_text(data)
    if unstorable:
        raise RequestInvalid(unstorable)
    try:
        return adapter(tp).validate_python(data)
    except ValidationError as error:
        raise RequestInvalid(_field_errors(error, "body")) from None


_TEXT_ERRORS = {
    ("nul", False): ("string_nul", "Text must not contain NUL (\\u0000)"),
    ("nul", True): ("string_nul", "Keys must not contain NUL (\\u0000)"),
    ("surrogate", False): ("string_unicode", "Text must be valid Unicode: it holds a lone surrogate"),
    ("surrogate", True): ("string_unicode", "Keys must be valid Unicode: one holds a lone surrogate"),
    ("number", False): ("finite_number", "Input should be a finite number"),  # 1e400 parses as infinity
}


def _unstorable_text(data: Any) -> list[dict]:
    """A 422 error for each string (or key) that no database can store: NUL (PostgreSQL) or a lone surrogate.

    A top-level ``id`` is left to the routes, whose id rule answers every malformed id with the same 400.
    """
    errors = []
    for problem in storable.problems(data):
        if problem.loc == ("id",) and not problem.in_key:
            continue
        loc = ["body", *problem.loc[:-1]] if problem.in_key else ["body", *problem.loc]
        kind, msg = _TEXT_ERRORS[(problem.kind, problem.in_key)]
        errors.append({"type": kind, "loc": loc, "msg": msg})
    return errors


def parse_query(model: type[BaseModel]) -> BaseModel:
    try:
        return model.model_validate(request.args.to_dict())
    except ValidationError as error:
        raise RequestInvalid(_field_errors(error, "query")) from None


class ExceptConverter(BaseConverter):
    """A path segment other than the words given: ``<except(diff):version_id>``.

    Werkzeug tries a static segment first and, when its method does not fit, falls back to a variable one in the
    same place: without this, ``DELETE …/history/diff`` was routed as "delete the version named diff" instead of
    405. The words a variable excludes are its static siblings, so every method of those paths is theirs.
    """

    def __init__(self, url_map, *words: str):
        super().__init__(url_map)
        self.words = words
        self.regex = self.pattern(words)

    @staticmethod
    def pattern(words) -> str:
        return "(?!(?:" + "|".join(re.escape(word) for word in words) + ")$)[^/]+"


CONVERTERS = {"except": ExceptConverter}


@dataclass
class ApiRoute:
    rule: str
    method: str
    endpoint: str
    auth: str
    summary: str
    response: Any
    body: Any = None
    query: type[BaseModel] | None = None
    errors: tuple[int, ...] = ()
    description: str = ""
    tags: list[str] = field(default_factory=list)
    streams: bool = False  # may answer text/event-stream instead of JSON
    authenticated_by_view: bool = False  # no guard before the view: it checks ``auth`` in its own read

    @property
    def statuses(self) -> list[int]:
        found = set(self.errors)
        if self.auth != "public":
            found.add(401)
        if self.body is not None:
            found.update((413, 422))
        if self.query is not None:
            found.add(422)
        found.add(500)
        return sorted(found)


class RouteRegistry:
    """Routes of one blueprint, mounted under several prefixes, described once."""

    def __init__(
        self,
        blueprint: Blueprint,
        prefixes: tuple[str, ...],
        tag: str,
        *,
        error_model: type[BaseModel],
        invalid_model: type[BaseModel],
        path_patterns: dict[str, str] | None = None,
    ):
        self.blueprint = blueprint
        self.prefixes = prefixes
        self.tag = tag
        self.error_model = error_model  # the shape of every error answer
        self.invalid_model = invalid_model  # the shape of a 422 answer
        # Path variables by name, with the regular expression their values follow (declared in the document).
        self.path_patterns = path_patterns or {}
        self.routes: list[ApiRoute] = []

    def route(
        self,
        rule: str,
        method: str,
        *,
        auth: str,
        summary: str,
        response: Any,
        body: Any = None,
        query: type[BaseModel] | None = None,
        errors: tuple[int, ...] = (),
        strict_slashes: bool | None = None,
        streams: bool = False,
        authenticated_by_view: bool = False,
    ) -> Callable:
        """Register ``view(**path, [query=...], [body=...])``; it returns plain data, answered as JSON.

        With ``streams``, the view may also return a ``Response`` of its own (server-sent events), documented as a
        `text/event-stream` alternative of the 200 answer.

        With ``authenticated_by_view``, no guard runs before the view: it authenticates the caller and checks
        ``auth`` itself, in its read's own query (``web.access.read_as_caller``). Only for reads that change
        nothing; the document still says ``auth``, and tests/api/test_access.py holds such routes to it.
        """
        if auth not in AUTH_LEVELS:
            raise ValueError(f"unknown auth level {auth!r}")

        def decorator(view: Callable) -> Callable:
            @wraps(view)
            def endpoint(**path: Any):
                kwargs = dict(path)
                if query is not None:
                    kwargs["query"] = parse_query(query)
                if body is not None:
                    kwargs["body"] = parse_json_body(body)
                answer = view(**kwargs)
                if streams and isinstance(answer, Response):
                    return answer
                return jsonify(answer)

            guarded = endpoint
            if auth == "admin" and not authenticated_by_view:
                guarded = api_admin_required(endpoint)
            elif auth == "user" and not authenticated_by_view:
                guarded = api_user_required(endpoint)
            options = {} if strict_slashes is None else {"strict_slashes": strict_slashes}
            self.blueprint.add_url_rule(rule, view.__name__, guarded, methods=[method], **options)
            self.routes.append(
                ApiRoute(
                    rule=rule,
                    method=method,
                    endpoint=view.__name__,
                    auth=auth,
                    summary=summary,
                    response=response,
                    body=body,
                    query=query,
                    errors=errors,
                    description=(view.__doc__ or "").strip(),
                    tags=[self.tag],
                    streams=streams,
                    authenticated_by_view=authenticated_by_view,
                )
            )
            return view

        return decorator


# --- the document ------------------------------------------------------------------------------------------------


def openapi_path(rule: str) -> str:
    out, depth, name = [], 0, []
    for char in rule:
        if char == "<":
            depth, name = 1, []
        elif char == ">" and depth:
            depth = 0
            out.append("{" + "".join(name).split(":")[-1] + "}")
        elif depth:
            name.append(char)
        else:
            out.append(char)
    return "".join(out)


_CONVERTER_SPEC = re.compile(r"except\((?P<words>[^)]*)\)")


def _path_parameters(rule: str, patterns: dict[str, str]) -> list[dict]:
    """Each variable of the rule, with the pattern the server holds it to: the registry's for its name (the
    function id's), or what its converter excludes."""
    params = []
    for part in rule.split("<")[1:]:
        converter, _, name = part.split(">", 1)[0].rpartition(":")
        schema: dict[str, Any] = {"type": "string", "pattern": NO_NUL}
        if name in patterns:
            schema["pattern"] = f"^{patterns[name]}$"
        elif spec := _CONVERTER_SPEC.fullmatch(converter):
            words = [word.strip() for word in spec["words"].split(",")]
            schema["pattern"] = no_nul(f"^{ExceptConverter.pattern(words)}$")
        params.append({"name": name, "in": "path", "required": True, "schema": schema})
    return params


# Every string the server reads refuses NUL (422 `string_nul`: PostgreSQL cannot store it), so every string the
# document describes says so; a field with a pattern of its own folds the rule into it (`no_nul`).
NO_NUL = "^[^\\u0000]*$"


def no_nul(pattern: str) -> str:
    """``pattern`` (anchored, of the form ``^...$``) for text that also holds no NUL."""
    return "^(?=[^\\u0000]*$)" + pattern.removeprefix("^")


def declare_text_rules(schema: Any) -> Any:
    """Add the no-NUL rule to every string schema in ``schema`` that has no pattern, enum or constant already."""
    if isinstance(schema, dict):
        if schema.get("type") == "string" and not {"pattern", "enum", "const"} & schema.keys():
            schema["pattern"] = NO_NUL
        for value in schema.values():
            declare_text_rules(value)
    elif isinstance(schema, list):
        for value in schema:
            declare_text_rules(value)
    return schema


class _Schemas:
    def __init__(self):
        self.components: dict[str, Any] = {}

    def of(self, tp: Any) -> dict:
        schema = declare_text_rules(adapter(tp).json_schema(ref_template=REF_TEMPLATE))
        for name, definition in schema.pop("$defs", {}).items():
            self.components.setdefault(name, definition)
        if isinstance(tp, type) and issubclass(tp, BaseModel) and "properties" in schema:
            self.components.setdefault(tp.__name__, schema)
            return {"$ref": REF_TEMPLATE.format(model=tp.__name__)}
        return schema


def _query_parameters(model: type[BaseModel], schemas: _Schemas) -> list[dict]:
    schema = declare_text_rules(model.model_json_schema(ref_template=REF_TEMPLATE))
    required = set(schema.get("required", []))
    return [
        {"name": name, "in": "query", "required": name in required, "schema": prop}
        for name, prop in schema.get("properties", {}).items()
    ]


SECURITY_SCHEMES = {
    "bearerAuth": {"type": "http", "scheme": "bearer", "description": "An API key (`sk-…`)."},
    "apiKeyHeader": {"type": "apiKey", "in": "header", "name": "x-api-key"},
    "sessionCookie": {
        "type": "apiKey",
        "in": "cookie",
        "name": "session",
        "description": "The console's session; unsafe methods also need the `X-CSRFToken` header.",
    },
}


def build_document(registries: list[RouteRegistry], *, title: str, version: str) -> dict:
    schemas = _Schemas()
    paths: dict[str, dict] = {}
    for registry in registries:
        error_ref = schemas.of(registry.error_model)
        invalid_ref = schemas.of(registry.invalid_model)
        for prefix in registry.prefixes:
            for route in registry.routes:
                path = prefix + openapi_path(route.rule)
                operation: dict[str, Any] = {
                    "operationId": f"{route.endpoint}{prefix.replace('/', '_')}",
                    "summary": route.summary,
                    "tags": route.tags,
                }
                if route.description:
                    operation["description"] = route.description
                parameters = _path_parameters(route.rule, registry.path_patterns)
                if route.query is not None:
                    parameters += _query_parameters(route.query, schemas)
                if parameters:
                    operation["parameters"] = parameters
                if route.body is not None:
                    operation["requestBody"] = {
                        "required": True,
                        "content": {"application/json": {"schema": schemas.of(route.body)}},
                    }
                responses: dict[str, Any] = {
                    "200": {
                        "description": "Success",
                        "content": {"application/json": {"schema": schemas.of(route.response)}},
                    }
                }
                if route.streams:
                    responses["200"]["content"]["text/event-stream"] = {
                        "schema": {
                            "type": "string",
                            "description": "Server-sent events, see the description.",
                        }
                    }
                for status in route.statuses:
                    responses[str(status)] = {
                        "description": STATUS_TEXT.get(status, "Error"),
                        "content": {
                            "application/json": {"schema": invalid_ref if status == 422 else error_ref}
                        },
                    }
                operation["responses"] = responses
                operation["security"] = (
                    [] if route.auth == "public" else [{name: []} for name in SECURITY_SCHEMES]
                )
                operation["x-sluice-auth"] = route.auth
                paths.setdefault(path, {})[route.method.lower()] = operation
    return {
        "openapi": "3.1.0",
        "info": {
            "title": title,
            "version": version,
            "description": "Sluice's functions API, compatible with Open WebUI's /api/v1/functions.",
        },
        "paths": paths,
        "components": {"schemas": schemas.components, "securitySchemes": SECURITY_SCHEMES},
    }


_REGISTRIES: list[RouteRegistry] = []


def publish(registry: RouteRegistry) -> None:
    """Add a registry's routes to the document that ``document_text`` answers."""
    if registry not in _REGISTRIES:
        _REGISTRIES.append(registry)


@lru_cache(maxsize=1)
def document_text() -> str:
    """The OpenAPI document of every published registry, built once per process."""
    return json.dumps(build_document(_REGISTRIES, title="Sluice API", version="1.0.0"))
