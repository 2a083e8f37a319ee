"""Warm imports: modules that stored functions import, imported once into a second template of load children (the
warm template), so that each load of such a function stops paying for them.

Why: every load runs in a fresh child forked from a clean template (loader/namespaces.py), so a function that
imports a heavy package (a cloud SDK, a document library) imports it cold at every save: 150-400 ms where Open WebUI,
having imported it once in its one process, takes a few. The template preloads only what most functions use
(loader/startup.py `PRELOAD`); this adds, per server, what its own functions use.

Where the names come from: the server reads them from the code it was asked to load (`module_names`: the modules
named by its module-level `import` statements) and sends them to the zygote after the load; once a second load
names a module (the same function saved again, or another using the same package), the zygote hands it to the
warm template when nothing is waiting (loader/spares.py), forking that template from the first one the first time.
Loads whose code names a package the warm template imported are forked from it; the others from the first template,
which stays as small as it started (a template's size is paid by every fork and every child's start and exit). A module one load alone uses is not worth the template's
memory, nor an import while other loads may be coming. The template then imports only modules of its own
environment: it never has the packages folder of function requirements on its path, nor the code itself, so no
function's code or data enters it, only modules any function may import. Each name is first imported in a
throwaway child of the template (`try_imports`): a module that fails, takes longer than the allowance, starts a
thread (the template must stay single-threaded to fork), keeps a file open (every child would inherit it) or would
take the template past its memory budget is refused and never tried again. What the template imported shows in the zygote's ping (`warm_imports`).

What it costs: one more process per loader once something is wanted, whose memory grows by what it imports (shared
with every child it forks), up to SLUICE_LOAD_WARM_IMPORTS_MB; 0 turns this off. The modules stay until the loader
restarts. Which modules other functions that import the same packages use can be told from `sys.modules` in their
children.
"""

from __future__ import annotations

import ast
import contextlib
import gc
import importlib
import importlib.util
import json
import os
import re
import select
import signal
import sys
import time

# Modules the compatibility layer provides (preloaded already, or not real modules of the environment).
SKIPPED = ("open_webui", "utils", "apps", "main", "config", "__future__")
# ...except the modules of it that the template leaves out (loader/startup.py PRELOAD) because they stand on a heavy
# package few functions need: `open_webui.internal.db` imports SQLAlchemy, ~220 ms at every save of a function that
# declares its own tables, where Open WebUI has it imported once. They are Sluice's own code on the templates' path,
# warmed like any package's module, and only these Open WebUI names route a load to the warm template (the many
# functions that import the preloaded ones keep the small template). A test keeps this list equal to the layer's
# files that PRELOAD leaves out.
COMPAT_WARMABLE = frozenset({"open_webui.internal.db"})
NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)*$")
MOST_NAMES = 64  # per load: a file importing more is not a function worth warming up for
MOST_SEEN = 4096  # names the zygote counts before it starts counting again
TRIAL_SECONDS = 5.0
PAGE = os.sysconf("SC_PAGE_SIZE")


def module_names(content: str) -> list[str]:
    """The absolute modules `content` imports as it loads (module-level statements, inside `try`, `if` and `with`
    blocks and class bodies too, not inside functions), in order, without repeats: `import a.b` names `a.b`, `from a.b import c`
    names `a.b` and `a.b.c` (c may be a submodule). Code Python cannot parse names none."""
    try:
        tree = ast.parse(content)
    except (SyntaxError, ValueError, RecursionError, MemoryError):
        return []
    found: dict[str, None] = {}
    pending = list(tree.body)
    while pending and len(found) < MOST_NAMES:
        node = pending.pop(0)
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda)):
            continue  # imported when called, not as the module loads (a class body runs as it loads)
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names = [node.module] + [
                f"{node.module}.{alias.name}" for alias in node.names if alias.name != "*"
            ]
        else:
            for field in ("body", "orelse", "finalbody", "handlers"):
                pending.extend(getattr(node, field, []))
            continue
        for name in names:
            if NAME.match(name) and (name.split(".", 1)[0] not in SKIPPED or name in COMPAT_WARMABLE):
                found.setdefault(name, None)
    return list(found)[:MOST_NAMES]


def _compat_warmable(name: str) -> bool:
    """Whether an import line naming ``name`` may import one of COMPAT_WARMABLE (the module, or a package of it:
    `from open_webui.internal import db`)."""
    return any(module == name or module.startswith(name + ".") for module in COMPAT_WARMABLE)


# An import statement at the start of a line, at any indent: `from a.b import c` (group 1) or `import a.b as c, d`
# (group 2, up to a comment, a semicolon or the line's end).
_IMPORT_LINE = re.compile(
    r"^[ \t]*(?:from[ \t]+([A-Za-z_][\w.]*)[ \t]+import\b|import[ \t]+([^\n#;]+))", re.M
)


def top_level_packages(content: str) -> list[str]:
    """The top-level packages `content`'s import statements name (`a` for `import a.b` or `from a.b import c`), read
    from its lines without parsing it: what the zygote routes a load by (loader/spares.py `_wants_warm`), before the
    code is sent. Imports inside functions and strings that look like imports count too; routing by them is only
    ever slower (a fork from the bigger template), never wrong."""
    found: dict[str, None] = {}
    for match in _IMPORT_LINE.finditer(content):
        if match.group(1):
            names = [match.group(1)]
        else:
            names = [part.split()[0] for part in match.group(2).split(",") if part.strip()]
        for name in names:
            root = name.split(".", 1)[0]
            if NAME.match(root) and (root not in SKIPPED or _compat_warmable(name)):
                found[root] = None
        if len(found) >= MOST_NAMES:
            break
    return list(found)


def _resident() -> int:
    with open("/proc/self/statm", "rb") as statm:
        return int(statm.read().split()[1]) * PAGE


def _threads() -> int:
    try:
        return len(os.listdir("/proc/self/task"))
    except OSError:
        return 1


def _open_files() -> set[str]:
    try:
        return set(os.listdir("/proc/self/fd"))
    except OSError:
        return set()


NOT_A_MODULE = "not a module of the loader's environment"


def _findable(name: str) -> bool:
    """Whether ``name`` is a module of this process's own path (never the packages folder: it is not on it).
    For a dotted name, finding it imports its parent packages: the template asks only when they are imported
    already, else the trial child does."""
    try:
        return importlib.util.find_spec(name) is not None
    except (ImportError, ValueError, AttributeError):
        return False


def _trial(name: str, seconds: float) -> dict:
    """Import ``name`` in a throwaway child: {"ok", "bytes", "ms"} or {"ok": False, "reason"}."""
    read_end, write_end = os.pipe()
    pid = os.fork()
    if pid == 0:  # pragma: no cover - the throwaway child
        os.close(read_end)
        answer: dict
        try:
            files, before, began = _open_files(), _resident(), time.monotonic()
            imported = _findable(name) and importlib.import_module(name) is not None
            if not imported:
                answer = {"ok": False, "reason": NOT_A_MODULE}
            elif _threads() > 1:
                answer = {"ok": False, "reason": "it starts a thread as it is imported"}
            elif _open_files() - files:  # every child would inherit it, whatever it can read itself
                answer = {"ok": False, "reason": "it keeps a file or socket open"}
            else:
                answer = {"ok": True, "bytes": _resident() - before, "ms": (time.monotonic() - began) * 1000}
        except BaseException as exc:  # whatever the import raised: refused
            answer = {"ok": False, "reason": f"{type(exc).__name__}: {str(exc)[:200]}"}
        with contextlib.suppress(BaseException):
            os.write(write_end, json.dumps(answer).encode()[:4096])
        os._exit(0)
    os.close(write_end)
    try:
        ready, _, _ = select.select([read_end], [], [], seconds)
        data = os.read(read_end, 4096) if ready else b""
    finally:
        os.close(read_end)
        with contextlib.suppress(OSError):
            os.kill(pid, signal.SIGKILL)
        with contextlib.suppress(ChildProcessError, OSError):
            os.waitpid(pid, 0)
    if not data:
        return {"ok": False, "reason": f"it took more than {seconds:g} s or ended the process"}
    try:
        answer = json.loads(data)
    except ValueError:
        return {"ok": False, "reason": "its trial gave no answer"}
    return answer if isinstance(answer, dict) else {"ok": False, "reason": "its trial gave no answer"}


def try_imports(names: list, budget: int, seconds: float = TRIAL_SECONDS) -> dict:
    """In the template: import each of ``names`` that a throwaway child imported cleanly, while this process stays
    within ``budget`` bytes more than ``budget_base`` (kept across calls in `_state`). Returns {"imported": [...],
    "refused": {name: reason}}; names already imported are neither."""
    state = _state()
    imported, refused = [], {}
    for name in names[:MOST_NAMES]:
        if not isinstance(name, str) or not NAME.match(name) or name in sys.modules or name in state["tried"]:
            continue
        state["tried"].add(name)
        parent = name.rpartition(".")[0]
        if parent and parent not in sys.modules:
            if parent in state["tried"]:
                refused[name] = "its package was refused"
                continue
            # Finding `a.b` imports `a`, which must never be imported here untried: the trial child finds it.
        elif not _findable(name):
            # Nothing new is imported to find it: a name that is no module (`pydantic.Field`) costs no trial.
            refused[name] = NOT_A_MODULE
            continue
        trial = _trial(name, seconds)
        if not trial.get("ok"):
            refused[name] = str(trial.get("reason"))
            continue
        if _resident() + int(trial.get("bytes") or 0) - state["base"] > budget:
            refused[name] = "over the memory budget (SLUICE_LOAD_WARM_IMPORTS_MB)"
            continue
        try:
            importlib.import_module(name)
        except BaseException as exc:  # it imported in the trial: a difference here only refuses it
            refused[name] = f"{type(exc).__name__}: {str(exc)[:200]}"
            continue
        if _threads() > 1:  # cannot be undone: this process may no longer fork safely
            os._exit(70)
        imported.append(name)
    if imported:
        # As after the preload (loader/startup.py `prepare`): children inherit these objects without the collector
        # walking (and so copying) every page that holds one at each of their full collections.
        gc.collect()
        gc.freeze()
    return {"imported": imported, "refused": refused}


_STATE: dict | None = None


def _state() -> dict:
    """What this process tried, and its resident size before its first warm import (the budget's base)."""
    global _STATE
    if _STATE is None:
        _STATE = {"tried": set(), "base": _resident()}
    return _STATE
