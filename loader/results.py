"""What loading a function's code gives back: plain, JSON-serialisable value objects.

The isolated child answers with JSON; the constructors here (`from_answer`) read that answer defensively, because it
was produced by a process that ran untrusted code and may be garbled.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from loader.protocol import error

FUNCTION_TYPES = ("pipe", "filter", "action", "event")
# The longest icon (`self.icon`, a data: URL as often as not) a load reports: 256 KiB of text, room for any sane
# picture inlined in base64, and a bound on what a hostile attribute adds to every answer and stored row.
MAX_ICON_CHARS = 256 * 1024


def _str_or_none(value: Any) -> str | None:
    return value if isinstance(value, str) else None


def _int_or_none(value: Any) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def _dict_or_none(value: Any) -> dict | None:
    return value if isinstance(value, dict) else None


def _icon_or_none(value: Any) -> str | None:
    return value if isinstance(value, str) and 0 < len(value) <= MAX_ICON_CHARS else None


@dataclass
class LoadError:
    """Why a function's code could not be loaded; `line`/`column` point into the function's own source."""

    type: str
    message: str
    line: int | None = None
    column: int | None = None

    @property
    def detail(self) -> str:
        """One sentence for an API answer, e.g. `SyntaxError: invalid syntax (line 7)`."""
        where = f" (line {self.line})" if self.line else ""
        return f"{self.type}: {self.message}{where}"

    def to_dict(self) -> dict:
        return {**error(self.type, self.message, self.line, self.column), "detail": self.detail}

    @classmethod
    def from_answer(cls, answer: Any) -> LoadError | None:
        if not isinstance(answer, dict):
            return None
        return cls(
            type=_str_or_none(answer.get("type")) or "Error",
            message=_str_or_none(answer.get("message")) or "",
            line=_int_or_none(answer.get("line")),
            column=_int_or_none(answer.get("column")),
        )


@dataclass
class ValvesResult:
    """Valves checked against the function's own `Valves`/`UserValves` class."""

    ok: bool
    values: dict = field(default_factory=dict)
    errors: list[dict] = field(default_factory=list)
    error: LoadError | None = None

    def to_dict(self) -> dict:
        return {
            "ok": self.ok,
            "values": self.values,
            "errors": self.errors,
            "error": self.error.to_dict() if self.error else None,
        }

    @classmethod
    def from_answer(cls, answer: Any) -> ValvesResult:
        if not isinstance(answer, dict):
            return cls(ok=False, error=LoadError("BadAnswer", "the loader gave an unreadable answer"))
        error = LoadError.from_answer(answer.get("error"))
        errors = [
            {
                "loc": [part for part in item.get("loc", []) if isinstance(part, (str, int))],
                "msg": _str_or_none(item.get("msg")) or "",
                "type": _str_or_none(item.get("type")) or "value_error",
            }
            for item in answer.get("errors") or []
            if isinstance(item, dict) and isinstance(item.get("loc", []), list)
        ]
        ok = answer.get("ok") is True and error is None and not errors
        return cls(ok=ok, values=_dict_or_none(answer.get("values")) or {}, errors=errors, error=error)


@dataclass
class LoadResult:
    """Everything Sluice learns from loading a function's code once."""

    ok: bool
    content_hash: str
    type: str | None = None
    toggle: bool = False
    manifest: dict[str, str] = field(default_factory=dict)
    valves_schema: dict | None = None
    user_valves_schema: dict | None = None
    # What `default_factory` fields default to (their schema has no `default`): shown by forms, never by the API.
    valves_defaults: dict | None = None
    user_valves_defaults: dict | None = None
    # The instance's `icon_url` or `icon` attribute (a string of at most MAX_ICON_CHARS), unchecked: the app
    # decides whether it is safe to show.
    icon: str | None = None
    error: LoadError | None = None
    valves_check: ValvesResult | None = None
    # What the code printed while loading (capped), and warnings it raised (pydantic deprecations and the like).
    output: str = ""
    warnings: list[str] = field(default_factory=list)

    def to_dict(self) -> dict:
        return {
            "ok": self.ok,
            "type": self.type,
            "toggle": self.toggle,
            "manifest": self.manifest,
            "valves_schema": self.valves_schema,
            "user_valves_schema": self.user_valves_schema,
            "valves_defaults": self.valves_defaults,
            "user_valves_defaults": self.user_valves_defaults,
            "icon": self.icon,
            "content_hash": self.content_hash,
            "error": self.error.to_dict() if self.error else None,
            "valves_check": self.valves_check.to_dict() if self.valves_check else None,
            "output": self.output,
            "warnings": self.warnings,
        }

    @classmethod
    def failed(cls, content_hash: str, error: LoadError, manifest: dict | None = None) -> LoadResult:
        return cls(ok=False, content_hash=content_hash, manifest=manifest or {}, error=error)

    @classmethod
    def from_answer(cls, answer: Any, *, content_hash: str, manifest: dict, output: str = "") -> LoadResult:
        if not isinstance(answer, dict):
            error = LoadError("BadAnswer", "the loader gave an unreadable answer")
            return cls(ok=False, content_hash=content_hash, manifest=manifest, error=error, output=output)
        error = LoadError.from_answer(answer.get("error"))
        kind = answer.get("type")
        kind = kind if kind in FUNCTION_TYPES else None
        ok = answer.get("ok") is True and error is None and kind is not None
        if not ok and error is None:
            error = LoadError("BadAnswer", "the loader gave an incomplete answer")
        check = answer.get("valves_check")
        warnings = [item for item in answer.get("warnings") or [] if isinstance(item, str)]
        return cls(
            ok=ok,
            content_hash=content_hash,
            type=kind if ok else None,
            toggle=ok and kind == "filter" and answer.get("toggle") is True,
            manifest=manifest,
            valves_schema=_dict_or_none(answer.get("valves_schema")) if ok else None,
            user_valves_schema=_dict_or_none(answer.get("user_valves_schema")) if ok else None,
            valves_defaults=_dict_or_none(answer.get("valves_defaults")) if ok else None,
            user_valves_defaults=_dict_or_none(answer.get("user_valves_defaults")) if ok else None,
            icon=_icon_or_none(answer.get("icon")) if ok else None,
            error=error,
            valves_check=ValvesResult.from_answer(check) if ok and check is not None else None,
            output=output,
            warnings=warnings,
        )
