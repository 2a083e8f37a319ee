"""gunicorn.conf.py: each worker listens on its own socket, and a port already in use is refused at start."""

from __future__ import annotations

import runpy
import socket
from pathlib import Path
from types import SimpleNamespace

import pytest

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture
def conf(monkeypatch):
    monkeypatch.chdir(ROOT)
    return runpy.run_path(str(ROOT / "gunicorn.conf.py"))


def test_each_worker_gets_a_socket_of_its_own_so_connections_spread_evenly(conf):
    assert conf["reuse_port"] is True


def test_a_port_something_already_listens_on_is_refused_with_the_setting_to_change(conf):
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        server = SimpleNamespace(cfg=SimpleNamespace(address=[("127.0.0.1", port)]))
        with pytest.raises(SystemExit) as refused:
            conf["on_starting"](server)
    assert f"Port {port} on 127.0.0.1 is already in use" in str(refused.value)
    assert "PORT=" in str(refused.value)


def test_a_free_port_starts(conf):
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    conf["on_starting"](SimpleNamespace(cfg=SimpleNamespace(address=[("127.0.0.1", port), "/tmp/x.sock"])))
