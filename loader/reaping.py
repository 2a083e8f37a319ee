"""How the zygote's children end: killed, timed out, reaped (with the grandchildren orphaned to the subreaper),
and every one of them when the zygote shuts down.

`Reaping` is a part of `Zygote` (loader/parent.py), whose `__init__` sets up the state these methods share.
"""

from __future__ import annotations

import contextlib
import os
import signal
import time

from loader import scratch
from loader.errors import exit_status_error
from loader.protocol import complete_message
from loader.spares import Child

# Shutting down waits this long for the children to be reaped; a process that outlives it is left SIGKILLed.
SHUTDOWN_WAIT = 1.0
# The last resort when shutting down somehow stalls: SIGALRM (default action: terminate) after this many seconds.
SHUTDOWN_ALARM = 10


class Reaping:
    """Killing, timing out and reaping children, and shutting down (a part of `Zygote`, loader/parent.py)."""

    def kill(self, item: Child) -> None:
        self._kill(item)

    def _kill(self, item: Child) -> None:
        """SIGKILL the child's process group and the child itself.

        The group takes the child's descendants with it. The pid covers a child forked so recently that it has not
        yet made itself a group leader (`setsid` in child.run): there is no such group yet, and killpg fails, but
        such a child has not run anything nor forked either.
        """
        with contextlib.suppress(OSError):
            os.killpg(item.pid, signal.SIGKILL)
        with contextlib.suppress(OSError):
            os.kill(item.pid, signal.SIGKILL)

    def _expire(self) -> None:
        now = time.monotonic()
        for item in self._waiting():
            if item.deadline <= now:
                timeout = float(item.request.get("timeout") or 10)
                self._fail(item, "Timeout", f"loading took longer than {timeout:g} s")
                self._kill(item)
        for item in self.children.values():
            if item.ending and item.ending <= now:
                item.ending = 0.0
                self._kill(item)
        self.pool.expire(now)

    def _reap(self) -> None:
        reaped = False
        while True:
            try:
                info = os.waitid(os.P_ALL, 0, os.WEXITED | os.WNOHANG | os.WNOWAIT)
            except ChildProcessError:
                break
            if info is None or info.si_pid == 0:
                break
            pid = info.si_pid
            if self.warm_template is not None and pid == self.warm_template.pid:
                # Only warm imports are lost (an import that started a thread ends it, say): loads go on from the
                # first template, and nothing more is imported (`_want_imports`).
                self._warm_template_ended()
            elif pid in self._template_pids():
                # Children come only from the templates, which cannot be made again from here (this process has
                # held jobs): stop, and the client starts a new loader at its next load.
                self.template = self.worker_template = self.warm_template = None
                self.stopping = True
            item = self.children.get(pid)
            if item is not None:  # kill what is left of its group while the leader's pid still pins the group
                self._kill(item)
            try:
                _, status = os.waitpid(pid, 0)
            except ChildProcessError:
                status = 0
            reaped = True
            if item is not None:
                self._finish(item, os.waitstatus_to_exitcode(status))
        if reaped:
            self._sweep()

    def _finish(self, item: Child, returncode: int) -> None:
        if item.worker is not None:
            self.pool.finished(item, returncode)
        if item.request is not None and not item.answered:
            for fd in (item.result_fd, item.output_fd):
                if fd in self.pipes:
                    self._read_pipe(fd, rounds=8)
        if item.request is not None and not item.answered:
            if complete_message(item.result) is not None:
                self._answer_from_child(item)
            else:
                self._reply(item, exit_status_error(returncode))
        for fd in (item.result_fd, item.output_fd):
            if fd in self.pipes:
                self._close_pipe(fd)
        if item.job_fd >= 0:
            os.close(item.job_fd)
            item.job_fd = -1
        with contextlib.suppress(ValueError):
            self.spares.remove(item)
        if item is self.warm_spare:
            self.warm_spare = None
        del self.children[item.pid]
        scratch.remove_tree(item.workdir)

    def close_pipe(self, fd: int) -> None:
        self._close_pipe(fd)

    def _close_pipe(self, fd: int) -> None:
        item, which = self.pipes.pop(fd)
        with contextlib.suppress(KeyError, ValueError):
            self.poller.unregister(fd)
        os.close(fd)
        if which == "result":
            item.result_fd = -1
        else:
            item.output_fd = -1

    def _templates(self) -> list:
        return [
            item for item in (self.template, self.worker_template, self.warm_template) if item is not None
        ]

    def _template_pids(self) -> set[int]:
        return {template.pid for template in self._templates()}

    def _warm_template_ended(self) -> None:
        self._retire_warm_spare()  # no load is routed to the warm template's children any more
        template, self.warm_template = self.warm_template, None
        with contextlib.suppress(KeyError, ValueError, OSError):
            self.poller.unregister(template.sock.fileno())
        with contextlib.suppress(OSError):
            template.sock.close()

    def _sweep(self) -> None:
        """Kill processes that are our children but not ones we forked: grandchildren orphaned to the subreaper."""
        for pid in _children(self.pid):
            if pid not in self.children and pid not in self._template_pids():
                with contextlib.suppress(OSError):
                    os.kill(pid, signal.SIGKILL)

    def shutdown(self) -> None:
        """Kill every child and reap them, waiting at most SHUTDOWN_WAIT: this must never block for good."""
        self.stopping = True
        signal.alarm(SHUTDOWN_ALARM)
        items = list(self.children.values())
        for item in items:
            if item.job_fd >= 0:  # a spare still waiting for its job reads end of file and leaves by itself
                with contextlib.suppress(OSError):
                    os.close(item.job_fd)
                item.job_fd = -1
            self._kill(item)
        waiting = {item.pid for item in items}
        deadline = time.monotonic() + SHUTDOWN_WAIT
        while waiting:
            for pid in list(waiting):
                try:
                    done, _ = os.waitpid(pid, os.WNOHANG)
                except ChildProcessError:
                    done = pid
                if done:
                    waiting.discard(pid)
            if not waiting or time.monotonic() > deadline:
                break
            time.sleep(0.005)
        for item in items:
            if item.pid in waiting:  # not reaped in time: SIGKILLed again, left to init
                self._kill(item)
            scratch.remove_tree(item.workdir)
        self.children.clear()
        self.spares.clear()
        self.warm_spare = None
        for template in self._templates():
            template.stop()
        self._sweep()
        scratch.remove_tree(self.workdirs)


def _children(pid: int) -> list[int]:
    try:
        with open(f"/proc/{pid}/task/{pid}/children") as listing:
            return [int(item) for item in listing.read().split()]
    except OSError:
        pass
    found = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/stat") as stat_file:
                    fields = stat_file.read().rsplit(")", 1)[1].split()
            except (OSError, IndexError):
                continue
            if int(fields[1]) == pid:
                found.append(int(entry))
    return found
