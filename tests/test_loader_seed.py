"""Under gunicorn, every worker's loader is forked from one loader seed the master started (loader/seed.py), so
the loaders share the preload's pages; a loader still ends with its worker, a killed one is replaced at the next
load, and a dead seed leaves workers loading code (their own loaders) until the master starts a new one.

Each test starts gunicorn as bin/serve does and reads the process tree and page frames from /proc."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import requests

ROOT = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent
FILTER = "class Filter:\n    def inlet(self, body):\n        return body  # {n}\n"


def parent_of(pid: int) -> int:
    return int(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[1])


def alive(pid: int) -> bool:
    """Running (a zombie, not yet reaped, is not)."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] not in ("Z", "X")
    except OSError:
        return False


def exists(pid: int) -> bool:
    """Running or a zombie: something still has to reap it."""
    return Path(f"/proc/{pid}").exists()


def children(pid: int) -> list[int]:
    found = []
    for entry in Path("/proc").iterdir():
        try:
            if entry.name.isdigit() and parent_of(int(entry.name)) == pid:
                found.append(int(entry.name))
        except (OSError, IndexError, ValueError):
            continue  # gone meanwhile
    return sorted(found)


def command(pid: int) -> list[bytes] | None:
    """Its command line, or None for a process that ended since it was listed."""
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
    except OSError:
        return None


def until(condition, within: float = 30.0, message: str = ""):
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        time.sleep(0.1)
    raise AssertionError(f"not within {within} s: {message}")


class Server:
    def __init__(self, tmp_path: Path):
        with __import__("socket").socket() as probe:
            probe.bind(("127.0.0.1", 0))
            self.port = probe.getsockname()[1]
        self.env = {
            **os.environ,
            "DATABASE_URL": f"sqlite:///{tmp_path / 'seed.sqlite3'}",
            "SECRET_KEY": "test-secret-key-0123456789abcdef",
            "HOST": "127.0.0.1",
            "PORT": str(self.port),
            "SLUICE_WORKERS": "2",
            "SLUICE_THREADS": "2",
            "SLUICE_FUNCTION_PACKAGES_DIR": str(tmp_path / "packages"),
            "SLUICE_FUNCTION_HOMES_DIR": str(tmp_path / "homes"),
            "SLUICE_INSTALL_JOBS_DIR": str(tmp_path / "jobs"),
        }
        flask = [str(BIN / "flask"), "--app", "app"]
        self.run([*flask, "init-db"])
        self.run([*flask, "create-user", "--email", "seed@example.com", "--name", "Seed", "--password",
                  "seed password 1234", "--role", "admin"])  # fmt: skip
        self.key = (
            self.run([*flask, "create-api-key", "--email", "seed@example.com"]).strip().splitlines()[-1]
        )
        self.process = subprocess.Popen(
            [str(BIN / "gunicorn"), "app:create_app()"],
            cwd=ROOT,
            env=self.env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        self.master = self.process.pid
        self.created = 0

    def run(self, argv: list[str]) -> str:
        return subprocess.run(argv, cwd=ROOT, env=self.env, check=True, capture_output=True, text=True).stdout

    def seed(self) -> int | None:
        found = [pid for pid in children(self.master) if b"seed" in (command(pid) or [])]
        return found[0] if found else None

    def workers(self) -> list[int]:
        return [
            pid
            for pid in children(self.master)
            if (found := command(pid)) is not None and b"seed" not in found
        ]

    def zygotes(self, parent: int) -> list[int]:
        """The running loaders (zygotes) among `parent`'s children."""
        return [pid for pid in children(parent) if alive(pid) and b"loader" in b" ".join(command(pid) or [])]

    def settled(self) -> tuple[int, list[int]] | None:
        """(seed, its two zygotes) once the two workers have theirs, else None."""
        seed = self.seed()
        if seed is None or len(self.workers()) != 2:
            return None
        zygotes = self.zygotes(seed)
        return (seed, zygotes) if len(zygotes) == 2 else None

    def create(self) -> None:
        """One load in whichever worker the kernel hands the connection to (a new connection each time)."""
        self.created += 1
        answer = requests.post(
            f"http://127.0.0.1:{self.port}/api/v1/functions/create",
            json={
                "id": f"seed_{self.created}",
                "name": f"Seed {self.created}",
                "content": FILTER.format(n=self.created),
                "meta": {},
            },
            headers={"Authorization": f"Bearer {self.key}", "Connection": "close"},
            timeout=60,
        )
        assert answer.status_code == 200, answer.text

    def stop(self) -> None:
        self.process.terminate()
        try:
            self.process.wait(30)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()


@pytest.fixture
def server(tmp_path):
    started = Server(tmp_path)
    try:
        until(started.settled, 90, "a seed with a zygote for each of the two workers")
        yield started
    finally:
        started.stop()


def anonymous_frames(pid: int) -> set[int]:
    """The physical page frames of `pid`'s private writable memory (heap and anonymous mappings) that are in RAM."""
    frames = set()
    with open(f"/proc/{pid}/maps") as maps, open(f"/proc/{pid}/pagemap", "rb") as pagemap:
        for line in maps:
            fields = line.split()
            if not fields[1].startswith("rw") or (len(fields) > 5 and fields[5] not in ("[heap]",)):
                continue
            low, high = (int(value, 16) for value in fields[0].split("-"))
            pagemap.seek(low // 4096 * 8)
            data = pagemap.read((high - low) // 4096 * 8)
            for offset in range(0, len(data), 8):
                entry = int.from_bytes(data[offset : offset + 8], "little")
                if entry >> 63 and entry & ((1 << 55) - 1):  # present, with its frame number (root only)
                    frames.add(entry & ((1 << 55) - 1))
    return frames


def test_both_workers_loaders_are_forked_by_the_seed_and_share_its_pages(server):
    seed, zygotes = server.settled()
    for worker in server.workers():
        assert server.zygotes(worker) == []  # no loader of its own
    assert all(parent_of(zygote) == seed for zygote in zygotes)
    if os.geteuid() != 0:
        pytest.skip("page frame numbers are only readable by root")
    first, second = (anonymous_frames(zygote) for zygote in zygotes)
    shared = len(first & second) * 4096 / 2**20
    # The preload is ~40 MiB of objects: loaders exec'd by their workers would share none of it.
    assert shared > 15, f"the two loaders share only {shared:.1f} MiB"


def test_the_seed_holds_no_secret_and_its_socket_has_no_name_anybody_could_connect_to(server):
    seed, zygotes = server.settled()
    for pid in (seed, *zygotes):  # the environment filtered as for a loader the worker execs
        environ = Path(f"/proc/{pid}/environ").read_bytes().split(b"\0")
        assert not [
            item for item in environ if item.startswith((b"SECRET_KEY=", b"DATABASE_URL=", b"SLUICE_"))
        ]
    inodes = {
        os.readlink(f"/proc/{seed}/fd/{fd}")[len("socket:[") : -1]
        for fd in os.listdir(f"/proc/{seed}/fd")
        if os.readlink(f"/proc/{seed}/fd/{fd}").startswith("socket:[")
    }
    assert inodes  # its end of the pair the master and workers hold
    rows = [line.split() for line in Path("/proc/net/unix").read_text().splitlines()[1:]]
    named = [row for row in rows if row[6] in inodes and len(row) > 7]
    assert named == []  # neither a path nor an abstract address: only the holders of the other end can ask


def test_a_killed_loader_is_replaced_at_the_next_load_and_reaped_by_the_seed(server):
    seed, zygotes = server.settled()
    os.kill(zygotes[0], signal.SIGKILL)
    until(lambda: not exists(zygotes[0]), 10, "the seed reaps the killed loader")

    def replaced():
        server.create()
        now = server.zygotes(seed)
        return len(now) == 2 and zygotes[0] not in now

    until(replaced, 60, "a new loader, forked by the seed, for the worker whose loader was killed")


def test_a_loader_ends_with_its_worker(server):
    seed, zygotes = server.settled()
    templates = {zygote: children(zygote) for zygote in zygotes}
    worker = server.workers()[0]
    os.kill(worker, signal.SIGKILL)
    # One of the two loaders was this worker's: it and its templates end, and the seed reaps it.
    until(lambda: any(not exists(zygote) for zygote in zygotes), 10, "the dead worker's loader ends")
    gone = next(zygote for zygote in zygotes if not exists(zygote))
    until(lambda: not any(alive(pid) for pid in templates[gone]), 10, "its templates end with it")
    assert alive(next(zygote for zygote in zygotes if zygote != gone))  # the other worker's is untouched
    # gunicorn forks a new worker, whose loader comes from the same seed.
    until(lambda: len(server.zygotes(seed)) == 2, 60, "the new worker's loader")
    assert server.seed() == seed


def test_without_its_seed_a_worker_starts_its_own_loader_until_the_master_starts_a_new_seed(server):
    seed, zygotes = server.settled()
    os.kill(seed, signal.SIGKILL)
    for zygote in zygotes:  # the seed's loaders live on with their workers: kill them to force new ones
        os.kill(zygote, signal.SIGKILL)

    def own_loaders():
        server.create()
        return [pid for worker in server.workers() for pid in server.zygotes(worker)]

    until(own_loaders, 60, "a worker starts a loader of its own (exec'd) when the seed is gone")
    # The master starts a new seed before it forks its next worker, which uses it.
    os.kill(server.workers()[0], signal.SIGKILL)
    new_seed = until(lambda: server.seed() not in (None, seed) and server.seed(), 60, "a new seed")
    until(lambda: len(server.zygotes(new_seed)) == 1, 60, "the new worker's loader comes from the new seed")
