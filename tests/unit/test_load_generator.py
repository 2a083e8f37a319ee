"""bench/load.py, the load client of the benchmarks: both of its clients count what they measured.

wrk's answer is read back from a Lua report; a change in that format would otherwise only show as a benchmark
table full of zeros.
"""

from __future__ import annotations

import shutil
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "bench"))
from load import LoadResult, hammer  # noqa: E402


class _Answer(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def do_GET(self):  # noqa: N802 - the standard library's name
        body = b'{"ok": true}'
        self.send_response(200 if self.headers.get("Authorization") == "Bearer k" else 401)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass


@pytest.fixture
def url():
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Answer)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}/answer"
    server.shutdown()
    server.server_close()


@pytest.mark.parametrize(
    "client",
    [
        "python",
        pytest.param("wrk", marks=pytest.mark.skipif(not shutil.which("wrk"), reason="wrk is not installed")),
    ],
)
def test_each_client_counts_requests_latencies_and_sends_the_headers(url, client):
    result = hammer(url, {"Authorization": "Bearer k"}, concurrency=2, seconds=1, client=client)
    assert result.client == client
    assert result.errors == 0  # a missing header would have made every answer a 401
    assert result.requests > 10
    assert result.rate == pytest.approx(result.requests / result.seconds)
    assert 0 < result.p(0.5) <= result.p(0.99)


def test_a_refused_warm_up_is_an_error_not_a_table_of_zeros(url):
    with pytest.raises(RuntimeError, match="401"):
        hammer(url, {}, concurrency=1, seconds=1, client="python")


def test_pooled_runs_add_their_counts():
    pooled = LoadResult()
    pooled.add(LoadResult(latencies=[1.0, 2.0], requests=200, seconds=1.0, errors=1, cpu=0.5, client="wrk"))
    pooled.add(LoadResult(latencies=[3.0], requests=100, seconds=1.0, cpu=0.25))
    assert (pooled.requests, pooled.errors, pooled.seconds, pooled.cpu) == (300, 1, 2.0, 0.75)
    assert pooled.rate == 150
    assert pooled.client == "wrk"
