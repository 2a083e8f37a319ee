"""Errors as values: a status and a message a user can act on, raised by services, answered by both faces."""

from __future__ import annotations

from typing import Any


class ServiceError(Exception):
    """A failure to report to the caller: ``detail`` is the sentence; ``extra`` adds keys to the JSON answer."""

    status = 400

    def __init__(self, detail: str, status: int | None = None, **extra: Any):
        super().__init__(detail)
        self.detail = detail
        if status is not None:
            self.status = status
        self.extra = extra

    def to_dict(self) -> dict[str, Any]:
        return {"detail": self.detail, **self.extra}


class NotFound(ServiceError):
    status = 404

    def __init__(self, detail: str = "We could not find what you're looking for :/", **extra: Any):
        super().__init__(detail, **extra)


class Forbidden(ServiceError):
    status = 403
