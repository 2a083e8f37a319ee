"""Create latency and its CPU cost, process by process, with A/B rounds between two checkouts.

    .venv/bin/python bench/bench_create.py                                 # this tree: 6 rounds of 19 corpus creates
    .venv/bin/python bench/bench_create.py --roots /work/main,.            # A/B: both servers up, rounds alternate
    .venv/bin/python bench/bench_create.py --rounds 10 --pause-ms 300 --databases postgresql
    .venv/bin/python bench/bench_create.py --valved                        # a small filter with valves instead
    .venv/bin/python bench/bench_create.py --other http://127.0.0.1:8080 --other-key sk-...   # beside Open WebUI

Each root (a Sluice checkout) is started as bin/serve starts it (gunicorn in that folder, so its gunicorn.conf.py
applies; 2 workers x 4 threads), with this interpreter, on a fresh database of its own. A round creates the test
corpus's functions that load (tests/fixtures/functions, as bench/compare.py picks them) one after the other under new
ids; with several roots the rounds alternate between them, so both are measured in the same minutes. Printed per
root: p50/p95 of each round, the median of the rounds' p50s, and the CPU time per create of every Sluice process
(from /proc: each process's own time, plus what it reaped of its children, so loader children that come and go are
counted through the zygote that reaps them), split by role.

`--other` adds a server that speaks Open WebUI's `/api/v1/functions` (an Open WebUI started beside it): its rounds
alternate with the roots' in the same minutes, on ids `bench_c*` that are deleted afterwards, with the corpus files
it cannot load left out for all; its CPU is not split.

bench/profile_create.py splits one create's wall-clock time into phases in-process; bench/bench_writes.py measures
the other writes.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import requests

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_api import free_port, server_env  # noqa: E402
from compare import PASSWORD, VALVED, Database, corpus, probe_other  # noqa: E402
from procs import TICKS, tree  # noqa: E402
from timing import percentile  # noqa: E402

ROLES = ("gunicorn workers", "gunicorn master", "seed", "zygotes", "templates", "load children")


def stat_of(pid: int) -> tuple[int, float, float, float] | None:
    """(parent pid, own CPU s, reaped children's CPU s, start time in ticks) of a process, or None if gone."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return None
    own = (int(fields[11]) + int(fields[12])) / TICKS
    reaped = (int(fields[13]) + int(fields[14])) / TICKS
    return int(fields[1]), own, reaped, float(fields[19])


def _own_pid_namespace(pid: int) -> bool:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("NSpid:"):
                return len(line.split()) > 2
    except OSError:
        pass
    return False


def timed_creates(server, creates: list[tuple[str, str, str]], pause: float) -> list[float]:
    """Create each (id, name, code) on `server` in turn, `pause` seconds apart; the milliseconds of each."""
    timings = []
    for fid, name, content in creates:
        if pause:
            time.sleep(pause)
        body = {"id": fid, "name": name, "content": content, "meta": {"description": name}}
        began = time.perf_counter()
        answer = server.http.post(server.url("/api/v1/functions/create"), json=body, timeout=60)
        timings.append((time.perf_counter() - began) * 1000)
        if answer.status_code != 200:
            raise RuntimeError(f"{server.root} create {fid}: {answer.status_code} {answer.text[:300]}")
    return timings


class Sluice:
    def __init__(self, root: Path, kind: str, postgres: str, args):
        self.root = root
        self.folder = tempfile.TemporaryDirectory(prefix="sluice-bench-create-")
        self.database = Database(kind, self.folder.name, postgres)
        env = server_env(self.database.url, self.folder.name)
        env["PYTHONPATH"] = str(root)
        flask = [sys.executable, "-m", "flask", "--app", "app"]

        def run(*command: str) -> str:
            done = subprocess.run(
                [*flask, *command], cwd=root, env=env, capture_output=True, text=True, check=True
            )
            return done.stdout

        run("init-db")
        run("create-user", "--email", "bench@example.com", "--name", "Bench", "--password", PASSWORD, "--role", "admin")  # fmt: skip
        key = run("create-api-key", "--email", "bench@example.com").strip().splitlines()[-1]
        self.port = free_port()
        self.log = open(f"{self.folder.name}/server.log", "w")  # noqa: SIM115 - closed in stop()
        self.process = subprocess.Popen(
            [sys.executable, "-m", "gunicorn", "--bind", f"127.0.0.1:{self.port}",
             "--workers", str(args.workers), "--threads", str(args.threads), "app:create_app()"],
            cwd=root, env=env, stdout=subprocess.DEVNULL, stderr=self.log,
        )  # fmt: skip
        self.http = requests.Session()
        self.http.headers["Authorization"] = f"Bearer {key}"
        deadline = time.monotonic() + 90
        while True:
            try:
                if self.http.get(self.url("/health"), timeout=1).status_code == 200:
                    break
            except requests.RequestException:
                pass
            if time.monotonic() > deadline or self.process.poll() is not None:
                self.stop()
                raise RuntimeError(f"{root}: gunicorn did not become healthy")
            time.sleep(0.2)
        self.p50s: list[float] = []
        self.timings: list[float] = []
        self.cpu: dict[str, float] = dict.fromkeys(ROLES, 0.0)
        self.creates = 0

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.port}{path}"

    def roles(self) -> dict[int, str]:
        """Each process of the server by role, from its place in the tree (master, its workers and the loader
        seed; the seed's zygotes; a zygote's long-lived children are templates, the others load children)."""
        master = self.process.pid
        found = {master: "gunicorn master"}
        for pid in tree(master):
            info = stat_of(pid)
            if info is None or pid == master:
                continue
            parent = info[0]
            if parent == master:
                found[pid] = "seed" if self._is_seed(pid) else "gunicorn workers"
            elif found.get(parent) == "seed":
                found[pid] = "zygotes"
            elif found.get(parent) == "gunicorn workers":
                found[pid] = "zygotes"  # one a worker exec'd itself (no seed)
            elif found.get(parent) == "zygotes" and not _own_pid_namespace(pid):
                found[pid] = "templates"  # load children are the first process of a namespace (when root)
            else:
                found[pid] = "load children"
        return found

    def _is_seed(self, pid: int) -> bool:
        try:
            return b"loader" in Path(f"/proc/{pid}/cmdline").read_bytes()
        except OSError:
            return False

    def snapshot(self) -> dict[int, tuple[str, float, float, float]]:
        rows = {}
        for pid, role in self.roles().items():
            info = stat_of(pid)
            if info is not None:
                rows[pid] = (role, info[1], info[2], info[3])
        return rows

    def round(self, number: int, made: list[tuple[str, str]], pause: float) -> float:
        before = self.snapshot()
        timings = timed_creates(
            self, [(f"r{number}_{name}"[:60], name, content) for name, content in made], pause
        )
        after = self.snapshot()
        for pid, (role, own, reaped, started) in after.items():
            earlier = before.get(pid)
            if earlier is not None and earlier[3] == started:
                own -= earlier[1]
                reaped -= earlier[2]
            self.cpu[role] += own
            # what a zygote reaped are its load children (spares and jobs that ended in the round)
            self.cpu["load children" if role == "zygotes" else role] += reaped
        for pid, (role, own, reaped, _started) in before.items():
            if pid not in after and role == "load children":
                self.cpu[role] -= own + reaped  # ended in the round: all of its time is in its reaper's now
        self.creates += len(made)
        self.timings += timings
        p50 = statistics.median(timings)
        self.p50s.append(p50)
        return p50

    def stop(self) -> None:
        self.process.terminate()
        try:
            self.process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.process.kill()
        self.log.close()
        self.database.drop()
        self.folder.cleanup()


class Other:
    """Another server's creates, timed as a root's are (no CPU split: its processes are not ours to name)."""

    def __init__(self, base: str, key: str):
        self.root = base
        self.base = base.rstrip("/")
        self.http = requests.Session()
        self.http.headers["Authorization"] = f"Bearer {key}"
        self.p50s: list[float] = []
        self.timings: list[float] = []
        self.made: list[str] = []
        self.cpu: dict[str, float] = {}
        self.creates = 0

    def url(self, path: str) -> str:
        return self.base + path

    def api(self, path: str) -> str:
        return self.url("/api/v1/functions" + path)

    def round(self, number: int, made: list[tuple[str, str]], pause: float) -> float:
        creates = [(f"bench_c{number}_{name}".lower()[:60], name, content) for name, content in made]
        timings = timed_creates(self, creates, pause)
        self.made += [fid for fid, _name, _content in creates]
        self.creates += len(made)
        self.timings += timings
        self.p50s.append(statistics.median(timings))
        return self.p50s[-1]

    def stop(self) -> None:
        for fid in self.made + ["bench_c_warm"]:
            self.http.delete(self.url(f"/api/v1/functions/id/{fid}/delete"), timeout=60)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--roots", default=str(Path(__file__).resolve().parent.parent))
    parser.add_argument("--databases", default="sqlite")
    parser.add_argument(
        "--postgres",
        default=os.environ.get("TEST_DATABASE_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test"),
    )
    parser.add_argument("--rounds", type=int, default=6)
    parser.add_argument("--functions", type=int, default=19, help="corpus functions per round")
    parser.add_argument(
        "--valved", action="store_true", help="the small valved filter of compare.py instead of the corpus"
    )
    parser.add_argument("--pause-ms", type=float, default=0, help="pause before each create")
    parser.add_argument("--settle", type=float, default=1.0, help="seconds between rounds (spares refill)")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--threads", type=int, default=4)
    parser.add_argument("--other", help="base URL of another server to time beside (e.g. Open WebUI)")
    parser.add_argument("--other-key", help="an admin API key of that server")
    args = parser.parse_args()
    roots = [Path(root).resolve() for root in args.roots.split(",")]
    if args.other and not args.valved:
        # Only the corpus files both servers load: neither is timed on work the other refused.
        probe_other(Other(args.other, args.other_key or ""))
    if args.valved:
        made = [(f"valved_{n}", VALVED.format(n=n)) for n in range(args.functions)]
    else:
        made = corpus(args.functions)
    for kind in args.databases.split(","):
        servers = []
        try:
            for root in roots:
                servers.append(Sluice(root, kind, args.postgres, args))
            if args.other:
                servers.append(Other(args.other, args.other_key or ""))
            time.sleep(3)  # the loaders warm up in the background
            for server in servers:  # one unmeasured create each: first-request costs
                warm = "bench_c_warm" if isinstance(server, Other) else "warm"
                server.http.post(server.url("/api/v1/functions/create"), json={"id": warm, "name": "w", "content": made[0][1], "meta": {}})  # fmt: skip
            for number in range(args.rounds):
                order = servers if number % 2 == 0 else servers[::-1]
                for server in order:
                    time.sleep(args.settle)
                    server.round(number, made, args.pause_ms / 1000)
            what = "valved filter" if args.valved else "corpus"
            print(f"{kind}: {args.rounds} rounds x {len(made)} {what} creates, {args.pause_ms:g} ms pause")
            for server in servers:
                rounds = " ".join(f"{p:.1f}" for p in server.p50s)
                print(f"  {server.root}")
                print(f"    p50 of rounds: {rounds}")
                print(
                    f"    median p50 {statistics.median(server.p50s):.2f} ms, all creates p50 "
                    f"{statistics.median(server.timings):.2f} / p95 {percentile(server.timings, 0.95):.2f} ms"
                )
                if isinstance(server, Other):
                    continue
                total = sum(server.cpu.values()) * 1000 / server.creates
                parts = ", ".join(f"{role} {server.cpu[role] * 1000 / server.creates:.1f}" for role in ROLES)
                print(f"    CPU per create {total:.1f} ms: {parts}")
        finally:
            for server in servers:
                server.stop()


if __name__ == "__main__":
    main()
