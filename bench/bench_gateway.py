"""Benchmark the gateway over HTTP: what Sluice adds before a pipe's first streamed chunk reaches an OpenAI client.

Run from the repository root:  .venv/bin/python bench/bench_gateway.py [--calls 200] [--filters 1]

The app is served by werkzeug in a thread on a free port, on a fresh SQLite file, with one pipe that yields at
once and ``--filters`` active global filters (each an inlet round trip). Figures (p50/p99 over ``--calls``, warm):
the time to the first content chunk of ``POST /v1/chat/completions`` with ``stream: true``; the same pipe's first
chunk through ``loader.run_function`` alone, so the difference is the gateway's part (key check, model lookup,
inlet chain, shaping); and ``GET /v1/models``.
"""

from __future__ import annotations

import argparse
import logging
import os
import shutil
import statistics
import sys
import tempfile
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import requests  # noqa: E402

from bench.timing import percentile  # noqa: E402

PIPE = '''"""
title: Bench Pipe
"""


class Pipe:
    async def pipe(self, body: dict, __event_emitter__=None):
        yield "first"
        yield " second"
'''

FILTER = '''"""
title: Bench Filter
"""


class Filter:
    def inlet(self, body: dict, __user__: dict | None = None) -> dict:
        return body
'''


def report(name: str, values: list[float]) -> None:
    print(
        f"{name:<44} p50 {statistics.median(values):7.2f} ms   p99 {percentile(values, 0.99):7.2f} ms"
        f"   (n={len(values)})"
    )


def serve(folder: str, filters: int):
    from werkzeug.serving import make_server

    from app import create_app
    from database import upgrade_database
    from services import accounts, function_reads, functions

    path = os.path.join(folder, "bench.sqlite3")
    upgrade_database(f"sqlite:///{path}")
    app = create_app(
        {"SQLALCHEMY_DATABASE_URI": f"sqlite:///{path}", "SECRET_KEY": "bench-gateway-0123456789"}
    )
    with app.app_context():
        admin = accounts.create_user("Bench", "bench@example.com", "bench-password-1", role="admin")
        key = accounts.create_api_key(admin, "bench")[1]
        functions.create_function(admin, id="bench_pipe", name="Bench Pipe", content=PIPE, meta={})
        functions.set_switches("bench_pipe", is_active=True)
        for n in range(filters):
            functions.create_function(
                admin, id=f"bench_filter_{n}", name="Bench Filter", content=FILTER, meta={}
            )
            functions.set_switches(f"bench_filter_{n}", is_active=True, is_global=True)
        content = function_reads.get_function("bench_pipe").content
    logging.getLogger("werkzeug").setLevel(logging.WARNING)  # one line per request would drown the figures
    server = make_server("127.0.0.1", 0, app, threaded=True)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server, f"http://127.0.0.1:{server.server_port}/v1", key, content


def first_chunk_over_http(session: requests.Session, base: str) -> float:
    started = time.perf_counter()
    body = {"model": "bench_pipe", "messages": [{"role": "user", "content": "hi"}], "stream": True}
    with session.post(base + "/chat/completions", json=body, stream=True, timeout=60) as response:
        for line in response.iter_lines(decode_unicode=True):
            if line.startswith("data: ") and '"content"' in line:
                elapsed = (time.perf_counter() - started) * 1000
                break
        for _ in response.iter_lines():
            pass
    return elapsed


def first_chunk_in_loader(content: str) -> float:
    import loader

    started = time.perf_counter()
    with loader.run_function(
        content, function_id="bench_pipe", method="pipe", ctx={"body": {"messages": []}}, stream=True
    ) as call:
        for frame in call:
            if frame.get("kind") == "chunk":
                elapsed = (time.perf_counter() - started) * 1000
                break
        for _ in call:
            pass
    return elapsed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calls", type=int, default=200)
    parser.add_argument("--filters", type=int, default=1)
    args = parser.parse_args()

    folder = tempfile.mkdtemp(prefix="sluice-bench-gateway-")
    server, base, key, content = serve(folder, args.filters)
    try:
        session = requests.Session()
        session.trust_env = False
        session.headers["Authorization"] = f"Bearer {key}"
        for _ in range(10):  # warm: workers loaded, model list kept
            first_chunk_over_http(session, base)
            first_chunk_in_loader(content)
        gateway = [first_chunk_over_http(session, base) for _ in range(args.calls)]
        direct = [first_chunk_in_loader(content) for _ in range(args.calls)]
        models = []
        for _ in range(args.calls):
            started = time.perf_counter()
            session.get(base + "/models", timeout=60).raise_for_status()
            models.append((time.perf_counter() - started) * 1000)
        print(
            f"gateway benchmark: {args.calls} calls, {args.filters} global filter(s), {os.cpu_count()} CPUs"
        )
        report("first chunk via POST /v1/chat/completions", gateway)
        report("first chunk via loader.run_function alone", direct)
        print(
            f"{'added by the gateway (p50 difference)':<44} {statistics.median(gateway) - statistics.median(direct):7.2f} ms"
        )
        report("GET /v1/models", models)
    finally:
        server.shutdown()
        shutil.rmtree(folder, ignore_errors=True)


if __name__ == "__main__":
    main()
