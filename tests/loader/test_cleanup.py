"""Scratch directories are removed without ever following a symbolic link, and the load user cannot move them.

Function code may have replaced its scratch directory (or anything in it) by a link while it ran: removing what is
left, as root, must neither descend into nor change the permissions of whatever such a link points at. Each
zygote keeps its children's scratch directories in a folder of its own (root's when it runs as root, 0711), so
the load user cannot rename its scratch directory or put anything beside it.
"""

from __future__ import annotations

import os
import stat
import tempfile

import pytest

from loader import scratch
from tests.loader.support import unique

as_root = pytest.mark.skipif(os.geteuid() != 0, reason="only a server running as root drops privileges")


def mode(path) -> int:
    return stat.S_IMODE(os.lstat(path).st_mode)


@pytest.fixture
def victim(tmp_path):
    """A folder elsewhere that a link in a scratch directory points at: it must come out untouched."""
    folder = tmp_path / "victim"
    folder.mkdir()
    (folder / "keep.txt").write_text("keep")
    (folder / "inner").mkdir()
    os.chmod(folder, 0o755)
    return folder


def test_a_scratch_directory_replaced_by_a_link_is_unlinked_and_nothing_is_changed_through_it(
    tmp_path, victim
):
    parent = tmp_path / "parent"
    parent.mkdir()
    os.chmod(parent, 0o755)
    workdir = parent / "sluice-load-x"
    os.symlink(victim, workdir)

    scratch.remove_tree(str(workdir))

    assert not os.path.lexists(workdir)
    assert mode(parent) == 0o755
    assert mode(victim) == 0o755
    assert (victim / "keep.txt").read_text() == "keep"
    assert (victim / "inner").is_dir()


def test_links_inside_a_scratch_directory_are_removed_not_followed(tmp_path, victim):
    workdir = tmp_path / "sluice-load-y"
    (workdir / "locked" / "deeper").mkdir(parents=True)
    (workdir / "locked" / "deeper" / "file").write_text("x")
    os.symlink(victim, workdir / "folder-link")
    os.symlink(victim / "keep.txt", workdir / "file-link")
    os.symlink(victim, workdir / "locked" / "deeper" / "link")
    os.chmod(workdir / "locked" / "deeper", 0o500)
    os.chmod(workdir / "locked", 0)
    os.chmod(workdir, 0o500)

    scratch.remove_tree(str(workdir))

    assert not os.path.lexists(workdir)
    assert mode(victim) == 0o755
    assert sorted(os.listdir(victim)) == ["inner", "keep.txt"]


def test_a_tree_built_to_be_deep_is_removed_without_recursing_as_deep(tmp_path):
    workdir = tmp_path / "sluice-load-deep"
    workdir.mkdir()
    fd = os.open(workdir, os.O_RDONLY | os.O_DIRECTORY)
    for _ in range(1500):  # deeper than Python's recursion limit, and than PATH_MAX allows by name
        os.mkdir("d", dir_fd=fd)
        deeper = os.open("d", os.O_RDONLY | os.O_DIRECTORY, dir_fd=fd)
        os.close(fd)
        fd = deeper
    os.close(fd)

    scratch.remove_tree(str(workdir))

    assert not os.path.lexists(workdir)


def test_stale_names_planted_in_the_temporary_directory_are_not_followed(tmp_path, victim, monkeypatch):
    base = tmp_path / "tmp"
    base.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(base))
    dead = "999999999"  # beyond any pid
    os.symlink(victim, base / f"sluice-load-{dead}-link")
    os.symlink(victim, base / f"sluice-zygote-{dead}-link")
    stale_parent = base / f"sluice-zygote-{dead}-left"
    (stale_parent / "sluice-load-abc").mkdir(parents=True)
    os.symlink(victim, stale_parent / "sluice-load-abc" / "link")
    legacy = base / f"sluice-load-{dead}-old"
    legacy.mkdir()
    others = base / f"sluice-zygote-{dead}-someone-elses"
    others.mkdir()
    if os.geteuid() == 0:
        os.chown(others, 12345, 12345)

    scratch.remove_stale_workdirs({os.geteuid()})

    assert mode(victim) == 0o755
    assert sorted(os.listdir(victim)) == ["inner", "keep.txt"]
    assert not stale_parent.exists() and not legacy.exists()
    assert (base / f"sluice-load-{dead}-link").is_symlink()  # someone else's name: left alone, not followed
    assert (base / f"sluice-zygote-{dead}-link").is_symlink()
    assert others.exists() == (os.geteuid() == 0)


def test_a_zygote_keeps_scratch_directories_in_a_folder_only_it_can_change(loader_fast, source):
    code = source("""
        import os
        from pydantic import BaseModel

        class Pipe:
            class Valves(BaseModel):
                cwd: str = os.getcwd()
    """)
    result = loader_fast.load_function(code)
    assert result.ok, result.error
    cwd = result.valves_schema["properties"]["cwd"]["default"]
    parent = os.path.dirname(cwd)
    info = os.stat(parent)

    assert os.path.basename(cwd).startswith("sluice-load-")
    assert os.path.basename(parent).startswith(f"sluice-zygote-{loader_fast.stats()['zygote_pid']}-")
    assert os.path.dirname(parent) == tempfile.gettempdir()
    assert info.st_uid == os.geteuid()
    assert stat.S_IMODE(info.st_mode) == 0o711


@as_root
def test_the_load_user_cannot_rename_its_scratch_directory_or_write_beside_it(dropping):
    # Renamed, a scratch directory could be replaced by a link before the zygote removes it: put back at once if
    # the rename works, so that a failing run of this test cannot make the cleanup follow anything.
    result = dropping.load_function(
        unique("""
        import os
        from pydantic import BaseModel

        here = os.getcwd()

        def rename():
            try:
                os.rename(here, here + "-moved")
            except OSError as exc:
                return type(exc).__name__
            os.rename(here + "-moved", here)
            return "renamed"

        def beside():
            try:
                os.mkdir(here + "-beside")
            except OSError as exc:
                return type(exc).__name__
            os.rmdir(here + "-beside")
            return "made"

        class Pipe:
            class Valves(BaseModel):
                uid: int = os.getuid()
                rename: str = rename()
                beside: str = beside()
    """)
    )
    assert result.ok, result.error
    seen = {name: prop["default"] for name, prop in result.valves_schema["properties"].items()}

    assert seen == {"uid": 65534, "rename": "PermissionError", "beside": "PermissionError"}
