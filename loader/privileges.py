"""Who load children run as and what they may reach: the load user (dropping root), probing what that user can
read, handing DATA_DIR over, and which folders children may hide (the mounts themselves are loader/confinement.py).

The warm parent (`loader.parent`) works this out once when it starts; children only call `become`.
"""

from __future__ import annotations

import contextlib
import json
import os
import pwd
import select
import signal
import stat
import sys
import tempfile
import time

from loader import confinement, environment

# The user load children run as when the parent runs as root (the app's load_user), and its ids when it has no entry.
DEFAULT_LOAD_USER = "nobody"
NOBODY = 65534


class PrivilegeError(Exception):
    pass


def become(uid: int, gid: int, groups: list[int]) -> None:
    """Take `uid`, `gid` and `groups` as real, effective and saved ids for good; PrivilegeError if that failed."""
    try:
        os.setgroups(groups)
        os.setresgid(gid, gid, gid)
        os.setresuid(uid, uid, uid)
    except (OSError, ValueError, TypeError) as exc:
        raise PrivilegeError(f"{type(exc).__name__}: {exc}") from None
    if os.getresuid() != (uid, uid, uid) or os.getresgid() != (gid, gid, gid):
        raise PrivilegeError(f"the ids are {os.getresuid()}/{os.getresgid()}, not {uid}/{gid}")


def resolve_user(spec: str) -> dict:
    """`name`, `uid` or `uid:gid` as the ids a load child takes; LookupError if the name is unknown."""
    identity = _resolve_user(spec)
    if not all(0 <= value < 0xFFFFFFFF for value in [identity["uid"], identity["gid"], *identity["groups"]]):
        raise LookupError(f"{spec!r} is not a usable user")  # (uid_t) -1 would mean "leave the id unchanged"
    return identity


def _resolve_user(spec: str) -> dict:
    spec = (spec or "").strip() or DEFAULT_LOAD_USER
    if spec.split(":", 1)[0].isdigit():
        uid_text, _, gid_text = spec.partition(":")
        uid = int(uid_text)
        try:
            entry = pwd.getpwuid(uid)
        except KeyError:
            entry = None
        gid = int(gid_text) if gid_text.isdigit() else (entry.pw_gid if entry else uid)
        groups = os.getgrouplist(entry.pw_name, gid) if entry and not gid_text else [gid]
        return {"user": spec, "uid": uid, "gid": gid, "groups": sorted(set(groups))}
    try:
        entry = pwd.getpwnam(spec)
    except KeyError:
        if spec != DEFAULT_LOAD_USER:
            raise LookupError(f"there is no user {spec!r}") from None
        return {"user": spec, "uid": NOBODY, "gid": NOBODY, "groups": [NOBODY]}
    groups = os.getgrouplist(entry.pw_name, entry.pw_gid)
    return {"user": spec, "uid": entry.pw_uid, "gid": entry.pw_gid, "groups": sorted(set(groups))}


def identity_of(plan: dict) -> dict:
    return {"uid": plan["uid"], "gid": plan["gid"], "groups": plan["groups"]}


def plan_privileges(mode: str, user: str) -> dict:
    """Whether load children drop root for the load user, and if not, why: the `privileges` of the ready report.

    mode "off": never. "auto": when the zygote runs as root, the user can be taken, and it can read everything
    function code needs (sys.path, the modules loaded here, the temporary directory, DATA_DIR). "always": when
    running as root and the user can be taken, whatever it can read.
    """
    plan: dict = {"mode": mode, "user": user or DEFAULT_LOAD_USER, "drop": False, "reason": None}
    if mode not in ("auto", "always") or os.geteuid() != 0:
        return plan
    try:
        plan.update(resolve_user(user))
    except LookupError as exc:
        plan["reason"] = str(exc)
        return plan
    if plan["uid"] == 0:
        plan["reason"] = "the load user is root"
        return plan
    _hand_over_data_dir(plan["uid"], plan["gid"])
    plan["reason"] = probe(identity_of(plan), [] if mode == "always" else _needed_paths())
    plan["drop"] = plan["reason"] is None
    return plan


def _data_dir() -> str | None:
    env = sys.modules.get("open_webui.env")
    path = getattr(env, "DATA_DIR", None)
    return str(path) if path is not None else None


# The data folder's layout once handed over: root's (or the zygote user's) folders, in the load user's group with
# group write, set-group-id so that what is made in them stays in that group; DATA_DIR itself also sticky.
HAND_OVER_DEPTH = 32


def _hand_over_data_dir(uid: int, gid: int, limit: int = 10_000) -> None:
    """Let the load user keep files in the compatibility layer's private DATA_DIR, as function code could as root.

    The folders stay ours (the zygote's user, root) and get the load user's group with group write and set-group-id;
    DATA_DIR is also sticky. So the load user can make and remove its own files there, children that keep root can
    write there without overriding permissions, and the load user cannot rename DATA_DIR (it is ours, in the sticky
    temporary directory) nor its folders (it is sticky), so nothing can be swapped for a link to somewhere else.
    Folders the load user owns (made by an older version, or by function code) become ours the same way.

    The walk goes through descriptors of directories opened without following links (`os.fwalk`), and each folder
    is changed through its own descriptor: a folder renamed or replaced by a link while we walk changes nothing
    elsewhere. Only the default folder; a DATA_DIR set in the environment is the operator's and is left alone.
    """
    path = _data_dir()
    if not path or "DATA_DIR" in os.environ:
        return
    ours = os.geteuid()
    walker = os.fwalk(path, follow_symlinks=False)
    try:
        for seen, (folder, folders, _files, fd) in enumerate(walker):
            if seen >= limit:
                return
            info = os.fstat(fd)
            if info.st_uid not in (ours, uid):
                folders.clear()  # someone else's: neither changed nor entered
                continue
            if os.path.relpath(folder, path).count(os.sep) >= HAND_OVER_DEPTH:
                folders.clear()
            wanted = (stat.S_IMODE(info.st_mode) & ~stat.S_IWOTH) | stat.S_IRWXG | stat.S_ISGID
            if folder == path:
                wanted |= stat.S_ISVTX
            with contextlib.suppress(OSError):
                if (info.st_uid, info.st_gid) != (ours, gid):
                    os.chown(fd, ours, gid)  # fchown: the folder opened, whatever its name is now
                if stat.S_IMODE(os.fstat(fd).st_mode) != wanted:
                    os.chmod(fd, wanted)  # fchmod, after chown (which may clear set-group-id)
    except (OSError, RecursionError):
        return
    finally:
        walker.close()


def _needed_paths() -> list[tuple[str, str]]:
    """What function code needs to reach, as (path, "list"|"read"|"search"|"write") checks."""
    checks: list[tuple[str, str]] = []
    for entry in sys.path:
        if entry and os.path.isdir(entry):
            checks.append((entry, "list"))
        elif entry and os.path.isfile(entry):
            checks.append((entry, "read"))
    checks.append((tempfile.gettempdir(), "search"))
    data_dir = _data_dir()
    if data_dir and os.path.isdir(data_dir):
        checks.append((data_dir, "write"))
    # The files of the modules loaded here stand for the files of those that will be imported lazily.
    for module in list(sys.modules.values()):
        path = getattr(module, "__file__", None)
        if isinstance(path, str) and os.path.isfile(path):
            checks.append((path, "read"))
    return checks


def package_paths(packages_dir: str) -> list[tuple[str, str]]:
    checks = [(packages_dir, "list")]
    with contextlib.suppress(OSError):
        for entry in os.scandir(packages_dir):
            checks.append((entry.path, "list" if entry.is_dir() else "read"))
    return checks


_ACCESS = {
    "list": os.R_OK | os.X_OK,
    "read": os.R_OK,
    "search": os.X_OK,
    "write": os.W_OK | os.X_OK,
}


def _first_denied(checks: list[tuple[str, str]]) -> str | None:
    denied = [(path, kind) for path, kind in checks if not os.access(path, _ACCESS[kind])]
    if not denied:
        return None
    path, kind = denied[0]
    more = f" (and {len(denied) - 1} more paths)" if len(denied) > 1 else ""
    verb = {"list": "list", "read": "read", "search": "reach files in", "write": "write to"}[kind]
    return f"the load user cannot {verb} {path}{more}"


def probe(identity: dict, checks: list[tuple[str, str]], limit: float = 5.0) -> str | None:
    """Take `identity` in a forked process and try `checks` there: None if all passed, else the first problem.

    The real thing rather than a reading of mode bits: it tells whether the ids can be taken at all (a user
    namespace may not map them) and sees ACLs and every directory on the way.
    """

    def check() -> str:
        try:
            become(identity["uid"], identity["gid"], identity["groups"])
        except PrivilegeError as exc:
            return f"the load user's ids cannot be taken: {exc}"
        return _first_denied(checks) or ""

    return in_forked_process(check, "could not check the load user", limit) or None


def check_confinement(limit: float = 5.0) -> dict:
    """What loader/confinement.py can do for children that run as root here, tried once in a forked process:
    {"mounts": bool, "capabilities": bool, "reason": str | None}. Nothing to do (and no reason) when not root."""
    report = {"mounts": False, "capabilities": False, "reason": None}
    if os.geteuid() != 0:
        return report
    try:
        scratch = tempfile.mkdtemp(prefix="sluice-check-")
    except OSError as exc:
        return {**report, "reason": f"could not check: {exc}"}
    try:
        answer = in_forked_process(
            lambda: json.dumps(confinement.check(scratch)),
            "could not check how children can be confined",
            limit,
        )
    finally:
        with contextlib.suppress(OSError):
            os.rmdir(scratch)
    try:
        found = json.loads(answer)
        return {key: found[key] for key in report}
    except (ValueError, TypeError, KeyError):
        return {**report, "reason": answer or "could not check how children can be confined"}


def in_forked_process(work, failure: str, limit: float) -> str:
    """Run `work` (returning a string) in a forked process that then exits; its string, or what went wrong."""
    read_fd, write_fd = os.pipe()
    try:
        pid = os.fork()
    except OSError as exc:
        os.close(read_fd)
        os.close(write_fd)
        return f"{failure}: {exc}"
    if pid == 0:  # pragma: no cover - runs in the forked process
        message = ""
        try:
            os.close(read_fd)
            message = work()
        except BaseException as exc:
            message = f"{failure}: {exc!r}"
        finally:
            with contextlib.suppress(BaseException):
                os.write(write_fd, message.encode("utf-8", "replace")[:4000])
            os._exit(0)
    os.close(write_fd)
    chunks = []
    deadline = time.monotonic() + limit
    poller = select.poll()
    poller.register(read_fd, select.POLLIN)
    try:
        while True:
            left = deadline - time.monotonic()
            if left <= 0 or not poller.poll(int(left * 1000) + 1):
                chunks = [f"{failure}: the check took too long".encode()]
                break
            chunk = os.read(read_fd, 4096)
            if not chunk:
                break
            chunks.append(chunk)
    finally:
        os.close(read_fd)
        with contextlib.suppress(OSError):
            os.kill(pid, signal.SIGKILL)
        with contextlib.suppress(ChildProcessError):
            os.waitpid(pid, 0)
    return b"".join(chunks).decode("utf-8", "replace")


def plan_hidden_paths(paths, needed: list[str]) -> tuple[list[str], str]:
    """The folders (or files) among `paths` that children may hide, and a notice naming those they may not.

    A path inside another one is covered by it; a path that holds something function code needs (`needed`: the
    Python installation, sys.path, the temporary directory, DATA_DIR, /dev, /proc) is not hidden.
    """
    chosen: list[str] = []
    refused: list[str] = []
    wanted = {os.path.realpath(path) for path in paths if isinstance(path, str) and os.path.isabs(path)}
    for path in sorted(wanted, key=len):  # a folder before what is in it
        if any(confinement.inside(path, folder) for folder in chosen):
            continue
        holds = next((item for item in needed if confinement.inside(item, path)), None)
        if holds is not None:
            refused.append(f"{path} (it holds {holds})")
        else:
            chosen.append(path)
    notice = f"function code is not kept from {'; '.join(refused)}: it needs what is there" if refused else ""
    return chosen, notice


def plan_secrets(needed: list[str]) -> dict:
    """The system's secrets children hide (confinement.SYSTEM_SECRETS that are there), and what function code needs
    inside them, which stays (the Python installation, where it lies in root's home): `{"paths", "keep"}`."""
    paths = sorted({os.path.realpath(path) for path in confinement.SYSTEM_SECRETS if os.path.lexists(path)})
    keep: list[str] = []
    for item in sorted(needed, key=len):  # a folder before what is in it, which it then keeps too
        if any(confinement.inside(item, path) for path in paths) and not any(
            confinement.inside(item, kept) for kept in keep
        ):
            keep.append(item)
    return {"paths": paths, "keep": keep}


def environment_refusal(load_user: str) -> str | None:
    """Why function code must not run with this Python at all (loader/environment.py), or None; only as root."""
    if os.geteuid() != 0:
        return None
    try:
        identity = resolve_user(load_user)
    except LookupError:
        identity = {"uid": NOBODY, "groups": [NOBODY]}
    return environment.refusal(identity["uid"], identity["groups"])


def needed_folders(workdirs: str) -> list[str]:
    """What function code needs and must never be hidden: see plan_hidden_paths."""
    found = {
        sys.prefix,
        sys.base_prefix,
        sys.exec_prefix,
        sys.base_exec_prefix,
        tempfile.gettempdir(),
        workdirs,
    }
    found.update(entry for entry in sys.path if entry)
    found.update(("/dev", "/proc", os.path.dirname(os.path.abspath(__file__))))
    data_dir = _data_dir()
    if data_dir:
        found.add(data_dir)
    return sorted({os.path.realpath(path) for path in found if os.path.exists(path)})
