"""gunicorn reads this file by itself when it starts in the repository root, as bin/serve and the README's command do.

It only hardens the server's processes: they are made non-dumpable (prctl PR_SET_DUMPABLE 0), so that a process of
the same user without CAP_SYS_PTRACE, such as a load child that keeps root (it drops every capability), can read
neither their /proc/<pid>/environ (DATABASE_URL, SECRET_KEY) nor their memory. The master is made so as it reads
this file, and its workers inherit that; a worker that changed user (--user) is dumpable again, hence the hook
(create_app does the same for each app).

It also sets where gunicorn listens and how many processes and threads it runs, from settings.py (HOST, PORT,
SLUICE_WORKERS, SLUICE_THREADS: checked like every other setting). Command-line options still take precedence over
anything here.

And it makes the errors gunicorn answers by itself, before Sluice sees the request (a request line over
`--limit-request-line`, headers too large or malformed), JSON `{"detail": ...}` like every other error of the API,
instead of gunicorn's HTML page: API clients and fuzzers parse every answer the same way.
"""

import ctypes
import json

from gunicorn import util

from settings import server_settings

PR_SET_DUMPABLE = 4


def _non_dumpable() -> None:
    try:
        ctypes.CDLL(None, use_errno=True).prctl(PR_SET_DUMPABLE, 0, 0, 0, 0)
    except (OSError, AttributeError):  # not Linux: nothing to do
        pass


_non_dumpable()

_server = server_settings()
bind = f"{_server['HOST']}:{_server['PORT']}"
workers = _server["SLUICE_WORKERS"]
threads = _server["SLUICE_THREADS"]


def post_worker_init(worker):
    _non_dumpable()


def write_json_error(sock, status_int, reason, mesg):
    """gunicorn's `util.write_error`, answering JSON (workers call it through the module, so replacing it works)."""
    body = json.dumps({"detail": f"{reason}: {mesg}" if mesg else reason}).encode()
    head = (
        f"HTTP/1.1 {status_int} {reason}\r\nConnection: close\r\nContent-Type: application/json\r\n"
        f"X-Content-Type-Options: nosniff\r\nContent-Length: {len(body)}\r\n\r\n"
    )
    util.write_nonblock(sock, head.encode("latin-1") + body)


util.write_error = write_json_error


_server = server_settings()
bind = f"{_server['HOST']}:{_server['PORT']}"
workers = _server["SLUICE_WORKERS"]
threads = _server["SLUICE_THREADS"]
