"""Start-up and idle memory of Sluice under gunicorn, as bin/serve runs it: the two figures alone, in seconds.

Starts gunicorn in the repository root (so gunicorn.conf.py applies) on a fresh SQLite database, times it to a
healthy /health, waits until the process tree stops changing (the loaders and their spares are up), then prints
each process's role with its PSS and RSS, and the totals. PSS counts a page shared across forks once in all, so the
total PSS is what the server really holds; RSS counts it in each process.

    .venv/bin/python bench/idle.py                 # one start
    .venv/bin/python bench/idle.py --starts 3      # start-up three times, memory of the last
    .venv/bin/python bench/idle.py --creates 8     # idle again after 8 creates (each on a new connection, so
                                                   # both workers load code and their loaders fork spares)
    .venv/bin/python bench/idle.py --creates 20 --get 6   # and GET /api/v1/functions/ at concurrency 16 for 6 s,
                                                          # with the server's CPU ms per request (steadier than
                                                          # requests/s when other programs share the machine)
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import requests  # noqa: E402
from bench_api import FILTER, free_port, run, server_env, start_server  # noqa: E402
from load import hammer  # noqa: E402
from procs import cpu_seconds, memory, tree  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent


def parent_of(pid: int) -> int:
    return int(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[1])


def roles(master: int) -> list[tuple[str, int]]:
    """(role, pid) for every process under the gunicorn master, named by its depth in the tree.

    A loader's children are its clean templates (where namespaces work, as here: two per loader, started with it)
    and its spares (forked once it has had a job; each a namespace's first process and the spare under it). Under
    gunicorn the loaders are the loader seed's children (loader/seed.py), one level deeper than a worker's own."""
    names = {
        0: "gunicorn master",
        1: "worker",
        2: "loader parent",
        3: "template|spare",
        4: "spare in its ns",
    }
    found = []
    for pid in tree(master):
        depth, walk = 0, pid
        try:
            while walk != master:
                walk, depth = parent_of(walk), depth + 1
        except OSError:
            continue
        command = Path(f"/proc/{pid}/cmdline").read_bytes() if Path(f"/proc/{pid}/cmdline").exists() else b""
        role = names.get(depth, f"depth {depth}")
        if depth == 1 and b"loader" in command:  # the loader seed, started by the master (loader/seed.py)
            role = "loader seed" if b"seed" in command.split(b"\0") else "loader parent"
        found.append((role, pid))
    return sorted(found, key=lambda item: (item[0], item[1]))


def create_functions(base: str, key: str, count: int) -> None:
    """``count`` creates, each on a connection of its own: SO_REUSEPORT spreads them over the workers."""
    for n in range(count):
        body = {"id": f"idle_{n}", "name": f"Idle {n}", "content": FILTER.format(n=n), "meta": {}}
        answer = requests.post(
            f"{base}/api/v1/functions/create",
            json=body,
            headers={"Authorization": f"Bearer {key}"},
            timeout=60,
        )
        answer.raise_for_status()


def anonymous_pss_mib(pids: list[int]) -> float:
    """PSS of anonymous memory only (Python's objects): shared only within the tree, so, unlike PSS of files
    (shared libraries, which any other Python process on the machine running the same files shares), it does
    not move when other programs start or stop."""
    total = 0
    for pid in pids:
        try:
            for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines():
                if line.startswith("Pss_Anon:"):
                    total += int(line.split()[1])
        except OSError:
            continue
    return total / 1024


def settle(master: int, quiet: float, limit: float) -> None:
    """Wait until the set of processes has not changed for ``quiet`` seconds (at most ``limit``)."""
    last, since, deadline = None, time.monotonic(), time.monotonic() + limit
    while time.monotonic() < deadline:
        now = sorted(tree(master))
        if now != last:
            last, since = now, time.monotonic()
        elif time.monotonic() - since >= quiet:
            return
        time.sleep(0.2)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--threads", type=int, default=4)
    parser.add_argument("--starts", type=int, default=1, help="times to start the server (start-up figures)")
    parser.add_argument(
        "--get", type=float, default=0, help="seconds of GET /api/v1/functions/ (needs --creates)"
    )
    parser.add_argument("--creates", type=int, default=0, help="creates before measuring (0: fresh server)")
    parser.add_argument(
        "--quiet", type=float, default=4.0, help="seconds without a new process to call it idle"
    )
    args = parser.parse_args()

    with tempfile.TemporaryDirectory(prefix="sluice-idle-") as workdir:
        env = server_env(f"sqlite:///{workdir}/sluice.sqlite3", workdir)
        flask = [str(ROOT / ".venv/bin/flask"), "--app", "app"]
        run([*flask, "init-db"], env)
        key = None
        if args.creates:
            run([*flask, "create-user", "--email", "idle@example.com", "--name", "Idle", "--password",
                 "idle password 1234", "--role", "admin"], env)  # fmt: skip
            key = run([*flask, "create-api-key", "--email", "idle@example.com"], env).strip().splitlines()[-1]
        startups = []
        for attempt in range(args.starts):
            log = open(f"{workdir}/server.log", "w")  # noqa: SIM115 - closed below
            began = time.monotonic()
            port = free_port()
            process = start_server(env, port, args.workers, args.threads, log=log)
            startups.append(time.monotonic() - began)
            if attempt < args.starts - 1:
                process.terminate()
                process.wait(10)
                log.close()
                continue
            if key:
                settle(
                    process.pid, args.quiet, 60
                )  # the loaders up, so that the creates do not wait for them
                create_functions(f"http://127.0.0.1:{port}", key, args.creates)
                if args.get:
                    pids = tree(process.pid)
                    before = cpu_seconds(pids)
                    url = f"http://127.0.0.1:{port}/api/v1/functions/"
                    result = hammer(url, {"Authorization": f"Bearer {key}"}, 16, args.get)
                    cpu_ms = 1000 * (cpu_seconds(pids) - before) / max(1, result.requests)
                    print(
                        f"GET /api/v1/functions/ ({args.creates} functions) at concurrency 16: {result.rate:.0f} "
                        f"req/s, p50 {result.p(0.5):.1f} ms, p99 {result.p(0.99):.1f} ms, server CPU "
                        f"{cpu_ms:.2f} ms/request, errors {result.errors}"
                    )
            settle(process.pid, args.quiet, 60)
            total = memory(tree(process.pid))
            print(f"{'role':<16} {'pid':>7} {'PSS MiB':>8} {'anon PSS':>8} {'RSS MiB':>8}")
            for role, pid in roles(process.pid):
                used = memory([pid])
                anonymous = anonymous_pss_mib([pid])
                print(f"{role:<16} {pid:>7} {used.pss_mib:>8.1f} {anonymous:>8.1f} {used.rss_mib:>8.1f}")
            anonymous = anonymous_pss_mib(tree(process.pid))
            print(
                f"{'total':<16} {total.processes:>7} {total.pss_mib:>8.1f} {anonymous:>8.1f} {total.rss_mib:>8.1f}"
            )
            process.terminate()
            process.wait(10)
            log.close()
        spread = f" (each: {', '.join(f'{s:.2f}' for s in startups)})" if len(startups) > 1 else ""
        print(f"start-up to healthy /health: median {statistics.median(startups):.2f} s{spread}")


if __name__ == "__main__":
    main()
