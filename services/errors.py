"""Errors as values: a status and a message a user can act on, raised by services, answered by both faces.

Callers decide what to do with an error by its ``kind`` (and ``field``), never by its wording, so a message can be
reworded freely. The kinds in use:

- ``invalid``: a value the caller sent is refused (the default);
- ``not_found``, ``function_not_found``, ``version_not_found``: nothing by that id (404);
- ``forbidden``: the caller may not do this (403);
- ``invalid_id``, ``duplicate_id``: the id of a new function is malformed or taken (field ``id``);
- ``content_too_large``: the code is larger than Sluice stores (413, field ``content``);
- ``load_failed``: the code does not load (field ``content``; ``extra["error"]`` has the line);
- ``invalid_valves``, ``no_valves_class``, ``incompatible_valves``: valves refused, nothing to set, or refused by
  new code;
- ``current_version``: the current version cannot be deleted;
- ``busy``: the loader, the runtime's workers or a sync is busy; the same request may simply be sent again (503,
  with ``Retry-After``);
- ``runtime_unavailable``: the loader could not take a run at all (503, with ``Retry-After``);
- ``invalid_method``: a run names a method the function's type has not (field ``method``);
- ``conflict``: something changed underneath the request; trying again may work.
"""

from __future__ import annotations

from typing import Any


class ServiceError(Exception):
    """A failure to report to the caller.

    ``detail`` is the sentence; ``kind`` says what went wrong and ``field`` which input it is about, for callers
    that route on it; ``extra`` adds keys to the JSON answer.
    """

    status = 400
    kind = "invalid"

    def __init__(
        self,
        detail: str,
        status: int | None = None,
        *,
        kind: str | None = None,
        field: str | None = None,
        **extra: Any,
    ):
        super().__init__(detail)
        self.detail = detail
        if status is not None:
            self.status = status
        if kind is not None:
            self.kind = kind
        self.field = field
        self.extra = extra

    def to_dict(self) -> dict[str, Any]:
        return {"detail": self.detail, **self.extra}


class NotFound(ServiceError):
    status = 404
    kind = "not_found"

    def __init__(
        self,
        detail: str = "We could not find what you're looking for :/",
        *,
        kind: str | None = None,
        **extra: Any,
    ):
        super().__init__(detail, kind=kind, **extra)


class Forbidden(ServiceError):
    status = 403
    kind = "forbidden"
