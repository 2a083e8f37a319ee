"""Benchmark the functions API as deployed: gunicorn (as bin/serve starts it) on a temporary SQLite database.

Measures the create latency of a small filter (sequential, p50/p99) and `GET /api/v1/functions/` throughput and
latency at a given concurrency, with keep-alive clients in threads.

    .venv/bin/python bench/bench_api.py                       # 20 functions, concurrency 16, 10 s
    .venv/bin/python bench/bench_api.py --functions 200 --concurrency 16 --seconds 15 --workers 2 --threads 8

For comparison, Open WebUI 0.12.4 measured here with `wrk` (20 functions, concurrency 16): `GET /` 150–230 req/s
with p99 up to 870 ms; create of a small filter p50 9–12 ms. The client here is Python (no `wrk` on these
machines), so it shares the CPUs with the server and understates what the server can do.
"""

from __future__ import annotations

import argparse
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import requests

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from settings import server_settings  # noqa: E402

FILTER = '''"""
title: Bench Filter {n}
version: 1.0.{n}
"""

from pydantic import BaseModel


class Filter:
    class Valves(BaseModel):
        priority: int = {n}

    def __init__(self):
        self.valves = self.Valves()

    def inlet(self, body: dict) -> dict:
        return body
'''


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def percentile(values: list[float], fraction: float) -> float:
    ordered = sorted(values)
    if not ordered:
        return float("nan")
    index = min(len(ordered) - 1, max(0, round(fraction * (len(ordered) - 1))))
    return ordered[index]


def run(command: list[str], env: dict) -> str:
    result = subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True, check=True)
    return result.stdout


def server_env(database_url: str, workdir: str) -> dict:
    """The environment a benchmarked Sluice runs with: its database, and every folder it writes under ``workdir``."""
    env = dict(os.environ)
    env.update(
        DATABASE_URL=database_url,
        SECRET_KEY="bench-secret-key-0123456789abcdef",
        SLUICE_FUNCTION_PACKAGES_DIR=f"{workdir}/packages",
        SLUICE_FUNCTION_HOMES_DIR=f"{workdir}/homes",
        SLUICE_INSTALL_JOBS_DIR=f"{workdir}/jobs",
    )
    return env


def start_server(
    env: dict, port: int, workers: int, threads: int, app: str = "app:create_app()", log=None
) -> subprocess.Popen:
    """gunicorn in the repository root (so it reads gunicorn.conf.py, as bin/serve does), once /health answers.

    ``log``: a file for the server's output; without it the output is kept in a pipe that is read only on failure.
    """
    command = [
        str(ROOT / ".venv/bin/gunicorn"),
        "--bind",
        f"127.0.0.1:{port}",
        "--workers",
        str(workers),
        "--threads",
        str(threads),
        app,
    ]
    server = subprocess.Popen(
        command, cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=log or subprocess.PIPE
    )
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            if requests.get(f"http://127.0.0.1:{port}/health", timeout=1).status_code == 200:
                return server
        except requests.RequestException:
            time.sleep(0.2)
    server.terminate()
    output = server.stderr.read().decode()[-2000:] if server.stderr else f"see {log.name}"
    raise RuntimeError("gunicorn did not become healthy: " + output)


def bench_creates(base: str, headers: dict, count: int) -> list[float]:
    session = requests.Session()
    timings = []
    for n in range(count):
        body = {"id": f"bench_{n}", "name": f"Bench {n}", "content": FILTER.format(n=n), "meta": {}}
        started = time.perf_counter()
        response = session.post(f"{base}/create", json=body, headers=headers, timeout=30)
        timings.append((time.perf_counter() - started) * 1000)
        response.raise_for_status()
    return timings


def bench_list(
    base: str, headers: dict, concurrency: int, seconds: float
) -> tuple[int, int, list[float], float]:
    latencies: list[float] = []
    errors = 0
    lock = threading.Lock()
    stop_at = time.monotonic() + seconds
    ready = threading.Barrier(concurrency + 1)

    def worker():
        nonlocal errors
        session = requests.Session()
        mine, failed = [], 0
        session.get(f"{base}/", headers=headers, timeout=30)  # warm the connection
        ready.wait()
        while time.monotonic() < stop_at:
            started = time.perf_counter()
            try:
                response = session.get(f"{base}/", headers=headers, timeout=30)
                ok = response.status_code == 200
            except requests.RequestException:
                ok = False
            mine.append((time.perf_counter() - started) * 1000)
            failed += not ok
        with lock:
            latencies.extend(mine)
            errors += failed

    pool = [threading.Thread(target=worker) for _ in range(concurrency)]
    for thread in pool:
        thread.start()
    ready.wait()
    began = time.monotonic()
    for thread in pool:
        thread.join()
    elapsed = time.monotonic() - began
    return len(latencies), errors, latencies, elapsed


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--functions", type=int, default=20)
    parser.add_argument("--concurrency", type=int, default=16)
    parser.add_argument("--seconds", type=float, default=10.0)
    server = server_settings()  # SLUICE_WORKERS and SLUICE_THREADS, as bin/serve would use them
    parser.add_argument("--workers", type=int, default=server["SLUICE_WORKERS"])
    parser.add_argument("--threads", type=int, default=server["SLUICE_THREADS"])
    args = parser.parse_args()

    with tempfile.TemporaryDirectory(prefix="sluice-bench-") as workdir:
        env = server_env(f"sqlite:///{workdir}/bench.sqlite3", workdir)
        flask = [str(ROOT / ".venv/bin/flask"), "--app", "app"]
        run([*flask, "init-db"], env)
        run([*flask, "create-user", "--email", "bench@example.com", "--name", "Bench", "--password",
             "bench-password", "--role", "admin"], env)  # fmt: skip
        key = run([*flask, "create-api-key", "--email", "bench@example.com"], env).strip().splitlines()[-1]
        port = free_port()
        server = start_server(env, port, args.workers, args.threads)
        try:
            base = f"http://127.0.0.1:{port}/api/v1/functions"
            headers = {"Authorization": f"Bearer {key}"}
            creates = bench_creates(base, headers, args.functions)
            count, errors, latencies, elapsed = bench_list(base, headers, args.concurrency, args.seconds)
        finally:
            server.terminate()
            server.wait(timeout=30)

    print(f"gunicorn: {args.workers} workers x {args.threads} threads, SQLite, {args.functions} functions")
    print(
        f"create (sequential, {len(creates)}): p50 {statistics.median(creates):.1f} ms, "
        f"p99 {percentile(creates, 0.99):.1f} ms, first {creates[0]:.1f} ms"
    )
    print(
        f"GET /api/v1/functions/ at concurrency {args.concurrency} for {elapsed:.1f} s: "
        f"{count / elapsed:.0f} req/s, p50 {statistics.median(latencies):.1f} ms, "
        f"p99 {percentile(latencies, 0.99):.1f} ms, max {max(latencies):.1f} ms, errors {errors}"
    )


if __name__ == "__main__":
    main()
