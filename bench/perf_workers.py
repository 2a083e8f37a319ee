"""Where a served request's CPU goes, process by process and library by library: the bare Flask ceiling and Sluice on
SQLite and on PostgreSQL under the same load, with Linux `perf`.

    .venv/bin/python bench/perf_workers.py                     # GET /api/v1/functions/id/{id}, 16 clients, 6 s each
    .venv/bin/python bench/perf_workers.py --path / --seconds 10
    .venv/bin/python bench/perf_workers.py --path / --functions 20 --databases postgresql   # compare.py's list
    .venv/bin/python bench/perf_workers.py --databases postgresql --postgres postgresql+psycopg://postgres@/test?host=/var/run/postgresql

Each server runs as bench/compare.py starts it (gunicorn, 2 workers x 4 threads by default), one after the other,
with one valved filter stored (`--functions` adds the test corpus's first ones to it), under three load runs in a
row: printed are requests/s, the whole machine's busy CPU ms per request and the PostgreSQL server's share (read from
/proc, in a run nothing else watches), the workers' CPU ms and context switches per request (`perf stat`, in a second
run), and the workers' samples split by library (the interpreter, the kernel, the database drivers...: `perf
record`, in a third run, which sampling slows down).
After Sluice on PostgreSQL, the ceiling runs again reading each answer from that same database in one query
(bench/ceiling.py with `CEILING_DATABASE_URL`): what a Flask app that does nothing but that query reaches.

Why: compare.py shows Sluice on PostgreSQL further from the ceiling than on SQLite, while the in-process profile
(bench/profile_api.py) finds only ~0.1 ms more of Sluice's own work there. This shows what the rest is: the same
Python (the interpreter's share and its hottest functions hardly move) made slower by sharing two cores with the
database server, plus the kernel's task switches for each round trip. Needs `perf` (Debian's linux-perf); without
it, only the /proc figures are printed.
"""

from __future__ import annotations

import argparse
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from compare import VALVED, Database, corpus, start_ceiling, start_sluice  # noqa: E402
from load import hammer  # noqa: E402
from procs import database_seconds, machine_time, tree  # noqa: E402


def workers_of(root: int) -> list[int]:
    """gunicorn's worker processes under its master ``root`` (not the loader's processes)."""
    found = []
    for pid in tree(root):
        try:
            command = Path(f"/proc/{pid}/cmdline").read_bytes()
        except OSError:
            continue
        if pid != root and b"gunicorn" in command:
            found.append(pid)
    return found


def perf_stat(output: str) -> dict[str, float]:
    counts = {}
    for line in Path(output).read_text().splitlines():
        fields = line.split()
        if len(fields) >= 2 and fields[0].replace(",", "").replace(".", "", 1).isdigit():
            value = float(fields[0].replace(",", ""))
            name = fields[2] if fields[1] == "msec" else fields[1]
            counts[name] = value
    return counts


def libraries(record: str) -> list[tuple[float, str]]:
    """(percent of samples, library) from a perf record, the largest first."""
    report = subprocess.run(
        ["perf", "report", "-i", record, "--sort", "dso", "--stdio"], capture_output=True, text=True
    ).stdout
    shares = []
    for line in report.splitlines():
        fields = line.split()
        if line.startswith("#") or len(fields) < 2 or not fields[0].endswith("%"):
            continue
        shares.append((float(fields[0].rstrip("%")), fields[1]))
    return shares


def measure(name: str, server, master: int, path: str, args, workdir: str) -> None:
    """Three runs of the same load: one watched only through /proc (the figures perf would disturb), one under
    `perf stat` (counting is cheap), one under `perf record` (sampling is not: only its proportions are used)."""
    url = server.api(path)
    hammer(url, server.headers, args.concurrency, 2)  # warm up
    machine, database = machine_time(), database_seconds()
    result = hammer(url, server.headers, args.concurrency, args.seconds)
    machine, database = machine_time() - machine, database_seconds() - database
    per = 1000 / max(1, result.requests)
    line = f"{name:<20} {result.rate:6.0f}/s  machine busy {per * machine.busy:.2f} ms/req"
    line += f"  database server {per * database:.2f}"
    perf = shutil.which("perf")
    if perf:
        workers = ",".join(str(pid) for pid in workers_of(master))
        stat_file, record_file = f"{workdir}/{name}.stat", f"{workdir}/{name}.data"
        counted = watched(
            [perf, "stat", "-e", "task-clock,context-switches", "-p", workers, "-o", stat_file],
            lambda: hammer(url, server.headers, args.concurrency, args.seconds),
        )
        counts = perf_stat(stat_file)
        requests = max(1, counted.requests)
        line += f"  workers {counts.get('task-clock', 0) / requests:.2f}"
        line += f"  context switches {counts.get('context-switches', 0) / requests:.1f}"
        watched(
            [perf, "record", "-F", "999", "-p", workers, "-o", record_file],
            lambda: hammer(url, server.headers, args.concurrency, args.seconds),
        )
        line += (
            "\n"
            + " " * 22
            + ", ".join(f"{library} {share:.0f}%" for share, library in libraries(record_file)[:5])
        )
    print(line, flush=True)


def watched(command: list[str], run):
    """``run()`` while ``command`` (a perf attached to processes) watches; perf is stopped as it would be by ^C."""
    watcher = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    time.sleep(0.5)  # perf attaches
    try:
        return run()
    finally:
        watcher.send_signal(signal.SIGINT)
        watcher.wait()


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--path", default="/id/perf_valved", help="under /api/v1/functions")
    parser.add_argument("--databases", default="sqlite,postgresql")
    parser.add_argument("--postgres", default="postgresql+psycopg://postgres@127.0.0.1:5432/test")
    parser.add_argument("--concurrency", type=int, default=16)
    parser.add_argument("--seconds", type=float, default=6.0)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--threads", type=int, default=4)
    parser.add_argument("--idle-after", type=float, default=300)
    parser.add_argument(
        "--functions",
        type=int,
        default=1,
        help="functions stored: the valved filter and the first of the test corpus (compare.py lists 20)",
    )
    args = parser.parse_args()
    if not shutil.which("perf"):
        print("perf is not installed (apt-get install linux-perf): /proc figures only", flush=True)
    with tempfile.TemporaryDirectory(prefix="sluice-perf-") as workdir:
        ceiling, process = start_ceiling(args, workdir)
        try:
            measure("bare Flask ceiling", ceiling, process.pid, args.path, args, workdir)
        finally:
            process.terminate()
            process.wait(timeout=30)
        for kind in args.databases.split(","):
            database = Database(kind, f"{workdir}", args.postgres)
            server, process, _startup = start_sluice(database, workdir, args)
            try:
                server.http.post(
                    server.api("/create"),
                    json={"id": "perf_valved", "name": "Valved", "content": VALVED.format(n=0), "meta": {}},
                ).raise_for_status()
                for fid, content in corpus(args.functions - 1):
                    server.http.post(
                        server.api("/create"), json={"id": fid, "name": fid, "content": content, "meta": {}}
                    ).raise_for_status()
                measure(f"Sluice {kind}", server, process.pid, args.path, args, workdir)
            finally:
                process.terminate()
                process.wait(timeout=30)
            try:
                if kind == "postgresql":
                    # The ceiling again, reading its answer from the same database: the part of the gap that any
                    # Flask app reading from PostgreSQL on each request has too.
                    floor, process = start_ceiling(args, workdir, database.url)
                    try:
                        measure(floor.name, floor, process.pid, args.path, args, workdir)
                    finally:
                        process.terminate()
                        process.wait(timeout=30)
            finally:
                database.drop()


if __name__ == "__main__":
    main()
