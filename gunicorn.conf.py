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

Each worker listens on a socket of its own (SO_REUSEPORT), so that the kernel spreads connections evenly over the
workers. On one shared socket, whichever worker woke first took the next connection: a burst of keep-alive clients
often landed 15 to 1 on two workers, and the busy worker's one interpreter lock then capped the whole server (GET
/api/v1/functions/ swung between about 180 and 600 requests/s from one run to the next). A port that something else
already listens on is still refused at start (``on_starting``), as it would be without SO_REUSEPORT.

The master builds the app once (``preload_app``) and forks the workers from it, so that the workers share the
pages of the code and of everything imported instead of each holding a copy (about 50 MiB each): the garbage
collector's bookkeeping is frozen before each fork (``gc.freeze``), or its first collection in a worker would write
to, and so copy, every page that holds an object. What must be each process's own is made after the fork
(``post_worker_init``, app.after_fork): database connections, and the loader with its spares, which the master
never starts.

What the master does start (``when_ready``, before the first fork) is the loader seed (loader/seed.py): one
preloaded process from which each worker's loader is forked, so that the two loaders share their ~45 MiB of
preloaded objects instead of each holding a copy. If it dies, workers start their own loaders, and the master starts
a new seed before it forks its next worker (``pre_fork``); it stops it when it exits (``on_exit``).
"""

import ctypes
import errno
import gc
import json
import socket
import sys

from gunicorn import util

from settings import server_settings

PR_SET_DUMPABLE = 4


def _non_dumpable() -> None:
    try:
        ctypes.CDLL(None, use_errno=True).prctl(PR_SET_DUMPABLE, 0, 0, 0, 0)
    except (OSError, AttributeError):  # not Linux: nothing to do
        pass


_non_dumpable()

reuse_port = True
preload_app = True


def on_starting(server):
    """Refuse a port already in use: with SO_REUSEPORT a second server would otherwise share it silently."""
    for address in server.cfg.address:
        if not isinstance(address, tuple):
            continue  # a Unix socket path: gunicorn reports a clash there itself
        family = socket.AF_INET6 if ":" in address[0] else socket.AF_INET
        with socket.socket(family, socket.SOCK_STREAM) as probe:
            # As gunicorn's own sockets do: connections of a previous run still in TIME_WAIT are no clash.
            probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            try:
                probe.bind(address)
            except OSError as error:
                if error.errno == errno.EADDRINUSE:
                    raise SystemExit(
                        f"Port {address[1]} on {address[0]} is already in use: stop what listens there, "
                        "or choose another port with PORT=<number>."
                    ) from None
                raise


def _sluice_app(wsgi):
    from flask import Flask

    # Not another app run with this file (bench/ceiling.py).
    return isinstance(wsgi, Flask) and wsgi.import_name == "app"


def when_ready(server):
    """Before the first worker forks: start the loader seed, from which every worker's loader is forked."""
    wsgi = getattr(getattr(server, "app", None), "callable", None)
    if _sluice_app(wsgi):
        from app import start_loader_seed

        start_loader_seed(wsgi)


def pre_fork(server, worker):
    """Objects that exist now live as long as the master: the collector need never visit them again, in the
    master or in a worker, so the pages that hold them stay shared. A loader seed that died is started again first,
    for this worker and the next ones (running workers start their own loaders meanwhile: loader/seed.py)."""
    when_ready(server)
    gc.collect()
    gc.freeze()


def on_exit(server):
    seed = sys.modules.get("loader.seed")
    if seed is not None:
        seed.stop()


def post_worker_init(worker):
    _non_dumpable()
    wsgi = getattr(worker, "wsgi", None)
    if _sluice_app(wsgi):
        from app import after_fork

        after_fork(wsgi)


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
