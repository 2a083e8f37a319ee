"""Warm imports (loader/warm_imports.py): the modules loaded functions import are imported once into the template
load children start from, within a memory budget, and never what would break it."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from loader.warm_imports import module_names, top_level_packages

ROOT = Path(__file__).resolve().parents[2]


# --- which modules a function names --------------------------------------------------------------------------------


def test_module_names_are_the_module_level_imports():
    content = textwrap.dedent(
        """
        import os, azure.storage.blob as blob
        from google.cloud import storage, bigquery
        from pydantic import *
        from . import sibling
        from open_webui.models.users import Users
        from open_webui.internal.db import Base, JSONField
        from open_webui.internal import db
        from utils.misc import get_last_user_message
        try:
            import pptx
        except ImportError:
            pptx = None
        if True:
            with open(__file__):
                import xlsxwriter
        import os

        def later():
            import inside_a_function

        class Filter:
            import inside_a_class
        """
    )
    assert module_names(content) == [
        "os",
        "azure.storage.blob",
        "google.cloud",
        "google.cloud.storage",
        "google.cloud.bigquery",
        "pydantic",
        "open_webui.internal.db",  # the compatibility layer's only module the template does not preload
        "pptx",
        "inside_a_class",
        "xlsxwriter",
    ]
    assert module_names("def broken(:\n") == []
    assert module_names("\n".join(f"import module_{n}" for n in range(200))) == [
        f"module_{n}" for n in range(64)
    ]


def test_top_level_packages_are_read_from_the_import_lines():
    source = textwrap.dedent(
        """
        import os, sys as system
        from a.b import (c,
            d)
        from . import sibling
        from open_webui.utils import misc
            import google.cloud.storage as storage  # indented: inside a function or a block
        x = "import"; importlib = 1
        """
    )
    assert top_level_packages(source) == ["os", "sys", "a", "google"]
    # Open WebUI's names route a load only when they may import a module the template leaves out.
    assert top_level_packages("from open_webui.models.users import Users\nimport open_webui.env\n") == []
    for line in (
        "from open_webui.internal.db import Base",
        "from open_webui.internal import db",
        "import open_webui.internal.db as db",
    ):
        assert top_level_packages(f"import os\n{line}\n") == ["os", "open_webui"], line


def test_the_compat_modules_warmed_are_those_the_template_leaves_out():
    from loader.startup import PRELOAD
    from loader.warm_imports import COMPAT_WARMABLE

    compat = ROOT / "loader" / "compat"
    modules = {
        ".".join(path.relative_to(compat).with_suffix("").parts)
        for path in (compat / "open_webui").rglob("*.py")
        if not path.name.startswith("_")
    }
    assert "open_webui.models.users" in modules
    assert COMPAT_WARMABLE == modules - set(PRELOAD)


# --- what the template imports -------------------------------------------------------------------------------------

MODULES = {
    "warm_fine.py": "VALUE = 1\n",
    "warm_thread.py": "import threading, time\nthreading.Thread(target=time.sleep, args=(30,), daemon=True).start()\n",
    "warm_broken.py": "raise RuntimeError('not today')\n",
    "warm_big.py": "BLOB = bytearray(48 * 1024 * 1024)\nfor i in range(0, len(BLOB), 4096):\n    BLOB[i] = 1\n",
    "warm_slow.py": "import time\ntime.sleep(30)\n",
    "warm_exits.py": "import os\nos._exit(3)\n",
    "warm_file.py": "LOG = open(__file__)\n",
    "warm_thread_too.py": "import threading, time\nthreading.Thread(target=time.sleep, args=(30,), daemon=True).start()\n",
}

TRY = """
import json, sys, threading
sys.path.insert(0, sys.argv[1])
from loader import warm_imports
names = ["warm_fine", "warm_thread", "warm_broken", "warm_big", "warm_slow", "warm_exits", "warm_file", "warm_missing", "json",
         "not a name", "warm_fine", "warm_thread.name", "warm_file.name", "warm_thread_too.name", "json.decoder",
         "json.loads"]
first = warm_imports.try_imports(names, budget=16 * 1024 * 1024, seconds=2)
again = warm_imports.try_imports(["warm_fine", "warm_thread"], budget=16 * 1024 * 1024, seconds=2)
print(json.dumps({
    "first": first,
    "again": again,
    "loaded": sorted(name for name in sys.modules if name.startswith("warm_")),
    "threads": threading.active_count(),
}))
"""


def test_the_template_imports_only_what_a_trial_child_imported_cleanly_within_the_budget(tmp_path):
    for name, text in MODULES.items():
        (tmp_path / name).write_text(text)
    done = subprocess.run(
        [sys.executable, "-c", TRY, str(tmp_path)], cwd=ROOT, capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, done.stderr
    result = json.loads(done.stdout)
    first = result["first"]
    assert first["imported"] == ["warm_fine"]
    refused = first["refused"]
    assert "starts a thread" in refused["warm_thread"]
    assert "RuntimeError: not today" in refused["warm_broken"]
    assert "memory budget" in refused["warm_big"]
    assert "more than 2 s" in refused["warm_slow"]
    assert "ended the process" in refused["warm_exits"]
    assert "keeps a file" in refused["warm_file"]
    assert "not a module" in refused["warm_missing"]
    assert "json" not in refused and "not a name" not in refused  # imported already; not a module name
    # A name inside a refused module is refused with it; one inside a module never tried is found in the trial
    # child, never here: finding `a.b` imports `a`, and this process must never import anything untried.
    assert refused["warm_thread.name"] == refused["warm_file.name"] == "its package was refused"
    assert "not a module" in refused["warm_thread_too.name"]
    assert "not a module" in refused["json.loads"] and "json.decoder" not in refused
    assert result["again"] == {"imported": [], "refused": {}}  # each name is tried once
    assert result["loaded"] == ["warm_fine"] and result["threads"] == 1


# --- end to end: a function's imports are there for the next loads -------------------------------------------------

NAMES = ("xml.dom.minidom", "email.mime.multipart", "wave")

IMPORTER = """
    import wave
    from email.mime import multipart
    from xml.dom import minidom

    class Filter:
        pass
"""

PROBE = """
    import sys
    from pydantic import BaseModel

    WARM = [name for name in {names!r} if name in sys.modules]

    class Filter:
        class Valves(BaseModel):
            warm: list = WARM
"""


@pytest.fixture
def warming(loader_fast):
    """The loader with warm imports on, and a fresh zygote (so that no earlier test's imports are in its template)."""
    from loader import client

    loader_fast.configure(warm_imports_mb=64, spares=1)
    client.shutdown()
    loader_fast.start()
    yield loader_fast
    loader_fast.configure(warm_imports_mb=0, spares=client.Settings.spares)
    client.shutdown()


def ping() -> dict:
    from loader import client

    header, _body = client._current.call({"op": "ping"}, wait=5)
    return header


# The same, naming one of the modules in an import it never runs: the zygote routes it to the warm template.
PROBE_IMPORTING = f"""{PROBE}
        def later(self):
            import wave
"""


def warm_in_children(loader, source, probe=PROBE) -> list:
    result = loader.load_function(source(probe.format(names=NAMES)), function_id="probe")
    assert result.ok, result.error
    return result.valves_schema["properties"]["warm"]["default"]


def test_modules_two_loads_import_are_imported_once_for_the_loads_after_them(warming, source):
    assert warm_in_children(warming, source) == []
    assert warming.load_function(source(IMPORTER), function_id="importer").ok
    time.sleep(0.5)
    assert ping()["warm_imports"] == []  # one load alone: not worth the template's memory
    assert warm_in_children(warming, source) == []
    assert warming.load_function(source(IMPORTER), function_id="importer").ok  # saved again
    deadline = time.monotonic() + 20
    while (
        set(ping().get("warm_imports") or ()) < {"wave", "xml.dom.minidom"} or ping().get("importing")
    ) and (time.monotonic() < deadline):
        time.sleep(0.05)
    assert {"wave", "xml.dom.minidom", "email.mime.multipart"} <= set(ping()["warm_imports"])
    # They are in a second template: every load importing one of their packages from now on starts with them all,
    # and the others start from the first template, as small as before (its forks and children cost no more).
    for _ in range(3):
        assert warm_in_children(warming, source, PROBE_IMPORTING) == list(NAMES)
        assert warm_in_children(warming, source) == []
    assert ping()["warm_template_pid"] not in (None, client_template_pid())


# A function that keeps its own table in Open WebUI's database module, which stands on SQLAlchemy (~220 ms to import):
# the template leaves it out, so it is warmed like any package's module once two loads import it.
TABLES = """
    from open_webui.internal.db import Base, JSONField, get_db

    class Filter:
        pass
"""

# Its own modules are reached without import statements: a module two loads name is handed to the warm template,
# and a load arriving while it imports starts from the first template.
SQLALCHEMY_PROBE = """
    WARM = ["sqlalchemy" in __import__("sys").modules]
    {imports}
    BaseModel = __import__("pydantic").BaseModel

    class Filter:
        class Valves(BaseModel):
            warm: list = WARM
"""


def sqlalchemy_in_child(loader, source, imports: str) -> bool:
    result = loader.load_function(source(SQLALCHEMY_PROBE.format(imports=imports)), function_id="probe")
    assert result.ok, result.error
    return result.valves_schema["properties"]["warm"]["default"] == [True]


def test_open_webuis_database_module_is_warmed_for_the_functions_that_use_it(warming, source):
    uses_db = "from open_webui.internal import db"
    assert not sqlalchemy_in_child(warming, source, uses_db)
    for _ in range(2):
        assert warming.load_function(source(TABLES), function_id="tables").ok
    deadline = time.monotonic() + 20
    while (
        "open_webui.internal.db" not in (ping().get("warm_imports") or ()) or ping().get("importing")
    ) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert "open_webui.internal.db" in ping()["warm_imports"]
    for _ in range(2):
        assert sqlalchemy_in_child(warming, source, uses_db)
        # Functions that import only the preloaded Open WebUI modules still start from the small template.
        assert not sqlalchemy_in_child(warming, source, "from open_webui.models.users import Users")


PROBE_MORE = """
    import wave
    {more}

    class Filter:
        pass
"""


def ended(pid: int, seconds: float = 5) -> bool:
    import os

    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return True
        time.sleep(0.02)
    return False


def warm_spare_after(deadline_seconds: float = 10) -> int | None:
    deadline = time.monotonic() + deadline_seconds
    while time.monotonic() < deadline:
        header = ping()
        if header.get("warm_spare_pid") and not header.get("importing"):
            return header["warm_spare_pid"]
        time.sleep(0.05)
    return None


def test_a_child_of_the_warm_template_waits_forked_for_the_loads_routed_there(warming, source):
    assert ping()["warm_spare_pid"] is None  # nothing imported: no warm template, no child of it
    for _ in range(2):
        assert warming.load_function(source(IMPORTER), function_id="importer").ok
    spare = warm_spare_after()
    assert spare is not None and "wave" in ping()["warm_imports"]
    # The load runs in it (a spare ends only with its job, an import or the idle time), and another is forked.
    assert warming.load_function(source(PROBE_MORE.format(more="")), function_id="probe").ok
    assert ended(spare)
    following = warm_spare_after()
    assert following not in (None, spare)
    # New imports retire it: a child forked before them would lack them.
    for _ in range(2):
        assert warming.load_function(
            source("import colorsys\nclass Filter:\n    pass\n"), function_id="colors"
        ).ok
    deadline = time.monotonic() + 20
    while "colorsys" not in (ping().get("warm_imports") or ()) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert ended(following)
    renewed = warm_spare_after()
    assert renewed not in (None, following)
    assert warming.load_function(source(PROBE_MORE.format(more="import colorsys")), function_id="probe").ok
    assert ended(renewed)


def client_template_pid():
    from loader import client

    return client._current.ready.get("template_pid")


def test_loads_go_on_from_the_first_template_when_the_warm_one_ends(warming, source):
    import os
    import signal

    for _ in range(2):
        assert warming.load_function(source(IMPORTER), function_id="importer").ok
    deadline = time.monotonic() + 20
    while "wave" not in (ping().get("warm_imports") or ()) and time.monotonic() < deadline:
        time.sleep(0.05)
    warm_pid = ping()["warm_template_pid"]
    assert warm_pid
    os.kill(warm_pid, signal.SIGKILL)
    deadline = time.monotonic() + 5
    while ping()["warm_template_pid"] is not None and time.monotonic() < deadline:
        time.sleep(0.05)
    assert ping()["warm_template_pid"] is None and ping()["warm_imports"] == []
    # Same zygote: only the warm imports are gone.
    assert warm_in_children(warming, source, PROBE_IMPORTING) == []
    assert warming.load_function(source(IMPORTER), function_id="importer").ok


def test_nothing_is_imported_with_no_budget(loader_fast, source):
    from loader import client

    loader_fast.configure(warm_imports_mb=0)
    client.shutdown()
    loader_fast.start()
    for _ in range(2):
        assert loader_fast.load_function(source(IMPORTER), function_id="importer").ok
    time.sleep(0.5)
    assert ping()["warm_imports"] == []
    assert warm_in_children(loader_fast, source) == []


def test_a_failed_load_warms_nothing(warming, source):
    for _ in range(2):
        broken = source(IMPORTER + "\n    raise RuntimeError('broken at import')\n")
        assert not warming.load_function(broken, function_id="broken").ok
    time.sleep(0.5)
    assert ping()["warm_imports"] == []


# --- which loads start from the warm template ----------------------------------------------------------------------


class _Template:
    def __init__(self, warm, importing=False):
        self.warm, self.importing = warm, importing


class _Zygote:
    from loader.spares import Spares

    _wants_warm = Spares._wants_warm

    def __init__(self, template):
        self.warm_template = template


@pytest.mark.parametrize(
    ("template", "request_", "wanted"),
    [
        (_Template(["google.cloud.storage", "pptx"]), {"op": "load", "modules": ["os", "google"]}, True),
        (_Template(["google.cloud.storage"]), {"op": "validate", "modules": ["google.cloud"]}, True),
        (_Template(["google.cloud.storage"]), {"op": "load", "modules": ["os", "pydantic"]}, False),
        (_Template(["pptx"]), {"op": "load"}, False),  # a client that sends no modules
        (_Template(["pptx"]), {"op": "load", "modules": "pptx"}, False),
        (_Template(["pptx"]), {"op": "load", "modules": [3, None, "pptx"]}, True),
        # While it imports, loads start from the first template.
        (_Template(["pptx"], importing=True), {"op": "load", "modules": ["pptx"]}, False),
        (_Template([]), {"op": "load", "modules": ["pptx"]}, False),
        (None, {"op": "load", "modules": ["pptx"]}, False),
    ],
)
def test_a_load_starts_from_the_warm_template_only_when_it_imports_one_of_its_packages(
    template, request_, wanted
):
    assert _Zygote(template)._wants_warm(request_) is wanted
