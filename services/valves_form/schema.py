"""Reading one property of a valves JSON schema: ``$ref``/``allOf`` inlined, ``Optional[...]`` split into the type
and "may be null", the ``input`` hint Open WebUI functions write, and the choices a select offers.

What kind of field a property becomes is not decided here but by the kinds themselves (``kinds.py``).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from services.valves_form.values import Option, option_key, plain

# Names that hold credentials in real functions (`openai_api_key`, `bearer_token`, `client_secret`, `serper_key`).
# Only string fields are masked by name: `max_tokens: int` is not a secret.
_SECRET_NAME = re.compile(
    r"(^|_)(api_?key|apikey|token|secret|password|passwd|pwd|credentials?|bearer|auth_header)($|_)|(^|_)key$",
    re.IGNORECASE,
)


def resolve(prop: Mapping, defs: Mapping, depth: int = 0) -> dict:
    """Inline ``$ref`` (and a lone ``allOf: [{$ref}]``), letting the property's own keys win."""
    prop = dict(prop)
    if depth > 8:
        return prop
    all_of = prop.get("allOf")
    if isinstance(all_of, list) and len(all_of) == 1 and isinstance(all_of[0], Mapping):
        prop.pop("allOf")
        prop = {**resolve(all_of[0], defs, depth + 1), **prop}
    ref = prop.get("$ref")
    if isinstance(ref, str) and ref.startswith("#/"):
        target = ref.rsplit("/", 1)[-1]
        resolved = defs.get(target) if isinstance(defs, Mapping) else None
        if isinstance(resolved, Mapping):
            prop.pop("$ref")
            base = resolve(resolved, defs, depth + 1)
            base.pop("title", None)  # a class name such as `Color` is no title for the field
            prop = {**base, **prop}
    return prop


def split_nullable(prop: dict, defs: Mapping) -> tuple[dict, bool]:
    """``anyOf: [X, {type: null}]`` → (X with the outer keys, True); anything else unchanged."""
    for key in ("anyOf", "oneOf"):
        branches = prop.get(key)
        if not isinstance(branches, list):
            continue
        branches = [resolve(b, defs) for b in branches if isinstance(b, Mapping)]
        non_null = [b for b in branches if b.get("type") != "null"]
        nullable = len(non_null) < len(branches)
        outer = {k: v for k, v in prop.items() if k != key}
        if len(non_null) == 1:
            return {**non_null[0], **outer}, nullable
        consts = [b for b in non_null if "const" in b or "enum" in b]
        if non_null and len(consts) == len(non_null):
            values: list = []
            for branch in consts:
                values.extend(branch["enum"] if "enum" in branch else [branch["const"]])
            return {**outer, "enum": values}, nullable
        return {**outer, key: non_null}, nullable
    types = prop.get("type")
    if isinstance(types, list):
        non_null_types = [t for t in types if t != "null"]
        if len(non_null_types) < len(types):
            prop = dict(prop)
            prop["type"] = non_null_types[0] if len(non_null_types) == 1 else non_null_types
            return prop, True
    return prop, False


def input_hint(prop: Mapping) -> dict:
    """The ``input`` object of ``json_schema_extra`` (``{"type": "select", "options": [...]}`` and the like)."""
    hint = prop.get("input")
    return dict(hint) if isinstance(hint, Mapping) else {}


def options(prop: Mapping) -> list[Option]:
    """The choices of ``input: {type: select, options}``, else of ``enum``/``Literal``, else of ``const``.

    Options given as the name of a method on the valves class were already resolved by the loader into a list.
    """
    hint = input_hint(prop)
    raw = hint.get("options") if hint.get("type") == "select" else None
    if not isinstance(raw, list):
        raw = prop.get("enum")
        if not isinstance(raw, list):
            raw = [prop["const"]] if "const" in prop else None
    if not isinstance(raw, list):
        return []
    found: list[Option] = []
    seen: set[str] = set()
    for item in raw:
        if isinstance(item, Mapping) and "value" in item:
            value = item["value"]
            label = item.get("label") or item.get("name") or plain(value)
        else:
            value, label = item, plain(item)
        key = option_key(value)
        if key in seen:
            continue
        seen.add(key)
        found.append(Option(key=key, value=value, label=str(label)))
    return found


def is_secret(name: str, prop: Mapping) -> bool:
    """A password hint, ``format: password``, ``writeOnly`` or a credential-like name."""
    if input_hint(prop).get("type") == "password":
        return True
    if prop.get("format") == "password" or prop.get("writeOnly") is True:
        return True
    return bool(_SECRET_NAME.search(name))


def number(value: Any) -> float | None:
    return value if isinstance(value, int | float) and not isinstance(value, bool) else None


def integer(value: Any) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) else None
