"""A function's valves classes: finding its `Valves`/`UserValves` class, and checking values against it.

The load child (`loader.describe`) and the runtime (`loader.runtime`) both find the class with `valves_class`, so a
class that loading ignores is ignored by calls too.
"""

from __future__ import annotations

import sys

from loader import protocol
from loader.errors import safe_str

# The class each kind of valves is checked with.
VALVES_CLASS = {"valves": "Valves", "user_valves": "UserValves"}


def valves_class(instance: object, name: str, notes: list[str] | None = None) -> type | None:
    """The `Valves`/`UserValves` class as Open WebUI finds it: an attribute of the function instance.

    Only a pydantic model class counts, for loading and for calls alike; why another is ignored goes to `notes`.
    """
    if notes is None:
        notes = []
    try:
        cls = getattr(instance, name, None)
    except Exception as exc:
        notes.append(f"{name} could not be read: {safe_str(exc, 500)}")
        return None
    if cls is None:
        return None
    if not isinstance(cls, type) or not (hasattr(cls, "model_json_schema") or hasattr(cls, "schema")):
        notes.append(f"{name} is not a pydantic model class; it is ignored")
        return None
    return cls


def check_valves(cls: type | None, values: dict, kind: str) -> dict:
    """Validate `values` with the function's own class, as Sluice stores them: only what was explicitly set."""
    if cls is None:
        name = VALVES_CLASS.get(kind, "Valves")
        message = f"the function has no {name} class"
        return {
            "ok": False,
            "values": {},
            "errors": [],
            "error": protocol.error("NoValvesClass", message),
        }
    values = {key: value for key, value in dict(values).items() if value is not None}
    try:
        if hasattr(cls, "model_validate"):
            model = cls.model_validate(values)
            dumped = _revealed(model, model.model_dump(exclude_unset=True, mode="json"))
        else:  # a pydantic.v1 model
            model = cls(**values)
            dumped = _revealed(model, model.dict(exclude_unset=True))
    except Exception as exc:  # ValidationError, or a validator raising something else
        return {"ok": False, "values": {}, "errors": _validation_errors(exc), "error": None}
    return {"ok": True, "values": dumped, "errors": [], "error": None}


def _revealed(model, dumped: dict) -> dict:
    """`dumped` with each secret (SecretStr, SecretBytes) at its real value rather than pydantic's "**********".

    Stored masked, a secret valve would be lost for good. The plain (python) dump holds the secret objects at the
    same places as the JSON dump holds their masks: walk both together and take the secret's value there.
    """
    try:
        plain = model.model_dump(exclude_unset=True) if hasattr(model, "model_dump") else dumped
    except Exception:  # a serializer that works only for JSON: keep what pydantic gave
        return dumped
    return _reveal(plain, dumped)


def _reveal(plain, dumped):
    if _is_secret(plain):
        value = plain.get_secret_value()
        return value.decode("utf-8", "replace") if isinstance(value, bytes) else value
    # Where a JSON-only serializer changed the shape, the two no longer match: keep pydantic's JSON there.
    if isinstance(plain, dict) and isinstance(dumped, dict) and len(plain) == len(dumped):
        pairs = zip(dumped.items(), plain.values(), strict=True)
        return {key: _reveal(value, item) for (key, item), value in pairs}
    if (
        isinstance(plain, (list, tuple, set, frozenset))
        and isinstance(dumped, list)
        and len(plain) == len(dumped)
    ):
        return [_reveal(value, item) for value, item in zip(plain, dumped, strict=True)]
    return dumped


def _is_secret(value) -> bool:
    """A pydantic secret (v2 `SecretStr`, `SecretBytes`, `Secret[...]`, or v1's) that knows its real value."""
    secret_types = []
    for module_name, name in (("pydantic.types", "_SecretBase"), ("pydantic.v1.types", "SecretField")):
        module = sys.modules.get(module_name)
        if module is not None and isinstance(getattr(module, name, None), type):
            secret_types.append(getattr(module, name))
    return (
        bool(secret_types) and isinstance(value, tuple(secret_types)) and hasattr(value, "get_secret_value")
    )


def _validation_errors(exc: Exception) -> list[dict]:
    errors = getattr(exc, "errors", None)
    if callable(errors):
        try:
            try:
                items = errors(include_url=False, include_context=False, include_input=False)
            except TypeError:
                items = errors()
            return [
                {
                    "loc": [
                        part if isinstance(part, (str, int)) else safe_str(part)
                        for part in item.get("loc", ())
                    ],
                    "msg": safe_str(item.get("msg", "")),
                    "type": safe_str(item.get("type", "value_error")),
                }
                for item in items
            ]
        except Exception:  # fall back to the exception's text below
            pass
    return [{"loc": [], "msg": safe_str(exc) or type(exc).__name__, "type": type(exc).__name__}]
