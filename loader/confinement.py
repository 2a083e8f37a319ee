"""Keeping function code that runs as root away from the server's secrets: best effort, Linux only, through ctypes.

When the zygote runs as root, each load child (loader/child.py; the process-id and network namespaces it is born
in are loader/namespaces.py's)

1. as a spare, before it has a job (so off the caller's clock): enters a private mount namespace (nothing mounted
   there shows anywhere else), gets a /dev of its own that holds only the harmless devices (a root process without
   capabilities could still read a whole disk through its device node, which is root's), empties its capability
   bounding set (nothing it executes can gain a capability, whatever its set-user-id or file capabilities) and sets
   no_new_privs (`enter`); then mounts a /proc of its process-id namespace (`own_proc`), an empty /tmp and /var/tmp
   of its own with its scratch directory, DATA_DIR and any Python folder there put back (loader/private_tmp.py),
   hides the system's secrets (`SYSTEM_SECRETS`, through `hide`) and makes every other mount read-only
   (`read_only_except`) — the /dev, the secrets and the read-only mounts are done once by the template children are
   forked from (`prepare`, loader/namespaces.py), whose mount namespace each child's copies, where there is one;
2. when its job comes: puts the job's packages folder back if it lies in the host's /tmp (private_tmp), mounts an
   empty read-only tmpfs over each folder the server asked to hide (an empty read-only file over a file), putting
   the packages folder back, read-only, when it lies in one of them (`hide`); a child that keeps root then drops
   every capability (`drop_capabilities`), so that it can neither undo the mounts nor read or trace the server
   (`/proc/<pid>/environ`, `/proc/<pid>/mem` need CAP_SYS_PTRACE to reach a process with more capabilities); every
   child becomes non-dumpable, so that other children cannot read its memory.

Every step the kernel refuses is skipped and the load goes on without it; the zygote runs `check` once, in a
throwaway process, and the caller logs once what does not work here.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import re
import stat

CLONE_NEWNS = 0x00020000
MS_RDONLY = 1
MS_NOSUID = 2
MS_NODEV = 4
MS_NOEXEC = 8
MS_REMOUNT = 32
MS_BIND = 4096
MS_REC = 16384
MS_PRIVATE = 1 << 18
MNT_DETACH = 2
PR_SET_DUMPABLE = 4
PR_CAPBSET_DROP = 24
PR_SET_NO_NEW_PRIVS = 38
PR_CAP_AMBIENT = 47
PR_CAP_AMBIENT_CLEAR_ALL = 4
CAPABILITY_VERSION_3 = 0x20080522

HIDDEN_OPTIONS = b"size=64k,nr_inodes=256,mode=0711"
# The devices a function may use: (name, major, minor). No disks, consoles, terminals, kernel memory or log.
DEVICES = (("null", 1, 3), ("zero", 1, 5), ("full", 1, 7), ("random", 1, 8), ("urandom", 1, 9), ("tty", 5, 0))
DEVICE_LINKS = (
    ("fd", "/proc/self/fd"),
    ("stdin", "/proc/self/fd/0"),
    ("stdout", "/proc/self/fd/1"),
    ("stderr", "/proc/self/fd/2"),
)
SHM_OPTIONS = b"size=64m,mode=1777"


class _CapHeader(ctypes.Structure):
    _fields_ = [("version", ctypes.c_uint32), ("pid", ctypes.c_int)]


class _CapData(ctypes.Structure):
    _fields_ = [
        ("effective", ctypes.c_uint32),
        ("permitted", ctypes.c_uint32),
        ("inheritable", ctypes.c_uint32),
    ]


def _load_libc():
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        libc.unshare.argtypes = [ctypes.c_int]
        libc.mount.argtypes = [
            ctypes.c_char_p,
            ctypes.c_char_p,
            ctypes.c_char_p,
            ctypes.c_ulong,
            ctypes.c_char_p,
        ]
        libc.umount2.argtypes = [ctypes.c_char_p, ctypes.c_int]
        libc.capset.argtypes = [ctypes.POINTER(_CapHeader), ctypes.POINTER(_CapData)]
        libc.prctl.argtypes = [ctypes.c_int, ctypes.c_ulong, ctypes.c_ulong, ctypes.c_ulong, ctypes.c_ulong]
        for function in (libc.unshare, libc.mount, libc.umount2, libc.capset, libc.prctl):
            function.restype = ctypes.c_int
        return libc
    except (OSError, AttributeError):
        return None


# Loaded in the zygote, so that children find it ready.
_libc = _load_libc()


def _last_capability() -> int:
    try:
        with open("/proc/sys/kernel/cap_last_cap") as last:
            return int(last.read())
    except (OSError, ValueError):
        return 63


LAST_CAPABILITY = _last_capability()


def _check(result: int, what: str) -> None:
    if result != 0:
        number = ctypes.get_errno()
        raise OSError(number, f"{what}: {os.strerror(number)}")


def _mount(
    source: bytes | str | None, target: str, fstype: bytes | None, flags: int, data: bytes | None = None
):
    if isinstance(source, str):
        source = source.encode()
    _check(_libc.mount(source, os.fsencode(target), fstype, flags, data), f"mount {target}")


def _prctl(option: int, argument: int = 0) -> int:
    return _libc.prctl(option, argument, 0, 0, 0)


# --- the spare: a namespace, a /dev and a bounding set of its own -----------------------------------------------


def enter(mounts: bool, prepared: bool = False) -> bool:
    """In a child running as root, before its job: see the module's docstring, step 1. True if this child now has a
    private mount namespace in which `hide` may mount (`mounts`: the zygote's check said that it works). `prepared`:
    the namespace it was born in already has its /dev, hidden secrets and read-only mounts (`prepare`)."""
    if _libc is None or os.geteuid() != 0:
        return False
    private = mounts and _private_namespace()
    if private and not prepared:
        with contextlib.suppress(OSError):
            _own_dev()
    drop_bounding_set()
    _prctl(PR_SET_NO_NEW_PRIVS, 1)
    return private


def prepare(secrets: dict | None, writable: list[str]) -> bool:
    """In the template children are forked from (loader/namespaces.py), once: a private mount namespace with what
    every child's would have, so that each child only copies it: a /dev of its own, the system's secrets hidden
    (`secrets`: `{"paths", "keep"}`, see `hide`) and every mount read-only but `writable` and the temporary folders
    (each child mounts its own over these). False, with nothing done that shows outside, where it fails."""
    if _libc is None or os.geteuid() != 0 or not _private_namespace():
        return False
    try:
        _own_dev()
    except OSError:
        return False
    if secrets:
        hide(secrets.get("paths") or [], secrets.get("keep") or [])
    read_only_except([*writable, "/tmp", "/var/tmp"])
    return True


def _private_namespace() -> bool:
    if _libc.unshare(CLONE_NEWNS) != 0:
        return False
    # Until every mount is private, a mount made here could show in the server's namespace: mount nothing then.
    return _libc.mount(b"none", b"/", None, MS_REC | MS_PRIVATE, None) == 0


def _own_dev() -> None:
    """Replace /dev by a tmpfs with only DEVICES, the usual links, a private /dev/shm and the system log's socket."""
    log_fd = -1
    if os.path.exists("/dev/log"):
        with contextlib.suppress(OSError):
            log_fd = os.open("/dev/log", os.O_PATH | os.O_CLOEXEC)
    _mount(b"sluice-dev", "/dev", b"tmpfs", MS_NOSUID | MS_NOEXEC, b"size=64k,nr_inodes=64,mode=0755")
    try:
        for name, major, minor in DEVICES:
            os.mknod(f"/dev/{name}", stat.S_IFCHR | 0o666, os.makedev(major, minor))
            os.chmod(f"/dev/{name}", 0o666)  # whatever the umask
        for name, target in DEVICE_LINKS:
            os.symlink(target, f"/dev/{name}")
        os.mkdir("/dev/shm")
        _mount(b"sluice-shm", "/dev/shm", b"tmpfs", MS_NOSUID | MS_NODEV | MS_NOEXEC, SHM_OPTIONS)
        if log_fd >= 0:
            with contextlib.suppress(OSError):
                os.close(os.open("/dev/log", os.O_CREAT | os.O_WRONLY | os.O_CLOEXEC, 0o666))
                _mount(f"/proc/self/fd/{log_fd}", "/dev/log", None, MS_BIND)
        _mount(b"none", "/dev", None, MS_REMOUNT | MS_RDONLY | MS_NOSUID | MS_NOEXEC)
    except OSError:
        _libc.umount2(b"/dev", MNT_DETACH)  # the real /dev rather than half of one
        raise
    finally:
        if log_fd >= 0:
            os.close(log_fd)


def own_proc() -> bool:
    """In the first child process of a new process-id namespace, with a private mount namespace: mount a /proc of
    that namespace, which lists only its own processes (the server's pids, command lines and environment stay out
    of sight). False where the kernel refuses it (the host's /proc stays; its pids cannot be signalled from here)."""
    if _libc is None:
        return False
    try:
        _mount(b"proc", "/proc", b"proc", MS_RDONLY | MS_NOSUID | MS_NODEV | MS_NOEXEC)
    except OSError:
        return False
    return True


# What a function has no business reading on a typical machine: root's and the users' homes, password hashes,
# other services' data and keys. Hidden from every child (an empty read-only folder or file in their place), save
# those that hold what function code needs (the Python installation, for instance) — see `plan_hidden_paths`.
SYSTEM_SECRETS = (
    "/root",
    "/home",
    "/etc/shadow",
    "/etc/shadow-",
    "/etc/gshadow",
    "/etc/gshadow-",
    "/etc/sudoers",
    "/etc/sudoers.d",
    "/etc/ssh",
    "/etc/ssl/private",
    "/etc/postgresql",
    "/etc/mysql",
    "/var/lib/postgresql",
    "/var/lib/mysql",
    "/var/lib/redis",
    "/var/backups",
    "/var/mail",
    "/var/spool/cron",
    "/var/log",
)


def drop_bounding_set() -> bool:
    """Remove every capability from the bounding set: what this process executes cannot gain any. It keeps those it
    has (switching users, mounting) until `drop_capabilities` or the switch to the load user."""
    if _libc is None:
        return False
    ok = True
    for capability in range(LAST_CAPABILITY + 1):
        if (
            _prctl(PR_CAPBSET_DROP, capability) != 0 and ctypes.get_errno() != 22
        ):  # EINVAL: not on this kernel
            ok = False
    return ok


# --- the job: hide the server's folders, then give up every capability -------------------------------------------


def inside(path: str, folder: str) -> bool:
    return path == folder or path.startswith(folder.rstrip("/") + "/")


def hide(
    paths: list[str], keep: str | list[str] | None = None, mount_points: list[str] | None = None
) -> list[str]:
    """Mount an empty read-only tmpfs over each folder in `paths` (an empty read-only file over a file), in this
    child's private mount namespace; the folders in `keep` (the packages folder; the Python installation, where it
    lies in root's home) stay where they are, read-only, even inside one of them. The empty folders in
    `mount_points` (where the function's home is put back, `bind_writable`) are made in the tmpfs before it becomes
    read-only. Returns what was hidden. A path that is not there or cannot be mounted over is skipped."""
    if _libc is None:
        return []
    keeps = [os.path.realpath(item) for item in ([keep] if isinstance(keep, str) else keep or []) if item]
    paths = [path for path in paths if not any(inside(path, item) for item in keeps)]
    held: list[tuple[str, int]] = []
    for item in keeps:
        if any(inside(item, path) for path in paths):
            with contextlib.suppress(OSError):  # the folder itself, reached before it is hidden
                held.append((item, os.open(item, os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC)))
    hidden: list[str] = []
    folders: list[str] = []
    try:
        for path in paths:
            with contextlib.suppress(OSError):
                if stat.S_ISDIR(os.stat(path).st_mode):
                    _mount(b"sluice-hidden", path, b"tmpfs", MS_NOSUID | MS_NODEV | MS_NOEXEC, HIDDEN_OPTIONS)
                    folders.append(path)
                else:
                    _mount(b"/dev/null", path, None, MS_BIND)
                    _mount(
                        b"none",
                        path,
                        None,
                        MS_REMOUNT | MS_BIND | MS_RDONLY | MS_NOSUID | MS_NODEV | MS_NOEXEC,
                    )
                hidden.append(path)
        for item, fd in held:
            if not any(inside(item, folder) for folder in folders):
                continue
            with contextlib.suppress(OSError):
                os.makedirs(item, mode=0o711, exist_ok=True)
                _mount(f"/proc/self/fd/{fd}", item, None, MS_BIND | MS_REC)
                _mount(b"none", item, None, MS_REMOUNT | MS_BIND | MS_RDONLY | MS_NOSUID | MS_NODEV)
        for point in mount_points or []:
            if any(inside(point, folder) for folder in folders):
                with contextlib.suppress(OSError):
                    os.makedirs(point, mode=0o711, exist_ok=True)
    finally:
        for _item, fd in held:
            os.close(fd)
        for folder in folders:
            with contextlib.suppress(OSError):
                _mount(b"none", folder, None, MS_REMOUNT | MS_RDONLY | MS_NOSUID | MS_NODEV | MS_NOEXEC)
    return hidden


def bind_writable(fd: int, path: str) -> bool:
    """Bind the folder open as `fd` (O_PATH) at `path`, writable (no set-user-id, no devices), in this child's private
    mount namespace, whatever the mounts around it: the function's home. False if the kernel refuses."""
    if _libc is None:
        return False
    try:
        _mount(f"/proc/self/fd/{fd}", path, None, MS_BIND)
        _mount(b"none", path, None, MS_REMOUNT | MS_BIND | MS_NOSUID | MS_NODEV)
    except OSError:
        return False
    return True


# Per-mount options in /proc/self/mountinfo that a read-only remount must keep (dropping them is not the point).
_KEPT_OPTIONS = {"nosuid": MS_NOSUID, "nodev": MS_NODEV, "noexec": MS_NOEXEC}


def _mount_points() -> list[tuple[str, int]]:
    """Every writable mount point this namespace sees, with its per-mount flags to keep, parents first."""
    points = []
    with open("/proc/self/mountinfo", encoding="utf-8", errors="surrogateescape") as table:
        for line in table:
            fields = line.split(" ")
            if len(fields) < 6:
                continue
            # Spaces and the like are written as octal escapes (\040).
            point = re.sub(r"\\([0-7]{3})", lambda m: chr(int(m.group(1), 8)), fields[4])
            options = fields[5].split(",")
            if "ro" in options:
                continue  # read-only already (sysfs, cgroups, our /dev): nothing to do
            flags = 0
            for option in options:
                flags |= _KEPT_OPTIONS.get(option, 0)
            points.append((point, flags))
    return points


def read_only_except(writable: list[str]) -> list[str]:
    """Make every mount read-only in this child's private namespace, except the folders in `writable` (the scratch
    directory, DATA_DIR) and the private /dev/shm, which are first bound onto themselves so that they are mounts of
    their own. For a child that keeps root: without this it could still change every file root owns.

    Best effort: a mount that refuses is left as it is. Returns the mount points made read-only.
    """
    if _libc is None:
        return []
    kept = []
    for path in writable:
        with contextlib.suppress(OSError):
            if path and os.path.isdir(path) and not os.path.islink(path):
                _mount(path, path, None, MS_BIND | MS_REC)
                kept.append(os.path.realpath(path))
    with contextlib.suppress(OSError):
        os.chdir(os.getcwd())  # the working directory, looked up again, is now on its own writable mount
    kept.append("/dev/shm")
    done = []
    for point, flags in _mount_points():
        if any(inside(point, folder) for folder in kept):
            continue
        try:
            _mount(b"none", point, None, MS_REMOUNT | MS_BIND | MS_RDONLY | flags)
        except OSError:
            continue
        done.append(point)
    return done


def drop_capabilities() -> bool:
    """Give up every capability (effective, permitted, inheritable, ambient) for good; the uid stays what it is."""
    if _libc is None:
        return False
    _prctl(PR_CAP_AMBIENT, PR_CAP_AMBIENT_CLEAR_ALL)
    header = _CapHeader(CAPABILITY_VERSION_3, 0)
    data = (_CapData * 2)()
    return _libc.capset(ctypes.byref(header), data) == 0


def make_undumpable() -> bool:
    """No core dumps, and no reading of this process's memory or environment (/proc/<pid>/mem, environ) by another
    process of the same user unless it has CAP_SYS_PTRACE."""
    return _libc is not None and _prctl(PR_SET_DUMPABLE, 0) == 0


# --- what works here ---------------------------------------------------------------------------------------------


def check(scratch: str) -> dict:
    """Try each mechanism in this process, which must be a throwaway one (forked for this): what works, and why not.

    `scratch` is an empty folder to mount over. {"mounts": bool, "capabilities": bool, "reason": str | None}.
    """
    report: dict = {"mounts": False, "capabilities": False, "reason": None}
    problems = []
    if _libc is None:
        report["reason"] = "the C library's unshare, mount and capset cannot be called"
        return report
    if _libc.unshare(CLONE_NEWNS) != 0:
        problems.append(f"a private mount namespace is not permitted ({os.strerror(ctypes.get_errno())})")
    elif _libc.mount(b"none", b"/", None, MS_REC | MS_PRIVATE, None) != 0:
        problems.append(f"mounts cannot be made private ({os.strerror(ctypes.get_errno())})")
    else:
        try:
            _mount(b"sluice-check", scratch, b"tmpfs", MS_NOSUID | MS_NODEV | MS_NOEXEC, HIDDEN_OPTIONS)
            report["mounts"] = True
        except OSError as exc:
            problems.append(f"a tmpfs cannot be mounted ({exc.strerror})")
    if not drop_bounding_set():
        problems.append(f"the capability bounding set cannot be emptied ({os.strerror(ctypes.get_errno())})")
    elif not drop_capabilities():
        problems.append(f"capabilities cannot be dropped ({os.strerror(ctypes.get_errno())})")
    else:
        report["capabilities"] = True
    report["reason"] = "; ".join(problems) or None
    return report
