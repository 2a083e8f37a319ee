"""The loader seed: one preloaded process that forks a zygote for each gunicorn worker, so that their zygotes share
the preload's memory instead of each holding a copy.

Why it exists: every worker needs a zygote of its own (one client, one request pipe: loader/parent.py), and a zygote
exec'd by its worker preloads pydantic, fastapi, the Open WebUI compatibility layer... by itself: ~46 MiB of
objects that its templates share, but that a second worker's zygote holds again. The seed is exec'd exactly as such
a zygote (isolated interpreter, the environment `connection.child_environment` filters, the same bootstrap, made
non-dumpable), runs `startup.prepare` once and then only forks: the zygote it forks for a worker takes that
worker's pipes and settings and goes on as an exec'd zygote would (`startup.run_zygote`: privileges, confinement,
templates, ready report). Every zygote and template then shares the seed's pages copy-on-write.

Who may ask: gunicorn's master starts the seed (`start`, from gunicorn.conf.py, before it forks the workers) with
one end of an unnamed SOCK_SEQPACKET socket pair; the master keeps the other end and its workers inherit it by
fork. There is no name to connect to (no path, no abstract address): only a process that holds that descriptor can
ask, which is the master and its workers (it is close-on-exec, and neither the seed's zygotes nor anything they
start holds it). That is stricter than a uid check, which would let through function code that keeps the server's
uid. A request is one message: the settings (JSON) and three descriptors, a socket pair end for the answer and the
zygote's request and answer pipes. The answer is the zygote's pid and a pidfd for it.

Lifetimes: the seed ends with the master (a parent-death signal, and end of file on its stdin, a pipe only the
master holds) and reaps the zygotes it forked (SIGCHLD). A zygote's parent is the seed, not its worker, so it has no
parent-death signal for its worker: it ends at end of file on its request pipe, whose write end only its worker
holds (close-on-exec; the seed closes its copy at once), as an exec'd zygote does, and its children and templates
end with it as they always did. The worker, not being the zygote's parent, waits for and kills it through the pidfd
(`SeededZygote`). If the seed is missing (another server than gunicorn, tests), the worker execs its own zygote as
before; if it is dead or refuses, likewise, with one line logged. The master starts a new seed before it forks its
next worker (`start` again, gunicorn.conf.py's pre_fork): workers forked from then on use it, the others fall back.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import select
import signal
import socket
import subprocess
import tempfile

log = logging.getLogger(__name__)

MESSAGE = 1 << 16

# In the master: the seed process. In the master and its workers: our end of the seed's socket pair, and the
# interpreter the seed runs (a worker configured with another one cannot use it).
_process: subprocess.Popen | None = None
_control: socket.socket | None = None
_python: str | None = None
_warned = False


# --- the master's side --------------------------------------------------------------------------------------------


def start(python: str | None = None) -> bool:
    """In the server's master, before it forks workers: start the seed with `python` (the configured interpreter
    by default) unless it runs already. True if a seed runs (workers forked from now on will use it)."""
    global _process, _control, _python
    from loader.client import settings
    from loader.connection import _BOOTSTRAP, COMPAT_DIR, PACKAGE_ROOT, child_environment

    python = python or settings().python

    if _process is not None and _process.poll() is None:
        return True
    stop()
    ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
    compat = COMPAT_DIR if os.path.isdir(COMPAT_DIR) else ""
    try:
        process = subprocess.Popen(  # our own interpreter running our own module
            [
                python,
                "-I",
                "-B",
                "-c",
                _BOOTSTRAP,
                PACKAGE_ROOT,
                compat,
                "seed",
                str(theirs.fileno()),
                str(os.getpid()),
            ],  # fmt: skip
            stdin=subprocess.PIPE,
            stdout=subprocess.DEVNULL,
            env=child_environment(os.environ),
            cwd=tempfile.gettempdir(),
            pass_fds=[theirs.fileno()],
            start_new_session=True,
        )
    except OSError as exc:
        ours.close()
        log.warning("the loader seed could not start (%s): each worker starts its own loader", exc)
        return False
    finally:
        theirs.close()
    _process, _control, _python = process, ours, python
    return True


def stop() -> None:
    """In the master: stop the seed (end of file on its stdin) and forget it. Zygotes it forked live on with their
    workers."""
    global _process, _control
    process, _process = _process, None
    if _control is not None:
        _control.close()
        _control = None
    if process is None:
        return
    with contextlib.suppress(OSError):
        process.stdin.close()
    try:
        process.wait(timeout=2)
    except subprocess.TimeoutExpired:
        process.kill()
        with contextlib.suppress(subprocess.TimeoutExpired):
            process.wait(timeout=2)


def pid() -> int | None:
    """The seed's pid, in the master, while it runs."""
    return _process.pid if _process is not None and _process.poll() is None else None


def _after_fork_in_child() -> None:
    global _process
    _process = None  # the master's to wait for and stop; a worker keeps only `_control`


os.register_at_fork(after_in_child=_after_fork_in_child)


# --- a worker's side ----------------------------------------------------------------------------------------------


class SeededZygote:
    """What `connection.ZygoteProcess` uses of a `subprocess.Popen`, for a zygote the seed forked: it is not our
    child, so it is waited for (poll, wait) and killed through a pidfd, which cannot reach another process that
    later gets the same pid."""

    def __init__(self, pid: int, pidfd: int, request_w: int, answer_r: int):
        self.pid = pid
        self.pidfd = pidfd
        self.stdin = open(request_w, "wb", buffering=0)  # noqa: SIM115 - closed by ZygoteProcess
        self.stdout = open(answer_r, "rb", buffering=0)  # noqa: SIM115
        self.returncode: int | None = None

    def poll(self) -> int | None:
        if self.returncode is None and self._ended(0):
            self.returncode = 0
        return self.returncode

    def wait(self, timeout: float | None = None) -> int:
        if self.returncode is None and not self._ended(timeout):
            raise subprocess.TimeoutExpired("loader zygote", timeout)
        self.returncode = 0  # its status is the seed's, which reaps it
        return self.returncode

    def kill(self) -> None:
        if self.returncode is None:
            with contextlib.suppress(OSError):  # ended meanwhile
                signal.pidfd_send_signal(self.pidfd, signal.SIGKILL)

    def _ended(self, timeout: float | None) -> bool:
        poller = select.poll()
        poller.register(self.pidfd, select.POLLIN)
        return bool(poller.poll(None if timeout is None else int(timeout * 1000)))

    def __del__(self):
        # Only now: the reader thread and a caller may both be waiting on it (ZygoteProcess), and a number closed
        # under one of them could be reused by another descriptor.
        with contextlib.suppress(OSError, AttributeError):
            os.close(self.pidfd)


def spawn(python: str, argv: list[str], wait: float) -> SeededZygote | None:
    """In a worker: have the seed fork a zygote with these settings (`startup.run_zygote`'s argv), serving pipes
    made here. None where there is no seed (not under gunicorn), it runs another interpreter, or it failed: the
    caller then execs its own zygote."""
    global _warned
    control = _control
    if control is None or python != _python:
        return None
    ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
    request_r, request_w = os.pipe()
    answer_r, answer_w = os.pipe()
    try:
        try:
            socket.send_fds(control, [json.dumps(argv).encode()], [theirs.fileno(), request_r, answer_w])
        finally:  # the seed has its copies (or none): the zygote must be the only reader and writer of these ends
            theirs.close()
            os.close(request_r)
            os.close(answer_w)
        ours.settimeout(wait)  # the seed answers once its preload is done
        message, fds, _flags, _address = socket.recv_fds(ours, MESSAGE, 1)
        answer = json.loads(message or b"{}")
        if not answer.get("pid") or len(fds) != 1:
            for fd in fds:
                os.close(fd)
            raise OSError(answer.get("error") or "no answer")
    except (OSError, ValueError) as exc:
        os.close(request_w)
        os.close(answer_r)
        if not _warned:
            _warned = True
            log.warning("the loader seed did not start a loader (%s): this worker starts its own", exc)
        return None
    finally:
        ours.close()
    return SeededZygote(int(answer["pid"]), fds[0], request_w, answer_r)


# --- the seed itself ----------------------------------------------------------------------------------------------


def serve(compat_dir: str, control_fd: int, master_pid: int) -> tuple | None:
    """The seed's life (`startup.main` with "seed"): preload, then fork a zygote for each request until the master
    is gone. Returns only in a forked zygote: `startup.run_zygote`'s arguments."""
    from loader import confinement, startup

    startup._die_with_parent(master_pid)
    non_dumpable = confinement.make_undumpable()
    lifeline = os.dup(0)  # end of file when the master is gone
    devnull_fd = os.open(os.devnull, os.O_RDWR)
    os.dup2(devnull_fd, 0)
    os.dup2(devnull_fd, 1)
    warm = {**startup.prepare(compat_dir), "non_dumpable": non_dumpable, "seed_pid": os.getpid()}
    control = socket.socket(fileno=control_fd)
    wake_r, wake_w = os.pipe()
    for fd in (wake_r, wake_w):
        os.set_blocking(fd, False)
    signal.set_wakeup_fd(wake_w, warn_on_full_buffer=False)
    signal.signal(signal.SIGCHLD, lambda *_: None)
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    poller = select.poll()
    for fd in (control.fileno(), lifeline, wake_r):
        poller.register(fd, select.POLLIN)
    while True:
        events = dict(poller.poll())
        _reap()
        if lifeline in events:
            return None
        if wake_r in events:
            with contextlib.suppress(OSError):
                while os.read(wake_r, 4096):
                    pass
        if control.fileno() not in events:
            continue
        try:
            message, fds, _flags, _address = socket.recv_fds(control, MESSAGE, 3)
        except OSError:
            return None
        if not message and not fds:
            return None  # the master and every worker are gone
        if len(fds) != 3:
            for fd in fds:
                os.close(fd)
            continue
        answer_sock = socket.socket(fileno=fds[0])
        try:
            argv = [str(item) for item in json.loads(message)]
            zygote = os.fork()
        except (OSError, ValueError) as exc:
            with contextlib.suppress(OSError):
                answer_sock.send(json.dumps({"error": f"could not fork a loader: {exc}"}).encode())
            _close(answer_sock, fds[1:])
            continue
        if zygote == 0:
            # The zygote: nothing of the seed's but the preload (no control socket: it cannot ask for more).
            answer_sock.close()
            control.close()
            signal.set_wakeup_fd(-1)
            for fd in (lifeline, wake_r, wake_w):
                os.close(fd)
            for number in (signal.SIGCHLD, signal.SIGINT):
                signal.signal(number, signal.SIG_DFL)
            os.setsid()  # as an exec'd zygote (start_new_session): its own session, apart from the seed's
            return fds[1], fds[2], devnull_fd, argv, warm
        try:
            pidfd = os.pidfd_open(zygote)  # not reaped before `_reap`, so this is our child's
            socket.send_fds(answer_sock, [json.dumps({"pid": zygote}).encode()], [pidfd])
            os.close(pidfd)
        except OSError:
            with contextlib.suppress(OSError):
                os.kill(zygote, signal.SIGKILL)  # nobody will talk to it
        _close(answer_sock, fds[1:])


def _close(sock: socket.socket, fds: list[int]) -> None:
    sock.close()
    for fd in fds:
        with contextlib.suppress(OSError):
            os.close(fd)


def _reap() -> None:
    while True:
        try:
            pid, _status = os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:
            return
        if not pid:
            return
