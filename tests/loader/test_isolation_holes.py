"""Function code that tries to break out, as an admin's hostile function would: each test reports what it reached.

The server runs as root here, as in the default install; children confine themselves only then, so most of these
tests skip without root. A function that would do real harm without the confinement it tests first checks that the
confinement is there and does nothing otherwise (the test then fails on that report instead).
"""

from __future__ import annotations

import os
import socket
import sys
import sysconfig
import tempfile
import textwrap
import uuid
from pathlib import Path

import pytest

from loader import client, environment
from tests.loader.support import defaults, unique

as_root = pytest.mark.skipif(os.geteuid() != 0, reason="only a server running as root confines its children")
APP_FOLDER = str(Path(__file__).resolve().parents[2])


def alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as stat:
            return stat.read().rsplit(")", 1)[1].split()[0] not in ("Z", "X")
    except OSError:
        return False


REPORTING = """

from pydantic import BaseModel

class Filter:
    class Valves(BaseModel):
        report: dict = REPORT
"""


def report(loader, code: str, **kwargs) -> dict:
    """Load a function whose module code fills `REPORT` (a dict), and return it."""
    source = unique(textwrap.dedent(code) + REPORTING)
    return defaults(loader.load_function(source, **kwargs))["report"]


@as_root
def test_function_code_cannot_kill_the_server_the_loader_or_anything_outside_its_own_processes(loader_fast):
    confinement = loader_fast.start()["confinement"]
    assert confinement.get("pid_namespace"), confinement
    zygote = loader_fast.stats()["zygote_pid"]

    seen = report(
        loader_fast,
        """
        import os, signal

        REPORT = {"pid": os.getpid(), "parent": os.getppid(), "seen": [], "killed": []}
        if os.getpid() <= 2:  # in a namespace of its own; anywhere else this would kill the machine's processes
            REPORT["seen"] = sorted(int(name) for name in os.listdir("/proc") if name.isdigit())
            for pid in [os.getppid(), *REPORT["seen"], -1]:
                if pid != os.getpid():
                    try:
                        os.kill(pid, signal.SIGKILL)
                        REPORT["killed"].append(pid)
                    except OSError:
                        pass
        """,
    )

    assert seen["pid"] == 2 and seen["parent"] == 1
    assert set(seen["seen"]) <= {1, 2}, "it sees only its own namespace's processes"
    assert alive(zygote) and alive(os.getpid()) and alive(os.getppid())
    assert loader_fast.stats()["zygote_pid"] == zygote
    assert loader_fast.load_function(unique("class Filter:\n    pass\n")).ok


@as_root
def test_function_code_cannot_connect_to_loopback_services(loader_fast):
    assert loader_fast.start()["confinement"].get("net_namespace")
    listener = socket.create_server(("127.0.0.1", 0))
    port = listener.getsockname()[1]
    try:
        seen = report(
            loader_fast,
            f"""
import socket

REPORT = {{}}
for port in (5432, {port}):
    try:
        socket.create_connection(("127.0.0.1", port), timeout=1).close()
        REPORT[str(port)] = "connected"
    except OSError as exc:
        REPORT[str(port)] = type(exc).__name__ + ": " + str(exc)
""",
        )
    finally:
        listener.close()

    assert "connected" not in seen.values(), seen
    assert set(seen) == {"5432", str(port)}


@as_root
def test_function_code_cannot_write_into_python_the_app_or_the_real_tmp(loader_fast):
    marker = f"sluice-hole-{uuid.uuid4().hex}"
    site_packages = sysconfig.get_paths()["purelib"]
    targets = {
        "pth": os.path.join(site_packages, f"{marker}.pth"),
        "app": os.path.join(APP_FOLDER, f"{marker}.py"),
        "loader": os.path.join(APP_FOLDER, "loader", f"{marker}.py"),
        "tmp": os.path.join(tempfile.gettempdir(), marker),
        "var_tmp": os.path.join("/var/tmp", marker),
    }
    try:
        seen = report(
            loader_fast,
            f"""
REPORT = {{}}
for name, path in {targets!r}.items():
    try:
        with open(path, "w") as planted:
            planted.write("import os; os.system('id')")
        REPORT[name] = "written"
    except OSError as exc:
        REPORT[name] = type(exc).__name__
""",
        )
        assert all(value != "written" for name, value in seen.items() if name not in ("tmp", "var_tmp")), seen
        for path in targets.values():
            assert not os.path.exists(path), f"{path} was planted by function code"
    finally:
        for path in targets.values():
            if os.path.exists(path):
                os.unlink(path)


@as_root
def test_function_code_cannot_read_roots_files_or_what_others_left_in_tmp(loader_fast):
    left = Path(tempfile.mkdtemp(prefix="sluice-test-left-"))
    os.chmod(left, 0o755)
    secret = left / "key.pem"
    secret.write_text("another program's key")
    os.chmod(secret, 0o644)
    try:
        seen = report(
            loader_fast,
            f"""
import os

REPORT = {{}}
for name, what in (
    ("shadow", lambda: open("/etc/shadow").read()),
    ("gshadow", lambda: open("/etc/gshadow").read()),
    ("root", lambda: sorted(os.listdir("/root"))),
    ("home", lambda: sorted(os.listdir("/home"))),
    ("left", lambda: open({str(secret)!r}).read()),
    ("tmp", lambda: sorted(os.listdir("/tmp"))),
):
    try:
        REPORT[name] = what()
    except OSError as exc:
        REPORT[name] = type(exc).__name__
""",
        )
    finally:
        secret.unlink()
        left.rmdir()

    for name in ("shadow", "gshadow"):
        assert seen[name] in ("", "PermissionError", "FileNotFoundError"), seen[name]
    # Only the way to what function code needs (the Python installation, when it lies in root's home) is left.
    needed = {os.path.relpath(path, "/root").split(os.sep)[0] for path in environment.environment_folders()}
    assert seen["root"] == "PermissionError" or set(seen["root"]) <= needed, seen["root"]
    assert seen["home"] in ([], "PermissionError", "FileNotFoundError"), seen["home"]
    assert seen["left"] == "FileNotFoundError"
    assert left.name not in seen["tmp"]


def _closed_ancestor(path: str) -> str | None:
    """The first folder above `path` that users other than its owner cannot enter (e.g. a 0700 `mktemp -d`)."""
    folder = os.path.dirname(os.path.realpath(path))
    while True:
        if not os.stat(folder).st_mode & 0o001:
            return folder
        parent = os.path.dirname(folder)
        if parent == folder:
            return None
        folder = parent


@as_root
def test_function_code_runs_as_the_load_user_in_the_default_install(loader_fast):
    # bin/setup makes Python readable by the load user, but it cannot open a folder the repository was put in: where
    # the checkout itself lies behind a folder only root may enter, no install could drop to the load user.
    closed = _closed_ancestor(os.path.dirname(os.path.abspath(loader_fast.__file__)))
    if closed is not None:
        pytest.skip(
            f"the repository lies in {closed}, which only its owner may enter: the load user cannot reach it"
        )
    before = client.settings()
    loader_fast.configure(drop_privileges="auto", load_user="nobody")
    try:
        privileges = loader_fast.start()["privileges"]
        seen = report(loader_fast, "import os\nREPORT = {'uid': os.getuid(), 'euid': os.geteuid()}\n")
    finally:
        loader_fast.configure(drop_privileges=before.drop_privileges, load_user=before.load_user)

    assert seen == {"uid": 65534, "euid": 65534}, (
        f"function code runs as uid {seen['uid']}: {privileges.get('reason')} "
        f"(bin/setup makes the Python at {sys.base_prefix} readable by the load user)"
    )


def test_a_load_child_does_not_find_other_loads_in_its_memory(loader_fast):
    marker = f"SLUICE-MEMORY-{uuid.uuid4().hex}"
    half = len(marker) // 2
    for _ in range(3):
        loaded = loader_fast.load_function(
            unique(f"""
            from pydantic import BaseModel

            KEPT = {marker!r} * 4

            class Filter:
                class Valves(BaseModel):
                    secret: str = KEPT
            """),
            valves={"secret": marker + "-value"},
        )
        assert loaded.ok, loaded.error

    seen = report(
        loader_fast,
        f"""
import ctypes

ctypes.CDLL(None).prctl(4, 1, 0, 0, 0)  # dumpable again, so that a child that dropped root may read its memory
needle = ({marker[:half]!r} + {marker[half:]!r}).encode()
found, scanned = [], 0
with open("/proc/self/maps") as maps, open("/proc/self/mem", "rb", buffering=0) as memory:
    for line in maps:
        fields = line.split()
        if not fields[1].startswith("r") or (len(fields) > 5 and fields[5] in ("[vvar]", "[vsyscall]")):
            continue
        low, high = (int(value, 16) for value in fields[0].split("-"))
        try:
            memory.seek(low)
            data = memory.read(high - low)
        except (OSError, OverflowError, ValueError):
            continue
        scanned += len(data)
        at = data.find(needle)
        # The needle itself lives in this process (built above); anything else is another load's.
        while at >= 0:
            found.append(data[at : at + len(needle) + 8].decode("ascii", "replace"))
            at = data.find(needle, at + 1)
REPORT = {{"found": found, "scanned": scanned}}
""",
    )

    assert seen["scanned"] > 10_000_000
    # This function's own needle is followed by whatever; the other loads' copies by their code or values.
    leaks = [
        item for item in seen["found"] if item[len(marker) :].startswith((marker[:8], "-value", "' * 4"))
    ]
    assert not leaks, f"{len(leaks)} fragments of other loads found, e.g. {leaks[:3]}"


def test_the_python_environment_is_refused_when_the_load_user_could_change_it(tmp_path):
    other = 54321  # a uid that owns nothing here
    open_folder = tmp_path / "open"
    venv = open_folder / "venv" / "lib"
    venv.mkdir(parents=True)
    os.chmod(tmp_path, 0o755)
    os.chmod(open_folder, 0o777)  # world-writable, not sticky: anybody can rename venv
    reason = environment.refusal(other, [other], [str(venv)])
    assert reason is not None
    assert str(venv) in reason and str(open_folder) in reason

    os.chmod(open_folder, 0o1777)  # sticky: others cannot rename what they do not own
    assert environment.refusal(other, [other], [str(venv)]) is None

    os.chmod(venv, 0o777)  # the folder itself
    assert str(venv) in environment.refusal(other, [other], [str(venv)])
    os.chmod(venv, 0o775)
    os.chown(venv, -1, 12345) if os.geteuid() == 0 else None
    group = os.stat(venv).st_gid
    assert environment.refusal(other, [other, group], [str(venv)]) is not None  # writable by its group
    assert environment.refusal(other, [other], [str(venv)]) is None
    assert environment.refusal(0, [0], [str(venv)]) is None  # root children are kept off by read-only mounts
