"""The zygote's children: forking them (each waits as a spare until it is handed a job), handing them their jobs
with the identity they take and the folders they hide, and keeping spares forked and warm.

`Spares` is a part of `Zygote` (loader/parent.py), whose `__init__` sets up the state these methods share.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import select
import time

from loader import homes, namespaces, scratch, warm_imports
from loader.privileges import package_paths, plan_hidden_paths, probe
from loader.protocol import READ_CHUNK, encode_message

F_SETPIPE_SZ = 1031
# A spare is not forked while a job younger than this runs: the fork would stall the loop just as it answers.
SPARE_DELAY = 0.02
# A child that has answered is killed this long after its answer was passed on, not at once: its end (the kill, the
# teardown of its address space and namespaces) then runs while the caller reads the answer, not in front of the
# two wake-ups that carry it there (loader/child.py `ANSWERED_WAIT`). Loads 200 ms apart took 5.4-5.9 ms instead of
# 7.5-8.2 at the median; creates 300 ms apart 17.3 ms instead of 19.9 (bench/bench_create.py); creates back to back,
# where the next job comes 3 ms or more after an answer, the same as before.
ANSWERED_GRACE = 0.002
# At most this many packages directories' access checks are remembered.
ACCESS_CACHE = 64


class Child:
    """A forked child: a spare waiting for its job, or a job in progress (then `request` is set)."""

    __slots__ = (
        "id",
        "request",
        "pid",
        "job_fd",
        "result_fd",
        "output_fd",
        "workdir",
        "deadline",
        "result",
        "output",
        "dropped",
        "printed",
        "answered",
        "started",
        "warmed",
        "notice",
        "worker",
        "ending",
    )

    def __init__(self):
        self.id = None
        self.request: dict | None = None
        self.pid = 0
        self.job_fd = self.result_fd = self.output_fd = -1
        self.workdir = ""
        self.deadline = 0.0
        self.result = bytearray()
        self.output = bytearray()
        self.dropped = 0
        self.printed = 0  # bytes of output in all, kept or dropped
        self.answered = False
        self.started = 0.0
        self.warmed = False
        self.notice: list[str] = []
        # A runtime worker's bookkeeping (loader/runtime/records.py `Worker`); its `request` stays None.
        self.worker = None
        # When a child that has answered is to be killed (`ANSWERED_GRACE`); 0 when none is due.
        self.ending = 0.0


class Forked(BaseException):
    """Raised in a child just forked by the loop, and caught where the loop was entered (`run_until_forked`).

    The child is a copy of the zygote, and the frames the fork happened in (and their callers') hold the zygote,
    other jobs' requests (code, valves values, users) and the bytes last read from the caller, which may include
    the next requests. Unwinding to the base of the loop drops those frames before any function code could walk
    up to them (`sys._getframe().f_back`). A BaseException, so that no `except Exception` on the way stops it.
    """

    def __init__(self, arguments: dict):
        super().__init__()
        self.arguments = arguments


class Spares:
    """The zygote's children and spares (a part of `Zygote`, loader/parent.py)."""

    def _busy(self) -> int:
        """Jobs not yet answered: a child that has answered and waits to be ended holds no job's place."""
        return sum(1 for item in self.children.values() if item.request is not None and not item.answered)

    def _waiting(self) -> list[Child]:
        return [item for item in self.children.values() if item.request is not None and not item.answered]

    def _spawn(self, *, network: bool = False, warm: bool = False) -> Child | None:
        """Fork a child that waits for its job on a pipe; None (and the reason logged) if that is impossible.
        `network`: a runtime worker's child, forked by the template that keeps the network (or by this process where
        there is none, never by the load children's template, whose network namespace has no interface). `warm`: a
        load child forked by the template that holds the warm imports (`_wants_warm`)."""
        try:
            threads = len(os.listdir("/proc/self/task"))
        except OSError:
            threads = 1
        if (
            threads > 1
        ):  # forking a multi-threaded process could copy a lock held by a thread that is not there
            self.last_spawn_error = "the loader process is multi-threaded and cannot fork safely"
            return None
        item = Child()
        fds: list[int] = []
        try:
            item.workdir = self._new_workdir()
            for _ in range(3):
                fds.extend(os.pipe())
            job_r, job_w, result_r, result_w, output_r, output_w = fds
            for fd in (job_w, result_w):
                with contextlib.suppress(OSError):
                    fcntl.fcntl(fd, F_SETPIPE_SZ, READ_CHUNK)
            arguments = {
                "devnull_fd": self.devnull_fd,
                "workdir": item.workdir,
                "confine": self.confine,
                "secrets": self.secrets,
            }
            # Only the warm template imports, and no load is forked from it meanwhile (`_wants_warm`).
            template = self.worker_template if network else self.warm_template if warm else self.template
            if template is not None:
                pid = template.spawn(arguments, [job_r, result_w, output_w])
            else:
                pid = os.fork()
        except OSError as exc:
            for fd in fds:
                os.close(fd)
            scratch.remove_tree(item.workdir)
            self.last_spawn_error = f"could not start a child: {exc}"
            return None
        if pid == 0:  # pragma: no cover - runs in the child: leave every frame of the loop (see Forked)
            raise Forked(
                {
                    **arguments,
                    "job_fd": job_r,
                    "result_fd": result_w,
                    "output_fd": output_w,
                    "zygote_pid": self.pid,
                    "prctl": self.prctl,
                }
            )
        self.forks += 1
        for fd in (job_r, result_w, output_w):
            os.close(fd)
        item.pid, item.job_fd, item.result_fd, item.output_fd = pid, job_w, result_r, output_r
        self.children[pid] = item
        for fd, which in ((result_r, "result"), (output_r, "output")):
            os.set_blocking(fd, False)
            self.pipes[fd] = (item, which)
            self.poller.register(fd, select.POLLIN)
        return item

    def _new_workdir(self) -> str:
        """A fresh scratch directory in this zygote's own folder (made again if something removed it)."""
        try:
            return scratch.make_workdir(self.workdirs)
        except FileNotFoundError:
            self.workdirs = scratch.make_workdir_parent(self.pid)
            return scratch.make_workdir(self.workdirs)

    def _dispatch(self, request: dict) -> None:
        self.last_load = time.monotonic()
        if self._wants_warm(request):
            # The warm spare, else a child forked for it: what it imports is what a load would take far longer over.
            item, self.warm_spare = self.warm_spare, None
            if item is not None and self._hand(item, request):
                return
            item = self._spawn(warm=True)
            if item is not None and self._hand(item, request):
                return
        while self.spares:
            if self._hand(self.spares.popleft(), request):
                return
        item = self._spawn()
        if item is None:
            self._fail_request(request, "LoaderUnavailable", self.last_spawn_error)
        elif not self._hand(item, request):
            self._fail_request(request, "LoaderUnavailable", "a child died before it was given its job")

    def _hand(self, item: Child, request: dict) -> bool:
        """Give `request` to a waiting child; False if the child is gone."""
        item.request, item.id = request, request.get("id")
        item.started = time.monotonic()
        item.deadline = item.started + float(request.get("timeout") or 10)
        item.notice = self.confine_request(request)
        if self.niceness is not None:
            namespaces.hurry(item.pid, self.niceness)
        try:
            self._message(item, request)
        except OSError:
            item.request = None
            item.answered = True
            self._kill(item)
            return False
        finally:
            os.close(item.job_fd)
            item.job_fd = -1
        return True

    def confine_request(self, request: dict) -> list[str]:
        """Add to a job the identity its child takes and the folders it hides; the notices to pass on."""
        notices = []
        if self.identity is not None:
            request["privileges"], notice = self._identity_for(request)
            notices.append(notice)
        request["hidden_paths"], notice = self._hidden_for(request)
        notices.append(notice)
        # Here, not in the child: the child's mounts are all read-only but the temporary folders (loader/homes.py).
        homes.make(request)
        return [notice for notice in notices if notice]

    def worker_child(self) -> Child | None:
        """A child to become a runtime worker (loader/runtime/pool.py): a spare, else a new one; None if none can
        be forked. Workers run pipes that call model APIs: whatever forks them must leave them the network."""
        return self._spawn(network=True)

    def _identity_for(self, request: dict) -> tuple[dict | None, str]:
        """The identity this job's child takes, or None (stays root) with the reason when the load user cannot read
        the packages directory the job uses. Checked once per version (modification time) of that directory."""
        packages_dir = request.get("packages_dir")
        if not isinstance(packages_dir, str) or not packages_dir:
            return self.identity, ""
        try:
            version = os.stat(packages_dir).st_mtime_ns
        except OSError:  # not there: the child does not use it
            return self.identity, ""
        key = (packages_dir, version)
        if key not in self.package_access:
            if len(self.package_access) >= ACCESS_CACHE:
                self.package_access.clear()
            self.package_access[key] = probe(self.identity, package_paths(packages_dir))
        problem = self.package_access[key]
        if problem:
            return None, f"function code is loaded as root: {problem}"
        return self.identity, ""

    def _hidden_for(self, request: dict) -> tuple[list[str], str]:
        """The folders this job's child hides (see plan_hidden_paths), worked out once per list."""
        paths = request.get("hidden_paths")
        if not self.confine or not isinstance(paths, list) or not paths:
            return [], ""
        key = tuple(path for path in paths if isinstance(path, str))
        if key not in self.hidden_plans:
            if len(self.hidden_plans) >= ACCESS_CACHE:
                self.hidden_plans.clear()
            self.hidden_plans[key] = plan_hidden_paths(key, self.needed)
        return self.hidden_plans[key]

    def _message(self, item: Child, message: dict) -> None:
        payload = json.dumps(message, ensure_ascii=True, separators=(",", ":")).encode()
        view = memoryview(encode_message(payload))
        while view:
            view = view[os.write(item.job_fd, view) :]

    def _replenish(self) -> None:
        """Keep spares forked, and warm them up once the zygote is idle.

        Forking and warming cost CPU, so neither happens while a young job may be about to answer, and warming
        (which roughly doubles a load's CPU time) waits until no job is in flight: under many loads at once the
        spares only save the fork. It does not wait for a pause in the requests: saves that come one after the
        other (an admin, a sync, a script) each find a spare warmed in the gap since the last answer, and a warm
        spare halves the time the code takes to load (its pages were copied before the caller waited).
        """
        now = time.monotonic()
        waiting = self._waiting()
        if any(now - item.started < SPARE_DELAY for item in waiting):
            return
        if self.spare_idle and not waiting and now - self.last_load >= self.spare_idle:
            self._retire_spares()  # none forked again until a load comes
            return
        # The spares there are are warmed before another is forked (we wait for the fork): the next job takes the
        # oldest spare, and saves that come one after the other give it only the gap between them to warm up in.
        if not waiting:
            self._warm_spares()
        if len(self.spares) < self.spare_count:
            item = self._spawn()
            if item is not None:
                self.spares.append(item)
        self._warm_imports()
        if not waiting:
            self._fork_warm_spare()

    def _fork_warm_spare(self) -> None:
        """Keep one child of the warm template forked (and, at the next idle turn, warmed up) while it has imported
        modules and is not importing: a load routed there then skips that fork and the child's start (10-12 ms on
        this kind of machine, the bigger template's fork included) and runs in a child whose pages its warm-up
        copied. Only while nothing waits, since forking stalls the loop; one whatever the spare count, since only
        the loads of functions that import those modules use it. An import retires it (it would lack the modules)."""
        template = self.warm_template
        if (
            self.warm_spare is not None
            or self.spare_count == 0
            or template is None
            or template.importing
            or not template.warm
        ):
            return
        self.warm_spare = self._spawn(warm=True)

    def _retire_warm_spare(self) -> None:
        item, self.warm_spare = self.warm_spare, None
        if item is not None:
            self._end_spare(item)

    def _all_spares(self) -> list[Child]:
        return [*self.spares, self.warm_spare] if self.warm_spare is not None else list(self.spares)

    # --- warm imports (loader/warm_imports.py) ----------------------------------------------------------------
    #
    # They go to a second template, forked by the first one when there is something to import: the first, which
    # forks the spares every other load takes, stays as small as it started. A template's size is paid by every
    # child it forks (page tables copied at the fork and torn down at the exit, more pages touched as the child
    # starts): with the corpus's 17 modules in the one template, light loads took 8.5-10 ms instead of 7.6 (200 ms
    # apart) and 15 instead of 11.5 (back to back), their children twice the CPU; bench/bench_create.py (sequential
    # corpus creates) went from p50 18.6 ms and 27.6 ms of CPU a create to 16.3 and 18.1 with the second template.
    # A load whose code imports a package the second template holds is forked from it (`_wants_warm`).

    def _wants_warm(self, request: dict) -> bool:
        """Whether a load (or valves check) imports a package the warm template has imported: its "modules" (the
        names its code's import statements give, loader/client.py) share a top-level package with one of them."""
        template = self.warm_template
        if template is None or template.importing or not template.warm:
            return False
        names = request.get("modules")
        if not isinstance(names, list):
            return False
        wanted = {name.split(".", 1)[0] for name in names[: warm_imports.MOST_NAMES] if isinstance(name, str)}
        return any(name.split(".", 1)[0] in wanted for name in template.warm)

    def _want_imports(self, names, budget) -> None:
        """Note the modules a load named; a module a second load names is wanted. Only then: what one load alone
        imports would cost the template's memory (and an import meanwhile) for nothing, where a function saved
        again, or many functions using the same package, load it again and again."""
        if not isinstance(names, list) or not isinstance(budget, int) or budget <= 0 or self.template is None:
            return
        if self.warm_template is None and self.import_asked:
            return  # the warm template could not be started, or it ended: nothing more is imported
        self.import_budget = budget
        for name in names[: warm_imports.MOST_NAMES]:
            if not isinstance(name, str) or not warm_imports.NAME.match(name) or name in self.import_asked:
                continue
            if len(self.import_seen) >= warm_imports.MOST_SEEN and name not in self.import_seen:
                self.import_seen.clear()  # a bound on names seen once; those wanted already stay wanted
            self.import_seen[name] = self.import_seen.get(name, 0) + 1
            if self.import_seen[name] >= 2:
                self.import_wanted[name] = None

    def _may_warm_imports(self) -> bool:
        """Whether to hand the template the modules wanted now: only while no job waits, none is queued, the spares
        are all forked and warmed (a load arriving meanwhile takes one), and the template is not importing."""
        return bool(
            self.import_wanted
            and self.template is not None
            and not (self.warm_template is not None and self.warm_template.importing)
            and not self.queue
            and not self._waiting()
            and len(self.spares) >= self.spare_count
            and all(item.warmed for item in self.spares)
        )

    def _warm_imports(self) -> None:
        if not self._may_warm_imports():
            return
        names = list(self.import_wanted)
        self.import_wanted.clear()
        self.import_asked.update(names)
        if self.warm_template is None:
            self.warm_template = self.template.fork_template()
            if self.warm_template is None:
                return  # nothing more is asked (`_want_imports`): loads go on from the first template
        if self.warm_template.begin_import(names, self.import_budget):
            self._retire_warm_spare()  # forked before these imports
            self.poller.register(self.warm_template.sock.fileno(), select.POLLIN)

    def _imported(self) -> None:
        """The warm template answered: read it, and stop watching its socket (spawns read it themselves)."""
        template = self.warm_template
        if template is None:
            return
        with contextlib.suppress(KeyError, ValueError):
            self.poller.unregister(template.sock.fileno())
        if template.importing:
            template.finish_import()

    def _retire_spares(self) -> None:
        """End every spare: each reads end of file on its job pipe and leaves (killed too, so at once)."""
        while self.spares:
            self._end_spare(self.spares.popleft())
        self._retire_warm_spare()

    def _end_spare(self, item: Child) -> None:
        if item.job_fd >= 0:
            with contextlib.suppress(OSError):
                os.close(item.job_fd)
            item.job_fd = -1
        self._kill(item)

    def _warm_spares(self) -> None:
        for item in self._all_spares():
            if not item.warmed:
                item.warmed = True
                try:
                    self._message(item, {"op": "warm"})
                except OSError:
                    self._kill(item)
