"""Import hook that supplies the Open WebUI modules Sluice has no file for.

Sluice writes out the modules community functions use most (``open_webui.models.users``, ``open_webui.utils.misc``
…). Any other module that exists in Open WebUI — and the legacy ``open_webui.apps.*`` paths of functions written
for Open WebUI 0.3 — is created on import as a module whose names are stand-ins. The hook answers only for
``open_webui.*`` names and lets real files win, except for legacy paths (see ``OpenWebUIFinder.find_spec``).
"""

from __future__ import annotations

import importlib
import importlib.machinery
import importlib.util
import sys
import types

from . import _catalogue


def _legacy_target(fullname: str) -> str | None:
    """The current module an old ``open_webui.apps.webui.X`` path moved to, if Open WebUI still has one."""
    for old, new in (("open_webui.apps.webui.", "open_webui."), ("open_webui.apps.", "open_webui.")):
        if fullname.startswith(old):
            candidate = new + fullname[len(old) :]
            if candidate in _catalogue.modules():
                return candidate
            try:
                if importlib.util.find_spec(candidate) is not None:
                    return candidate
            except ImportError:
                pass
    return None


class _StubLoader:
    """Loads a stand-in module, or hands out the current module an old path moved to."""

    def __init__(self, alias_of: str | None = None):
        self.alias_of = alias_of
        self._target_spec = None

    def create_module(self, spec: importlib.machinery.ModuleSpec) -> types.ModuleType | None:
        if self.alias_of:
            target = importlib.import_module(self.alias_of)
            self._target_spec = target.__spec__
            return target
        return None  # the default: a fresh, empty module

    def exec_module(self, module: types.ModuleType) -> None:
        if self.alias_of:
            # The import system stamped the alias's spec on the shared module: give it back its own.
            module.__spec__ = self._target_spec
            return
        module.__doc__ = (
            f"Stand-in for Open WebUI's {module.__name__}: its names are not available in Sluice."
        )
        module.__getattr__ = _catalogue.module_getattr(module.__name__)  # type: ignore[attr-defined]


class OpenWebUIFinder:
    """Finds ``open_webui.*`` modules that Open WebUI has (or had) but Sluice implements no file for."""

    def find_spec(self, fullname, path=None, target=None):  # noqa: ANN001 - the finder protocol
        if not fullname.startswith("open_webui."):
            return None
        if _catalogue.is_legacy(fullname):
            # Answered before the path finder looks: an alias's parent is a real package, and its directory
            # would otherwise load a second copy of the real module under the old name.
            alias_of = _legacy_target(fullname)
            return importlib.machinery.ModuleSpec(
                fullname, _StubLoader(alias_of), is_package=_is_package(alias_of or fullname)
            )
        real = importlib.machinery.PathFinder.find_spec(fullname, path)
        if real is not None:
            return real
        if fullname not in _catalogue.modules():
            return None
        return importlib.machinery.ModuleSpec(fullname, _StubLoader(), is_package=_is_package(fullname))


def _is_package(fullname: str) -> bool:
    if _catalogue.is_legacy(fullname):
        return True  # an unknown old path may have children: open_webui.apps.rag.vector.connector, …
    prefix = fullname + "."
    return any(name.startswith(prefix) for name in _catalogue.modules())


def install() -> None:
    """Put the finder first on ``sys.meta_path`` (it defers to real files for all but legacy paths)."""
    if not any(isinstance(finder, OpenWebUIFinder) for finder in sys.meta_path):
        sys.meta_path.insert(0, OpenWebUIFinder())
