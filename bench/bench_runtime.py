"""Benchmark running functions in the loader's warm workers (loader.run_function), as the server calls them.

Run from the repository root:  .venv/bin/python bench/bench_runtime.py [--calls 500] [--threads 16] [--seconds 5]

Figures: a filter inlet round trip through a warm worker (p50/p99; target p50 <= 5 ms), the time to the first
streamed chunk of a pipe that yields at once, i.e. what Sluice adds (target <= 10 ms), calls per second with many
client threads sharing the runtime_workers warm workers, and the memory of the warm workers (RSS, and PSS, which
splits pages shared with the parent copy-on-write between the processes that share them).
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import loader  # noqa: E402 - after the path above
from bench.timing import percentile  # noqa: E402

FILTER = '''"""
title: Bench Filter
"""
from typing import Optional
from pydantic import BaseModel, Field


class Filter:
    class Valves(BaseModel):
        priority: int = Field(default=0, description="Order among filters")
        note: Optional[str] = None

    class UserValves(BaseModel):
        enabled: bool = True

    def __init__(self):
        self.valves = self.Valves()

    def inlet(self, body: dict, __user__: Optional[dict] = None) -> dict:
        body.setdefault("metadata", {})["seen_by"] = "bench"
        return body
'''

PIPE = """
class Pipe:
    async def pipe(self, body: dict, __event_emitter__=None):
        yield "first"
        yield "second"
"""

MEMORY = """
import os


def _field(path, name):
    try:
        with open(path) as found:
            for line in found:
                if line.startswith(name):
                    return int(line.split()[1])
    except OSError:
        return None


class Pipe:
    def pipe(self, body: dict) -> dict:
        return {"rss_kib": _field("/proc/self/status", "VmRSS:"), "pss_kib": _field("/proc/self/smaps_rollup", "Pss:")}
"""

BODY = {
    "model": "bench",
    "messages": [{"role": "user", "content": "Hello, how are you today?"}],
    "stream": False,
    "metadata": {"chat_id": "c1", "message_id": "m1", "session_id": "s1"},
}
USER = {"id": "u1", "email": "ada@example.com", "name": "Ada", "role": "user"}


def report(name: str, seconds: list[float]) -> None:
    ms = [value * 1000 for value in seconds]
    print(
        f"{name:<44} n={len(ms):<5} p50={percentile(ms, 0.5):7.2f} ms  p90={percentile(ms, 0.9):7.2f} ms  "
        f"p99={percentile(ms, 0.99):7.2f} ms  mean={statistics.fmean(ms):7.2f} ms"
    )


def inlet(function_id: str = "bench_filter") -> loader.RunResult:
    return loader.run_function_collect(
        FILTER,
        function_id=function_id,
        method="inlet",
        ctx={"body": BODY, "user": USER},
        admin_valves={"priority": 1},
        user_valves={"enabled": True},
    )


def round_trips(calls: int) -> None:
    first = time.perf_counter()
    result = inlet()
    assert result.ok, result.error
    print(f"{'filter inlet, first call (worker starts)':<44} {1000 * (time.perf_counter() - first):7.2f} ms")
    for _ in range(20):
        inlet()
    times, inside = [], []
    for _ in range(calls):
        started = time.perf_counter()
        result = inlet()
        times.append(time.perf_counter() - started)
        inside.append(result.ms / 1000)
    report("filter inlet round trip, warm", times)
    report("  of which in the method (worker's clock)", inside)


def first_chunk(calls: int) -> None:
    def once() -> tuple[float, float]:
        started = time.perf_counter()
        first = None
        for frame in loader.run_function(
            PIPE, function_id="bench_pipe", method="pipe", ctx={"body": BODY}, stream=True
        ):
            if frame["kind"] == "chunk" and first is None:
                first = time.perf_counter() - started
            if frame["kind"] in ("done", "error"):
                assert frame["kind"] == "done", frame
        return first, time.perf_counter() - started

    for _ in range(20):
        once()
    firsts, wholes = zip(*(once() for _ in range(calls)), strict=True)
    report("time to first streamed chunk, warm", list(firsts))
    report("whole streamed call (2 chunks), warm", list(wholes))


def throughput(threads: int, seconds: float) -> None:
    workers = loader.configure().runtime_workers
    done = [0] * threads
    busy = [0] * threads
    failed: list = []
    stop = time.perf_counter() + seconds

    def client(index: int) -> None:
        while time.perf_counter() < stop:
            result = inlet()
            if result.ok:
                done[index] += 1
            elif result.error["type"] == "Busy":
                busy[index] += 1
            else:
                failed.append(result.error)

    for _ in range(workers * 3):  # warm one worker per slot
        inlet()
    started = time.perf_counter()
    pool = [threading.Thread(target=client, args=(index,)) for index in range(threads)]
    for thread in pool:
        thread.start()
    for thread in pool:
        thread.join()
    elapsed = time.perf_counter() - started
    print(
        f"{f'calls/s, {threads} client threads, {workers} workers':<44} {sum(done) / elapsed:8.0f} calls/s "
        f"({sum(done)} ok, {sum(busy)} busy, {len(failed)} failed in {elapsed:.1f} s)"
    )
    if failed:
        print("  first failure:", failed[0])


def memory() -> None:
    workers = loader.configure().runtime_workers
    seen = []
    for index in range(workers):
        result = loader.run_function_collect(
            MEMORY, function_id=f"bench_memory_{index}", method="pipe", ctx={"body": {}}
        )
        assert result.ok, result.error
        seen.append(result.result[0][1])
    rss = [item["rss_kib"] / 1024 for item in seen if item["rss_kib"]]
    pss = [item["pss_kib"] / 1024 for item in seen if item.get("pss_kib")]
    print(
        f"{'memory of a warm worker':<44} RSS {statistics.fmean(rss):6.1f} MiB each"
        + (f", PSS {statistics.fmean(pss):6.1f} MiB each" if pss else "")
        + f" ({len(rss)} workers)"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calls", type=int, default=500)
    parser.add_argument("--threads", type=int, default=16)
    parser.add_argument("--seconds", type=float, default=5.0)
    args = parser.parse_args()

    ready = loader.start()
    settings = loader.configure()
    print(
        f"python {ready.get('python')}, {os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.1f}; "
        f"runtime_workers={settings.runtime_workers}, busy_wait={settings.busy_wait:g} s"
    )
    round_trips(args.calls)
    first_chunk(args.calls // 2)
    throughput(args.threads, args.seconds)
    memory()
    loader.shutdown()


if __name__ == "__main__":
    main()
