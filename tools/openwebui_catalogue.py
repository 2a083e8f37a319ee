"""The names-only catalogue of an installed Open WebUI, which ``loader/compat/open_webui`` reads.

It records which modules exist and, for each, which public names it defines and of what kind (class, function,
object, module, or a re-export), never code; and, for the settings modules, the plain values a fresh Open WebUI
with no environment gives them. ``tools/compare_with_openwebui.py catalogue`` runs it (see that file's help).
"""

from __future__ import annotations

import argparse
import ast
import json
import math
import os
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
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


# Settings modules whose stock values are recorded. Strings longer than this are texts (prompt templates), not
# settings, and are left out; so is anything that names the scratch folder or the installation.
VALUE_MODULES = ("open_webui.env", "open_webui.config")
MAX_VALUE_LENGTH = 200
PLACEHOLDER_SECRET = "sluice-catalogue-placeholder-secret"

# Run with Open WebUI's interpreter: import each module named in argv and print, as the last line, the plain
# values of its public names as JSON. Only values cross over, never code.
_DUMP_VALUES = """
import importlib, json, sys
values = {}
for name in sys.argv[1:]:
    module = importlib.import_module(name)
    values[name] = {
        key: value
        for key, value in vars(module).items()
        if not key.startswith("_") and (value is None or type(value) in (str, int, float, bool))
    }
print()
print(json.dumps(values))
"""


def stock_values(python: Path, site_packages: Path) -> dict[str, dict[str, object]]:
    """The plain values of Open WebUI's settings modules as a fresh installation with no environment has them."""
    with tempfile.TemporaryDirectory(prefix="owui-values-") as scratch:
        data_dir = Path(scratch) / "data"
        data_dir.mkdir()
        environ = {
            "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
            "HOME": scratch,
            "DATA_DIR": str(data_dir),
            # What `open-webui serve` sets before importing the app: its secret and where the frontend lies.
            "WEBUI_SECRET_KEY": PLACEHOLDER_SECRET,
            "FROM_INIT_PY": "true",
        }
        result = subprocess.run(
            [str(python), "-c", _DUMP_VALUES, *VALUE_MODULES],
            cwd=scratch,
            env=environ,
            capture_output=True,
            text=True,
            timeout=300,
        )
        if result.returncode != 0:
            raise RuntimeError(f"importing Open WebUI's settings failed:\n{result.stderr[-2000:]}")
        dumped = json.loads(result.stdout.strip().splitlines()[-1])
        local = (scratch, str(site_packages), str(Path(site_packages).resolve()), PLACEHOLDER_SECRET)
    return {
        module: {
            name: value
            for name, value in sorted(values.items())
            if not (isinstance(value, float) and not math.isfinite(value))
            and not (
                isinstance(value, str) and (len(value) > MAX_VALUE_LENGTH or any(p in value for p in local))
            )
        }
        for module, values in dumped.items()
    }


def command_catalogue(args: argparse.Namespace) -> int:
    package_root = Path(args.site_packages) / "open_webui"
    if not package_root.is_dir():
        print(f"no open_webui package under {args.site_packages}", file=sys.stderr)
        return 2
    catalogue = build_catalogue(package_root)
    if not args.no_values:
        python = Path(args.python) if args.python else Path(args.site_packages).parents[2] / "bin" / "python"
        values = stock_values(python, Path(args.site_packages))
        # Only names the module itself assigns: imports and classes keep resolving as their kind says.
        catalogue["values"] = {
            module: {
                name: value
                for name, value in found.items()
                if catalogue["modules"].get(module, {}).get(name) == "object"
            }
            for module, found in values.items()
        }
    out = Path(args.out)
    out.write_text(json.dumps(catalogue, separators=(",", ":"), sort_keys=True) + "\n", encoding="utf-8")
    count = sum(len(names) for names in catalogue["modules"].values())
    values = sum(len(found) for found in catalogue.get("values", {}).values())
    print(
        f"{len(catalogue['modules'])} modules, {count} names, {values} stock values, "
        f"Open WebUI {catalogue['version']} -> {out}"
    )
    return 0


def add_catalogue_command(commands) -> None:
    """Add the ``catalogue`` command to the tool's command line (``commands`` is its subparsers)."""
    catalogue = commands.add_parser(
        "catalogue", help="write the names-only catalogue of an installed Open WebUI"
    )
    catalogue.add_argument(
        "--site-packages", required=True, help="the site-packages folder holding open_webui/"
    )
    catalogue.add_argument("--out", default=str(CATALOGUE))
    catalogue.add_argument(
        "--python",
        help="Open WebUI's interpreter, to read its settings' stock values (default: the bin/python beside"
        " site-packages)",
    )
    catalogue.add_argument(
        "--no-values", action="store_true", help="record names only, not the settings' stock values"
    )
    catalogue.set_defaults(run=command_catalogue)
