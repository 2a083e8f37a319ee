"""Starting the warm parent: `main` preloads what children need, works out privileges and confinement, starts the
clean templates, reports all of it as the ready answer, then hands over to the zygote's loop (`loader.parent`).

`loader.client` starts it as `main(argv)`; it ends when the loop ends (or, in a forked child, when its job is done).
"""

from __future__ import annotations

import contextlib
import ctypes
import errno
import gc
import importlib
import os
import signal
import sys
import tempfile
import time

from loader import child, confinement, namespaces, scratch
from loader.parent import Zygote, become_child, load_prctl, run_until_forked
from loader.privileges import (
    DEFAULT_LOAD_USER,
    check_confinement,
    environment_refusal,
    plan_privileges,
    resolve_user,
)

PR_SET_PDEATHSIG = 1

# Imported once here so that children start with them in memory: pydantic, the packages community functions import
# most at module level (REAL-FUNCTIONS.md), and the Open WebUI compatibility layer. Heavier, rarer ones (openai,
# sqlalchemy and `open_webui.internal.db` with it) are left to the few functions that import them: every module
# preloaded here makes each fork and each child's exit slower for all functions.
PRELOAD = (
    "pydantic",
    "pydantic_core",
    "typing_extensions",
    "fastapi",
    "starlette",
    "requests",
    "aiohttp",
    "httpx",
    "cryptography",
    "cryptography.fernet",
    "loguru",
    "aiofiles",
    "open_webui",
    "open_webui.env",
    "open_webui.constants",
    "open_webui.config",
    "open_webui.main",
    "open_webui.models.users",
    "open_webui.models.files",
    "open_webui.models.chats",
    "open_webui.models.models",
    "open_webui.models.functions",
    "open_webui.utils.misc",
    "open_webui.utils.chat",
    "open_webui.storage.provider",
)


def preload(names=PRELOAD) -> tuple[list[str], list[str]]:
    """Import what children will most likely need; a name that cannot be imported is skipped."""
    loaded, missing = [], []
    for name in names:
        try:
            importlib.import_module(name)
            loaded.append(name)
        except Exception:  # a missing optional package only costs children time
            missing.append(name)
    _warm_up()
    return loaded, missing


def _warm_up() -> None:
    """Load a throwaway function once, so that every lazy import on a load's path happens before any fork.

    The compatibility layer's catalogue of Open WebUI's names is read here too: a function that imports a name
    Sluice does not implement (most that use Open WebUI's modules do) would otherwise parse its 400 KB in each
    child, about 3 ms of every such load and call, where here it is read once for all (about 3 MB, shared).
    """
    with tempfile.TemporaryDirectory(prefix="sluice-warm-") as workdir:
        child.warm_up(workdir)
    catalogue = sys.modules.get("open_webui._catalogue")
    if catalogue is not None:
        catalogue.modules()


MADV_COLLAPSE = 25
HUGE_PAGE = 2 * 1024 * 1024


def _collapse_into_huge_pages() -> int:
    """Back the zygote's anonymous memory with huge pages where the kernel can (Linux 6.1+, MADV_COLLAPSE).

    Every fork copies, and every child's exit tears down, one page-table entry per 4 KiB page the zygote maps;
    with 2 MiB pages there are 512 times fewer. A child writing to such memory still copies only 4 KiB (the
    kernels that have MADV_COLLAPSE split the huge page's mapping on a copy-on-write fault). Best effort:
    returns how many bytes were collapsed, 0 where unsupported.
    """
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        madvise = libc.madvise
        madvise.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int]
        madvise.restype = ctypes.c_int
        with open("/proc/self/maps") as maps:
            regions = maps.read().splitlines()
    except (OSError, AttributeError):
        return 0
    collapsed = 0
    for region in regions:
        fields = region.split()
        if len(fields) < 2 or not fields[1].startswith("rw") or (len(fields) > 5 and fields[5] != "[heap]"):
            continue
        low, high = (int(value, 16) for value in fields[0].split("-"))
        start = -(-low // HUGE_PAGE) * HUGE_PAGE
        end = high // HUGE_PAGE * HUGE_PAGE
        if end <= start:
            continue
        if madvise(start, end - start, MADV_COLLAPSE) != 0:
            if ctypes.get_errno() == errno.EINVAL and not collapsed:
                return 0  # a kernel without MADV_COLLAPSE
            continue
        collapsed += end - start
    return collapsed


def _die_with_parent(parent_pid: int) -> None:
    """Have the kernel send SIGTERM when our parent (the caller) dies, even if it is SIGKILLed.

    End of file on the request pipe normally says the same, but not if another process holds the pipe's write end.
    The signal is tied to the thread that started us, which is why `loader.client` starts zygotes from a thread
    that lives as long as its process. SIGTERM, not SIGKILL: the zygote then kills its children and their escaped
    descendants before it exits (until the loop runs, SIGTERM's default action ends the zygote, which has no
    children yet).
    """
    prctl = load_prctl()
    if prctl is None or not parent_pid:
        return
    prctl(PR_SET_PDEATHSIG, signal.SIGTERM, 0, 0, 0)
    if os.getppid() != parent_pid and not os.path.exists(f"/proc/{parent_pid}"):
        os._exit(0)  # the caller died before the signal was armed


def main(argv: list[str]) -> None:
    """Entry point: `python -m loader.startup [compat_dir] [max_jobs] [spares] [parent_pid] [drop_privileges]
    [load_user]`, started by `loader.client`. drop_privileges is "auto", "always" or "off" (see plan_privileges).

    `[compat_dir] seed [control_fd] [master_pid]` starts the loader seed instead (loader/seed.py): the same preload,
    then a zygote forked, with its caller's pipes and settings, for each worker that asks."""
    compat_dir = argv[0] if argv else ""
    if argv[1:2] == ["seed"]:
        from loader import seed

        forked = seed.serve(compat_dir, int(argv[2]), int(argv[3]))
        if forked is not None:  # a zygote the seed forked for a worker
            run_zygote(*forked)
        return
    _die_with_parent(int(argv[3]) if len(argv) > 3 else 0)
    non_dumpable = confinement.make_undumpable()
    # Keep the caller's pipes away from descriptors 0 and 1, so nothing printed by imports can corrupt them.
    request_fd, answer_fd = os.dup(0), os.dup(1)
    devnull_fd = os.open(os.devnull, os.O_RDWR)
    os.dup2(devnull_fd, 0)
    os.dup2(devnull_fd, 1)
    warm = prepare(compat_dir)
    run_zygote(request_fd, answer_fd, devnull_fd, argv[1:], {**warm, "non_dumpable": non_dumpable})


def prepare(compat_dir: str) -> dict:
    """What every zygote starts with, whatever its caller's settings: the preload, frozen for the collector and
    collapsed into huge pages. The part of the ready report it fills in."""
    if compat_dir and os.path.isdir(compat_dir):
        sys.path.insert(0, compat_dir)
    started = time.monotonic()
    loaded, missing = preload()
    gc.collect()
    gc.freeze()  # children inherit the heap without touching (and copying) it on every collection
    huge = _collapse_into_huge_pages()
    return {
        "preloaded": loaded,
        "missing": missing,
        "huge_page_bytes": huge,
        "startup": round(time.monotonic() - started, 3),
        "python": sys.version.split()[0],
    }


def run_zygote(request_fd: int, answer_fd: int, devnull_fd: int, argv: list[str], warm: dict) -> None:
    """From a prepared process (`prepare`): apply the caller's settings (`argv`: [max_jobs] [spares] [parent_pid]
    [drop_privileges] [load_user]), work out privileges and confinement, start the templates, send the ready
    report and serve the caller on `request_fd`/`answer_fd` until it goes. Returns in a child forked for a job
    once that job is done."""
    max_jobs = int(argv[0]) if argv else 8
    spares = int(argv[1]) if len(argv) > 1 else 2
    drop_mode = argv[3] if len(argv) > 3 else "off"
    load_user = argv[4] if len(argv) > 4 else DEFAULT_LOAD_USER
    spare_idle = float(argv[5]) if len(argv) > 5 else 0.0
    owners = {os.getuid()}
    if drop_mode != "off" and os.geteuid() == 0:
        with contextlib.suppress(LookupError):
            owners.add(resolve_user(load_user)["uid"])
    scratch.remove_stale_workdirs(owners)
    started = time.monotonic()
    privileges = plan_privileges(drop_mode, load_user)
    confined = check_confinement()
    refused = environment_refusal(load_user)
    gc.collect()
    gc.freeze()  # what the settings added, as `prepare` did for the preload
    with open("/proc/self/statm", "rb") as statm:
        mapped = int(statm.read().split()[0]) * os.sysconf("SC_PAGE_SIZE")
    ready = {
        **warm,
        "mapped_bytes": mapped,
        "startup": round(warm.get("startup", 0) + time.monotonic() - started, 3),
        "privileges": privileges,
        "confinement": confined,
        "refused": refused,
    }
    # The clean template children are forked from (loader/namespaces.py), forked before any request is read.
    lifeline, lifeline_w = os.pipe()
    template, arguments = namespaces.start_template(
        [request_fd, answer_fd, lifeline_w], lifeline, os.geteuid() == 0
    )
    if arguments is not None:  # pragma: no cover - a load child the template forked
        become_child({**arguments, "prctl": load_prctl()})
        return
    worker_template = None
    if template is not None:
        worker_template, arguments = namespaces.start_template(
            [request_fd, answer_fd, lifeline_w, template.sock.fileno()],
            lifeline,
            os.geteuid() == 0,
            network=True,
        )
        if arguments is not None:  # pragma: no cover - a runtime worker's child the second template forked
            become_child({**arguments, "prctl": load_prctl()})
            return
    os.close(lifeline)
    namespaces.note(ready, template)
    ready["worker_template_pid"] = worker_template.pid if worker_template is not None else None
    arguments = run_until_forked(
        Zygote(
            request_fd,
            answer_fd,
            devnull_fd,
            max_jobs=max_jobs,
            spares=spares,
            spare_idle=spare_idle,
            ready=ready,
            privileges=privileges,
            confined=confined,
            template=template,
            worker_template=worker_template,
            lifeline=lifeline_w,
        )
    )
    if arguments is not None:  # pragma: no cover - a child forked by the loop
        become_child(arguments)


if __name__ == "__main__":
    main(sys.argv[1:])
