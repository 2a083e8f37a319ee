"""Function code may write under its home directory and the per-user cache, config and data folders, as in Open WebUI.

Each function gets a home of its own (`<homes_dir>/<function id>`), kept across loads and calls; when the server runs
as root the homes folder lies in the hidden instance folder and only the function's own home is put back, writable.
"""

from __future__ import annotations

import os
import shutil
import tempfile
import textwrap
import uuid
from pathlib import Path

import pytest

from loader import client, run_function_collect
from tests.loader.support import defaults, unique

as_root = pytest.mark.skipif(os.geteuid() != 0, reason="only a server running as root confines its children")

# At import, as some community functions do: a marker in ~/.cache, a folder under ~/.local/share, and the folder
# platformdirs picks when it is installed; in __init__, a file in ~/.config.
WRITER = """
import os
from pydantic import BaseModel

MARK = {mark!r}
SECRET = {secret!r}
REPORT = {{"home": os.path.expanduser("~")}}
REPORT["env"] = {{name: os.environ.get(name) for name in ("XDG_CACHE_HOME", "XDG_CONFIG_HOME", "XDG_DATA_HOME")}}
marker = os.path.expanduser("~/.cache/x/marker")
REPORT["before"] = open(marker).read() if os.path.exists(marker) else None
os.makedirs(os.path.dirname(marker), exist_ok=True)
with open(marker, "w") as handle:
    handle.write(MARK)
data = os.path.expanduser("~/.local/share/y")
os.makedirs(data, exist_ok=True)
REPORT["data"] = data
try:
    import platformdirs
except ImportError:
    pass
else:
    os.makedirs(platformdirs.user_cache_dir("z"), exist_ok=True)
    REPORT["platformdirs"] = platformdirs.user_cache_dir("z")
REPORT["homes"] = sorted(os.listdir(os.path.dirname(REPORT["home"])))
for name, action in (("secret", lambda: open(SECRET).read()), ("usr", lambda: open("/usr/sluice-home-test", "w"))):
    try:
        action()
        REPORT[name] = "reached"
    except OSError as exc:
        REPORT[name] = type(exc).__name__


class Filter:
    class Valves(BaseModel):
        report: dict = REPORT

    def __init__(self):
        os.makedirs(os.path.expanduser("~/.config"), exist_ok=True)
        with open(os.path.expanduser("~/.config/w"), "w") as handle:
            handle.write("configured")
        self.valves = self.Valves()
"""


# Outside the temporary folders, as a real install's instance folder is: every mount children see there is
# read-only, so only the zygote can make a home in it. Root may write /var/lib on any Linux; the load user can reach it.
OUTSIDE_TMP = "/var/lib"


@pytest.fixture(params=["in the instance folder", "in /tmp", "in an instance folder outside /tmp"])
def homes(loader_fast, request):
    """An instance folder like the server's (a secret key), hidden from function code, the function homes inside it
    (the default) or beside it in the host's /tmp, and the loader configured with them; the previous settings come
    back afterwards. The third case puts the instance folder where a real install has it, outside /tmp."""
    outside = request.param == "in an instance folder outside /tmp"
    if outside and (os.geteuid() != 0 or not os.access(OUTSIDE_TMP, os.W_OK)):
        pytest.skip(f"only root writes {OUTSIDE_TMP}")
    base = Path(tempfile.mkdtemp(prefix="sluice-test-homes-", dir=OUTSIDE_TMP if outside else None))
    instance = base / "instance"
    instance.mkdir()
    os.chmod(base, 0o755)
    os.chmod(instance, 0o755)
    (instance / "secret_key").write_text("the-server-secret")
    os.chmod(instance / "secret_key", 0o644)
    folder = (base if request.param == "in /tmp" else instance) / "function-homes"
    before = client.settings()
    loader_fast.configure(homes_dir=str(folder), hidden_paths=[str(instance)])
    try:
        yield {"folder": folder, "secret": str(instance / "secret_key")}
    finally:
        loader_fast.configure(homes_dir=before.homes_dir, hidden_paths=list(before.hidden_paths))
        loader_fast.clear_cache()
        shutil.rmtree(base)


def load_report(loader, homes: dict, function_id: str, mark: str) -> dict:
    source = unique(textwrap.dedent(WRITER.format(mark=mark, secret=homes["secret"])))
    result = loader.load_function(source, function_id=function_id)
    assert result.ok, result.error
    return defaults(result)["report"]


def test_function_code_writes_its_home_and_finds_it_again_at_the_next_load(loader_fast, homes):
    function_id = "home_" + uuid.uuid4().hex[:8]
    first = load_report(loader_fast, homes, function_id, "first")
    home = str(homes["folder"] / function_id)
    assert first["home"] == home
    assert first["env"] == {
        "XDG_CACHE_HOME": f"{home}/.cache",
        "XDG_CONFIG_HOME": f"{home}/.config",
        "XDG_DATA_HOME": f"{home}/.local/share",
    }
    assert first["before"] is None
    assert first["data"] == f"{home}/.local/share/y"
    if "platformdirs" in first:
        assert first["platformdirs"].startswith(f"{home}/.cache/")
    # On disk, kept: the marker written at import, and the file written in __init__.
    assert (homes["folder"] / function_id / ".cache/x/marker").read_text() == "first"
    assert (homes["folder"] / function_id / ".config/w").read_text() == "configured"
    assert os.stat(homes["folder"] / function_id).st_mode & 0o077 == 0

    second = load_report(loader_fast, homes, function_id, "second")
    assert second["before"] == "first"


def test_another_function_neither_sees_nor_shares_that_home(loader_fast, homes):
    one, other = ("home_" + uuid.uuid4().hex[:8] for _ in range(2))
    load_report(loader_fast, homes, one, "one's")
    seen = load_report(loader_fast, homes, other, "other's")
    assert seen["before"] is None
    assert (homes["folder"] / one / ".cache/x/marker").read_text() == "one's"
    if os.geteuid() == 0 and loader_fast.start()["confinement"].get("mounts"):
        assert seen["homes"] == [other]  # only its own home is put back in the hidden instance folder


@as_root
def test_the_instance_folder_stays_unreadable_and_the_rest_read_only(loader_fast, homes):
    if not loader_fast.start()["confinement"].get("mounts"):
        pytest.skip("children cannot have mount namespaces here")
    seen = load_report(loader_fast, homes, "home_" + uuid.uuid4().hex[:8], "mark")
    assert seen["secret"] in ("FileNotFoundError", "PermissionError"), seen["secret"]
    assert seen["usr"] in ("OSError", "PermissionError"), seen["usr"]


def test_a_runtime_worker_has_the_same_home(loader_fast, homes):
    function_id = "home_" + uuid.uuid4().hex[:8]
    load_report(loader_fast, homes, function_id, "from the load")
    pipe = unique(
        textwrap.dedent(
            """
            import os

            class Pipe:
                def pipe(self, body):
                    with open(os.path.expanduser("~/.cache/x/marker")) as handle:
                        return handle.read()
            """
        )
    )
    answer = run_function_collect(pipe, function_id=function_id, method="pipe", ctx={"body": {}})
    assert answer.ok, answer.error
    assert answer.result == [("text", "from the load")], answer.result
