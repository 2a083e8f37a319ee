"""Refusing to run function code when it could change the Python that the server and the next loader run.

A load child that could write into the Python installation, a `sys.path` folder or the application's folder could
leave a `.pth` file or a module there, which the next process started from that Python (the server itself, as
root, or the loader that replaces a killed one) would run. Children's mounts make all of those read-only where the
kernel allows it (loader/confinement.py); this check is what holds where it does not: when Sluice runs as root, the
loader refuses to start if the load user (or anybody) could change any of those folders or the folders above them.
"""

from __future__ import annotations

import os
import stat
import sys

APP_FOLDER = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def environment_folders() -> list[str]:
    """The folders that make up the Python environment function code runs in, and the application's folder."""
    found = {
        sys.prefix,
        sys.base_prefix,
        sys.exec_prefix,
        sys.base_exec_prefix,
        os.path.dirname(os.path.realpath(sys.executable)),
        APP_FOLDER,
    }
    found.update(entry for entry in sys.path if entry)
    return sorted(path for path in found if os.path.exists(path))


def _writable(info: os.stat_result, uid: int, groups: set[int]) -> bool:
    """Whether a user with `uid` and `groups` may change this entry (its owner may always make it writable)."""
    mode = info.st_mode
    return bool(info.st_uid == uid or (info.st_gid in groups and mode & stat.S_IWGRP) or mode & stat.S_IWOTH)


def writable_on_the_way(path: str, uid: int, groups: set[int]) -> str | None:
    """The first folder on the way to `path` (or `path` itself) that a user with `uid` and `groups` could use to
    change what `path` holds, or None. A folder above that the user may write to only counts without the sticky
    bit, or when the user owns the entry below it (with the sticky bit, others' entries cannot be renamed)."""
    for candidate in {os.path.abspath(path), os.path.realpath(path)}:
        parts = candidate.strip("/").split("/") if candidate != "/" else []
        current = "/"
        try:
            info = os.lstat(current)
            for part in parts:
                below = os.path.join(current, part)
                below_info = os.lstat(below)
                if _writable(info, uid, groups) and (
                    not info.st_mode & stat.S_ISVTX or below_info.st_uid == uid
                ):
                    return current
                current, info = below, below_info
                if stat.S_ISLNK(info.st_mode):
                    break  # followed by the resolved candidate
            else:
                if _writable(info, uid, groups):
                    return current
        except OSError:
            continue
    return None


def refusal(uid: int, groups: list[int], folders: list[str] | None = None) -> str | None:
    """Why function code must not run with this Python (a sentence naming the folder), or None."""
    if uid == 0:
        return None
    wanted = set(groups)
    for folder in environment_folders() if folders is None else folders:
        found = writable_on_the_way(folder, uid, wanted)
        if found is not None:
            return (
                f"the Python environment at {folder} is writable by function code ({found} can be changed by "
                f"uid {uid} or by anybody): install Sluice and its Python where only root can write"
            )
    return None
