"""Load children forked from a clean template, each in a process-id namespace of its own, without network.

The template is a process forked from the zygote right after its preload, before the zygote has read any request:
it has never held a function's code, valves or user, so nothing of another load is in the memory its children
start with (the zygote itself holds every job in flight). It forks each load child on the zygote's request, sent
with the child's pipes over a socket, through `clone(CLONE_PARENT | CLONE_NEWPID)`: the child is the zygote's own
child (the zygote waits for it, times it out and kills its group as before) and the first process of a new
process-id namespace, in which function code sees and can signal only its own processes. The template first moves
into a network namespace of its own, where no interface is up, and its children share it: loading needs no
network, and nothing on the machine (PostgreSQL on loopback, say) can be reached from there.

The first process of a namespace (pid 1) ignores every signal it has no handler for, even those it sends itself, and
its end kills everything else in the namespace. So the child does not run the function's code itself: it forks
the process that does (pid 2, `loader.child.run`, whose parent is then pid 1) and stays as a small reaper. When pid
2 ends, pid 1 writes an answer saying how it ended (`exit_status_error`) after whatever pid 2 wrote, and leaves:
the zygote takes the first complete answer on the pipe, so that one only counts when pid 2 left without answering.

Where the kernel refuses a namespace (not root, or no `clone` number known for this machine), children are forked
from the template without it, or from the zygote as before; `Template.report` says what holds.
"""

from __future__ import annotations

import contextlib
import ctypes
import json
import os
import platform
import select
import signal
import socket
import sys

from loader import confinement, warm_imports
from loader.errors import exit_status_error

CLONE_NEWNET = 0x40000000
CLONE_NEWPID = 0x20000000
CLONE_PARENT = 0x00008000
SIGCHLD = 17
PR_SET_PDEATHSIG = 1
# clone's system call number by machine; where it is unknown, no template is used.
CLONE_SYSCALL = {"x86_64": 56, "aarch64": 220, "arm64": 220}
MESSAGE = 1 << 16
# As root, children are isolated and warmed up (as spares) this much nicer than the zygote, so that refilling spares
# after a job only takes CPU time the next job leaves; a child takes the zygote's priority back before it runs a
# job's code (`restore_priority`), or the zygote gives it back as it hands it a job (`hurry`). Not root: lowering
# could not be undone (CAP_SYS_NICE), so nothing changes. The templates keep the zygote's priority: the zygote waits
# for their answer to each fork.
SPARE_NICENESS = 10
# The niceness a job's code runs at, once `lower_priority` lowered this process's (and its children's); else None.
_job_niceness: int | None = None


def _libc():
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        libc.syscall.restype = ctypes.c_long
        libc.unshare.argtypes = [ctypes.c_int]
        libc.prctl.argtypes = [ctypes.c_int, ctypes.c_ulong, ctypes.c_ulong, ctypes.c_ulong, ctypes.c_ulong]
        return libc
    except (OSError, AttributeError):
        return None


_libc = _libc()
_clone_number = CLONE_SYSCALL.get(platform.machine())


def clone(flags: int) -> int:
    """`os.fork`, with clone flags: 0 in the child, the child's pid in the parent; OSError if the kernel refuses.

    The interpreter's own fork hooks run around the system call, as `os.fork` runs them (locks, threads' state).
    The calling process must be single-threaded.
    """
    if _libc is None or _clone_number is None:
        raise OSError(38, "clone cannot be called here")
    api = ctypes.pythonapi
    api.PyOS_BeforeFork()
    pid = _libc.syscall(_clone_number, ctypes.c_ulong(flags | SIGCHLD), 0, 0, 0, 0)
    if pid == 0:
        api.PyOS_AfterFork_Child()
        return 0
    number = ctypes.get_errno()
    api.PyOS_AfterFork_Parent()
    if pid < 0:
        raise OSError(number, os.strerror(number))
    return pid


def lower_priority() -> bool:
    """As root, make this process (and what it forks from now on) SPARE_NICENESS nicer, once; True if it is."""
    global _job_niceness
    if _job_niceness is not None:
        return True
    if os.geteuid() != 0:
        return False
    try:
        current = os.getpriority(os.PRIO_PROCESS, 0)
        os.setpriority(os.PRIO_PROCESS, 0, min(19, current + SPARE_NICENESS))
    except OSError:
        return False
    _job_niceness = current
    return True


def restore_priority() -> None:
    """In a child about to run a job: take back the niceness `lower_priority` left (still root: it can)."""
    if _job_niceness is not None:
        with contextlib.suppress(OSError):
            os.setpriority(os.PRIO_PROCESS, 0, _job_niceness)


def hurry(pid: int, niceness: int) -> None:
    """In the zygote (root), as it hands a job to a spare: give the spare (`pid`, and the process under it that will
    run the job when `pid` is the first of a process-id namespace) `niceness` now, so that a spare still warming up
    finishes at the job's priority; the child would only take it back once it reads its job."""
    pids = [pid]
    with contextlib.suppress(OSError, ValueError):
        with open(f"/proc/{pid}/task/{pid}/children") as listing:
            pids += [int(item) for item in listing.read().split()]
    for item in pids:
        with contextlib.suppress(OSError):
            os.setpriority(os.PRIO_PROCESS, item, niceness)


class Template:
    """The zygote's handle on its template process."""

    def __init__(self, pid: int, sock: socket.socket, report: dict):
        self.pid = pid
        self.sock = sock
        self.report = report

    def spawn(self, arguments: dict, fds: list[int]) -> int:
        """Have the template fork a load child with these pipes (job, result, output) and `child.run` arguments;
        its pid, or OSError."""
        if self.importing:  # its answer comes first on the socket: wait for the imports to finish
            self.finish_import()
        try:
            socket.send_fds(self.sock, [json.dumps(arguments).encode()], fds)
            answer = json.loads(self.sock.recv(MESSAGE) or b"{}")
        except (OSError, ValueError) as exc:
            raise OSError(f"the template process is gone: {exc}") from None
        if not answer.get("pid"):
            raise OSError(answer.get("error") or "the template process is gone")
        return int(answer["pid"])

    def fork_template(self) -> Template | None:
        """Have this template fork a second one, the zygote's child like the load children, in the same namespaces
        and as clean (it has never held a job either): the template warm imports go to (loader/warm_imports.py).
        None if it could not be started."""
        if self.importing:
            self.finish_import()
        ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        try:
            try:
                socket.send_fds(self.sock, [json.dumps({"op": "template"}).encode()], [theirs.fileno()])
            finally:
                theirs.close()
            answer = json.loads(self.sock.recv(MESSAGE) or b"{}")
            if not answer.get("pid"):
                ours.close()
                return None
            second = Template(int(answer["pid"]), ours, {})
            second.report = json.loads(ours.recv(MESSAGE) or b"{}")
        except (OSError, ValueError):
            ours.close()
            return None
        if not second.report.get("ready"):
            second.stop()
            return None
        return second

    # --- warm imports (loader/warm_imports.py): one request at a time, answered while the zygote goes on ----------

    importing = False
    warm: list[str] = []
    refused: dict[str, str] = {}  # noqa: RUF012 - replaced, never changed in place

    def begin_import(self, names: list[str], budget: int) -> bool:
        """Ask the template to import ``names`` (within ``budget`` bytes in all); the answer is read by
        `finish_import` once the socket is readable, or before the next spawn. False if the template is gone."""
        try:
            self.sock.sendall(json.dumps({"op": "import", "names": names, "budget": budget}).encode())
        except OSError:
            return False
        self.importing = True
        return True

    def finish_import(self) -> dict:
        """Read the template's answer to `begin_import` (waiting for it): {"imported": [...], "refused": {...}}."""
        self.importing = False
        try:
            answer = json.loads(self.sock.recv(MESSAGE) or b"{}")
        except (OSError, ValueError):
            return {}
        if isinstance(answer, dict):
            self.warm = self.warm + [name for name in answer.get("imported") or [] if isinstance(name, str)]
            if isinstance(answer.get("refused"), dict):
                self.refused = {**self.refused, **answer["refused"]}
            return answer
        return {}

    def stop(self) -> None:
        with contextlib.suppress(OSError):
            self.sock.close()
        with contextlib.suppress(OSError):
            os.kill(self.pid, signal.SIGKILL)
        with contextlib.suppress(ChildProcessError, OSError):
            os.waitpid(self.pid, 0)


NAMESPACE_KEYS = ("pid_namespace", "net_namespace")


def note(ready: dict, template: Template | None) -> None:
    """Add to the zygote's ready report what the template found (`confinement`) and its pid (`template_pid`)."""
    confined = ready["confinement"]
    if template is not None:
        confined.update({key: template.report.get(key) for key in NAMESPACE_KEYS})
        reasons = [confined.get("reason"), template.report.get("reason")]
        confined["reason"] = "; ".join(reason for reason in reasons if reason) or None
    confined["template"] = template is not None
    ready["template_pid"] = template.pid if template is not None else None


def start_template(
    close: list[int], lifeline: int, root: bool, *, network: bool = False
) -> tuple[Template | None, dict | None]:
    """In the zygote, before it reads any request: fork the template. Returns (template, None) in the zygote, or
    (None, arguments) in a load child the template forked, whose `child.run` arguments these are (it must leave
    every frame of the zygote's start-up and serve its job). (None, None) where no template can be used.

    `close`: the zygote's descriptors the template must not hold (the caller's pipes). `lifeline`: the read end of a
    pipe whose write end only the zygote holds, by which children tell whether the zygote is still there.
    `network`: keep the machine's network (for runtime workers, whose pipes call model APIs); load children get a
    network namespace without interfaces.
    """
    if _libc is None or _clone_number is None:
        return None, None
    ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
    zygote_pid = os.getpid()
    pid = os.fork()
    if pid:
        theirs.close()
        try:
            report = json.loads(ours.recv(MESSAGE) or b"{}")
        except (OSError, ValueError):
            report = {}
        if not report.get("ready"):
            Template(pid, ours, report).stop()
            return None, None
        return Template(pid, ours, report), None
    # The template.
    ours.close()
    for fd in close:
        with contextlib.suppress(OSError):
            os.close(fd)
    arguments = _serve_template(theirs, zygote_pid, lifeline, root, network)
    if arguments is None:
        os._exit(0)
    return None, arguments


def _serve_template(
    sock: socket.socket,
    zygote_pid: int,
    lifeline: int,
    root: bool,
    network: bool = False,
    prepared: bool | None = None,
) -> dict | None:
    """The template's loop; returns only in a child it forked (its arguments), or None when the zygote is gone.
    `prepared`: for a template forked by another (`Template.fork_template`), what the first one's mount work left
    (it shares that mount namespace, and the network namespace: `network` is then True, there is none to leave)."""
    _libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
    if os.getppid() != zygote_pid:
        return None
    report = {"ready": True, "pid_namespace": False, "net_namespace": False, "reason": None}
    problems = []
    if root and not network:
        if _libc.unshare(CLONE_NEWNET) == 0:
            report["net_namespace"] = True
        else:
            problems.append(f"a network namespace is not permitted ({os.strerror(ctypes.get_errno())})")
    flags = CLONE_PARENT | (CLONE_NEWPID if root else 0)
    if root:  # try it once: a namespace refused here is refused for every child
        try:
            probe = clone(CLONE_NEWPID)
        except OSError as exc:
            flags = CLONE_PARENT
            problems.append(f"a process-id namespace is not permitted ({exc.strerror})")
        else:
            if probe == 0:
                os._exit(0)
            os.waitpid(probe, 0)
            report["pid_namespace"] = True
    report["reason"] = "; ".join(problems) or None
    sock.sendall(json.dumps(report).encode())
    # `prepared`: whether our mount namespace holds what every child's would (confinement.prepare); None: not known
    # until the first child's arguments say whether to confine.
    while True:
        try:
            message, fds, _flags, _address = socket.recv_fds(sock, MESSAGE, 3)
        except OSError:
            return None
        if not message:
            return None
        try:
            arguments = json.loads(message)
            # Not a load child: a second template, for warm imports (`Template.fork_template`).
            if arguments.get("op") == "template":
                if len(fds) != 1:
                    raise ValueError("a template needs its socket")
                pid = clone(CLONE_PARENT)
                if pid == 0:
                    sock.close()
                    return _serve_template(
                        socket.socket(fileno=fds[0]), zygote_pid, lifeline, root, True, prepared
                    )
                os.close(fds[0])
                sock.sendall(json.dumps({"pid": pid}).encode())
                continue
            # Not a child to fork: modules to import (loader/warm_imports.py).
            if arguments.get("op") == "import":
                for fd in fds:
                    os.close(fd)
                answer = warm_imports.try_imports(
                    arguments.get("names") or [], int(arguments.get("budget") or 0)
                )
                sock.sendall(json.dumps({"op": "import", **answer}).encode()[: MESSAGE - 1])
                continue
            if prepared is None:
                prepared = bool(root and arguments.get("confine")) and _prepare_mounts(
                    arguments.get("secrets")
                )
            arguments["prepared"] = prepared
            pid = clone(flags)
        except (OSError, ValueError) as exc:
            for fd in fds:
                os.close(fd)
            with contextlib.suppress(OSError):
                sock.sendall(json.dumps({"error": f"could not start a child: {exc}"}).encode())
            continue
        if pid == 0:
            # Not the template itself: the zygote waits for its answer to each fork, and must not wait behind a job.
            lower_priority()
            sock.close()
            job_fd, result_fd, output_fd = fds
            arguments.update(job_fd=job_fd, result_fd=result_fd, output_fd=output_fd, zygote_pid=zygote_pid)
            if flags & CLONE_NEWPID:
                return _first_process(arguments, lifeline)
            return arguments
        for fd in fds:
            os.close(fd)
        try:
            sock.sendall(json.dumps({"pid": pid}).encode())
        except OSError:
            return None


def _prepare_mounts(secrets: dict | None) -> bool:
    """Do once, in the template's own mount namespace, the mount work every child would do (a child that runs as
    root then only copies it), keeping DATA_DIR writable; False if that fails (each child then does it itself)."""
    data_dir = getattr(sys.modules.get("open_webui.env"), "DATA_DIR", None)
    return confinement.prepare(secrets, [str(data_dir)] if data_dir else [])


def _first_process(arguments: dict, lifeline: int) -> dict:
    """Pid 1 of the child's namespace: fork the process that serves the job and reap until it ends (see the module's
    docstring). Returns only in that process, with its `child.run` arguments."""
    os.setsid()  # the zygote kills this group; pid 2 makes a session of its own, and dies with the namespace
    _libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
    poller = select.poll()
    poller.register(lifeline, select.POLLIN)
    if poller.poll(0):  # end of file: the zygote died before the death signal was armed
        os._exit(0)
    worker = os.fork()
    if worker == 0:
        os.close(lifeline)
        # Its parent is pid 1: that is what its checks of "is the zygote still there" see.
        return {**arguments, "zygote_pid": 1}
    for fd in (arguments["job_fd"], arguments["output_fd"], lifeline):
        with contextlib.suppress(OSError):
            os.close(fd)
    status = 0
    while True:
        try:
            pid, wait_status = os.waitpid(-1, 0)
        except ChildProcessError:
            break
        except InterruptedError:
            continue
        if pid == worker:
            status = os.waitstatus_to_exitcode(wait_status)
            break
    answer = json.dumps({"ok": False, "error": exit_status_error(status), "warnings": []}).encode()
    with contextlib.suppress(OSError):
        os.write(arguments["result_fd"], len(answer).to_bytes(4, "big") + answer)
    os._exit(0)
