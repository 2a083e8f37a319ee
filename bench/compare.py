"""Sluice side by side: one table of throughput, latency, start-up and memory, on SQLite and PostgreSQL.

    .venv/bin/python bench/compare.py                                  # Sluice on SQLite and PostgreSQL, and the ceiling
    .venv/bin/python bench/compare.py --other http://127.0.0.1:8080 --other-key sk-... --other-pid 1234
    .venv/bin/python bench/compare.py --databases sqlite --seconds 4 --quick

Each Sluice is started as bin/serve starts it (gunicorn in the repository root, so gunicorn.conf.py applies) with
``--workers``/``--threads`` (2 x 4 by default, the settings the issue measured), on a fresh database filled with the
test corpus (tests/fixtures/functions) and, for the larger cases, rows written straight into the table. ``--other``
names any server that speaks Open WebUI's `/api/v1/functions` (an Open WebUI started beside it, see
../shared/OPEN-WEBUI.md): its GETs run alternately with Sluice's, in the same minutes, round by round; its creates
and valves updates run on functions named `bench_*`, deleted afterwards; for the 1,000-function runs (not with
--quick) it is filled to 1,000 through its API with `bench_many_*` functions, deleted afterwards too. The ceiling
is a bare Flask JSON endpoint (bench/ceiling.py) under the same gunicorn settings. Beside Sluice on PostgreSQL
the same app also runs reading each answer from Sluice's database in one query ("Flask + PostgreSQL read", in the
same alternation): how far the database round trip alone takes a bare app below the ceiling.

The load client (bench/load.py: `wrk` when installed, else Python clients, named in the table's heading) runs on
the same CPUs, so requests/s understate what a server alone could do; "CPU ms/req" (all of Sluice's processes, from
/proc) is the figure that holds still on a busy machine.
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import sys
import tempfile
import threading
import time
import uuid
from pathlib import Path

import requests
from sqlalchemy.engine import make_url

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_api import free_port, run, server_env, start_server  # noqa: E402
from bench_console import code_of, function_rows, insert_functions  # noqa: E402
from compare_report import CREATE, FLASK_AND_POSTGRESQL, VALVES_UPDATE, print_table, targets  # noqa: E402
from load import LoadResult, hammer  # noqa: E402
from procs import cpu_seconds, database_seconds, machine_time, memory, tree  # noqa: E402
from timing import percentile  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
CORPUS = ROOT / "tests" / "fixtures" / "functions"
PASSWORD = "bench password 1234"
CORES = os.cpu_count() or 1
VALVED = '''"""
title: Bench Valved {n}
version: 1.0.{n}
"""

from pydantic import BaseModel


class Filter:
    class Valves(BaseModel):
        priority: int = 0
        prefix: str = ""

    class UserValves(BaseModel):
        shout: bool = False

    def __init__(self):
        self.valves = self.Valves()

    def inlet(self, body: dict, __user__: dict | None = None) -> dict:
        body.setdefault("messages", []).append({{"role": "system", "content": self.valves.prefix}})
        return body
'''
CHAT = {"model": "m", "messages": [{"role": "user", "content": "Hello there"}]}


# Corpus files the other server refused to create (its loader lacks a package Sluice provides): both servers then
# time the creates of the same files, so neither is measured on work the other skipped.
REFUSED_BY_OTHER: set[str] = set()


def corpus(count: int) -> list[tuple[str, str]]:
    """The first ``count`` functions of the test corpus that load (names starting `fail_` are meant not to)."""
    files = [
        p
        for p in sorted(CORPUS.glob("*.py"))
        if not p.name.startswith("fail") and p.stem not in REFUSED_BY_OTHER
    ]
    return [(p.stem, p.read_text()) for p in files[:count]]


def probe_other(other: Server) -> None:
    """Find the corpus files the other server cannot create, creating and deleting each once (off the clock).

    What an interrupted earlier run left there (`bench_*`) is deleted first, or its creates would clash.
    """
    for row in other.http.get(other.api("/")).json():
        if row["id"].startswith(("bench_", "probe_")):
            other.http.delete(other.api(f"/id/{row['id']}/delete"))
    for path in sorted(CORPUS.glob("*.py")):
        if path.name.startswith("fail"):
            continue
        fid = f"probe_{path.stem}"[:60]
        answer = other.http.post(other.api("/create"), json={"id": fid, "name": path.stem, "content": path.read_text(), "meta": {"description": ""}})  # fmt: skip
        if answer.status_code == 200:
            other.http.delete(other.api(f"/id/{fid}/delete"))
        else:
            REFUSED_BY_OTHER.add(path.stem)


def timed(calls) -> list[float]:
    """Milliseconds of each call in turn; each must answer 200."""
    timings = []
    for call in calls:
        began = time.perf_counter()
        response = call()
        timings.append((time.perf_counter() - began) * 1000)
        if response.status_code != 200:
            raise RuntimeError(
                f"{response.request.method} {response.url}: {response.status_code} {response.text[:300]}"
            )
    return timings


def p50_p95(timings: list[float]) -> str:
    return f"{statistics.median(timings):.1f} / {percentile(timings, 0.95):.1f} ms"


class Server:
    """One server under test: where it answers, who it is to it, and (when known) its processes."""

    client = "auto"  # bench/load.py's client, the same for every server of a run (--client)

    def __init__(self, name: str, base: str, key: str | None = None, pid: int | None = None):
        self.name, self.base, self.pid = name, base.rstrip("/"), pid
        self.headers = {"Authorization": f"Bearer {key}"} if key else {}
        self.http = requests.Session()
        self.http.headers.update(self.headers)
        self.pooled: dict[str, LoadResult] = {}
        self.p50s: dict[str, float] = {}  # each write measurement's p50 in ms, for the targets' check
        self.fills = False  # whether its list is to be filled (through its API) for the 1,000-function runs
        self.floor: Server | None = None  # for Sluice on PostgreSQL: the ceiling reading from its database

    def api(self, path: str) -> str:
        return f"{self.base}/api/v1/functions{path}"

    def get_load(self, label: str, path: str, concurrency: int, seconds: float) -> LoadResult:
        pids = tree(self.pid) if self.pid else []
        before, machine, database = cpu_seconds(pids), machine_time(), database_seconds()
        result = hammer(self.api(path), self.headers, concurrency, seconds, client=self.client)
        if pids:
            result.cpu = cpu_seconds(pids) - before
        result.machine = machine_time() - machine
        result.database = database_seconds() - database
        self.pooled.setdefault(label, LoadResult()).add(result)
        return result


def load_cell(result: LoadResult) -> str:
    cell = f"{result.rate:.0f}/s {result.p(0.5):.1f}|{result.p(0.99):.1f} ms"
    per_request = 1000 / max(1, result.requests)
    if result.cpu:
        cell += f" cpu {per_request * result.cpu:.2f}"
    if result.machine is not None and result.requests:
        # The whole machine's busy time per request (load client, database server and kernel included), what the
        # database server took of it, and the share of the run's wall time the hypervisor stole.
        cell += f" (all {per_request * result.machine.busy:.2f}, db {per_request * result.database:.2f}"
        cell += f", steal {100 * result.machine.steal / max(1e-9, result.seconds * CORES):.0f}%)"
    return cell + (f" ERR {result.errors}" if result.errors else "")


def memory_cell(pid: int) -> str:
    used = memory(tree(pid))
    return f"{used.rss_mib:.0f}/{used.pss_mib:.0f} MiB ({used.processes} procs)"


def pss_by_role(pid: int) -> str:
    """Each of the server's processes by role (bench/idle.py's names) with its PSS: where the memory is."""
    from idle import roles

    return ", ".join(f"{role} {memory([each]).pss_mib:.0f}" for role, each in roles(pid))


# --- Sluice: a database, a server, data ---------------------------------------------------------------------------


class Database:
    """A fresh database for one run: a SQLite file, or a PostgreSQL database created beside the one given."""

    def __init__(self, kind: str, workdir: str, postgres: str):
        self.kind = kind
        if kind == "sqlite":
            self.url = f"sqlite:///{workdir}/sluice.sqlite3"
            return
        from sqlalchemy import create_engine, text
        from sqlalchemy.engine import make_url

        self.name = f"sluice_bench_{os.getpid()}_{uuid.uuid4().hex[:6]}"
        self.admin = create_engine(postgres, isolation_level="AUTOCOMMIT")
        with self.admin.connect() as conn:
            conn.execute(text(f'CREATE DATABASE "{self.name}"'))
        self.url = make_url(postgres).set(database=self.name).render_as_string(hide_password=False)

    def insert(self, rows: list[dict]) -> None:
        from sqlalchemy import create_engine

        engine = create_engine(self.url)
        with engine.begin() as connection:
            insert_functions(connection, rows)
        engine.dispose()

    def drop(self) -> None:
        if self.kind == "postgresql":
            from sqlalchemy import text

            with self.admin.connect() as conn:
                conn.execute(text(f'DROP DATABASE IF EXISTS "{self.name}" WITH (FORCE)'))
            self.admin.dispose()


def start_sluice(database: Database, workdir: str, args) -> tuple[Server, object, float]:
    env = server_env(database.url, workdir)
    # Spares and warm workers end after this long without use (60 s and 300 s by default), shorter here so that the
    # last row can show the idle server after they did without a long wait.
    for name in ("SLUICE_LOAD_SPARES_IDLE_SECONDS", "SLUICE_RUNTIME_IDLE_SECONDS"):
        env.setdefault(name, str(args.idle_after))
    flask = [str(ROOT / ".venv/bin/flask"), "--app", "app"]
    run([*flask, "init-db"], env)
    run([*flask, "create-user", "--email", "bench@example.com", "--name", "Bench", "--password", PASSWORD,
         "--role", "admin"], env)  # fmt: skip
    key = run([*flask, "create-api-key", "--email", "bench@example.com"], env).strip().splitlines()[-1]
    port = free_port()
    log = open(f"{workdir}/server.log", "w")  # noqa: SIM115 - closed with the folder
    began = time.monotonic()
    process = start_server(env, port, args.workers, args.threads, log=log)
    startup = time.monotonic() - began
    return Server(f"Sluice {database.kind}", f"http://127.0.0.1:{port}", key, process.pid), process, startup


def console_session(server: Server) -> requests.Session:
    import re

    browser = requests.Session()
    page = browser.get(f"{server.base}/auth").text
    token = re.search(r'name="csrf-token" content="([^"]+)"', page).group(1)
    answer = browser.post(
        f"{server.base}/auth",
        data={"email": "bench@example.com", "password": PASSWORD, "csrf_token": token},
        allow_redirects=False,
    )
    assert answer.status_code == 302, answer.status_code
    return browser


def sync_items(count: int, version: int) -> list[dict]:
    return [
        {
            "id": f"sync_{n:04d}",
            "name": f"Sync {n}",
            "content": VALVED.format(n=n * 1000 + version),
            "meta": {},
        }
        for n in range(count)
    ]


# --- the measurements -------------------------------------------------------------------------------------------


def writes(server: Server, prefix: str, count: int, repeat: int) -> dict[str, str]:
    """Create, update, valves and user-valves updates, sequential; the functions are left for the GETs."""
    timings: dict[str, list[float]] = {}
    made = corpus(count)
    timings[CREATE] = timed(
        lambda i=i, c=c: server.http.post(server.api("/create"), json={"id": f"{prefix}{i}", "name": i, "content": c, "meta": {"description": i}})
        for i, c in made
    )  # fmt: skip
    fid = f"{prefix}valved"
    server.http.post(
        server.api("/create"), json={"id": fid, "name": "Valved", "content": VALVED.format(n=0), "meta": {}}
    )
    server.http.post(server.api(f"/id/{fid}/toggle"))
    timings["update p50/p95"] = timed(
        lambda n=n: server.http.post(server.api(f"/id/{fid}/update"), json={"id": fid, "name": "Valved", "content": VALVED.format(n=n + 1), "meta": {}})
        for n in range(repeat)
    )  # fmt: skip
    timings[VALVES_UPDATE] = timed(
        lambda n=n: server.http.post(server.api(f"/id/{fid}/valves/update"), json={"priority": n, "prefix": f"p{n}"}) for n in range(repeat)
    )  # fmt: skip
    timings["user valves update p50/p95"] = timed(
        lambda n=n: server.http.post(server.api(f"/id/{fid}/valves/user/update"), json={"shout": bool(n % 2)}) for n in range(repeat)
    )  # fmt: skip
    server.p50s.update({label: statistics.median(values) for label, values in timings.items()})
    return {label: p50_p95(values) for label, values in timings.items()}


def fill_other(other: Server, count: int) -> list[str]:
    """Create functions named `bench_many_*` (the console benchmark's ~8 KiB filters) until ``other`` lists
    ``count``; returns their ids, for `empty_other`. Creates go through its API, so they take a while."""
    made = []
    have = len(other.http.get(other.api("/")).json())
    for index in range(max(0, count - have)):
        fid = f"bench_many_{index:04d}"
        body = {"id": fid, "name": f"Many {index}", "content": code_of(index), "meta": {"description": "x"}}
        answer = other.http.post(other.api("/create"), json=body, timeout=60)
        answer.raise_for_status()
        made.append(fid)
    return made


def empty_other(other: Server, made: list[str]) -> None:
    for fid in made:
        other.http.delete(other.api(f"/id/{fid}/delete"), timeout=60)


def alternate(
    servers: list[Server], label: str, path_of, concurrency: int, seconds: float, rounds: int
) -> dict:
    results = {}
    for _ in range(rounds):
        for server in servers:
            results.setdefault(server.name, []).append(
                server.get_load(label, path_of(server), concurrency, seconds)
            )
    return results


def measure_sluice(kind: str, others: list[Server], args, table: dict) -> Server:
    with tempfile.TemporaryDirectory(prefix="sluice-compare-") as workdir:
        database = Database(kind, workdir, args.postgres)
        process = floor = floor_process = None
        try:
            server, process, startup = start_sluice(database, workdir, args)
            column = server.name
            cells = table.setdefault(column, {})
            cells["start-up to healthy /health"] = f"{startup:.2f} s"
            time.sleep(3)  # the loader warms up in the background
            cells["memory idle RSS/PSS"] = memory_cell(server.pid)
            cells.update(writes(server, "bench_", args.functions, args.repeat))
            fid = "bench_valved"
            cells["filter inlet via runtime p50/p95"] = p50_p95(
                timed(lambda: server.http.post(server.api(f"/id/{fid}/run"), json={"method": "inlet", "body": CHAT}) for _ in range(args.repeat))
            )  # fmt: skip
            everyone = [server, *others]
            if kind == "postgresql":
                # What a Flask app that only reads its answer from this database reaches, measured in the same
                # alternation: the share of the gap to the ceiling that the database round trip itself makes.
                floor, floor_process = start_ceiling(args, workdir, database.url)
                everyone.append(floor)
            first_id = {s.name: s.http.get(s.api("/")).json()[0]["id"] for s in everyone}
            sampled = {}
            for concurrency in (1, 16):
                label = f"GET / ({args.functions + 1} fns) c={concurrency}"
                sampler = None
                if concurrency == 16:
                    sampler = threading.Timer(
                        args.seconds / 2, lambda: sampled.update(m=memory_cell(server.pid))
                    )
                    sampler.start()
                alternate(everyone, label, lambda s: "/", concurrency, args.seconds, args.rounds)
                label_id = f"GET /id/{{id}} c={concurrency}"
                alternate(
                    everyone,
                    label_id,
                    lambda s: f"/id/{first_id[s.name]}",
                    concurrency,
                    args.seconds,
                    args.rounds,
                )
            cells["memory under load RSS/PSS"] = sampled.get("m", "-")
            if floor is not None:
                floor_process.terminate()
                floor_process.wait(timeout=30)
                floor_process = None
                server.floor = floor
                table[floor.name] = {label: load_cell(result) for label, result in floor.pooled.items()}
            admin_id = server.http.get(server.api("/")).json()[0]["user_id"]
            database.insert(function_rows(1000 - args.functions - 1, admin_id, first=0))
            # The other server (not the ceiling, whose list is fixed) is filled to 1,000 as well on the first
            # database's pass, measured in alternation, then emptied again.
            many = [s for s in others if s.fills]
            made = {}
            try:
                for other in many:
                    print(f"filling {other.name} to 1,000 functions", flush=True)
                    other.fills = False  # once is enough
                    made[other.name] = fill_other(other, 1000)
                for concurrency in (1, 16):
                    alternate(
                        [server, *many], f"GET / (1,000 fns) c={concurrency}", lambda s: "/", concurrency,
                        args.seconds, args.rounds,
                    )  # fmt: skip
            finally:
                for other in many:
                    empty_other(other, made.get(other.name, []))
            browser = console_session(server)
            for count in (1_000, 10_000):
                if count == 10_000:
                    database.insert(function_rows(9_000, admin_id, first=1_000, seed=8))
                browser.get(f"{server.base}/admin/functions")
                cells[f"console list {count:,} fns p50/p95"] = p50_p95(
                    timed(lambda: browser.get(f"{server.base}/admin/functions") for _ in range(args.repeat))
                )
            sync = server.api("/sync")
            first = server.http.post(sync, json={"functions": sync_items(args.sync, 0)}, timeout=600)
            assert first.status_code == 200, first.text[:300]
            cells[f"sync {args.sync} unchanged"] = (
                f"{timed([lambda: server.http.post(sync, json={'functions': sync_items(args.sync, 0)}, timeout=600)])[0] / 1000:.2f} s"
            )
            cells[f"sync {args.sync} changed"] = (
                f"{timed([lambda: server.http.post(sync, json={'functions': sync_items(args.sync, 1)}, timeout=600)])[0] / 1000:.2f} s"
            )
            cells["memory idle after all RSS/PSS"] = memory_cell(server.pid)
            time.sleep(args.idle_after + 5)
            cells[f"memory idle {args.idle_after + 5:g} s later RSS/PSS"] = memory_cell(server.pid)
            print(f"{server.name}, idle at the end, PSS by process: {pss_by_role(server.pid)}", flush=True)
            for label, result in server.pooled.items():
                cells[label] = load_cell(result)
            return server
        finally:
            for running in (process, floor_process):
                if running is not None:
                    running.terminate()
                    running.wait(timeout=30)
            database.drop()


def start_ceiling(args, workdir: str, database_url: str | None = None):
    """The bare Flask ceiling (bench/ceiling.py); with ``database_url`` (a PostgreSQL database Sluice has filled),
    the same app reading each answer from it in one query: "Flask + PostgreSQL read"."""
    env = dict(os.environ)
    name = "bare Flask ceiling"
    if database_url:
        env["CEILING_DATABASE_URL"] = make_url(database_url).set(drivername="postgresql").render_as_string(hide_password=False)  # fmt: skip
        name = FLASK_AND_POSTGRESQL
    port = free_port()
    log = open(f"{workdir}/{'floor' if database_url else 'ceiling'}.log", "w")  # noqa: SIM115 - closed with the folder
    process = start_server(env, port, args.workers, args.threads, app="bench.ceiling:app", log=log)
    return Server(name, f"http://127.0.0.1:{port}", pid=process.pid), process


def other_writes(other: Server, args, table: dict) -> None:
    """The other server's writes; the functions they create stay for its GETs (as Sluice's do), until
    `other_cleanup`."""
    cells = table.setdefault(other.name, {})
    cells.update(writes(other, "bench_", args.functions, args.repeat))
    if other.pid:
        cells["memory under load RSS/PSS"] = memory_cell(other.pid)


def other_cleanup(other: Server, args) -> None:
    for fid, _ in corpus(args.functions):
        other.http.delete(other.api(f"/id/bench_{fid}/delete"))
    other.http.delete(other.api("/id/bench_valved/delete"))


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
    parser.add_argument("--seconds", type=float, default=6.0, help="each load run")
    parser.add_argument("--rounds", type=int, default=2, help="alternations per GET measurement")
    parser.add_argument(
        "--functions", type=int, default=19, help="corpus functions created (plus one with valves)"
    )
    parser.add_argument("--repeat", type=int, default=30, help="sequential calls per write measurement")
    parser.add_argument("--sync", type=int, default=500)
    parser.add_argument(
        "--idle-after",
        type=float,
        default=20,
        help="seconds without use after which Sluice's spares and warm workers end (its "
        "SLUICE_LOAD_SPARES_IDLE_SECONDS and SLUICE_RUNTIME_IDLE_SECONDS, unless set); the last row is measured "
        "5 s after that",
    )
    parser.add_argument("--other", help="base URL of another server to measure alongside (e.g. Open WebUI)")
    parser.add_argument("--other-key", help="an admin API key of that server")
    parser.add_argument("--other-pid", type=int, help="its main process, to read its memory and CPU")
    parser.add_argument("--quick", action="store_true", help="2 s runs, 1 round, 10 repeats, sync of 50")
    parser.add_argument(
        "--client",
        choices=("auto", "wrk", "python"),
        default="auto",
        help="load client (bench/load.py): wrk when installed (auto), or Python clients",
    )
    args = parser.parse_args()
    Server.client = args.client
    if args.quick:
        args.seconds, args.rounds, args.repeat, args.sync = 2.0, 1, 10, 50
    table: dict[str, dict[str, str]] = {}
    measured: list[Server] = []
    with tempfile.TemporaryDirectory(prefix="sluice-ceiling-") as workdir:
        ceiling, ceiling_process = start_ceiling(args, workdir)
        others = [ceiling]
        try:  # the ceiling server is stopped whatever fails, the other server's writes included
            if args.other:
                other = Server("other " + args.other, args.other, args.other_key, args.other_pid)
                other.fills = not args.quick
                if other.pid:
                    table.setdefault(other.name, {})["memory idle RSS/PSS"] = memory_cell(other.pid)
                probe_other(other)
                if REFUSED_BY_OTHER:
                    print(
                        f"corpus files the other server refuses, left out on both: {sorted(REFUSED_BY_OTHER)}",
                        flush=True,
                    )
                others.insert(0, other)
                other_writes(other, args, table)
            for kind in args.databases.split(","):
                measured.append(measure_sluice(kind, others, args, table))
        finally:
            if args.other and others[0] is not ceiling:
                other_cleanup(others[0], args)
            ceiling_process.terminate()
            ceiling_process.wait(timeout=30)
    for server in others:
        cells = table.setdefault(server.name, {})
        for label, result in server.pooled.items():
            cells[label] = load_cell(result)
    print(
        f"gunicorn {args.workers} workers x {args.threads} threads; load runs of {args.seconds:.0f} s x {args.rounds} rounds "
        f"with {'wrk' if args.client == 'wrk' or (args.client == 'auto' and shutil.which('wrk')) else 'Python clients'};"
    )
    print("cells: req/s p50|p99 ms, and Sluice's CPU ms per request; writes p50/p95 of sequential calls\n")
    print_table(table)
    print()
    other = others[0] if args.other and others[0] is not ceiling else None
    for line in targets(measured, other, ceiling, args.functions + 1):
        print(line)


if __name__ == "__main__":
    main()
