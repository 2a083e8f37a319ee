"""The Sluice application factory."""

from __future__ import annotations

import logging
import os
import threading

from flask import Flask
from werkzeug.middleware.proxy_fix import ProxyFix

import loader
from extensions import csrf, db, login_manager
from models.sealed import KEYRING_EXTENSION, Keyring
from settings import load_config, loader_options

WARM_LOADER_EXTENSION = "sluice.warm_loader"

# Whether create_app starts the loader itself. gunicorn.conf.py turns this off: gunicorn builds the app once in its
# master (preload_app), whose pages the workers then share, and forks the workers from it. A warm-up thread started
# there would not survive the fork, and the master would keep a loader (and its spares) that no request uses; each
# worker starts its own after the fork instead (`after_fork`, called from gunicorn's post_worker_init hook).
WARM_LOADER_ON_CREATE = True


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
    app = Flask(__name__, instance_relative_config=True)
    make_instance_folder(app.instance_path)
    load_config(app, test_config)

    settings = app.extensions["sluice.settings"]
    app.extensions[KEYRING_EXTENSION] = Keyring.for_settings(
        settings["SLUICE_VALVES_KEY"], app.config["SECRET_KEY"]
    )
    proxies = app.config["SLUICE_TRUSTED_PROXIES"]
    if proxies:
        # Only then is X-Forwarded-For the client's: otherwise anybody could name a fresh client per request.
        app.wsgi_app = ProxyFix(app.wsgi_app, x_for=proxies, x_proto=proxies)

    db.init_app(app)
    csrf.init_app(app)
    login_manager.init_app(app)

    from database import install_sqlite_pragmas

    with app.app_context():
        install_sqlite_pragmas(db.engine)

    loader.configure(**loader_options(app))

    # Warm the isolated loader in the background so that the first save does not wait ~2 s for it.
    app.extensions[WARM_LOADER_EXTENSION] = not app.testing and not settings["SLUICE_SAFE_MODE"]
    if app.extensions[WARM_LOADER_EXTENSION] and WARM_LOADER_ON_CREATE:
        warm_loader_in_background()

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


def warm_loader_in_background() -> None:
    threading.Thread(target=_warm_loader, name="sluice-loader-warmup", daemon=True).start()


def _warm_loader() -> None:
    try:
        loader.start()
    except Exception:  # the first load will try again and report the reason to its caller
        logging.getLogger(__name__).exception("Could not start the function loader")
