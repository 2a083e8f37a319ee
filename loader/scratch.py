"""Scratch directories for load children, and removing them (and those that killed parents left behind) safely.

Each warm parent keeps its children's scratch directories (`sluice-load-*`) in one folder of its own in the
temporary directory, `sluice-zygote-<pid>-*`: owned by the parent's user and not writable by anyone else (0711), so
the load user can reach its own scratch directory by name but cannot rename it or put anything beside it.
"""

from __future__ import annotations

import contextlib
import os
import stat
import tempfile

WORKDIR_PREFIX = "sluice-load-"
PARENT_PREFIX = "sluice-zygote-"
PARENT_MODE = 0o711


def make_workdir(workdirs: str) -> str:
    """A new scratch directory for one child, in the parent's folder `workdirs`."""
    return tempfile.mkdtemp(prefix=WORKDIR_PREFIX, dir=workdirs)


def make_workdir_parent(pid: int) -> str:
    """This zygote's folder for its children's scratch directories: new, ours, 0711 (see PARENT_PREFIX)."""
    # 0700 and ours, under a name nobody could guess; in the sticky temporary directory nobody else can rename it.
    path = tempfile.mkdtemp(prefix=f"{PARENT_PREFIX}{pid}-")
    os.chmod(path, PARENT_MODE)
    return path


# Removing a tree that the function's code could still be changing (a grandchild not yet killed, a scratch
# directory handed to the load user): every step goes through a descriptor of a directory we opened without
# following links, so no name can be swapped for a symbolic link to somewhere else.
_DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
# Folders deeper than this are moved up to the top of the tree before they are emptied: neither the recursion nor
# the number of open descriptors grows with a tree built to be deep.
REMOVE_DEPTH = 32
# At most this many entries are looked at per tree; what is left after that stays behind.
REMOVE_BUDGET = 1_000_000


def remove_tree(path: str, owners: set[int] | None = None) -> None:
    """Remove `path` and everything in it without ever following a symbolic link.

    A link (where `path` itself was replaced by one, or anywhere inside) is unlinked, never entered, and nothing
    is changed through it. With `owners`, `path` is removed only if it is a real directory owned by one of them
    (checked on the directory opened, not on its name). Permissions are changed only where we are not root (root
    needs no permission to remove), only on directories inside the tree, and only through their descriptors.
    """
    if not path:
        return
    parent, name = os.path.split(os.path.normpath(os.path.abspath(path)))
    try:
        parent_fd = os.open(parent, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    except OSError:
        return
    try:
        _remove_entry(parent_fd, name, owners)
    finally:
        os.close(parent_fd)


def _remove_entry(dir_fd: int, name: str, owners: set[int] | None = None) -> None:
    try:
        info = os.stat(name, dir_fd=dir_fd, follow_symlinks=False)
    except OSError:
        return
    if not stat.S_ISDIR(info.st_mode):
        if owners is None:  # a scratch directory the code replaced by a link or a file: remove just that
            with contextlib.suppress(OSError):
                os.unlink(name, dir_fd=dir_fd)
        return
    fd = _open_directory(dir_fd, name)
    if fd is None:
        return
    try:
        if owners is not None and os.fstat(fd).st_uid not in owners:
            return
        budget = [REMOVE_BUDGET]
        while _empty_directory(fd, fd, 0, budget) and budget[0] > 0:
            pass  # another round for the folders that were moved up
    finally:
        os.close(fd)
    with contextlib.suppress(OSError):
        os.rmdir(name, dir_fd=dir_fd)


def _open_directory(dir_fd: int, name: str) -> int | None:
    """The directory `name` in `dir_fd`, opened without following a link; None if it is not one (any more)."""
    try:
        return os.open(name, _DIR_FLAGS, dir_fd=dir_fd)
    except PermissionError:
        if os.geteuid() == 0:
            return None
    except OSError:
        return None
    # Not root, and the code made one of its folders unreadable: make it ours to read, through a descriptor that
    # stands for that very directory (a path-only one: opening it needs no permission).
    try:
        handle = os.open(name, os.O_PATH | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC, dir_fd=dir_fd)
    except OSError:
        return None
    try:
        if os.fstat(handle).st_uid != os.geteuid():
            return None
        os.chmod(f"/proc/self/fd/{handle}", stat.S_IRWXU)
        return os.open(name, _DIR_FLAGS, dir_fd=dir_fd)
    except OSError:
        return None
    finally:
        os.close(handle)


def _empty_directory(fd: int, top_fd: int, depth: int, budget: list[int]) -> bool:
    """Remove what is in the directory open as `fd`; True if folders too deep were moved up to `top_fd` instead."""
    if os.geteuid() != 0:  # the code may have made its folders read-only; root needs no permission
        with contextlib.suppress(OSError):
            info = os.fstat(fd)
            if info.st_uid == os.geteuid() and info.st_mode & stat.S_IRWXU != stat.S_IRWXU:
                os.chmod(fd, stat.S_IMODE(info.st_mode) | stat.S_IRWXU)
    try:
        names = os.listdir(fd)
    except OSError:
        return False
    moved = False
    for name in names:
        budget[0] -= 1
        if budget[0] < 0:
            return False
        try:
            info = os.stat(name, dir_fd=fd, follow_symlinks=False)
        except OSError:
            continue
        if not stat.S_ISDIR(info.st_mode):
            with contextlib.suppress(OSError):
                os.unlink(name, dir_fd=fd)
            continue
        if depth >= REMOVE_DEPTH:
            with contextlib.suppress(OSError):
                os.rename(name, f".sluice-deep-{budget[0]}", src_dir_fd=fd, dst_dir_fd=top_fd)
                moved = True
            continue
        sub = _open_directory(fd, name)
        if sub is None:
            continue
        try:
            moved = _empty_directory(sub, top_fd, depth + 1, budget) or moved
        finally:
            os.close(sub)
        with contextlib.suppress(OSError):
            os.rmdir(name, dir_fd=fd)
    return moved


def remove_stale_workdirs(owners: set[int]) -> None:
    """Remove scratch folders left by zygotes that were killed before they could clean up.

    A zygote's folder (`sluice-zygote-<pid>-*`) is removed only if it is a real directory owned by our uid, the
    scratch directories of older versions (`sluice-load-<pid>-*`, straight in the temporary directory) only if
    they are real directories owned by `owners` (our uid and the load user's, to whom children handed theirs).
    Anyone can put a name like these in the temporary directory: a link is never followed, nothing is done by name.
    """
    base = tempfile.gettempdir()
    try:
        names = os.listdir(base)
    except OSError:
        return
    for name in names:
        if name.startswith(PARENT_PREFIX):
            rest, allowed = name[len(PARENT_PREFIX) :], {os.geteuid()}
        elif name.startswith(WORKDIR_PREFIX):
            rest, allowed = name[len(WORKDIR_PREFIX) :], owners
        else:
            continue
        owner = rest.split("-", 1)[0]
        if not owner.isdigit() or os.path.exists(f"/proc/{owner}"):
            continue
        remove_tree(os.path.join(base, name), owners=allowed)
