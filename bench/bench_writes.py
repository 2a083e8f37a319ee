"""The write latencies of bench/compare.py alone, with CPU per request: create, update, valves and user-valves update.

    .venv/bin/python bench/bench_writes.py                          # SQLite and PostgreSQL, 40 calls of each
    .venv/bin/python bench/bench_writes.py --databases sqlite --repeat 60

Sluice is started as compare.py starts it (gunicorn as bin/serve does, 2 workers x 4 threads by default). Each call
is sequential, so p50/p95 are latencies of one client alone; "CPU ms/req" is the CPU time of all of Sluice's
processes over the calls (the loader's reaped children included), divided by the number of calls: on a machine
other work shares, it holds still where wall-clock latency does not.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from compare import VALVED, Database, corpus, start_sluice  # noqa: E402
from procs import cpu_seconds, tree  # noqa: E402
from timing import percentile  # noqa: E402


def measure(server, calls) -> str:
    pids = tree(server.pid)
    before = cpu_seconds(pids, reaped_children=True)
    timings = []
    for call in calls:
        began = time.perf_counter()
        response = call()
        timings.append((time.perf_counter() - began) * 1000)
        if response.status_code != 200:
            raise RuntimeError(f"{response.request.url}: {response.status_code} {response.text[:300]}")
    cpu = (cpu_seconds(pids, reaped_children=True) - before) * 1000 / len(timings)
    return f"{statistics.median(timings):6.1f} / {percentile(timings, 0.95):6.1f} ms   cpu {cpu:5.1f} ms/req"


def run(kind: str, args) -> dict[str, str]:
    rows = {}
    with tempfile.TemporaryDirectory(prefix="sluice-writes-") as workdir:
        database = Database(kind, workdir, args.postgres)
        process = None
        try:
            server, process, _ = start_sluice(database, workdir, args)
            time.sleep(3)  # the loader warms up in the background
            api = server.api
            made = corpus(19)
            rows["create (corpus)"] = measure(
                server,
                (
                    lambda i=i, c=c: server.http.post(api("/create"), json={"id": f"b_{i}", "name": i, "content": c, "meta": {"description": i}})
                    for i, c in made
                ),
            )  # fmt: skip
            rows["create (valved)"] = measure(
                server,
                (
                    lambda n=n: server.http.post(api("/create"), json={"id": f"v_{n}", "name": "V", "content": VALVED.format(n=n), "meta": {}})
                    for n in range(args.repeat)
                ),
            )  # fmt: skip
            fid = "v_0"
            server.http.post(api(f"/id/{fid}/toggle"))
            rows["update"] = measure(
                server,
                (
                    lambda n=n: server.http.post(api(f"/id/{fid}/update"), json={"id": fid, "name": "V", "content": VALVED.format(n=n + 1), "meta": {}})
                    for n in range(args.repeat)
                ),
            )  # fmt: skip
            rows["valves update"] = measure(
                server,
                (
                    lambda n=n: server.http.post(api(f"/id/{fid}/valves/update"), json={"priority": n, "prefix": f"p{n}"})
                    for n in range(args.repeat)
                ),
            )  # fmt: skip
            rows["user valves update"] = measure(
                server,
                (
                    lambda n=n: server.http.post(api(f"/id/{fid}/valves/user/update"), json={"shout": bool(n % 2)})
                    for n in range(args.repeat)
                ),
            )  # fmt: skip
        finally:
            if process is not None:
                process.terminate()
                process.wait(timeout=30)
            database.drop()
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--databases", default="sqlite,postgresql")
    parser.add_argument(
        "--postgres",
        default=os.environ.get("TEST_DATABASE_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test"),
    )
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--threads", type=int, default=4)
    parser.add_argument("--repeat", type=int, default=40, help="sequential calls per measurement")
    args = parser.parse_args()
    for kind in args.databases.split(","):
        print(f"{kind}: p50 / p95 of {args.repeat} sequential calls (create (corpus): 19)")
        for label, cell in run(kind, args).items():
            print(f"  {label:<20} {cell}")


if __name__ == "__main__":
    main()
