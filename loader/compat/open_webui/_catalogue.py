"""What Open WebUI's own modules define, so uncommon imports of real names still work.

``_catalogue.json`` lists, for each module of Open WebUI (the version in its ``version`` key), the public names it
defines and their kind, and under ``values`` the plain stock values of its settings (``env``, ``config``); it is
generated from an installed Open WebUI by ``tools/compare_with_openwebui.py catalogue`` and holds no code. A
catalogued setting resolves to its stock value; any other name that Open WebUI has but Sluice does not implement
resolves to a stand-in that raises "… is not available in Sluice" when used; a name Open WebUI does not have raises
ImportError here as it does there, so a function's ``try: from open_webui.x import y / except ImportError:``
fallback still works.
"""

from __future__ import annotations

import importlib
import json
import logging
import os
import sys
from collections.abc import Callable
from functools import cache
from typing import Any

from ._unavailable import unavailable_callable, unavailable_class, unavailable_object

_PATH = os.path.join(os.path.dirname(__file__), "_catalogue.json")

# Modules that old functions import from paths Open WebUI has since removed. Their names are not catalogued, so
# any public name resolves to a stand-in.
LEGACY_PREFIXES = ("open_webui.apps", "open_webui.utils.utils")


@cache
def _catalogue() -> dict[str, Any]:
    """The whole catalogue (loaded on first need: most functions never miss a name)."""
    try:
        with open(_PATH, encoding="utf-8") as handle:
            catalogue = json.load(handle)
    except (OSError, ValueError):
        return {}
    return catalogue if isinstance(catalogue, dict) else {}


def modules() -> dict[str, dict[str, str]]:
    """The catalogue's modules: for each, its public names and their kind."""
    return _catalogue().get("modules") or {}


def stock_values(module: str) -> dict[str, Any]:
    """Plain values (str, int, float, bool, None) a fresh Open WebUI gives the settings of `module`."""
    return (_catalogue().get("values") or {}).get(module) or {}


def is_legacy(module: str) -> bool:
    return any(module == prefix or module.startswith(prefix + ".") for prefix in LEGACY_PREFIXES)


def _resolve(module: str, name: str) -> Any:
    qualified = f"{module}.{name}"
    if is_legacy(module):
        return unavailable_class(qualified)
    kind = modules().get(module, {}).get(name)
    if kind is None:
        raise AttributeError(f"module {module!r} has no attribute {name!r}")
    if name in ("log", "logger") and kind == "object":
        return logging.getLogger(module)  # a module's own logger is harmless to hand out
    if kind == "object" and name in stock_values(module):
        return stock_values(module)[name]  # a setting: Field(default=RAG_TOP_K) needs the real default
    if kind == "class":
        return unavailable_class(qualified)
    if kind == "function":
        return unavailable_callable(qualified)
    if kind == "module":
        return importlib.import_module(qualified)
    if kind.startswith("="):
        source, _, attr = kind[1:].partition(":")
        try:
            target = importlib.import_module(source)
            return getattr(target, attr) if attr else target
        except (ImportError, AttributeError):
            # Open WebUI re-exports something Sluice's environment lacks (a vector database client, say).
            return unavailable_object(f"{source}.{attr}" if attr else source)
    return unavailable_object(qualified)


def module_getattr(module: str) -> Callable[[str], Any]:
    """Build a module-level ``__getattr__`` that resolves ``module``'s remaining Open WebUI names."""

    def __getattr__(name: str) -> Any:
        if name.startswith("_"):
            raise AttributeError(f"module {module!r} has no attribute {name!r}")
        value = _resolve(module, name)
        # Cache on the module so that every import of the name gets the same object.
        setattr(sys.modules[module], name, value)
        return value

    return __getattr__
