"""Where one create's time goes: `POST /api/v1/functions/create` called in-process, split into its phases.

    .venv/bin/python bench/profile_create.py                    # 40 creates of the valved bench filter, 300 ms apart
    .venv/bin/python bench/profile_create.py --pause-ms 0       # back to back
    .venv/bin/python bench/profile_create.py --corpus            # the test corpus's functions instead
    .venv/bin/python bench/profile_create.py --database postgresql+psycopg://postgres@127.0.0.1/bench

The WSGI app is called directly (no gunicorn, no sockets) on a new SQLite file (or the database `--database` names,
empty or migrated), with the loader the app configures.
Each phase is timed around the call that does it: the loader round trip (and within it the zygote's own time from
handing the job to a child to its answer), the flushes, the commit, and the rest of the request. CPU: the request thread's own,
and the loader's (zygote, template and reaped children) over all creates, per create; and how many statements each
create sent to the database (on PostgreSQL each is a round trip, plus its BEGIN and COMMIT).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

from compare import VALVED, corpus  # noqa: E402
from procs import cpu_seconds, tree  # noqa: E402
from profile_api import api_environ  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--creates", type=int, default=40)
    parser.add_argument("--pause-ms", type=float, default=300)
    parser.add_argument("--corpus", action="store_true")
    parser.add_argument(
        "--database",
        help="a database URL, empty or migrated (default: a new SQLite file); the creates stay there",
    )
    parser.add_argument(
        "--profile",
        action="store_true",
        help="a profile of the creates: pyinstrument's if installed, else cProfile's (top 40 by own time)",
    )
    args = parser.parse_args()

    from sqlalchemy.orm import Session

    import loader
    import loader.client
    from app import create_app
    from database import upgrade_database
    from services import accounts

    folder = tempfile.TemporaryDirectory(prefix="sluice-profile-create-")
    url = args.database or f"sqlite:///{os.path.join(folder.name, 'profile.db')}"
    upgrade_database(url)
    app = create_app({"SQLALCHEMY_DATABASE_URI": url, "SECRET_KEY": "profile-" * 4})
    with app.app_context():
        admin = accounts.create_user(
            "Profile Admin", "profile@example.com", "profile password 1", role="admin"
        )
        _key, key = accounts.create_api_key(admin, "profile")
    loader.start()
    time.sleep(1.5)

    phases: dict[str, list[float]] = {
        "loader round trip": [],
        "zygote (hand to answer)": [],
        "flush": [],
        "commit": [],
    }
    run, commit, flush = loader.client._run, Session.commit, Session.flush

    def timed_run(request, during=None):
        began = time.perf_counter()
        header, answer = run(request, during)
        phases["loader round trip"].append((time.perf_counter() - began) * 1000)
        phases["zygote (hand to answer)"].append(float(header.get("elapsed") or 0) * 1000)
        return header, answer

    def timed_commit(self):
        began = time.perf_counter()
        try:
            return commit(self)
        finally:
            phases["commit"].append((time.perf_counter() - began) * 1000)

    flushed = [0.0]  # this create's flushes, summed

    def timed_flush(self, objects=None):
        began = time.perf_counter()
        try:
            return flush(self, objects)
        finally:
            flushed[0] += (time.perf_counter() - began) * 1000

    loader.client._run, Session.commit, Session.flush = timed_run, timed_commit, timed_flush
    statements = [0]  # every statement sent to the database, the prepared reads' included

    def count_statement(*_args):
        statements[0] += 1

    from sqlalchemy import event

    with app.app_context():
        from extensions import db

        event.listen(db.engine, "before_cursor_execute", count_statement)
    if args.corpus:
        made = [(f"p_{n}_{name}", content) for n, (name, content) in enumerate(corpus(args.creates))]
    else:
        made = [(f"p_{n}", VALVED.format(n=n)) for n in range(args.creates)]

    def create(function_id: str, content: str) -> None:
        body = json.dumps({"id": function_id, "name": function_id, "content": content, "meta": {}}).encode()
        environ = api_environ("POST", "/api/v1/functions/create", key, body)
        status: list[str] = []
        answer = b"".join(app(environ, lambda s, _h, _e=None: status.append(s)))
        if not status[0].startswith("200"):
            raise SystemExit(f"create answered {status[0]}: {answer[:300]!r}")

    zygote = loader.client._current
    totals, threads = [], []
    loader_pids = [zygote.proc.pid] if zygote is not None and hasattr(zygote, "proc") else []
    loader_pids = tree(loader_pids[0]) if loader_pids else []
    loader_before = cpu_seconds(loader_pids, reaped_children=True) if loader_pids else 0.0
    profiler = None
    if args.profile:
        try:
            from pyinstrument import Profiler

            profiler = Profiler(interval=0.0002)
        except ImportError:
            import cProfile

            profiler = cProfile.Profile()
            profiler.start, profiler.stop = profiler.enable, profiler.disable
    statements[0] = 0
    for function_id, content in made:
        time.sleep(args.pause_ms / 1000)
        if profiler is not None:
            profiler.start()
        began, cpu = time.perf_counter(), time.thread_time()
        flushed[0] = 0.0
        create(function_id, content)
        phases["flush"].append(flushed[0])
        if profiler is not None:
            profiler.stop()
        totals.append((time.perf_counter() - began) * 1000)
        threads.append((time.thread_time() - cpu) * 1000)
    loader_cpu = (
        (cpu_seconds(loader_pids, reaped_children=True) - loader_before) * 1000 / len(made)
        if loader_pids
        else 0
    )

    def median(values: list[float]) -> float:
        return statistics.median(values) if values else 0.0

    print(
        f"{len(made)} creates, {args.pause_ms:g} ms apart ({'corpus' if args.corpus else 'valved filter'}):"
    )
    print(f"  whole request (in-process)     {median(totals):6.2f} ms median")
    for name, values in phases.items():
        print(f"  {name:<30} {median(values):6.2f} ms median")
    flushes = phases["flush"]
    rest = [
        t - r - c - f
        for t, r, c, f in zip(totals, phases["loader round trip"], phases["commit"], flushes, strict=False)
    ]
    print(f"  {'rest of the request':<30} {median(rest):6.2f} ms median")
    print(f"  request thread CPU             {median(threads):6.2f} ms median")
    print(f"  statements to the database     {statements[0] / len(made):6.2f} per create")
    print(f"  loader CPU (all its processes) {loader_cpu:6.2f} ms per create")
    if profiler is not None and hasattr(profiler, "output_text"):
        print(profiler.output_text(unicode=False, color=False))
    elif profiler is not None:
        import pstats

        pstats.Stats(profiler).sort_stats("tottime").print_stats(40)
        pstats.Stats(profiler).sort_stats("cumulative").print_stats(60)
    loader.shutdown()
    folder.cleanup()


if __name__ == "__main__":
    main()
