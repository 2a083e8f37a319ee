"""Benchmark the isolated loader: latency of loading a small filter with Valves, and throughput.

Run from the repository root:  .venv/bin/python bench/bench_loader.py [--loads 300] [--pause-ms 0]

Every load except the "cached" figure uses distinct content (a counter in a comment), so the cache cannot help.
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

SMALL_FILTER = '''"""
title: Bench Filter
author: sluice
version: 0.1.0
"""

from typing import Literal, Optional

from pydantic import BaseModel, Field


class Filter:
    class Valves(BaseModel):
        priority: int = Field(default=0, description="Order among filters")
        mode: Literal["append", "prepend"] = "append"
        note: Optional[str] = Field(default=None, description="Text to add")

    class UserValves(BaseModel):
        enabled: bool = True

    def __init__(self):
        self.valves = self.Valves()

    def inlet(self, body: dict, __user__: Optional[dict] = None) -> dict:
        return body
'''


def percentile(values: list[float], fraction: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(fraction * (len(ordered) - 1))))]


def report(name: str, seconds: list[float]) -> None:
    ms = [value * 1000 for value in seconds]
    print(
        f"{name:<44} median {statistics.median(ms):6.2f} ms   p95 {percentile(ms, 0.95):6.2f} ms   "
        f"n={len(ms)}"
    )


def timed_load(content: str) -> float:
    started = time.perf_counter()
    result = loader.load_function(content, function_id="bench")
    elapsed = time.perf_counter() - started
    if not result.ok:
        raise SystemExit(f"load failed: {result.error.detail}")
    return elapsed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--loads", type=int, default=300, help="loads per figure")
    parser.add_argument("--pause-ms", type=float, default=0.0, help="pause between sequential loads")
    args = parser.parse_args()

    started = time.perf_counter()
    ready = loader.start()
    print(
        f"zygote started in {time.perf_counter() - started:.2f} s (pid {ready.get('pid')}, "
        f"{ready.get('mapped_bytes', 0) / 1048576:.0f} MiB mapped, {len(ready.get('preloaded', []))} "
        f"modules preloaded)"
    )
    time.sleep(0.5)
    counter = iter(range(10**9))

    for _ in range(20):  # warm-up, not measured
        timed_load(SMALL_FILTER + f"# warm {next(counter)}\n")

    sequential = []
    for _ in range(args.loads):
        if args.pause_ms:
            time.sleep(args.pause_ms / 1000)
        sequential.append(timed_load(SMALL_FILTER + f"# {next(counter)}\n"))
    report("distinct content, one caller", sequential)

    cached_content = SMALL_FILTER + "# cached\n"
    timed_load(cached_content)
    jobs_before = loader.stats()["jobs"]
    cached = [timed_load(cached_content) for _ in range(args.loads)]
    report("identical content (cache)", cached)
    assert loader.stats()["jobs"] == jobs_before, "cached loads must not reach the zygote"

    lock = threading.Lock()
    concurrent: list[float] = []

    def caller(count: int) -> None:
        for _ in range(count):
            with lock:
                number = next(counter)
            elapsed = timed_load(SMALL_FILTER + f"# {number}\n")
            with lock:
                concurrent.append(elapsed)

    threads = [threading.Thread(target=caller, args=(args.loads // 2,)) for _ in range(2)]
    started = time.perf_counter()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    wall = time.perf_counter() - started
    report("distinct content, 2 concurrent callers", concurrent)
    print(f"{'throughput with 2 concurrent callers':<44} {len(concurrent) / wall:6.1f} loads/s")
    print(f"machine: {os.cpu_count()} CPUs; counters: {loader.stats()}")
    loader.shutdown()


if __name__ == "__main__":
    main()
