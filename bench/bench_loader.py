"""Benchmark the isolated loader: latency of loading a small filter with Valves, and throughput.

Run from the repository root:  .venv/bin/python bench/bench_loader.py [--loads 300] [--pause-ms 100]

Every load except the "cached" figure uses distinct content (a counter in a comment), so the cache cannot help.
Loads "back to back" keep the loader busy (its spare children are forked but not warmed up); loads a moment apart,
as when people save functions, find a warmed-up spare.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import threading
import time
import types

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import loader  # noqa: E402 - after the path above
from bench.timing import percentile  # noqa: E402
from loader.client import settings as loader_settings  # noqa: E402

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


def in_process_load(content: str) -> float:
    """Roughly what Open WebUI does in its own process (temp file, exec, instantiate, schemas), for comparison."""
    started = time.perf_counter()
    with tempfile.NamedTemporaryFile("w", suffix=".py", delete=False) as handle:
        handle.write(content)
    try:
        module = types.ModuleType("function_bench_in_process")
        module.__file__ = handle.name
        sys.modules[module.__name__] = module
        exec(compile(content, handle.name, "exec"), module.__dict__)
        instance = module.Filter()
        instance.Valves.model_json_schema()
        instance.UserValves.model_json_schema()
    finally:
        sys.modules.pop("function_bench_in_process", None)
        os.unlink(handle.name)
    return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--loads", type=int, default=300, help="loads per figure")
    parser.add_argument("--pause-ms", type=float, default=100.0, help="pause between paced loads")
    parser.add_argument(
        "--spares", type=int, help="spare children the loader keeps (default: the loader's own)"
    )
    args = parser.parse_args()
    if args.spares is not None:
        loader.configure(spares=args.spares)

    started = time.perf_counter()
    ready = loader.start()
    print(
        f"zygote with {loader_settings().spares} spares started in {time.perf_counter() - started:.2f} s "
        f"(pid {ready.get('pid')}, "
        f"{ready.get('mapped_bytes', 0) / 1048576:.0f} MiB mapped, {len(ready.get('preloaded', []))} "
        f"modules preloaded)"
    )
    time.sleep(0.5)
    counter = iter(range(10**9))

    for _ in range(20):  # warm-up, not measured
        timed_load(SMALL_FILTER + f"# warm {next(counter)}\n")

    sequential = [timed_load(SMALL_FILTER + f"# {next(counter)}\n") for _ in range(args.loads)]
    report("distinct content, one caller, back to back", sequential)

    paced = []
    for _ in range(max(1, args.loads // 3)):
        time.sleep(args.pause_ms / 1000)
        paced.append(timed_load(SMALL_FILTER + f"# {next(counter)}\n"))
    report(f"distinct content, one caller, {args.pause_ms:g} ms apart", paced)

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
    baseline = [in_process_load(SMALL_FILTER + f"# {next(counter)}\n") for _ in range(args.loads)]
    report("no isolation: exec in this process (reference)", baseline)
    print(
        f"machine: {os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.1f}; counters: {loader.stats()}"
    )
    loader.shutdown()


if __name__ == "__main__":
    main()
