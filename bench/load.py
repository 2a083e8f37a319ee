"""A closed-loop HTTP load generator: N keep-alive clients for a fixed time; `wrk` when it is installed.

The client shares the CPUs with the server, so the less CPU it takes per request, the more is left for the server
measured. `wrk` (Debian's package: `apt-get install wrk`; not needed by anything else) costs a few microseconds per
request; the fallback, clients in Python threads with ``http.client``, costs about a quarter of a millisecond, which
on these 2 cores is as much as a fast server's whole answer. Python threads of one process are also capped by its
GIL (about 1,500 requests/s here), so the fallback spreads its clients over ``processes`` processes. Either way
every figure understates what the server could do alone: compare servers only within one run, and with the same
client (the result says which one ran).

With wrk the latencies kept are its distribution read at every thousandth (``QUANTILES`` values), not each
request's; pooled runs (bench/compare.py's rounds) concatenate those, so a pooled percentile weighs every run alike.

    .venv/bin/python bench/load.py http://127.0.0.1:8080/api/v1/functions/ -H "Authorization: Bearer sk-..." -c 16
"""

from __future__ import annotations

import argparse
import http.client
import multiprocessing
import os
import shutil
import subprocess
import tempfile
import threading
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING
from urllib.parse import urlsplit

from timing import percentile

if TYPE_CHECKING:
    from procs import MachineTime


@dataclass
class LoadResult:
    """What one run measured: requests answered, latencies in ms (every request's, or wrk's quantiles), errors,
    and the wall time the clients ran."""

    latencies: list[float] = field(default_factory=list)
    errors: int = 0
    seconds: float = 0.0
    cpu: float | None = None  # CPU seconds the server's processes used meanwhile, when the caller measured it
    machine: MachineTime | None = None  # the whole machine's CPU time meanwhile (bench/procs.py), likewise
    database: float = 0.0  # CPU seconds of the machine's PostgreSQL processes meanwhile, likewise
    requests: int = 0
    client: str = ""

    @property
    def rate(self) -> float:
        return self.requests / self.seconds if self.seconds else 0.0

    def add(self, other: LoadResult) -> None:
        """Pool another run into this one (its requests, latencies, errors, time and CPU)."""
        self.latencies.extend(other.latencies)
        self.requests += other.requests
        self.errors += other.errors
        self.seconds += other.seconds
        if other.cpu is not None:
            self.cpu = (self.cpu or 0.0) + other.cpu
        if other.machine is not None:
            self.machine = other.machine if self.machine is None else self.machine + other.machine
        self.database += other.database
        self.client = self.client or other.client

    def p(self, fraction: float) -> float:
        return percentile(self.latencies, fraction) if self.latencies else float("nan")


def _connect(url: str) -> http.client.HTTPConnection:
    parts = urlsplit(url)
    kind = http.client.HTTPSConnection if parts.scheme == "https" else http.client.HTTPConnection
    return kind(parts.hostname, parts.port, timeout=30)


def _target(url: str) -> str:
    parts = urlsplit(url)
    return parts.path + (f"?{parts.query}" if parts.query else "")


def _client(url, headers, start_at, stop_at, out, lock):
    """One keep-alive client: request, read the whole answer, repeat until ``stop_at``."""
    connection, target = _connect(url), _target(url)
    mine, failed = [], 0
    while time.time() < start_at:
        time.sleep(0.001)
    while time.time() < stop_at:
        began = time.perf_counter()
        try:
            connection.request("GET", target, headers=headers)
            response = connection.getresponse()
            response.read()
            ok = response.status == 200
        except (OSError, http.client.HTTPException):
            ok = False
            connection.close()
            connection = _connect(url)
        mine.append((time.perf_counter() - began) * 1000)
        failed += not ok
    connection.close()
    with lock:
        out.latencies.extend(mine)
        out.errors += failed


def _process(url, headers, clients, start_at, stop_at, queue):
    result, lock = LoadResult(), threading.Lock()
    threads = [
        threading.Thread(target=_client, args=(url, headers, start_at, stop_at, result, lock))
        for _ in range(clients)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    queue.put((result.latencies, result.errors))


QUANTILES = 1000

# wrk's report, read back by `_wrk`: counts on one line, then the latency (microseconds) at every 1/QUANTILES.
_WRK_REPORT = """
done = function(summary, latency, requests)
  local e = summary.errors
  io.write(string.format("sluice-load %d %d %d\\n", summary.requests,
    e.connect + e.read + e.write + e.status + e.timeout, summary.duration))
  for i = 1, QUANTILES do
    io.write(string.format("%d\\n", latency:percentile(100.0 * i / QUANTILES)))
  end
end
"""


def _wrk(wrk: str, url: str, headers: dict, concurrency: int, seconds: float) -> LoadResult:
    """One wrk run: as many threads as CPUs (at most one per client), the report parsed from its Lua `done`."""
    threads = max(1, min(concurrency, os.cpu_count() or 1))
    with tempfile.NamedTemporaryFile("w", suffix=".lua", prefix="sluice-load-") as script:
        script.write(_WRK_REPORT.replace("QUANTILES", str(QUANTILES)))
        script.flush()
        command = [
            wrk,
            f"-t{threads}",
            f"-c{concurrency}",
            f"-d{max(1, round(seconds))}s",
            "--timeout",
            "30s",
        ]
        for name, value in headers.items():
            command += ["-H", f"{name}: {value}"]
        output = subprocess.run(
            [*command, "-s", script.name, url], capture_output=True, text=True, check=True
        ).stdout
    lines = output[output.index("sluice-load ") :].split()
    requests, errors, duration_us = (int(n) for n in lines[1:4])
    quantiles = [int(n) / 1000 for n in lines[4 : 4 + QUANTILES]]
    return LoadResult(
        latencies=quantiles, errors=errors, seconds=duration_us / 1e6, requests=requests, client="wrk"
    )


def hammer(
    url: str,
    headers: dict | None = None,
    concurrency: int = 16,
    seconds: float = 8.0,
    processes: int = 0,
    client: str = "auto",
) -> LoadResult:
    """GET ``url`` from ``concurrency`` keep-alive clients for ``seconds``; a warm-up request first checks it answers.

    ``client``: "wrk", "python", or "auto" (wrk when it is on the PATH, else the Python clients)."""
    headers = dict(headers or {})
    warm = _connect(url)
    warm.request("GET", _target(url), headers=headers)
    answer = warm.getresponse()
    answer.read()
    warm.close()
    if answer.status != 200:
        raise RuntimeError(f"GET {url} answered {answer.status}")
    wrk = shutil.which("wrk") if client in ("auto", "wrk") else None
    if client == "wrk" and not wrk:
        raise RuntimeError("wrk is not installed (Debian: apt-get install wrk)")
    if wrk:
        return _wrk(wrk, url, headers, concurrency, seconds)
    processes = processes or min(concurrency, 2)
    shares = [concurrency // processes + (n < concurrency % processes) for n in range(processes)]
    start_at = time.time() + 0.5  # every process is started and connected before the clock runs
    stop_at = start_at + seconds
    context = multiprocessing.get_context("fork")
    queue = context.Queue()
    pool = [
        context.Process(target=_process, args=(url, headers, share, start_at, stop_at, queue))
        for share in shares
        if share
    ]
    for process in pool:
        process.start()
    result = LoadResult(seconds=seconds, client="python")
    for _ in pool:
        latencies, errors = queue.get()
        result.latencies.extend(latencies)
        result.requests += len(latencies)
        result.errors += errors
    for process in pool:
        process.join()
    return result


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("url")
    parser.add_argument("-H", "--header", action="append", default=[], help='"Name: value", repeatable')
    parser.add_argument("-c", "--concurrency", type=int, default=16)
    parser.add_argument("-s", "--seconds", type=float, default=8.0)
    parser.add_argument("-p", "--processes", type=int, default=0, help="Python client processes (default 2)")
    parser.add_argument("--client", choices=("auto", "wrk", "python"), default="auto")
    args = parser.parse_args()
    headers = dict(h.split(": ", 1) for h in args.header)
    result = hammer(args.url, headers, args.concurrency, args.seconds, args.processes, args.client)
    print(
        f"{result.rate:.0f} req/s, p50 {result.p(0.5):.1f} ms, p99 {result.p(0.99):.1f} ms, "
        f"max {max(result.latencies):.1f} ms, errors {result.errors} ({result.client})"
    )


if __name__ == "__main__":
    main()
