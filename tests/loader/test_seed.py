"""The worker's side of the loader seed (loader/seed.py) without a server: the handle on a zygote that is not the
caller's child, and the cases where the caller execs its own zygote instead. The seed itself under gunicorn:
tests/test_loader_seed.py."""

from __future__ import annotations

import os
import socket
import subprocess
import sys

import pytest

from loader import seed


def test_a_zygote_that_is_not_our_child_is_waited_for_and_killed_through_its_pidfd():
    process = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    request_r, request_w = os.pipe()
    answer_r, answer_w = os.pipe()
    handle = seed.SeededZygote(process.pid, os.pidfd_open(process.pid), request_w, answer_r)
    try:
        assert handle.poll() is None
        with pytest.raises(subprocess.TimeoutExpired):
            handle.wait(timeout=0.05)
        handle.kill()
        assert handle.wait(timeout=10) == 0 and handle.poll() == 0
        assert process.wait(10) == -9
    finally:
        process.kill()
        process.wait()
        handle.stdin.close()
        handle.stdout.close()
        for fd in (request_r, answer_w):
            os.close(fd)


def test_without_a_seed_the_caller_starts_its_own_zygote(monkeypatch):
    monkeypatch.setattr(seed, "_control", None)
    assert seed.spawn(sys.executable, ["8", "2", "1", "off", "nobody"], 1) is None


def test_a_seed_running_another_interpreter_is_not_asked(monkeypatch):
    ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
    monkeypatch.setattr(seed, "_control", ours)
    monkeypatch.setattr(seed, "_python", "/another/python")
    try:
        assert seed.spawn(sys.executable, ["8", "2", "1", "off", "nobody"], 1) is None
        theirs.setblocking(False)
        with pytest.raises(BlockingIOError):
            theirs.recv(1)  # nothing was sent
    finally:
        ours.close()
        theirs.close()


def test_a_dead_seed_makes_the_caller_start_its_own_zygote(monkeypatch):
    ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
    theirs.close()  # the seed's end: gone
    monkeypatch.setattr(seed, "_control", ours)
    monkeypatch.setattr(seed, "_python", sys.executable)
    before = set(os.listdir("/proc/self/fd"))
    try:
        assert seed.spawn(sys.executable, ["8", "2", "1", "off", "nobody"], 1) is None
        assert set(os.listdir("/proc/self/fd")) <= before  # no pipe or socket left open
    finally:
        ours.close()
