"""gunicorn.conf.py: each worker listens on its own socket, a port already in use is refused at start, and the
workers share the app the master built while each makes its own database connections and loader."""

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


# --- the app is built once in the master, and each worker makes its own connections and loader ------------------


def test_the_master_builds_the_app_once_for_the_workers_to_share(conf):
    assert conf["preload_app"] is True


def server_app(monkeypatch, tmp_path):
    """An app as a server builds it (not TESTING), with the loader's warm-up recorded instead of started."""
    import app as sluice
    from tests.conftest import make_app

    started = []
    monkeypatch.setattr(sluice, "warm_loader_in_background", lambda: started.append("loader"))
    # The "started once per process" flag is the test process's: another test (a live server) may have set it.
    monkeypatch.setattr(sluice, "_warming", False)
    return make_app(f"sqlite:///{tmp_path / 'db.sqlite3'}", TESTING=False), started


def test_building_the_app_starts_no_loader_but_a_worker_does_after_the_fork(conf, monkeypatch, tmp_path):
    """The master builds the app: a loader started there would serve no request, and its thread dies at fork."""
    built, started = server_app(monkeypatch, tmp_path)
    assert started == []
    conf["post_worker_init"](SimpleNamespace(wsgi=built))
    assert started == ["loader"]


def test_under_another_server_the_first_request_starts_the_loader(monkeypatch, tmp_path):
    built, started = server_app(monkeypatch, tmp_path)
    assert started == []
    built.test_client().get("/health")
    assert started == ["loader"]


def test_an_app_without_a_loader_to_warm_starts_none_after_the_fork(conf, monkeypatch, tmp_path):
    import app as sluice
    from tests.conftest import make_app

    started = []
    monkeypatch.setattr(sluice, "warm_loader_in_background", lambda: started.append("loader"))
    testing = make_app(f"sqlite:///{tmp_path / 'db.sqlite3'}")
    conf["post_worker_init"](SimpleNamespace(wsgi=testing))
    conf["post_worker_init"](SimpleNamespace(wsgi=lambda environ, start_response: []))  # not Sluice at all
    assert started == []


def test_a_worker_opens_its_own_database_connections_and_leaves_the_masters_open(conf, tmp_path):
    """A connection the master opened must not be used by two processes: the worker's pool forgets it, unclosed."""
    from sqlalchemy import text

    from extensions import db
    from tests.conftest import make_app

    built = make_app(f"sqlite:///{tmp_path / 'db.sqlite3'}")
    with built.app_context():
        engine = db.engine
        with engine.connect() as connection:
            masters = connection.connection.dbapi_connection
        assert engine.pool.checkedin() == 1
    conf["post_worker_init"](SimpleNamespace(wsgi=built))
    with built.app_context():
        assert db.engine.pool.checkedin() == 0
        with db.engine.connect() as connection:
            assert connection.connection.dbapi_connection is not masters
            assert connection.execute(text("SELECT 1")).scalar() == 1
    assert masters.execute("SELECT 1").fetchone() == (1,)  # still the master's, open


def test_the_collector_leaves_the_objects_the_workers_share_alone(conf):
    import gc

    try:
        conf["pre_fork"](None, None)
        assert gc.get_freeze_count() > 0
    finally:
        gc.unfreeze()


def _children(pid: int) -> list[int]:
    found = []
    for entry in Path("/proc").iterdir():
        try:
            if entry.name.isdigit() and int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1]) == pid:
                found.append(int(entry.name))
        except (OSError, IndexError, ValueError):
            continue  # gone meanwhile
    return found


def test_under_gunicorn_each_worker_has_a_loader_of_its_own_forked_by_the_masters_seed(tmp_path):
    import os
    import subprocess
    import sys
    import time
    import urllib.request

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    env = {
        **os.environ,
        "DATABASE_URL": f"sqlite:///{tmp_path / 'served.sqlite3'}",
        "SECRET_KEY": "test",
        "HOST": "127.0.0.1",
        "PORT": str(port),
        "SLUICE_WORKERS": "2",
        "SLUICE_THREADS": "2",
        "SLUICE_FUNCTION_PACKAGES_DIR": str(tmp_path / "packages"),
        "SLUICE_FUNCTION_HOMES_DIR": str(tmp_path / "homes"),
        "SLUICE_INSTALL_JOBS_DIR": str(tmp_path / "jobs"),
    }
    bin_dir = Path(sys.executable).parent
    subprocess.run([str(bin_dir / "flask"), "--app", "app", "init-db"], cwd=ROOT, env=env, check=True,
                   capture_output=True)  # fmt: skip
    server = subprocess.Popen(
        [str(bin_dir / "gunicorn"), "app:create_app()"],
        cwd=ROOT,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 90
        workers, loaders, seeds = [], {}, []
        while time.monotonic() < deadline:
            processes = _children(server.pid)
            # The master's children: its workers and the loader seed the workers' loaders are forked from
            # (loader/seed.py, tests/test_loader_seed.py), which serves no request itself.
            seeds = [
                pid for pid in processes if b"seed" in Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
            ]
            workers = [pid for pid in processes if pid not in seeds]
            loaders = {seed: _children(seed) for seed in seeds}
            if len(workers) == 2 and len(seeds) == 1 and len(loaders[seeds[0]]) == 2:
                break
            time.sleep(0.3)
        assert len(workers) == 2 and len(seeds) == 1 and len(loaders[seeds[0]]) == 2, (workers, loaders)
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=10) as answer:
            assert answer.status == 200
        assert all(_children(worker) == [] for worker in workers)  # a loader each, but forked by the seed
    finally:
        server.terminate()
        server.wait(30)
