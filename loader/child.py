"""One job's life inside a child forked from the zygote: isolate, run the function's module, answer, exit.

Everything here runs after `fork()` in a process that is about to execute untrusted code. `run` never returns: it
writes one length-prefixed JSON answer to its result pipe, waits for the zygote to end it (`ANSWERED_WAIT`), and
leaves through `os._exit` if it is still there, so nothing the function registered (atexit hooks, threads,
finalisers) runs afterwards. Working out what the code defines is
loader/describe.py's; this module isolates the process, takes the job, and encodes and sends the answer.
"""

from __future__ import annotations

import contextlib
import functools
import importlib
import json
import math
import os
import resource
import select
import signal
import sys
import tempfile
import time

from loader import confinement, describe, environment, namespaces, private_tmp, protocol
from loader import homes as homes_module
from loader.json_values import TooLarge, json_safe
from loader.privileges import PrivilegeError, become
from loader.runtime import worker as runtime_worker

PR_SET_PDEATHSIG = 1
FILE_SIZE_LIMIT = 256 * 1024 * 1024
EXTRA_TASKS = 512
# Address space a child may reserve beyond its memory cap and what it had mapped before its job (see
# `_limit_resources`): torch reserves about 0.7 GiB more than it allocates; 3 GiB leaves room for such libraries.
ADDRESS_SPACE_ALLOWANCE = 3 * 1024 * 1024 * 1024

# How long a child that has answered waits for the zygote to end it before leaving by itself. Leaving at once would
# tear the process down (its address space, its namespaces) on the CPU the zygote is about to be woken on to read
# the answer, which then waits behind it: the answer took 3 ms from child to caller at the median instead of 0.8
# (bench/profile_load_hops.py, loads 200 ms apart). The zygote kills it once the answer is on its way
# (loader/spares.py `ANSWERED_GRACE`); this is only a bound in case that kill never comes.
ANSWERED_WAIT = 1.0

# Taken before any function code runs, so that code patching `os` cannot stop the child from answering or leaving.
_exit = os._exit
_wait = select.select
_write = os.write
_dumps = json.dumps
_encode_message = protocol.encode_message


# Whether this child has a private mount namespace (set by _isolate): only then may the job's folders be hidden.
_private_mounts = False


def run(
    *,
    job_fd: int,
    result_fd: int,
    output_fd: int,
    devnull_fd: int,
    workdir: str,
    zygote_pid: int,
    prctl=None,
    confine: bool = False,
    secrets: dict | None = None,
    prepared: bool = False,
) -> None:
    """Serve one job in this freshly forked child, then exit; never returns.

    Messages arrive on `job_fd`, each a 4-byte length and JSON. `{"op": "warm"}` (sent to a spare while the
    zygote is idle) loads a throwaway function, so that the pages a load touches are copied now rather than while
    a caller waits; any other message is the job. End of file before a job means the spare was retired.
    A `serve` job makes this child a runtime worker (loader/runtime/worker.py) instead of answering once.
    `confine`: the zygote found that load children can have mount namespaces of their own (loader/confinement.py);
    `secrets`: the system's secrets to hide then, `{"paths": [...], "keep": [...]}` (see `confinement.hide`);
    `prepared`: the template we were forked from hid them already (`confinement.prepare`).
    """
    status = 0
    try:
        _isolate(
            job_fd, result_fd, output_fd, devnull_fd, workdir, zygote_pid, prctl, confine, secrets, prepared
        )
        while True:
            request = _receive(job_fd)
            if request is None:
                _exit(0)
            if request.get("op") != "warm":
                break
            with contextlib.suppress(Exception):
                warm_up(workdir)
        received = time.monotonic()
        namespaces.restore_priority()  # a spare waits and warms up nicer than the job's code runs
        serving = request.get("op") == "serve"  # a runtime worker: the job pipe stays open for its calls
        if not serving:
            os.close(job_fd)
        try:
            _prepare_job(request, workdir, zygote_pid, prctl)
        except PrivilegeError as exc:  # fail closed: no function code runs as root by mistake
            message = f"the loader could not switch to an unprivileged user: {exc}"
            answer = {
                "ok": False,
                "error": protocol.error("LoaderUnavailable", message),
            }
            if serving:
                runtime_worker.refuse(result_fd, answer["error"])
                _exit(0)
        else:
            if serving:
                runtime_worker.serve(request, job_fd, result_fd, workdir)  # never returns
            prepared = time.monotonic()
            answer = describe.answer(request, workdir)
            if request.get("op") == "load":
                # When the job arrived, its folders and identity were in place, and the code was described (the
                # system's monotonic clock, shared with the caller): where a load's time went
                # (bench/profile_load_hops.py). The app reads no such field.
                answer["timing"] = {"received": received, "prepared": prepared, "described": time.monotonic()}
        payload = _encode(answer, int(request.get("result_cap") or protocol.DEFAULT_RESULT_CAP))
        runtime_worker.flush_std()
        _send(result_fd, payload)
        _wait([], [], [], ANSWERED_WAIT)
    except BaseException:  # the child must leave through _exit whatever happened
        status = 70
    finally:
        _exit(status)


def _isolate(
    job_fd,
    result_fd,
    output_fd,
    devnull_fd,
    workdir,
    zygote_pid,
    prctl,
    confine=False,
    secrets=None,
    prepared=False,
) -> None:
    global _private_mounts
    namespaces.lower_priority()  # done by the template already, unless the zygote forked us
    os.setsid()
    if prctl is not None:
        prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
    if os.getppid() != zygote_pid:  # the zygote died before the death signal was armed
        _exit(0)

    signal.set_wakeup_fd(-1)
    for signum in (signal.SIGCHLD, signal.SIGTERM, signal.SIGHUP):
        signal.signal(signum, signal.SIG_DFL)
    signal.signal(signal.SIGPIPE, signal.SIG_IGN)
    signal.signal(signal.SIGINT, signal.default_int_handler)
    signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # an oversized write becomes an OSError, not a kill

    os.dup2(devnull_fd, 0)
    os.dup2(output_fd, 1)
    os.dup2(output_fd, 2)
    # Close every other descriptor inherited from the zygote (its request pipe, other jobs' pipes).
    low, high = sorted((job_fd, result_fd))
    os.closerange(3, low)
    os.closerange(low + 1, high)
    os.closerange(high + 1, 1 << 20)

    os.chdir(workdir)
    sys.argv = [""]  # rather than the zygote's, which name the repository
    os.environ["TMPDIR"] = workdir
    tempfile.tempdir = workdir
    sys.stdin = sys.__stdin__ = open(0, encoding="utf-8", closefd=False)
    sys.stdout = sys.__stdout__ = _text_stream(1)
    sys.stderr = sys.__stderr__ = _text_stream(2)
    # As root: a mount namespace and a /dev of our own, an empty capability bounding set (loader/confinement.py).
    _private_mounts = confinement.enter(confine, prepared)
    if _private_mounts:
        # Done here, while a spare waits, rather than on a job's clock: a /proc of our own process-id namespace
        # (loader/namespaces.py: we are its pid 2 then), an empty /tmp and /var/tmp of our own with the scratch
        # directory, DATA_DIR and any Python folder there put back, the system's secrets hidden, and every mount
        # read-only but the scratch directory, DATA_DIR and the private temporary folders.
        if os.getpid() == 2 and os.getppid() == 1:
            confinement.own_proc()
        data_dir = getattr(sys.modules.get("open_webui.env"), "DATA_DIR", None)
        data_dir = str(data_dir) if data_dir else ""
        private_tmp.mount(workdir, [data_dir], environment.environment_folders())
        if not prepared:  # else done once in the template, whose mount namespace ours copies
            if secrets:
                confinement.hide(secrets.get("paths") or [], secrets.get("keep") or [])
            confinement.read_only_except([workdir, data_dir, "/tmp", "/var/tmp"])


def _receive(job_fd: int) -> dict | None:
    """Read one message from the zygote; None at end of file."""
    try:
        return json.loads(protocol.read_message(functools.partial(os.read, job_fd)))
    except EOFError:
        return None


def _prepare_job(request: dict, workdir: str, zygote_pid: int, prctl) -> None:
    _limit_resources(
        request
    )  # before dropping privileges: root may raise a hard limit, the load user may not
    packages_dir = request.get("packages_dir")
    if _private_mounts and packages_dir and isinstance(packages_dir, str):
        private_tmp.reveal(packages_dir)  # from the host's /tmp, where tests and some installs keep it
    identity = request.get("privileges")
    # Before forget_host: the homes folder may lie in the host's /tmp.
    homes, home, home_fd = _function_home(request)
    private_tmp.forget_host()
    if packages_dir and os.path.isdir(packages_dir) and packages_dir not in sys.path:
        sys.path.append(packages_dir)
        importlib.invalidate_caches()
    hidden = request.get("hidden_paths")
    hidden = [path for path in hidden if isinstance(path, str)] if isinstance(hidden, list) else []
    if _private_mounts and (hidden or home):
        # The homes folder is hidden too, so that only this function's own home comes back (no other's is seen).
        confinement.hide(
            hidden + ([homes] if home else []),
            packages_dir if isinstance(packages_dir, str) and packages_dir else None,
            [home] if home else None,
        )
    if home and _private_mounts:
        with contextlib.suppress(OSError):
            os.makedirs(home, mode=0o711, exist_ok=True)  # in the private /tmp when it lies there
        if not confinement.bind_writable(home_fd, home):
            home = None  # the scratch directory stands in: writable, if not kept
    if home_fd is not None:
        os.close(home_fd)
    if identity:
        _drop_privileges(identity, workdir, zygote_pid, prctl)
    elif os.geteuid() == 0:
        # Staying root: its mounts are read-only but for a few folders (see `_isolate`), and without capabilities it
        # cannot undo the mounts, trace or read the server, or override file permissions. Best effort, as
        # everything in loader/confinement.py.
        confinement.drop_capabilities()
    if home:
        os.environ["HOME"] = home
        os.environ["XDG_CACHE_HOME"] = os.path.join(home, ".cache")
        os.environ["XDG_CONFIG_HOME"] = os.path.join(home, ".config")
        os.environ["XDG_DATA_HOME"] = os.path.join(home, ".local", "share")
    confinement.make_undumpable()  # other children (same user, no capabilities) cannot read our memory


def _function_home(request: dict) -> tuple[str | None, str | None, int | None]:
    """The function's own home, `<homes_dir>/<function id>`, made by the zygote (loader/homes.py) in the host's
    mount namespace, where the homes folder may be writable although every mount here is read-only. Returns (homes
    folder, home, O_PATH descriptor of the home to bind in a private mount namespace, else None); (None, None, None)
    without a homes folder, a function id, or a home the zygote could make."""
    homes, home = homes_module.paths(request)
    if home is None:
        return None, None, None
    where = (private_tmp.host_path(home) if _private_mounts else None) or home
    try:
        fd = os.open(where, os.O_PATH | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC)
    except OSError:
        return None, None, None
    if not _private_mounts:
        os.close(fd)
        fd = None
    return homes, home, fd


def _drop_privileges(identity: dict, workdir: str, zygote_pid: int, prctl) -> None:
    """Run the function's code as the unprivileged load user (the zygote runs as root): it can then neither signal
    the web server nor raise its own limits, and RLIMIT_NPROC applies to it. The scratch directory becomes its own.
    """
    uid, gid = int(identity["uid"]), int(identity["gid"])
    try:
        os.chown(workdir, uid, gid)
    except OSError as exc:
        raise PrivilegeError(f"could not hand over the scratch directory: {exc}") from None
    become(uid, gid, [int(group) for group in identity.get("groups") or [gid]])
    # Changing the effective uid clears the parent-death signal: arm it again, and make sure the zygote is there.
    if prctl is not None:
        prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
    if os.getppid() != zygote_pid:
        _exit(0)
    os.environ["HOME"] = workdir  # root's home is not the load user's to read or write


def _text_stream(fd: int):
    return open(fd, "w", buffering=1, encoding="utf-8", errors="backslashreplace", closefd=False)


def _limit_resources(request: dict) -> None:
    # The memory cap counts what the function allocates (the kernel's data size: heap and private writable
    # mappings), not address space: torch reserves over 1 GiB of address space at import while using half of it,
    # and a cap on address space alone refused it at the default. Address space still has a ceiling above that,
    # for what the data size does not count (shared anonymous mappings).
    allowed = int(request.get("memory_mb") or 1024) * 1024 * 1024
    data, mapped = _memory_in_use()
    resource.setrlimit(resource.RLIMIT_DATA, (data + allowed, data + allowed))
    address_space = mapped + allowed + ADDRESS_SPACE_ALLOWANCE
    resource.setrlimit(resource.RLIMIT_AS, (address_space, address_space))
    if (
        request.get("op") != "serve"
    ):  # a worker lives for many calls: the parent limits each call's wall clock
        cpu = math.ceil(float(request.get("timeout") or 10)) + 1
        resource.setrlimit(resource.RLIMIT_CPU, (cpu, cpu + 1))
    resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
    resource.setrlimit(resource.RLIMIT_FSIZE, (FILE_SIZE_LIMIT, FILE_SIZE_LIMIT))
    # RLIMIT_NPROC counts every task of the user, so it cannot be a small number; the number of tasks on the whole
    # machine (an upper bound of the user's) plus a margin leaves threads possible and stops a fork bomb. The
    # kernel does not apply it to root.
    with open("/proc/loadavg", "rb") as loadavg:
        tasks = int(loadavg.read().split()[3].split(b"/")[1])
    resource.setrlimit(resource.RLIMIT_NPROC, (tasks + EXTRA_TASKS, tasks + EXTRA_TASKS))


def _memory_in_use() -> tuple[int, int]:
    """(data size, address space) of this process in bytes, as RLIMIT_DATA and RLIMIT_AS count them."""
    values = {}
    with open("/proc/self/status", "rb") as status:
        for line in status:
            if line.startswith((b"VmData:", b"VmSize:")):
                name, value = line.split(b":", 1)
                values[name] = int(value.split()[0]) * 1024  # in kB
    return values.get(b"VmData", 0), values.get(b"VmSize", 0)


def _send(fd: int, payload: bytes) -> None:
    view = memoryview(_encode_message(payload))
    while view:
        written = _write(fd, view)
        view = view[written:]


# A typical small function: loading it once in a spare copies (on write) most of the pages a real load touches,
# so the real load, run while a caller waits, finds them already private.
_WARM_SOURCE = '''"""
title: warm-up
"""
from typing import Literal, Optional
from pydantic import BaseModel, Field

class Filter:
    class Valves(BaseModel):
        priority: int = Field(default=0, description="order")
        mode: Literal["a", "b"] = "a"
        note: Optional[str] = Field(default=None, json_schema_extra={"input": {"type": "password"}})

    class UserValves(BaseModel):
        enabled: bool = True

    def __init__(self):
        self.valves = self.Valves()
'''


def warm_up(workdir: str) -> None:
    """Load a throwaway function the way a job would, then forget it."""
    request = {
        "op": "load",
        "content": _WARM_SOURCE,
        "function_id": "sluice_warm_up",
        "valves": {"priority": "1"},
    }
    try:
        _encode(describe.answer(request, workdir), 1 << 20)
    finally:
        sys.modules.pop("function_sluice_warm_up", None)
        with contextlib.suppress(OSError):
            os.unlink(os.path.join(workdir, "function_sluice_warm_up.py"))


def _encode(answer: dict, cap: int) -> bytes:
    try:
        payload = _dumps(
            json_safe(answer), ensure_ascii=True, allow_nan=False, separators=(",", ":")
        ).encode()
    except TooLarge:
        payload = None
    if payload is None or len(payload) > cap:
        size = f"{len(payload) / 1048576:.1f} MiB of JSON" if payload is not None else "too many values"
        limit = f"{size}; at most {cap / 1048576:g} MiB"
        if _largest_part(answer) in ("values", "valves_check"):
            message = f"the valves values are too large to store ({limit})"
        else:
            message = f"the answer is too large ({limit}): is the valves schema huge?"
        answer = {
            "ok": False,
            "error": protocol.error("ResultTooLarge", message),
            "warnings": answer.get("warnings", [])[:5],
        }
        payload = _dumps(json_safe(answer), ensure_ascii=True).encode()
    return payload


def _largest_part(answer: dict) -> str | None:
    """Which part of an oversized answer makes it so: the schemas, or the valves values being validated."""
    sizes = {}
    for key in (
        "valves_schema",
        "user_valves_schema",
        "valves_defaults",
        "user_valves_defaults",
        "valves_check",
        "values",
    ):
        if answer.get(key) is None:
            continue
        try:
            sizes[key] = len(_dumps(json_safe(answer[key]), ensure_ascii=True))
        except TooLarge:
            sizes[key] = math.inf
    return max(sizes, key=sizes.get) if sizes else None
