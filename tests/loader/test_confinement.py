"""Function code that runs as root is kept from the server's secrets as far as the machine allows.

When the server runs as root and children keep root (SLUICE_LOAD_DROP_PRIVILEGES=auto where the load user cannot
read Python, or =off), each child hides the folders the server names (an empty read-only tmpfs in a mount
namespace of its own), has a /dev without disks, and gives up every capability before running function code, so
it can read neither the hidden files nor the server's /proc/<pid>/environ. Each mechanism is best effort: where the
kernel refuses one (no unshare in a container, say), loads go on without it and the tests below say why they skip.
"""

from __future__ import annotations

import logging
import os
import shutil
import sys
import tempfile
import uuid
from pathlib import Path

import pytest

from loader import client, privileges
from tests.loader.support import defaults, unique

as_root = pytest.mark.skipif(os.geteuid() != 0, reason="only a server running as root confines its children")


@pytest.fixture
def hidden():
    """An instance folder like the server's: a secret key, a database, and the packages folder for function code,
    where the load user could read them but for the mounts (pytest's own folders are root's alone)."""
    base = Path(tempfile.mkdtemp(prefix="sluice-test-confinement-"))
    folder = base / "instance"
    packages = folder / "function-packages"
    packages.mkdir(parents=True)
    os.chmod(base, 0o755)
    os.chmod(folder, 0o755)
    os.chmod(packages, 0o755)
    (folder / "secret_key").write_text("the-server-secret")
    (folder / "sluice.sqlite3").write_text("password hashes")
    os.chmod(folder / "secret_key", 0o644)
    module = "sluice_kept_" + uuid.uuid4().hex[:8]
    (packages / f"{module}.py").write_text("VALUE = 42\n")
    os.chmod(packages / f"{module}.py", 0o644)
    yield {"folder": str(folder), "packages": str(packages), "module": module}
    shutil.rmtree(base)


def confined_loader(loader_fast, mode: str, hidden: dict):
    before = client.settings()
    loader_fast.configure(
        drop_privileges=mode,
        load_user="nobody",
        hidden_paths=[hidden["folder"]],
        packages_dir=hidden["packages"],
    )
    report = loader_fast.start()["confinement"]
    return before, report


def restore(loader_fast, before) -> None:
    loader_fast.configure(
        drop_privileges=before.drop_privileges,
        load_user=before.load_user,
        hidden_paths=list(before.hidden_paths),
        packages_dir=before.packages_dir,
    )


PROBE = """
import os, stat
import {module}
from pydantic import BaseModel

FOLDER, PACKAGES, SERVER = {folder!r}, {packages!r}, {server}


def attempt(action):
    try:
        return action()
    except OSError as exc:
        return f"{{type(exc).__name__}} {{exc.errno}}"


def read(path):
    with open(path, "rb") as handle:
        return handle.read(100).decode("utf-8", "replace")


def write(path):
    with open(path, "w") as handle:
        handle.write("x")
    return "written"


with open("/proc/self/status") as status:
    lines = dict(line.split(":", 1) for line in status.read().splitlines() if ":" in line)


class Pipe:
    class Valves(BaseModel):
        uid: int = os.getuid()
        secret: str = attempt(lambda: read(os.path.join(FOLDER, "secret_key")))
        database: str = attempt(lambda: read(os.path.join(FOLDER, "sluice.sqlite3")))
        listing: str = attempt(lambda: repr(sorted(os.listdir(FOLDER))))
        plant: str = attempt(lambda: write(os.path.join(FOLDER, "planted")))
        package: int = {module}.VALUE
        tamper: str = attempt(lambda: write(os.path.join(PACKAGES, "planted.py")))
        environ: str = attempt(lambda: read(f"/proc/{{SERVER}}/environ"))
        memory: str = attempt(lambda: read(f"/proc/{{SERVER}}/mem"))
        block_devices: list = sorted(
            name for name in os.listdir("/dev") if stat.S_ISBLK(os.lstat(os.path.join("/dev", name)).st_mode)
        )
        capabilities: dict = {{name: lines[name].strip() for name in ("CapEff", "CapPrm", "CapBnd", "NoNewPrivs")}}
        root_file: str = attempt(lambda: write({outside!r}))
        scratch: str = attempt(lambda: write("scratch.txt"))
        data_dir: str = attempt(lambda: write(os.path.join(str(__import__("open_webui.env").env.DATA_DIR), "probe")))
"""


def probe_source(hidden: dict) -> str:
    return unique(PROBE.format(server=os.getpid(), **hidden))


@pytest.fixture
def root_file():
    """A root-owned file outside every hidden folder, which a child that keeps root must still not change.

    Not in a temporary folder: /tmp and /var/tmp stay writable, as function code written for Open WebUI may use them.
    """
    parent = "/var/lib"
    if not os.access(parent, os.W_OK):
        pytest.skip(f"{parent} is not writable here")
    base = tempfile.mkdtemp(prefix="sluice-test-root-file-", dir=parent)
    path = os.path.join(base, "owned-by-root.txt")
    with open(path, "w") as handle:
        handle.write("original")
    yield path
    shutil.rmtree(base)


@as_root
def test_function_code_running_as_root_cannot_read_hidden_folders_nor_the_servers_environment(
    loader_fast, hidden, root_file
):
    before, report = confined_loader(loader_fast, "off", hidden)
    try:
        if not report["mounts"] or not report["capabilities"]:
            pytest.skip(f"this machine does not let load children confine themselves: {report['reason']}")
        seen = defaults(loader_fast.load_function(probe_source({**hidden, "outside": root_file})))
    finally:
        restore(loader_fast, before)

    assert seen["uid"] == 0
    assert seen["secret"] == "FileNotFoundError 2"
    assert seen["database"] == "FileNotFoundError 2"
    assert seen["listing"] == "['function-packages']"  # only the way to the packages folder, put back
    assert seen["plant"] == "OSError 30"  # read-only
    assert seen["package"] == 42
    assert seen["tamper"] == "OSError 30"
    # In a process-id namespace of its own, the server is not even in its /proc.
    unreachable = "FileNotFoundError 2" if report.get("pid_namespace") else "PermissionError 13"
    assert seen["environ"] == unreachable
    assert seen["memory"] == unreachable
    assert seen["block_devices"] == []
    assert seen["capabilities"] == {
        "CapEff": "0000000000000000",
        "CapPrm": "0000000000000000",
        "CapBnd": "0000000000000000",
        "NoNewPrivs": "1",
    }
    # Every mount is read-only but the scratch directory and DATA_DIR: root's files elsewhere stay as they were.
    assert seen["root_file"] == "OSError 30"
    assert (seen["scratch"], seen["data_dir"]) == ("written", "written")
    with open(root_file) as original:
        assert original.read() == "original"
    # Nothing mounted in the child shows outside it.
    with open(os.path.join(hidden["folder"], "secret_key")) as secret:
        assert secret.read() == "the-server-secret"
    assert not os.path.exists(os.path.join(hidden["folder"], "planted"))


@as_root
def test_children_that_switch_to_the_load_user_hide_the_same_folders(loader_fast, hidden):
    before, report = confined_loader(loader_fast, "always", hidden)
    try:
        if not report["mounts"]:
            pytest.skip(f"this machine does not let load children have mount namespaces: {report['reason']}")
        seen = defaults(loader_fast.load_function(probe_source({**hidden, "outside": "/nonexistent/x"})))
    finally:
        restore(loader_fast, before)

    assert seen["uid"] == 65534
    assert seen["secret"] == "FileNotFoundError 2"  # world-readable, yet hidden
    assert seen["listing"] == "PermissionError 13"  # 0711, as the instance folder
    assert seen["package"] == 42
    assert seen["environ"] == ("FileNotFoundError 2" if report.get("pid_namespace") else "PermissionError 13")
    assert seen["block_devices"] == []
    assert seen["capabilities"]["CapBnd"] == "0000000000000000"


@as_root
def test_a_hidden_path_that_holds_what_function_code_needs_is_not_hidden_and_says_so_once(
    loader_fast, caplog
):
    before = client.settings()
    needed = [tempfile.gettempdir(), os.path.dirname(os.path.realpath(sys.executable))]
    try:
        loader_fast.configure(drop_privileges="off", hidden_paths=needed)
        if not loader_fast.start()["confinement"]["mounts"]:
            pytest.skip("this machine does not let load children have mount namespaces")
        with caplog.at_level(logging.WARNING, logger="loader.connection"):
            first = loader_fast.load_function(unique("import os\nclass Pipe:\n    pass\n"))
            second = loader_fast.load_function(unique("import json\nclass Pipe:\n    pass\n"))
    finally:
        loader_fast.configure(drop_privileges=before.drop_privileges, hidden_paths=list(before.hidden_paths))

    assert first.ok and second.ok
    notices = [record.getMessage() for record in caplog.records if "is not kept from" in record.getMessage()]
    assert len(notices) == 1
    assert os.path.realpath(tempfile.gettempdir()) in notices[0]


def test_which_paths_are_hidden():
    needed = ["/usr", "/srv/sluice/.venv/lib/python3/site-packages", "/tmp"]
    chosen, notice = privileges.plan_hidden_paths(
        [
            "/srv/sluice/instance",
            "/srv/sluice/instance/install-jobs",
            "/srv/db",
            "/srv/sluice",
            "/",
            "relative",
        ],
        needed,
    )

    assert chosen == ["/srv/db", "/srv/sluice/instance"]
    assert "/srv/sluice (it holds /srv/sluice/.venv/lib/python3/site-packages)" in notice
    assert "/ (it holds /usr)" in notice


def test_hidden_paths_are_read_from_a_list_or_the_environment_style_string(tmp_path):
    link = tmp_path / "link"
    os.symlink(tmp_path, link)

    assert client._paths(f"{link}{os.pathsep}{tmp_path}{os.pathsep}") == (str(tmp_path),)
    assert client._paths(["a", "", str(tmp_path)]) == (os.path.abspath("a"), str(tmp_path))
    assert client._paths(None) == ()


def test_configure_takes_hidden_paths_and_keeps_the_others(loader_fast, tmp_path):
    before = client.settings()
    try:
        settings = loader_fast.configure(hidden_paths=[str(tmp_path)])
        assert settings.hidden_paths == (str(tmp_path),)
        assert settings.timeout == before.timeout
    finally:
        loader_fast.configure(hidden_paths=list(before.hidden_paths))
    assert client.settings().hidden_paths == before.hidden_paths
