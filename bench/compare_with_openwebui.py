"""Compare Sluice's function loading with a running Open WebUI.

Two commands:

``compare``
    Create every fixture in ``tests/fixtures/functions/`` through both APIs (``POST /api/v1/functions/create``,
    then ``GET /id/{id}``, ``/id/{id}/valves/spec`` and ``/id/{id}/valves/user/spec``) and report any difference
    in type, manifest and Valves/UserValves schemas, and which fixtures failed where. Either side can be left out
    (``--sluice-url`` / ``--owui-url``); ``--record`` stores what Open WebUI answered in ``expected.json`` and in
    ``openwebui/<name>.json`` so the corpus test can compare Sluice against it without Open WebUI running.

``catalogue``
    Read an installed Open WebUI package and write which modules exist and, for each, which public names it
    defines and of what kind (class, function, object, module, or a re-export). Only names and kinds are recorded,
    never code. The compatibility layer (``loader/compat/open_webui``) uses the catalogue so that an uncommon but
    real ``from open_webui.x import Name`` imports (as an "not available in Sluice" stand-in) while a name Open
    WebUI does not have still raises ImportError, as it would there.

Open WebUI itself is never copied into the repository; see /work/shared/OPEN-WEBUI.md for installing and
starting it outside the tree.
"""

from __future__ import annotations

import argparse
import ast
import json
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
FIXTURES = ROOT / "tests" / "fixtures" / "functions"
CATALOGUE = ROOT / "loader" / "compat" / "open_webui" / "_catalogue.json"


# --------------------------------------------------------------------------------------------------- catalogue


def _module_name(package_root: Path, path: Path) -> str:
    parts = list(path.relative_to(package_root.parent).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _resolve_relative(module: str, is_package: bool, level: int, target: str | None) -> str:
    base = module.split(".")
    if not is_package:
        base = base[:-1]
    if level > 1:
        base = base[: len(base) - (level - 1)]
    return ".".join(base + ([target] if target else []))


def _kind_of_value(node: ast.AST) -> str:
    if isinstance(node, ast.Lambda):
        return "function"
    return "object"


def _top_level_statements(body: list[ast.stmt]):
    """Yield module-level statements, looking inside top-level if/try/with blocks."""
    for stmt in body:
        if isinstance(stmt, ast.If):
            yield from _top_level_statements(stmt.body)
            yield from _top_level_statements(stmt.orelse)
        elif isinstance(stmt, ast.Try):
            yield from _top_level_statements(stmt.body)
            for handler in stmt.handlers:
                yield from _top_level_statements(handler.body)
            yield from _top_level_statements(stmt.orelse)
            yield from _top_level_statements(stmt.finalbody)
        elif isinstance(stmt, ast.With):
            yield from _top_level_statements(stmt.body)
        else:
            yield stmt


def _names_of_module(module: str, is_package: bool, tree: ast.Module) -> dict[str, str]:
    names: dict[str, str] = {}

    def add(name: str, kind: str) -> None:
        if not name.startswith("_"):
            names[name] = kind

    for stmt in _top_level_statements(tree.body):
        if isinstance(stmt, ast.ClassDef):
            add(stmt.name, "class")
        elif isinstance(stmt, (ast.FunctionDef, ast.AsyncFunctionDef)):
            add(stmt.name, "function")
        elif isinstance(stmt, ast.Assign):
            # `Alias = SomeClass` keeps the kind of what it names.
            kind = _kind_of_value(stmt.value)
            if isinstance(stmt.value, ast.Name) and stmt.value.id in names:
                kind = names[stmt.value.id]
            for target in stmt.targets:
                for node in ast.walk(target):
                    if isinstance(node, ast.Name):
                        add(node.id, kind)
        elif isinstance(stmt, ast.AnnAssign) and isinstance(stmt.target, ast.Name):
            add(stmt.target.id, _kind_of_value(stmt.value) if stmt.value else "object")
        elif isinstance(stmt, ast.Import):
            for alias in stmt.names:
                if alias.asname:
                    add(alias.asname, f"={alias.name}")
                else:
                    top = alias.name.split(".")[0]
                    add(top, f"={top}")
        elif isinstance(stmt, ast.ImportFrom):
            source = stmt.module or ""
            if stmt.level:
                source = _resolve_relative(module, is_package, stmt.level, stmt.module)
            for alias in stmt.names:
                if alias.name == "*":
                    continue
                add(alias.asname or alias.name, f"={source}:{alias.name}")
    return names


def build_catalogue(package_root: Path) -> dict:
    modules: dict[str, dict[str, str]] = {}
    for path in sorted(package_root.rglob("*.py")):
        rel = path.relative_to(package_root)
        if any(
            part in {"migrations", "test", "tests", "static", "frontend", "data"} for part in rel.parts[:-1]
        ):
            continue
        module = _module_name(package_root, path)
        try:
            tree = ast.parse(path.read_text(encoding="utf-8"))
        except SyntaxError:
            continue
        modules[module] = _names_of_module(module, path.name == "__init__.py", tree)
    # Packages without an __init__.py (namespace packages) still import.
    for module in list(modules):
        parts = module.split(".")
        for i in range(1, len(parts)):
            modules.setdefault(".".join(parts[:i]), {})
    # A submodule is importable as an attribute-less name too: record it so `from pkg import submodule` works.
    for module in list(modules):
        if "." in module:
            parent, child = module.rsplit(".", 1)
            modules[parent].setdefault(child, "module")
    version = ""
    for dist in package_root.parent.glob("open_webui-*.dist-info"):
        version = dist.name[len("open_webui-") : -len(".dist-info")]
    return {"version": version, "modules": dict(sorted(modules.items()))}


def command_catalogue(args: argparse.Namespace) -> int:
    package_root = Path(args.site_packages) / "open_webui"
    if not package_root.is_dir():
        print(f"no open_webui package under {args.site_packages}", file=sys.stderr)
        return 2
    catalogue = build_catalogue(package_root)
    out = Path(args.out)
    out.write_text(json.dumps(catalogue, separators=(",", ":"), sort_keys=True) + "\n", encoding="utf-8")
    count = sum(len(names) for names in catalogue["modules"].values())
    print(f"{len(catalogue['modules'])} modules, {count} names, Open WebUI {catalogue['version']} -> {out}")
    return 0
