"""Where an API request's time goes: CPU per request of one route, called in-process, and its profile.

    .venv/bin/python bench/profile_api.py                         # GET /api/v1/functions/ with 20 functions
    .venv/bin/python bench/profile_api.py --route id --profile    # GET /api/v1/functions/id/{id}, with a profile
    .venv/bin/python bench/profile_api.py --functions 1000 --database postgresql+psycopg://postgres@127.0.0.1/bench

The WSGI app is called directly (no server, no sockets), so the figure is Sluice's own cost per request, which
gunicorn's parsing and the network then add to. On PostgreSQL (an empty, migrated or new database: it is filled
here) it also prints the CPU the server's backends spent per request, read from /proc when the server runs on this
machine: much of a PostgreSQL request's cost is there. It is CPU time (the best of five runs), which holds still while
other work shares the machine; wall time does not. `--profile` uses pyinstrument when it is installed (it is not a
dependency: `pip install pyinstrument` in any environment), else the standard library's cProfile.
"""

from __future__ import annotations

import argparse
import io
import os
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

from bench_console import function_rows, insert_functions  # noqa: E402


def build_app(database_url: str, functions: int):
    from app import create_app
    from database import upgrade_database
    from extensions import db
    from services import accounts

    upgrade_database(database_url)
    app = create_app({"SQLALCHEMY_DATABASE_URI": database_url, "SECRET_KEY": "profile-" * 4, "TESTING": True})
    with app.app_context():
        admin = accounts.create_user(
            "Profile Admin", "profile@example.com", "profile password 1", role="admin"
        )
        insert_functions(db.session, function_rows(functions, admin.id))
        db.session.commit()
        _key, plain = accounts.create_api_key(admin, "profile")
        first_id = db.session.execute(db.text("SELECT id FROM functions ORDER BY id LIMIT 1")).scalar()
    return app, plain, first_id


def api_environ(method: str, path: str, key: str, body: bytes = b"") -> dict:
    """A WSGI environ for one API call with ``key`` (bench/profile_create.py makes its creates with it too)."""
    environ = {
        "REQUEST_METHOD": method,
        "PATH_INFO": path,
        "QUERY_STRING": "",
        "SERVER_NAME": "127.0.0.1",
        "SERVER_PORT": "5000",
        "SERVER_PROTOCOL": "HTTP/1.1",
        "wsgi.url_scheme": "http",
        "wsgi.input": io.BytesIO(body),
        "wsgi.errors": sys.stderr,
        "wsgi.multithread": True,
        "wsgi.multiprocess": True,
        "wsgi.run_once": False,
        "HTTP_HOST": "127.0.0.1:5000",
        "HTTP_AUTHORIZATION": f"Bearer {key}",
        "REMOTE_ADDR": "127.0.0.1",
    }
    if body:
        environ["CONTENT_TYPE"] = "application/json"
        environ["CONTENT_LENGTH"] = str(len(body))
    return environ


def caller(app, path: str, key: str):
    def environ() -> dict:
        return api_environ("GET", path, key)

    def call() -> bytes:
        status: list[str] = []
        body = b"".join(app(environ(), lambda s, _h, _e=None: status.append(s)))
        if not status[0].startswith("200"):
            raise SystemExit(f"{path} answered {status[0]}: {body[:300]!r}")
        return body

    return call


def backend_cpu_seconds(app) -> float | None:
    """CPU time (user + system) the PostgreSQL backends serving ``app``'s connections have used so far, or None
    when the database is not PostgreSQL or its processes are not on this machine."""
    from extensions import db

    with app.app_context():
        engine = db.engine
    if engine.dialect.name != "postgresql":
        return None
    pids = []
    for record in list(engine.pool._pool.queue):  # the idle connections: between runs, every one is idle
        connection = record.dbapi_connection
        if connection is not None:
            pids.append(connection.info.backend_pid)  # known to libpq, no query
    total = 0
    ticks = os.sysconf("SC_CLK_TCK")
    for pid in pids:
        try:
            with open(f"/proc/{pid}/stat") as stat:
                fields = stat.read().rsplit(")", 1)[1].split()
        except OSError:
            return None
        total += int(fields[11]) + int(fields[12])  # utime, stime: fields 14 and 15 of stat(5)
    return total / ticks


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--route", choices=("list", "id"), default="list")
    parser.add_argument("--functions", type=int, default=20)
    parser.add_argument("--requests", type=int, default=2000, help="per run; five runs")
    parser.add_argument("--database", help="a database URL (default: a new SQLite file)")
    parser.add_argument("--profile", action="store_true")
    args = parser.parse_args()

    folder = tempfile.TemporaryDirectory(prefix="sluice-profile-")
    database = args.database or f"sqlite:///{os.path.join(folder.name, 'profile.db')}"
    app, key, first_id = build_app(database, args.functions)
    path = "/api/v1/functions/" if args.route == "list" else f"/api/v1/functions/id/{first_id}"
    call = caller(app, path, key)
    size = len(call())
    per_run = max(1, args.requests // 5)
    for _ in range(min(200, per_run)):
        call()
    best = float("inf")
    server_began = backend_cpu_seconds(app)
    for _ in range(5):
        began = time.process_time()
        for _ in range(per_run):
            call()
        best = min(best, (time.process_time() - began) / per_run)
    server_ended = backend_cpu_seconds(app)
    print(f"GET {path} ({args.functions} functions, {size:,} bytes): {best * 1000:.3f} CPU ms per request")
    if server_began is not None and server_ended is not None:
        # Clock ticks (1/100 s each): a mean over all five runs, so that they add up to something measurable.
        server = (server_ended - server_began) / (5 * per_run)
        print(
            f"  PostgreSQL backend: {server * 1000:.3f} CPU ms per request (mean of {5 * per_run:,} requests)"
        )

    if args.profile:
        try:
            from pyinstrument import Profiler
        except ImportError:
            import cProfile
            import pstats

            profile = cProfile.Profile()
            profile.runcall(lambda: [call() for _ in range(per_run)])
            pstats.Stats(profile).sort_stats("cumulative").print_stats(40)
        else:
            profiler = Profiler(interval=0.0002)
            profiler.start()
            for _ in range(per_run):
                call()
            profiler.stop()
            print(profiler.output_text(unicode=False, color=False))
    folder.cleanup()


if __name__ == "__main__":
    main()
