"""The Sluice application factory."""

from __future__ import annotations

import logging
import os
import random
import threading

from flask import Flask
from werkzeug.middleware.proxy_fix import ProxyFix

import loader
from extensions import csrf, db, login_manager
from models.sealed import KEYRING_EXTENSION, Keyring
from services import audit
from services.prepared import install_prepared_reads
from settings import load_config, loader_options
from web.flask_app import SluiceFlask
from web.json_provider import install_json_provider
from web.session_cookie import CookieSessions

WARM_LOADER_EXTENSION = "sluice.warm_loader"

log = logging.getLogger(__name__)


def make_instance_folder(path: str) -> None:
    """Create the instance folder so that other accounts can pass through it but not list it (0711).

    It holds the secret key and the SQLite database (both 0600), and the packages installed for function code,
    which function code running as another user must still reach by name.
    """
    os.makedirs(path, mode=0o711, exist_ok=True)
    try:
        if os.stat(path).st_mode & 0o066:  # readable or writable by others: tighten, keep only traversal
            os.chmod(path, 0o711)
    except OSError:
        pass  # not ours to change (a folder the operator set up): leave it


def create_app(test_config: dict | None = None) -> Flask:
    """Build the app: configuration, extensions, blueprints, error handlers and commands."""
    # Function code that keeps root (without CAP_SYS_PTRACE) cannot then read this process's environ or memory.
    loader.protect_server_process()
    app = SluiceFlask(__name__, instance_relative_config=True)
    make_instance_folder(app.instance_path)
    load_config(app, test_config)
    install_json_provider(app)
    app.session_interface = CookieSessions()

    settings = app.extensions["sluice.settings"]
    app.extensions[KEYRING_EXTENSION] = Keyring.for_settings(
        settings["SLUICE_VALVES_KEY"], app.config["SECRET_KEY"]
    )
    proxies = app.config["SLUICE_TRUSTED_PROXIES"]
    if proxies:
        # Only then is X-Forwarded-For the client's: otherwise anybody could name a fresh client per request.
        app.wsgi_app = ProxyFix(app.wsgi_app, x_for=proxies, x_proto=proxies)

    db.init_app(app)
    install_prepared_reads(app)
    csrf.init_app(app)
    login_manager.init_app(app)

    from database import install_postgresql_liveness, install_sqlite_pragmas

    with app.app_context():
        install_sqlite_pragmas(db.engine, app.config["SLUICE_SQLITE_SYNCHRONOUS"])
        install_postgresql_liveness(db.engine)

    loader.configure(**loader_options(app))

    # The isolated loader is warmed in the background so that the first save does not wait ~2 s for it, but not
    # here: gunicorn builds the app once in its master (preload_app) and forks the workers from it, and a thread
    # started here would not survive the fork (the master would keep a loader no request uses); a command
    # (`flask init-db`) needs none. A gunicorn worker starts its own as it starts (app.after_fork, from
    # gunicorn.conf.py), any other server on its first request.
    app.extensions[WARM_LOADER_EXTENSION] = not app.testing and not settings["SLUICE_SAFE_MODE"]
    if app.extensions[WARM_LOADER_EXTENSION]:
        app.before_request(_warm_loader_on_first_request)

    from blueprints import register_blueprints
    from web.access import install_access_rules
    from web.errors import install_error_handlers
    from web.filters import install_template_helpers
    from web.headers import install_security_headers
    from web.navigation import install_template_globals

    install_access_rules(app)
    install_error_handlers(app)
    register_blueprints(app)
    install_template_globals(app)
    install_template_helpers(app)
    install_security_headers(app)

    from cli import register_commands

    register_commands(app)

    if not app.debug and not app.testing:
        logging.basicConfig(level=logging.INFO)
    return app


def after_fork(app: Flask) -> None:
    """Make a worker forked from the process that built ``app`` its own: database connections and loader.

    Connections in the pool were opened by the parent, and a connection must not be shared by two processes: the
    worker forgets them without closing them (the parent's are the parent's to close) and opens its own.
    """
    if "sqlalchemy" in app.extensions:
        with app.app_context():
            for engine in db.engines.values():
                engine.dispose(close=False)
    if app.extensions.get(WARM_LOADER_EXTENSION):
        warm_loader_in_background()
    if app.config.get("SLUICE_AUDIT_KEEP_DAYS") and not app.testing:
        prune_audit_in_background(app)


# About once an hour, each worker of each instance: pruning is idempotent, and the jitter spreads them out.
AUDIT_PRUNE_INTERVAL = 3600.0
AUDIT_PRUNE_FIRST = 60.0


def prune_audit_in_background(
    app: Flask, interval: float = AUDIT_PRUNE_INTERVAL, first: float = AUDIT_PRUNE_FIRST
):
    """Remove audit entries older than SLUICE_AUDIT_KEEP_DAYS now and then, in a daemon thread of this process.
    Returns the thread's stop event (tests stop it)."""
    stop = threading.Event()

    def run() -> None:
        wait = first + random.uniform(0, first)
        while not stop.wait(wait):
            wait = interval + random.uniform(0, interval / 10)
            try:
                with app.app_context():  # its teardown gives the session's connection back
                    removed = audit.prune(app.config["SLUICE_AUDIT_KEEP_DAYS"])
            except Exception:  # the database away for a while: the next round tries again
                log.exception("removing old audit entries failed")
                continue
            if removed:
                log.info(
                    "removed %d audit entries older than %d days",
                    removed,
                    app.config["SLUICE_AUDIT_KEEP_DAYS"],
                )

    threading.Thread(target=run, name="sluice-audit-pruning", daemon=True).start()
    return stop


def start_loader_seed(app: Flask) -> None:
    """In gunicorn's master (gunicorn.conf.py), before it forks workers: start the loader seed that forks each
    worker's loader from one preload (loader/seed.py), unless this app starts no loader. Again before each later
    fork, which restarts a seed that died."""
    if app.extensions.get(WARM_LOADER_EXTENSION):
        loader.start_seed()


_warming = False  # whether this process has started its loader's warm-up (a forked process has not)
_warming_lock = threading.Lock()


def warm_loader_in_background() -> None:
    """Start this process's loader in a thread of its own, once per process."""
    global _warming
    with _warming_lock:
        if _warming:
            return
        _warming = True
    threading.Thread(target=_warm_loader, name="sluice-loader-warmup", daemon=True).start()


def _warm_loader_on_first_request() -> None:
    if not _warming:  # read without the lock: after the first request this is all a request pays
        warm_loader_in_background()


def _forget_warming() -> None:
    global _warming, _warming_lock
    _warming, _warming_lock = False, threading.Lock()


os.register_at_fork(after_in_child=_forget_warming)


def _warm_loader() -> None:
    try:
        loader.start()
    except Exception:  # the first load will try again and report the reason to its caller
        logging.getLogger(__name__).exception("Could not start the function loader")
