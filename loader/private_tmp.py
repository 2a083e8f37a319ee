"""A /tmp and /var/tmp of the load child's own: empty, size-capped, in memory, gone with the child.

Without them a child would see and change what other programs keep in the host's temporary folders (keys, sockets,
other databases), and a Python environment kept there. Called in a child's private mount namespace (see
loader/confinement.py): `mount` while it waits as a spare, `reveal` and `forget_host` at its job.
"""

from __future__ import annotations

import contextlib
import os
import stat

from loader.confinement import (
    MS_BIND,
    MS_NODEV,
    MS_NOSUID,
    MS_RDONLY,
    MS_REC,
    MS_REMOUNT,
    _libc,
    _mount,
    inside,
)

# The private temporary folders: empty, capped, in memory, gone with the child.
TMP_OPTIONS = b"size=256m,nr_inodes=16384,mode=1777"
VAR_TMP_OPTIONS = b"size=16m,nr_inodes=1024,mode=1777"
TEMPORARY_FOLDERS = (("/tmp", TMP_OPTIONS), ("/var/tmp", VAR_TMP_OPTIONS))


def mount(workdir: str, writable: list[str], readable: list[str]) -> list[str]:
    """Mount an empty, size-capped tmpfs over /tmp and /var/tmp in this child's private mount namespace, so that it
    neither sees nor changes what other programs keep there, then put back what it needs at the same paths: its
    scratch directory `workdir` (made anew there, empty, 0700, its parents 0711), the folders in `writable`
    (DATA_DIR: bound, writable) and those in `readable` (a Python environment or sys.path folder under /tmp:
    bound read-only). Returns the folders mounted over; a folder that cannot be is left as it is."""
    if _libc is None:
        return []
    for folder, _options in TEMPORARY_FOLDERS:
        with contextlib.suppress(OSError):
            _host_temporary[folder] = os.open(folder, os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC)
    keep = []
    for path, write in [(path, True) for path in writable] + [(path, False) for path in readable]:
        path = os.path.realpath(path) if path else ""
        if path and any(inside(path, folder) and path != folder for folder, _ in TEMPORARY_FOLDERS):
            with contextlib.suppress(OSError):
                keep.append((path, write, os.open(path, os.O_PATH | os.O_CLOEXEC)))
    done = []
    try:
        for folder, options in TEMPORARY_FOLDERS:
            with contextlib.suppress(OSError):
                if os.path.isdir(folder) and not os.path.islink(folder):
                    _mount(b"sluice-tmp", folder, b"tmpfs", MS_NOSUID | MS_NODEV, options)
                    done.append(folder)
        if any(inside(workdir, folder) for folder in done):
            parent = os.path.dirname(workdir)
            os.makedirs(parent, mode=0o711, exist_ok=True)
            os.chmod(parent, 0o711)  # whatever the umask: the load user reaches its directory by name only
            os.mkdir(workdir, 0o700)
            os.chdir(workdir)
        for path, write, fd in keep:
            if not any(inside(path, folder) for folder in done):
                continue
            with contextlib.suppress(OSError):
                if stat.S_ISDIR(os.fstat(fd).st_mode):
                    os.makedirs(path, mode=0o755, exist_ok=True)
                else:
                    os.makedirs(os.path.dirname(path), mode=0o755, exist_ok=True)
                    os.close(os.open(path, os.O_CREAT | os.O_WRONLY | os.O_CLOEXEC, 0o644))
                _mount(f"/proc/self/fd/{fd}", path, None, MS_BIND | MS_REC)
                if not write:
                    _mount(b"none", path, None, MS_REMOUNT | MS_BIND | MS_RDONLY | MS_NOSUID | MS_NODEV)
    finally:
        for _path, _write, fd in keep:
            os.close(fd)
    return done


# The host's /tmp and /var/tmp, held open while a spare waits, so that its job's packages folder can be put back
# when it lies there (`reveal`); closed (`forget_host`) before function code runs.
_host_temporary: dict[str, int] = {}


def reveal(path: str) -> bool:
    """Put the host's `path` (a folder in its /tmp or /var/tmp, the job's packages folder) back, read-only, at the
    same place in this child's private temporary folder. False if it is not there or cannot be bound."""
    path = os.path.realpath(path)
    for folder, host_fd in _host_temporary.items():
        if not inside(path, folder) or path == folder:
            continue
        try:
            fd = os.open(
                os.path.relpath(path, folder), os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC, dir_fd=host_fd
            )
        except OSError:
            return False
        try:
            os.makedirs(path, mode=0o755, exist_ok=True)
            _mount(f"/proc/self/fd/{fd}", path, None, MS_BIND | MS_REC)
            _mount(b"none", path, None, MS_REMOUNT | MS_BIND | MS_RDONLY | MS_NOSUID | MS_NODEV)
            return True
        except OSError:
            return False
        finally:
            os.close(fd)
    return False


def host_path(path: str) -> str | None:
    """Where this child reaches the host's `path` when it lies in the host's /tmp or /var/tmp (through the handle
    held on them until `forget_host`); None when it lies elsewhere."""
    path = os.path.realpath(path)
    for folder, host_fd in _host_temporary.items():
        if inside(path, folder) and path != folder:
            return os.path.join(f"/proc/self/fd/{host_fd}", os.path.relpath(path, folder))
    return None


def forget_host() -> None:
    """Close the handles on the host's temporary folders: function code must not reach them through /proc."""
    for fd in _host_temporary.values():
        with contextlib.suppress(OSError):
            os.close(fd)
    _host_temporary.clear()
