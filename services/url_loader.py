"""Load a function's code from a URL: GitHub links made raw, a suggested name, and a guarded fetch.

The fetch refuses internal addresses (unless the operator allows them) and cannot be tricked by DNS: each host is
resolved once, every address is checked, and the connection is made to the checked address itself, with the
original host name kept for the Host header and TLS. Redirects are followed by hand, at most three, each one
checked the same way. The whole fetch, redirects included, ends at one deadline however slowly a server answers.
"""

from __future__ import annotations

import ipaddress
import socket
import threading
import time
from typing import TYPE_CHECKING
from urllib.parse import parse_qsl, unquote, urljoin, urlsplit, urlunsplit

from flask import current_app, has_app_context

from models.function import MAX_NAME_LENGTH
from services.errors import ServiceError

if TYPE_CHECKING:
    import requests

MAX_BYTES = 1024 * 1024
MAX_REDIRECTS = 3
CONNECT_TIMEOUT = 5.0
READ_TIMEOUT = 10.0
TOTAL_TIMEOUT = 20.0  # the default of SLUICE_URL_FETCH_TIMEOUT: the whole fetch, redirects included
FOLDER_FILES = ("main.py", "index.py", "__init__.py")
REDIRECT_STATUSES = (301, 302, 303, 307, 308)
NAT64 = ipaddress.ip_network("64:ff9b::/96")


class UrlLoadError(ServiceError):
    """Any failure of load/url: a 400 with a sentence saying what went wrong."""


# --- links and names ---------------------------------------------------------------------------------------------


def raw_url(url: str) -> str:
    """The URL to fetch: GitHub `blob`/`raw` links become raw links, `tree` links the folder's `main.py`."""
    parts = urlsplit(url.strip())
    host = (parts.hostname or "").lower()
    segments = [segment for segment in parts.path.split("/") if segment]
    if host in ("github.com", "www.github.com") and len(segments) >= 4:
        owner, repo, kind, branch, *rest = segments
        if kind in ("blob", "raw") and rest:
            return _raw_github(owner, repo, branch, rest)
        if kind == "tree":
            return _raw_github(owner, repo, branch, [*rest, "main.py"])
    if host == "gist.github.com" and len(segments) == 2:
        # A gist's page: its raw link gives the (first) file.
        return f"https://gist.githubusercontent.com/{segments[0]}/{segments[1]}/raw"
    return url.strip()


def _raw_github(owner: str, repo: str, branch: str, path: list[str]) -> str:
    if branch == "refs" and len(path) >= 2 and path[0] == "heads":
        branch, path = path[1], path[2:]  # already spelled refs/heads/B
    return "https://raw.githubusercontent.com/" + "/".join([owner, repo, "refs", "heads", branch, *path])


def suggest_name(url: str) -> str:
    """The file name without `.py`, or the folder's name when the file is main.py, index.py or __init__.py.

    On GitHub the folder of a file at the top of a repository is the repository itself, never the branch.
    """
    parts = urlsplit(url.strip())
    host = (parts.hostname or "").lower()
    if host == "gist.github.com" and parts.fragment.startswith("file-"):
        # `#file-my_filter-py` names the file on a gist's page.
        name = unquote(parts.fragment[len("file-") :])
        return _tidy_name(name[:-3] if name.endswith("-py") else name, "gist")
    segments = [unquote(segment) for segment in parts.path.split("/") if segment]
    if host in ("github.com", "www.github.com", "raw.githubusercontent.com") and len(segments) >= 2:
        _owner, repo, *rest = segments
        return _name_from_path(_path_in_repository(rest, raw=host.startswith("raw.")), repo)
    if host == "gist.githubusercontent.com" and len(segments) >= 2 and segments[-1] == "raw":
        return _tidy_name(segments[1], "gist")  # `/user/id/raw`: the gist's first file, whatever its name
    query_file = _file_in_query(parts.query)
    if query_file and not (segments and segments[-1].lower().endswith(".py")):
        segments = [*segments, query_file]  # `download?file=tools/my_filter.py`
    return _name_from_path(segments, host.split(".")[0] if host else "function")


def _path_in_repository(rest: list[str], *, raw: bool) -> list[str]:
    """The file's path inside a GitHub repository, from what follows `owner/repo` (branch and kind dropped)."""
    if not raw:
        if len(rest) < 2 or rest[0] not in ("blob", "raw", "tree"):
            return []  # the repository's page, or one of its other pages (issues, pulls, ...)
        kind, rest = rest[0], rest[1:]
    else:
        kind = "raw"
    if len(rest) >= 3 and rest[0] == "refs" and rest[1] in ("heads", "tags"):
        path = rest[3:]  # spelled refs/heads/B
    else:
        path = rest[1:]
    return [*path, "main.py"] if kind == "tree" else path


def _file_in_query(query: str) -> str | None:
    for _key, value in parse_qsl(query):
        if value.lower().endswith(".py"):
            return value
    return None


def _name_from_path(segments: list[str], container: str) -> str:
    """The rule above applied to path segments; ``container`` names what holds a folder file at the top."""
    # An encoded slash (%2F) splits like a real one, so that a name never holds a slash.
    segments = [part for segment in segments for part in segment.split("/") if part]
    if not segments:
        return _tidy_name(container, "function")
    last = segments[-1]
    stem = _tidy_name(last[:-3] if last.lower().endswith(".py") else last)
    if stem and last.lower() not in FOLDER_FILES:
        return stem
    # A folder file, or a file name that is only `.py`: name the folder.
    return _tidy_name(segments[-2] if len(segments) >= 2 else container) or "function"


def _tidy_name(name: str, fallback: str = "") -> str:
    name = " ".join(name.split())[:MAX_NAME_LENGTH].strip()
    return name or fallback


# --- address checks ----------------------------------------------------------------------------------------------


def is_internal(address: str) -> bool:
    """True for loopback, private, link-local, reserved, multicast, unspecified and other non-public addresses."""
    ip = ipaddress.ip_address(address.split("%", 1)[0])
    if isinstance(ip, ipaddress.IPv6Address):
        if ip.ipv4_mapped is not None:
            # `::ffff:a.b.c.d` is the IPv4 address a.b.c.d reached over an IPv6 socket.
            return is_internal(str(ip.ipv4_mapped))
        embedded = ip.sixtofour or (ip.teredo[1] if ip.teredo else None)
        if embedded is None and ip in NAT64:
            embedded = ipaddress.IPv4Address(int(ip) & 0xFFFFFFFF)
        if embedded is not None and is_internal(str(embedded)):
            return True
    return (
        ip.is_loopback
        or ip.is_private
        or ip.is_link_local
        or ip.is_reserved
        or ip.is_multicast
        or ip.is_unspecified
        or not ip.is_global
    )


def _lookup(host: str, port: int, within: float | None) -> list:
    """``getaddrinfo``, given up after ``within`` seconds.

    The resolver has no timeout of its own (a silent name server holds it for the resolver's retries, often tens
    of seconds), so it runs in a daemon thread that is left to finish alone if the deadline comes first.
    """
    if within is None:
        return socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    outcome: dict[str, object] = {}

    def run() -> None:
        try:
            outcome["infos"] = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
        except BaseException as error:  # handed to the waiting request, which raises it
            outcome["error"] = error

    worker = threading.Thread(target=run, name="sluice-url-lookup", daemon=True)
    worker.start()
    worker.join(max(0.0, within))
    if worker.is_alive():
        raise TimeoutError(host)
    if "error" in outcome:
        raise outcome["error"]  # type: ignore[misc]
    return outcome["infos"]  # type: ignore[return-value]


def resolve(host: str, port: int, allow_private: bool, within: float | None = None) -> str:
    """Resolve ``host`` and return the address to connect to, refusing internal ones unless allowed.

    Raises ``TimeoutError`` if the lookup takes longer than ``within`` seconds.
    """
    try:
        infos = _lookup(host, port, within)
    except (socket.gaierror, UnicodeError):
        raise UrlLoadError(f"The host {host} could not be found.") from None
    addresses = list(dict.fromkeys(info[4][0] for info in infos))
    if not addresses:
        raise UrlLoadError(f"The host {host} could not be found.")
    if not allow_private:
        for address in addresses:
            if is_internal(address):
                raise UrlLoadError(
                    f"The host {host} resolves to an internal address ({address.split('%', 1)[0]}), "
                    "which Sluice does not fetch from."
                )
    return addresses[0]


# --- the overall deadline ---------------------------------------------------------------------------------------


class Deadline:
    """The time one fetch may take in all, enforced by cutting its connections when it runs out.

    A read timeout starts again with every byte, so a server sending a few bytes a second would hold the request
    for as long as it likes; a blocked read cannot see a clock either. So a timer shuts down every socket of the
    fetch at the deadline, which ends any read or TLS handshake waiting on it. Each socket is watched through a
    duplicate that the fetch owns, so the timer can never touch a descriptor that has since been reused.
    """

    def __init__(self, seconds: float):
        self.seconds = seconds
        self.expires = time.monotonic() + seconds
        self.expired = False
        self._lock = threading.Lock()
        self._sockets: list[socket.socket] = []
        self._timer = threading.Timer(seconds, self._expire)
        self._timer.name = "sluice-url-deadline"
        self._timer.daemon = True
        self._timer.start()

    def remaining(self) -> float:
        return max(0.0, self.expires - time.monotonic())

    @property
    def passed(self) -> bool:
        """True once the time is up, even if a socket timeout noticed it a moment before the timer did."""
        return self.expired or self.remaining() <= 0

    def watch(self, sock: socket.socket) -> None:
        watcher = sock.dup()
        with self._lock:
            self._sockets.append(watcher)
            expired = self.expired
        if expired:
            _shut(watcher)

    def _expire(self) -> None:
        with self._lock:
            self.expired = True
            for watcher in self._sockets:
                _shut(watcher)

    def close(self) -> None:
        self._timer.cancel()
        self._timer.join()
        with self._lock:
            for watcher in self._sockets:
                watcher.close()
            self._sockets.clear()


def _shut(sock: socket.socket) -> None:
    try:
        sock.shutdown(socket.SHUT_RDWR)
    except OSError:
        pass  # already closed by the other side


def _check_url(url: str) -> tuple[str, int]:
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError:
        raise UrlLoadError("This is not a valid URL.") from None
    if parts.scheme.lower() not in ("http", "https"):
        raise UrlLoadError("Only http and https URLs can be loaded.")
    if not parts.hostname:
        raise UrlLoadError("This URL has no host name.")
    if parts.username or parts.password:
        raise UrlLoadError("URLs with a user name or password are not accepted.")
    return parts.hostname, port or (443 if parts.scheme.lower() == "https" else 80)


def _too_slow(deadline: Deadline) -> UrlLoadError:
    return UrlLoadError(f"The file at this URL did not arrive within {deadline.seconds:g} seconds.")


def fetch(
    url: str, *, allow_private: bool = False, max_bytes: int = MAX_BYTES, timeout: float = TOTAL_TIMEOUT
) -> str:
    """Fetch ``url`` as UTF-8 text within ``timeout`` seconds in all; every failure is a ``UrlLoadError``."""
    deadline = Deadline(timeout)
    try:
        return _fetch(url, allow_private, max_bytes, deadline)
    finally:
        deadline.close()


def _fetch(url: str, allow_private: bool, max_bytes: int, deadline: Deadline) -> str:
    # Imported on the first fetch, not with the app: requests and urllib3 hold ~6 MiB that an idle server (and most
    # servers: loading from a URL is rare) never needs.
    import requests

    from services.url_pinning import PinnedAdapter

    for _hop in range(MAX_REDIRECTS + 1):
        host, port = _check_url(url)
        try:
            address = resolve(host, port, allow_private, within=deadline.remaining())
        except TimeoutError:
            raise UrlLoadError(
                f"The host {host} could not be looked up within {deadline.seconds:g} seconds."
            ) from None
        if deadline.passed:
            raise _too_slow(deadline)
        session = requests.Session()
        session.trust_env = False  # a proxy from the environment would connect somewhere unchecked
        session.mount("http://", PinnedAdapter(address, deadline))
        session.mount("https://", PinnedAdapter(address, deadline))
        try:
            response = session.get(
                urlunsplit(urlsplit(url)._replace(fragment="")),
                stream=True,
                allow_redirects=False,
                timeout=(CONNECT_TIMEOUT, READ_TIMEOUT),  # per wait; the deadline bounds the whole
                headers={"User-Agent": "Sluice (load function from URL)", "Accept": "text/plain, */*"},
            )
        except requests.exceptions.RequestException as error:
            session.close()
            if deadline.passed:
                raise _too_slow(deadline) from None
            if isinstance(error, requests.exceptions.SSLError):
                raise UrlLoadError(f"The TLS certificate of {host} could not be verified.") from None
            if isinstance(error, requests.exceptions.Timeout):
                raise UrlLoadError(f"{host} did not answer in time.") from None
            raise UrlLoadError(f"Could not connect to {host}.") from None
        try:
            if response.status_code in REDIRECT_STATUSES:
                location = response.headers.get("Location")
                if not location:
                    raise UrlLoadError("The URL redirected without saying where to.")
                url = urljoin(url, location)
                continue
            if response.status_code != 200:
                reason = f" {response.reason}" if response.reason else ""
                raise UrlLoadError(f"The URL answered HTTP {response.status_code}{reason}.")
            return _read_text(response, max_bytes, deadline)
        finally:
            response.close()
            session.close()
    raise UrlLoadError(f"The URL redirected more than {MAX_REDIRECTS} times.")


def _read_text(response: requests.Response, max_bytes: int, deadline: Deadline) -> str:
    import requests  # already imported by _fetch

    too_large = UrlLoadError(f"The file at this URL is larger than {max_bytes // (1024 * 1024)} MiB.")
    declared = response.headers.get("Content-Length")
    if declared and declared.isdigit() and int(declared) > max_bytes:
        raise too_large
    body = bytearray()
    try:
        for chunk in response.iter_content(chunk_size=64 * 1024):
            body += chunk
            if len(body) > max_bytes:
                raise too_large
    except requests.exceptions.RequestException:
        if deadline.passed:
            raise _too_slow(deadline) from None
        raise UrlLoadError("The download was interrupted.") from None
    if deadline.expired:
        # A body that ends when the connection closes looks complete when the deadline cut it.
        raise _too_slow(deadline)
    try:
        text = bytes(body).decode("utf-8")
    except UnicodeDecodeError:
        raise UrlLoadError("The file at this URL is not UTF-8 text.") from None
    return text.removeprefix("\ufeff")


def configured_timeout() -> float:
    """`SLUICE_URL_FETCH_TIMEOUT` of the running app, or the default outside one."""
    if has_app_context():
        return float(current_app.config.get("SLUICE_URL_FETCH_TIMEOUT") or TOTAL_TIMEOUT)
    return TOTAL_TIMEOUT


def load_from_url(url: str, *, allow_private: bool = False, timeout: float | None = None) -> dict:
    """`{"name", "content"}` for the code at ``url``; nothing is stored.

    ``timeout`` bounds the whole fetch, redirects included (default: the app's `SLUICE_URL_FETCH_TIMEOUT`).
    """
    url = (url or "").strip()
    if not url:
        raise UrlLoadError("Enter a URL.")
    _check_url(url)
    target = raw_url(url)
    content = fetch(target, allow_private=allow_private, timeout=timeout or configured_timeout())
    return {"name": suggest_name(url), "content": content}
