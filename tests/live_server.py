"""An app served over real HTTP in a thread, for tests that need a socket (OpenAI clients, probes, crowds)."""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Iterator


@contextlib.contextmanager
def served(app, name: str = "sluice-test-server") -> Iterator[str]:
    """Serve ``app`` on a free loopback port for the block and yield its base URL; afterwards stop the server and
    close the app's database connections."""
    from werkzeug.serving import make_server

    from extensions import db

    server = make_server("127.0.0.1", 0, app, threaded=True)
    thread = threading.Thread(target=server.serve_forever, name=name, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_port}"
    finally:
        server.shutdown()
        thread.join(timeout=10)
        server.server_close()
        with app.app_context():
            db.session.remove()
            db.engine.dispose()
