"""Load from URL: raw GitHub links, suggested names, the guarded fetch, and the API route."""

from __future__ import annotations

import socket
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from services import url_loader
from services.url_loader import UrlLoadError, is_internal, raw_url, suggest_name
from tests import factories as F

RAW = "https://raw.githubusercontent.com"


@pytest.mark.parametrize(
    "url, expected",
    [
        ("https://github.com/o/r/blob/main/f.py", f"{RAW}/o/r/refs/heads/main/f.py"),
        ("https://github.com/o/r/blob/dev/a/b/c/filter.py", f"{RAW}/o/r/refs/heads/dev/a/b/c/filter.py"),
        ("https://github.com/o/r/blob/main/f.py?plain=1", f"{RAW}/o/r/refs/heads/main/f.py"),
        ("https://github.com/o/r/blob/main/f.py#L10-L20", f"{RAW}/o/r/refs/heads/main/f.py"),
        ("https://github.com/o/r/raw/main/f.py", f"{RAW}/o/r/refs/heads/main/f.py"),
        ("https://github.com/o/r/blob/refs/heads/main/f.py", f"{RAW}/o/r/refs/heads/main/f.py"),
        ("https://www.github.com/o/r/blob/main/f.py", f"{RAW}/o/r/refs/heads/main/f.py"),
        ("https://GitHub.com/o/r/blob/main/f.py", f"{RAW}/o/r/refs/heads/main/f.py"),
        (
            "https://github.com/o/r/tree/main/functions/my_pipe",
            f"{RAW}/o/r/refs/heads/main/functions/my_pipe/main.py",
        ),
        (
            "https://github.com/o/r/tree/main/functions/my_pipe/",
            f"{RAW}/o/r/refs/heads/main/functions/my_pipe/main.py",
        ),
        ("https://github.com/o/r/tree/main", f"{RAW}/o/r/refs/heads/main/main.py"),
        ("https://github.com/o/r/blob/main/my%20filter.py", f"{RAW}/o/r/refs/heads/main/my%20filter.py"),
        (f"{RAW}/o/r/refs/heads/main/f.py", f"{RAW}/o/r/refs/heads/main/f.py"),
        (f"{RAW}/o/r/main/f.py", f"{RAW}/o/r/main/f.py"),
        ("https://gist.github.com/someone/abc123", "https://gist.githubusercontent.com/someone/abc123/raw"),
        (
            "https://gist.githubusercontent.com/someone/abc123/raw/def/filter.py",
            "https://gist.githubusercontent.com/someone/abc123/raw/def/filter.py",
        ),
        ("https://example.com/functions/x.py?download=1", "https://example.com/functions/x.py?download=1"),
        ("https://github.com/o/r", "https://github.com/o/r"),
        ("  https://github.com/o/r/blob/main/f.py  ", f"{RAW}/o/r/refs/heads/main/f.py"),
    ],
)
def test_raw_url(url, expected):
    assert raw_url(url) == expected


@pytest.mark.parametrize(
    "url, name",
    [
        ("https://github.com/o/r/blob/main/auto_memory.py", "auto_memory"),
        ("https://github.com/o/r/blob/main/pipes/anthropic/main.py", "anthropic"),
        ("https://github.com/o/r/blob/main/pipes/anthropic/index.py", "anthropic"),
        ("https://github.com/o/r/blob/main/pipes/anthropic/__init__.py", "anthropic"),
        ("https://github.com/o/r/tree/main/pipes/anthropic", "anthropic"),
        ("https://github.com/o/r/tree/main/pipes/anthropic/", "anthropic"),
        ("https://github.com/o/r/blob/main/f.py?plain=1#L3", "f"),
        ("https://github.com/o/r/blob/main/my%20filter.py", "my filter"),
        (f"{RAW}/o/r/refs/heads/main/dir/rate_limit.py", "rate_limit"),
        ("https://example.com/download/code.txt", "code.txt"),
        ("https://example.com/download/thing", "thing"),
        ("https://example.com/", "example"),
        ("https://example.com/x/Main.py", "x"),
        ("https://gist.github.com/someone/abc123#file-my_filter-py", "my_filter"),
        ("https://gist.githubusercontent.com/someone/abc123/raw/def/gist_filter.py", "gist_filter"),
        ("https://example.com/a/b/c.py/", "c"),
        # A GitHub folder at the top of a repository is the repository, never the branch.
        ("https://github.com/o/my_repo/tree/main", "my_repo"),
        ("https://github.com/o/my_repo/tree/main/", "my_repo"),
        ("https://github.com/o/my_repo/tree/refs/heads/dev", "my_repo"),
        ("https://github.com/o/my_repo/blob/main/main.py", "my_repo"),
        ("https://github.com/o/my_repo/blob/refs/heads/main/__init__.py", "my_repo"),
        ("https://github.com/o/my_repo", "my_repo"),
        ("https://github.com/o/my_repo/", "my_repo"),
        ("https://github.com/o/r/tree/feature/pipes/anthropic", "anthropic"),
        (f"{RAW}/o/my_repo/refs/heads/main/main.py", "my_repo"),
        (f"{RAW}/o/my_repo/main/index.py", "my_repo"),
        (f"{RAW}/o/r/refs/heads/main/pipes/x/__init__.py", "x"),
        ("https://gist.githubusercontent.com/someone/abc123/raw", "abc123"),
        # Query strings and fragments never leak into the name; a `.py` named only in the query is used.
        ("https://example.com/x.PY?raw=true", "x"),
        ("https://example.com/a/b.py/?x=1#top", "b"),
        ("https://example.com/download?file=tools%2Fmy_tool.py", "my_tool"),
        ("https://example.com/f.py?file=other.py", "f"),
        # URL-encoded names are decoded; an encoded slash does not make a folder name.
        ("https://example.com/caf%C3%A9_filter.py", "caf\u00e9_filter"),
        ("https://example.com/a%2Fb.py", "b"),
        ("https://example.com/my%20%20filter%20.py", "my filter"),
        # Nothing left of the file name: the folder, then the host.
        ("https://example.com/main.py", "example"),
        ("https://example.com/.py", "example"),
        ("https://example.com/x/%20.py", "x"),
    ],
)
def test_suggested_name(url, name):
    assert suggest_name(url) == name


def test_a_suggested_name_fits_a_function_name():
    assert suggest_name("https://example.com/" + "n" * 300 + ".py") == "n" * 256


@pytest.mark.parametrize(
    "address",
    [
        "127.0.0.1",
        "127.9.9.9",
        "10.0.0.1",
        "172.16.5.4",
        "192.168.1.1",
        "169.254.169.254",
        "100.64.0.1",
        "0.0.0.0",
        "224.0.0.1",
        "240.0.0.1",
        "255.255.255.255",
        "::1",
        "::",
        "fe80::1",
        "fe80::1%eth0",
        "fc00::1",
        "fd12:3456::1",
        "ff02::1",
        "::ffff:127.0.0.1",
        "::ffff:10.0.0.1",
        "::ffff:169.254.169.254",
        "64:ff9b::7f00:1",
        "2002:7f00:1::1",
    ],
)
def test_internal_addresses(address):
    assert is_internal(address)


@pytest.mark.parametrize("address", ["93.184.216.34", "8.8.8.8", "2606:4700:4700::1111", "::ffff:8.8.8.8"])
def test_public_addresses(address):
    assert not is_internal(address)


@pytest.mark.parametrize(
    "url, message",
    [
        ("ftp://example.com/x.py", "Only http and https"),
        ("file:///etc/passwd", "Only http and https"),
        ("javascript:alert(1)", "Only http and https"),
        ("gopher://example.com/", "Only http and https"),
        ("http:///nohost", "no host"),
        ("http://[::1", "not a valid URL"),
        ("http://user:pw@example.com/x.py", "user name or password"),
        ("", "Enter a URL"),
    ],
)
def test_refused_urls(url, message):
    with pytest.raises(UrlLoadError) as caught:
        url_loader.load_from_url(url)
    assert message in caught.value.detail
    assert caught.value.status == 400


@pytest.mark.parametrize("url", ["http://127.0.0.1/x.py", "http://localhost:9/x.py", "http://[::1]/x.py"])
def test_internal_hosts_are_refused_by_default(url):
    with pytest.raises(UrlLoadError) as caught:
        url_loader.load_from_url(url)
    assert "internal address" in caught.value.detail


def test_unresolvable_host():
    with pytest.raises(UrlLoadError) as caught:
        url_loader.load_from_url("http://no-such-host.invalid/x.py")
    assert "could not be found" in caught.value.detail


# --- a local server -----------------------------------------------------------------------------------------------

ROUTES: dict[str, tuple[int, dict, bytes]] = {
    "/functions/echo/main.py": (200, {}, F.PIPE.encode()),
    "/plain.py": (200, {}, F.FILTER.encode()),
    "/bom.py": (200, {}, b"\xef\xbb\xbf" + F.ACTION.encode()),
    "/latin1.py": (200, {}, "# caf\xe9\n".encode("latin-1")),
    "/missing.py": (404, {}, b"nope"),
    "/big.py": (200, {}, b"#" * (1024 * 1024 + 10)),
    "/r1": (302, {"Location": "/r2"}, b""),
    "/r2": (302, {"Location": "/r3"}, b""),
    "/r3": (302, {"Location": "/plain.py"}, b""),
    "/r0": (302, {"Location": "/r1"}, b""),
    "/nowhere": (302, {}, b""),
}


TRICKLE_SECONDS = 8  # how long a trickling answer would go on; every test here gives up well before


class Handler(BaseHTTPRequestHandler):
    def _trickle(self, data: bytes, per_second: int) -> None:
        """Send ``data`` a few bytes at a time, each write well inside any read timeout."""
        try:
            for start in range(0, min(len(data), TRICKLE_SECONDS * per_second), per_second):
                self.wfile.write(data[start : start + per_second])
                self.wfile.flush()
                time.sleep(1)
        except (BrokenPipeError, ConnectionResetError):
            pass

    def do_GET(self):  # noqa: N802 - the http.server API
        if self.path == "/trickle.py":
            # Headers at once, then the body at 4 bytes a second: a read timeout alone never fires.
            self.send_response(200)
            self.send_header("Content-Length", str(len(F.FILTER)))
            self.end_headers()
            self._trickle(F.FILTER.encode(), 4)
            return
        if self.path == "/trickle-until-close.py":
            # No Content-Length: the body ends when the connection does, so a cut one must not pass as complete.
            self.send_response(200)
            self.send_header("Connection", "close")
            self.end_headers()
            self._trickle(F.FILTER.encode(), 4)
            self.close_connection = True
            return
        if self.path == "/trickle-headers":
            self._trickle(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nX-Slow: " + b"." * 200, 4)
            return
        if self.path == "/chunked-big.py":
            self.send_response(200)
            self.send_header("Transfer-Encoding", "chunked")
            self.end_headers()
            chunk = b"#" * 65536
            try:
                for _ in range(40):  # 2.5 MiB without a Content-Length
                    self.wfile.write(f"{len(chunk):x}\r\n".encode() + chunk + b"\r\n")
                self.wfile.write(b"0\r\n\r\n")
            except (BrokenPipeError, ConnectionResetError):
                pass
            return
        if self.path == "/echo-host":
            body = self.headers.get("Host", "").encode()
            self.send_response(200)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)
            return
        status, headers, body = ROUTES.get(self.path, (404, {}, b""))
        self.send_response(status)
        for key, value in headers.items():
            self.send_header(key, value)
        if self.path != "/big.py":
            self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        try:
            self.wfile.write(body)
        except (BrokenPipeError, ConnectionResetError):
            pass

    def log_message(self, *args):
        pass


@pytest.fixture(scope="module")
def server():
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    httpd.daemon_threads = True
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}"
    httpd.shutdown()
    httpd.server_close()


def test_fetch_from_a_local_server_when_allowed(server):
    answer = url_loader.load_from_url(server + "/functions/echo/main.py", allow_private=True)
    assert answer == {"name": "echo", "content": F.PIPE}


def test_a_byte_order_mark_is_dropped(server):
    assert url_loader.load_from_url(server + "/bom.py", allow_private=True)["content"] == F.ACTION


def test_local_server_is_refused_without_the_setting(server):
    with pytest.raises(UrlLoadError) as caught:
        url_loader.load_from_url(server + "/plain.py")
    assert "internal address (127.0.0.1)" in caught.value.detail


@pytest.mark.parametrize(
    "path, message",
    [
        ("/missing.py", "HTTP 404"),
        ("/big.py", "larger than 1 MiB"),
        ("/chunked-big.py", "larger than 1 MiB"),
        ("/latin1.py", "not UTF-8"),
        ("/r0", "redirected more than 3 times"),
        ("/nowhere", "without saying where"),
    ],
)
def test_fetch_failures_are_clear(server, path, message):
    with pytest.raises(UrlLoadError) as caught:
        url_loader.load_from_url(server + path, allow_private=True)
    assert message in caught.value.detail


@pytest.mark.parametrize("path", ["/trickle.py", "/trickle-until-close.py", "/trickle-headers"])
def test_a_trickling_server_is_cut_off_at_the_total_deadline(server, path):
    started = time.monotonic()
    with pytest.raises(UrlLoadError) as caught:
        url_loader.load_from_url(server + path, allow_private=True, timeout=1.0)
    elapsed = time.monotonic() - started
    assert caught.value.detail == "The file at this URL did not arrive within 1 seconds."
    assert elapsed < 2.0, elapsed


def test_the_deadline_covers_every_redirect(server):
    ROUTES["/to-trickle"] = (302, {"Location": "/trickle.py"}, b"")
    try:
        started = time.monotonic()
        with pytest.raises(UrlLoadError) as caught:
            url_loader.load_from_url(server + "/to-trickle", allow_private=True, timeout=1.0)
    finally:
        del ROUTES["/to-trickle"]
    assert "did not arrive within 1 seconds" in caught.value.detail
    assert time.monotonic() - started < 2.0


def test_a_fetch_within_the_deadline_leaves_no_timer_behind(server):
    answer = url_loader.load_from_url(server + "/plain.py", allow_private=True, timeout=5.0)
    assert answer["content"] == F.FILTER
    assert not [thread for thread in threading.enumerate() if thread.name == "sluice-url-deadline"]


def test_three_redirects_are_followed(server):
    assert url_loader.load_from_url(server + "/r1", allow_private=True) == {"name": "r1", "content": F.FILTER}


def test_nothing_listens(server):
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    with pytest.raises(UrlLoadError) as caught:
        url_loader.load_from_url(f"http://127.0.0.1:{port}/x.py", allow_private=True)
    assert "Could not connect" in caught.value.detail


def test_a_name_server_that_never_answers_ends_at_the_deadline(monkeypatch):
    release = threading.Event()

    def silent_name_server(*args, **kwargs):
        release.wait(30)
        raise socket.gaierror("gave up")

    monkeypatch.setattr(url_loader.socket, "getaddrinfo", silent_name_server)
    started = time.monotonic()
    try:
        with pytest.raises(UrlLoadError) as caught:
            url_loader.fetch("https://slow-dns.example/x.py", timeout=0.5)
    finally:
        release.set()
    assert time.monotonic() - started < 2
    assert caught.value.detail == "The host slow-dns.example could not be looked up within 0.5 seconds."


def test_a_lookup_failure_still_says_the_host_was_not_found(monkeypatch):
    def no_such_host(*args, **kwargs):
        raise socket.gaierror(-2, "Name or service not known")

    monkeypatch.setattr(url_loader.socket, "getaddrinfo", no_such_host)
    with pytest.raises(UrlLoadError) as caught:
        url_loader.fetch("https://nowhere.example/x.py", timeout=5)
    assert caught.value.detail == "The host nowhere.example could not be found."


def _pretend_public(monkeypatch, server):
    """`public.test` resolves (only here) to the local server, as if it were a public address."""
    port = int(server.rsplit(":", 1)[1])
    real = url_loader.resolve
    lookups = []

    def resolve(host, port_, allow_private, within=None):
        lookups.append(host)
        if host == "public.test":
            return "127.0.0.1"
        return real(host, port_, allow_private, within)

    monkeypatch.setattr(url_loader, "resolve", resolve)
    return f"http://public.test:{port}", lookups


def test_the_connection_goes_to_the_checked_address_with_the_original_host(server, monkeypatch):
    # `public.test` does not exist in DNS: the fetch can only work if it connects to the address that was checked
    # instead of resolving the name again (which is what DNS rebinding would exploit).
    base, lookups = _pretend_public(monkeypatch, server)
    answer = url_loader.load_from_url(base + "/echo-host")
    assert answer["content"] == base.removeprefix("http://")
    assert lookups == ["public.test"]


def test_each_redirect_is_checked_again(server, monkeypatch):
    base, lookups = _pretend_public(monkeypatch, server)
    ROUTES["/to-internal"] = (302, {"Location": server + "/plain.py"}, b"")
    try:
        with pytest.raises(UrlLoadError) as caught:
            url_loader.load_from_url(base + "/to-internal")
    finally:
        del ROUTES["/to-internal"]
    assert "internal address (127.0.0.1)" in caught.value.detail
    assert lookups == ["public.test", "127.0.0.1"]


def test_a_name_resolving_to_an_internal_address_is_refused(monkeypatch):
    def fake_getaddrinfo(host, port, *args, **kwargs):
        return [
            (socket.AF_INET, socket.SOCK_STREAM, 6, "", ("93.184.216.34", port)),
            (socket.AF_INET, socket.SOCK_STREAM, 6, "", ("10.1.2.3", port)),
        ]

    monkeypatch.setattr(url_loader.socket, "getaddrinfo", fake_getaddrinfo)
    with pytest.raises(UrlLoadError) as caught:
        url_loader.load_from_url("https://mixed.example/x.py")
    assert "internal address (10.1.2.3)" in caught.value.detail


# --- the route ----------------------------------------------------------------------------------------------------


def test_route_refuses_internal_addresses_by_default(admin_api, server):
    response = admin_api.post("/load/url", {"url": server + "/plain.py"})
    assert response.status_code == 400
    assert "internal address" in response.get_json()["detail"]


@pytest.mark.parametrize("app_config", [{"SLUICE_ALLOW_PRIVATE_URLS": True}])
def test_route_fetches_when_private_urls_are_allowed(admin_api, server, app_config):
    response = admin_api.post("/load/url", {"url": server + "/functions/echo/main.py"})
    assert response.status_code == 200
    body = response.get_json()
    assert list(body) == ["name", "content"]
    assert body == {"name": "echo", "content": F.PIPE}
    # Nothing is stored.
    assert admin_api.get("/").get_json() == []


@pytest.mark.parametrize("app_config", [{"SLUICE_ALLOW_PRIVATE_URLS": True, "SLUICE_URL_FETCH_TIMEOUT": 1}])
def test_route_ends_a_trickling_download_at_the_configured_deadline(admin_api, server, app_config):
    started = time.monotonic()
    response = admin_api.post("/load/url", {"url": server + "/trickle.py"})
    assert response.status_code == 400
    assert response.get_json() == {"detail": "The file at this URL did not arrive within 1 seconds."}
    assert time.monotonic() - started < 2.5


def test_route_needs_a_url(admin_api):
    assert admin_api.post("/load/url", {}).status_code == 422
    response = admin_api.post("/load/url", {"url": "ftp://example.com/x.py"})
    assert response.status_code == 400 and "Only http and https" in response.get_json()["detail"]
