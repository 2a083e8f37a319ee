"""When the server runs as root, function code runs as an unprivileged user (SLUICE_LOAD_USER, default nobody).

With SLUICE_LOAD_DROP_PRIVILEGES=auto (the default) the children switch only if that user can read everything
function code needs; otherwise they stay root and the reason is logged once. "always" switches whenever the ids can
be taken: the tests below use it, so that they exercise the switch even where auto falls back (e.g. a Python
installed under /root). Their functions use only modules the zygote has loaded and paths the load user can reach.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import stat
import subprocess
import sys
import tempfile
import textwrap
import uuid

import pytest

from loader import client, privileges
from tests.loader.support import defaults, unique

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
as_root = pytest.mark.skipif(os.geteuid() != 0, reason="only a server running as root drops privileges")


IDENTITY = """
import os
from pydantic import BaseModel

class Pipe:
    class Valves(BaseModel):
        ids: list = list(os.getresuid()) + list(os.getresgid())
        groups: list = os.getgroups()
        home: str = os.environ.get("HOME", "")
        cwd: str = os.getcwd()
"""


def test_the_drop_mode_setting_is_read_leniently():
    assert [client._drop_mode(value) for value in (None, "", "auto", "1", "True", "on")] == ["auto"] * 6
    assert [client._drop_mode(value) for value in ("0", "false", "OFF", "never")] == ["off"] * 4
    assert client._drop_mode("always") == "always"
    assert client._drop_mode("sometimes") == "auto"


def test_the_ready_report_says_whether_children_drop_root(loader_fast):
    privileges = loader_fast.start()["privileges"]
    seen = defaults(loader_fast.load_function(unique(IDENTITY)))

    if privileges["drop"]:
        assert seen["ids"] == [privileges["uid"]] * 3 + [privileges["gid"]] * 3
    else:
        assert seen["ids"][0] == os.geteuid()
        if os.geteuid() == 0 and privileges["mode"] != "off":
            assert privileges["reason"]  # staying root as root always says why


@as_root
def test_children_run_as_nobody_in_their_own_home(dropping):
    assert dropping.start()["privileges"]["drop"] is True
    seen = defaults(dropping.load_function(unique(IDENTITY)))

    assert seen["ids"] == [65534] * 6
    assert seen["groups"] == [65534]
    assert os.path.basename(seen["cwd"]).startswith("sluice-load-")
    # Its home is the function's own (tests/loader/test_function_home.py) where the app gave a homes folder (an
    # earlier test in this process may have), else its scratch directory.
    homes_dir = client.settings().homes_dir
    assert seen["home"] == (
        os.path.join(os.path.realpath(homes_dir), "function") if homes_dir else seen["cwd"]
    )


@as_root
def test_function_code_cannot_signal_the_server_or_the_zygote(dropping):
    seen = defaults(
        dropping.load_function(
            unique(f"""
            import os
            from pydantic import BaseModel

            def signal(pid):
                try:
                    os.kill(pid, 0)
                    return "allowed"
                except PermissionError:
                    return "refused"
                except ProcessLookupError:  # not in its process-id namespace at all
                    return "unreachable"

            class Pipe:
                class Valves(BaseModel):
                    server: str = signal({os.getpid()})
                    zygote: str = signal(os.getppid())
        """)
        )
    )

    if dropping.start()["confinement"].get("pid_namespace"):
        # The server is not in its namespace; its parent is the namespace's first process, root's.
        assert seen == {"server": "unreachable", "zygote": "refused"}
    else:
        assert seen == {"server": "refused", "zygote": "refused"}


@as_root
def test_function_code_cannot_raise_its_limits(dropping):
    seen = defaults(
        dropping.load_function(
            unique("""
            import resource
            from pydantic import BaseModel

            def raise_limit(name):
                kind = getattr(resource, name)
                soft, hard = resource.getrlimit(kind)
                try:
                    resource.setrlimit(kind, (hard + 1, hard + 1))
                    return "raised"
                except (ValueError, OSError):
                    return "refused"

            class Pipe:
                class Valves(BaseModel):
                    limits: dict = {name: raise_limit(name) for name in ("RLIMIT_NPROC", "RLIMIT_AS", "RLIMIT_DATA", "RLIMIT_CPU")}
        """)
        )
    )

    assert seen["limits"] == dict.fromkeys(
        ("RLIMIT_NPROC", "RLIMIT_AS", "RLIMIT_DATA", "RLIMIT_CPU"), "refused"
    )


@as_root
def test_file_data_dir_and_scratch_files_still_work(dropping):
    name = f"sluice-test-{uuid.uuid4().hex}"
    seen = defaults(
        dropping.load_function(
            unique(f"""
            import os, tempfile
            from pydantic import BaseModel
            from open_webui.config import CACHE_DIR, UPLOAD_DIR
            from open_webui.env import DATA_DIR

            with open(__file__, encoding="utf-8") as own:
                OWN = own.read()
            written = []
            for folder in (DATA_DIR, CACHE_DIR, UPLOAD_DIR):
                path = os.path.join(folder, {name!r})
                with open(path, "w") as kept:
                    kept.write("kept")
                written.append(os.path.getsize(path))
                os.unlink(path)
            with open("here.txt", "w") as here:
                here.write("x")
            with tempfile.NamedTemporaryFile() as scratch:
                scratch.write(b"y")

            class Filter:
                class Valves(BaseModel):
                    own: int = len(OWN)
                    written: list = written
                    uid: int = os.getuid()
        """),
            function_id="privileged_files",
        )
    )

    assert seen["own"] > 0
    assert seen["written"] == [4, 4, 4]
    assert seen["uid"] == 65534


@as_root
def test_a_packages_dir_the_load_user_can_read_is_used_as_that_user(dropping):
    packages = tempfile.mkdtemp(prefix="sluice-test-packages-")
    try:
        os.chmod(packages, 0o755)
        module = "sluice_readable_" + uuid.uuid4().hex[:8]
        with open(os.path.join(packages, f"{module}.py"), "w") as source:
            source.write("import os\nUID = os.getuid()\n")
        os.chmod(os.path.join(packages, f"{module}.py"), 0o644)
        dropping.configure(packages_dir=packages)

        seen = defaults(
            dropping.load_function(
                unique(f"""
                import {module}
                from pydantic import BaseModel

                class Pipe:
                    class Valves(BaseModel):
                        uid: int = {module}.UID
            """)
            )
        )
    finally:
        dropping.configure(packages_dir=None)
        shutil.rmtree(packages)

    assert seen["uid"] == 65534


@as_root
def test_a_packages_dir_the_load_user_cannot_read_keeps_root_and_says_so_once(dropping, tmp_path, caplog):
    private = tmp_path / "private-packages"
    private.mkdir(mode=0o700)
    module = "sluice_private_" + uuid.uuid4().hex[:8]
    (private / f"{module}.py").write_text("VALUE = 1\n")
    dropping.configure(packages_dir=str(private))
    code = f"import os, {module}\nfrom pydantic import BaseModel\nclass Pipe:\n    class Valves(BaseModel):\n"
    code += "        uid: int = os.getuid()\n"
    try:
        with caplog.at_level(logging.WARNING, logger="loader.connection"):
            first = defaults(dropping.load_function(unique(code)))
            second = defaults(dropping.load_function(unique(code)))
    finally:
        dropping.configure(packages_dir=None)

    assert first["uid"] == second["uid"] == 0
    notices = [record.getMessage() for record in caplog.records if "loaded as root" in record.getMessage()]
    assert len(notices) == 1  # logged once per process, not on every load
    assert all("cannot" in notice and str(private) in notice for notice in notices)


@as_root
def test_an_unknown_load_user_keeps_root_with_a_reason(loader_fast):
    before = client.settings()
    try:
        loader_fast.configure(drop_privileges="always", load_user="no-such-user-" + uuid.uuid4().hex[:6])
        privileges = loader_fast.start()["privileges"]
        seen = defaults(loader_fast.load_function(unique(IDENTITY)))
    finally:
        loader_fast.configure(drop_privileges=before.drop_privileges, load_user=before.load_user)

    assert privileges["drop"] is False
    assert "there is no user" in privileges["reason"]
    assert seen["ids"][0] == 0


@as_root
def test_the_access_check_runs_as_the_load_user():
    """privileges.probe takes the ids in a forked process: what nobody cannot read is reported, and ids that cannot
    be taken at all (uid_t -1 would mean "unchanged") are refused rather than silently kept."""
    script = textwrap.dedent("""
        import json, os, sys, tempfile
        sys.path.insert(0, os.getcwd())
        from loader import privileges
        nobody = {"uid": 65534, "gid": 65534, "groups": [65534]}
        private = tempfile.mkdtemp()
        os.chmod(private, 0o700)
        print(json.dumps({
            "open": privileges.probe(nobody, [(tempfile.gettempdir(), "search"), ("/usr", "list")]),
            "private": privileges.probe(nobody, [("/usr", "list"), (private, "list")]),
            "unchanged": privileges.probe({"uid": 2 ** 32 - 1, "gid": 2 ** 32 - 1, "groups": []}, []),
        }))
        os.rmdir(private)
    """)
    output = subprocess.run(
        [sys.executable, "-c", script], cwd=ROOT, capture_output=True, text=True, timeout=30, check=True
    ).stdout
    found = json.loads(output)
    assert found["open"] is None
    assert found["private"].startswith("the load user cannot list /tmp/")
    assert found["unchanged"].startswith("the load user's ids cannot be taken")


def test_an_impossible_user_is_refused_by_name_resolution():
    with pytest.raises(LookupError):
        privileges.resolve_user("4294967295")
    with pytest.raises(LookupError):
        privileges.resolve_user("no-such-user-" + uuid.uuid4().hex[:6])
    assert privileges.resolve_user("65534:65534") == {
        "user": "65534:65534",
        "uid": 65534,
        "gid": 65534,
        "groups": [65534],
    }


@as_root
def test_the_default_data_dir_is_handed_to_the_load_user(dropping):
    """Root's folders in the load user's group with group write, so that neither the load user nor a child that
    stays root needs to override permissions there, and the load user cannot rename or replace them."""
    dropping.start()
    data_dir = os.path.join(tempfile.gettempdir(), "sluice-function-data")
    if "DATA_DIR" in os.environ or not os.path.isdir(data_dir):
        pytest.skip("DATA_DIR is set by the environment")
    for folder in (data_dir, os.path.join(data_dir, "cache"), os.path.join(data_dir, "uploads")):
        info = os.lstat(folder)
        assert stat.S_ISDIR(info.st_mode) and (info.st_uid, info.st_gid) == (0, 65534)
        assert info.st_mode & (stat.S_IRWXG | stat.S_ISGID) == stat.S_IRWXG | stat.S_ISGID
        assert not info.st_mode & stat.S_IWOTH
        assert bool(info.st_mode & stat.S_ISVTX) == (folder == data_dir)


@as_root
def test_handing_over_the_data_dir_never_follows_a_folder_swapped_for_a_link(tmp_path, monkeypatch):
    """The load user owns what is in DATA_DIR and may swap a folder for a link while the zygote walks it: nothing
    outside DATA_DIR may change (the folder swapped is the one just handed over, its subfolder comes next)."""
    data = tmp_path / "data"
    (data / "a" / "b").mkdir(parents=True)
    elsewhere = tmp_path / "elsewhere"
    (elsewhere / "b").mkdir(parents=True)
    for folder in (data, data / "a", data / "a" / "b", elsewhere, elsewhere / "b"):
        os.chmod(folder, 0o755)
    monkeypatch.setattr(privileges, "_data_dir", lambda: str(data))
    monkeypatch.delenv("DATA_DIR", raising=False)
    real_chown, calls = os.chown, []

    def chown_then_swap(*args, **kwargs):
        real_chown(*args, **kwargs)
        calls.append(args[0])
        if len(calls) == 2:  # "a" was just handed over: the load user replaces it by a link
            os.rename(data / "a", data / "a-moved")
            os.symlink(elsewhere, data / "a")

    monkeypatch.setattr(os, "chown", chown_then_swap)
    privileges._hand_over_data_dir(65534, 65534)
    monkeypatch.undo()

    info = os.lstat(elsewhere / "b")
    assert (info.st_uid, info.st_gid, stat.S_IMODE(info.st_mode)) == (0, 0, 0o755)
    assert len(calls) >= 2
    for folder in (data, data / "a-moved", data / "a-moved" / "b"):
        info = os.lstat(folder)
        assert (info.st_uid, info.st_gid) == (0, 65534)
        assert stat.S_IMODE(info.st_mode) == (0o3775 if folder == data else 0o2775)


@as_root
def test_a_data_dir_that_is_a_link_or_someone_elses_is_left_alone(tmp_path, monkeypatch):
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    os.chmod(elsewhere, 0o755)
    link = tmp_path / "data-link"
    os.symlink(elsewhere, link)
    foreign = tmp_path / "foreign"
    (foreign / "inner").mkdir(parents=True)
    os.chown(foreign, 12345, 12345)
    monkeypatch.delenv("DATA_DIR", raising=False)

    for path in (link, foreign):
        monkeypatch.setattr(privileges, "_data_dir", lambda path=path: str(path))
        privileges._hand_over_data_dir(65534, 65534)

    assert (os.lstat(elsewhere).st_uid, os.lstat(elsewhere).st_gid) == (0, 0)
    assert (os.lstat(foreign).st_uid, os.lstat(foreign / "inner").st_gid) == (12345, 0)
