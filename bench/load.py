"""A small closed-loop HTTP load generator: N keep-alive clients for a fixed time, in a few processes.

There is no `wrk` on these machines. Clients in threads of one Python process are capped by its GIL (about 1,500
requests/s here), so the clients are spread over ``processes`` processes, each running its share in threads with
``http.client`` (much cheaper per request than `requests`). The client shares the CPUs with the server, so every
figure understates what the server could do alone; compare servers only within one run.

    .venv/bin/python bench/load.py http://127.0.0.1:8080/api/v1/functions/ -H "Authorization: Bearer sk-..." -c 16
"""

from __future__ import annotations

import argparse
import http.client
import multiprocessing
import threading
import time
from dataclasses import dataclass, field
from urllib.parse import urlsplit

from timing import percentile


@dataclass
class LoadResult:
    """What one run measured: every latency in ms, errors, and the wall time the clients ran."""

    latencies: list[float] = field(default_factory=list)
    errors: int = 0
    seconds: float = 0.0
    cpu: float | None = None  # CPU seconds the server's processes used meanwhile, when the caller measured it

    @property
    def rate(self) -> float:
        return len(self.latencies) / self.seconds if self.seconds else 0.0

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


def hammer(
    url: str, headers: dict | None = None, concurrency: int = 16, seconds: float = 8.0, processes: int = 0
) -> LoadResult:
    """GET ``url`` from ``concurrency`` keep-alive clients for ``seconds``; a warm-up request first checks it answers."""
    headers = dict(headers or {})
    warm = _connect(url)
    warm.request("GET", _target(url), headers=headers)
    answer = warm.getresponse()
    answer.read()
    warm.close()
    if answer.status != 200:
        raise RuntimeError(f"GET {url} answered {answer.status}")
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
    result = LoadResult(seconds=seconds)
    for _ in pool:
        latencies, errors = queue.get()
        result.latencies.extend(latencies)
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
    parser.add_argument("-p", "--processes", type=int, default=0, help="client processes (default 2)")
    args = parser.parse_args()
    headers = dict(h.split(": ", 1) for h in args.header)
    result = hammer(args.url, headers, args.concurrency, args.seconds, args.processes)
    print(
        f"{result.rate:.0f} req/s, p50 {result.p(0.5):.1f} ms, p99 {result.p(0.99):.1f} ms, "
        f"max {max(result.latencies):.1f} ms, errors {result.errors}"
    )


if __name__ == "__main__":
    main()
