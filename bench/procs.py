"""What a server's processes cost: the process tree under a pid, its CPU time and its memory (RSS and PSS).

CPU seconds per request hold still when other work shares the machine, where requests per second do not: the bench
reports both, and a change is judged by the first.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

TICKS = os.sysconf("SC_CLK_TCK")
PAGE = os.sysconf("SC_PAGE_SIZE")


def tree(root: int) -> list[int]:
    """``root`` and every process below it, read from /proc (children of each thread included)."""
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            parent = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
        except (OSError, IndexError, ValueError):
            continue
        children.setdefault(parent, []).append(int(entry.name))
    found, pending = [], [root]
    while pending:
        pid = pending.pop()
        found.append(pid)
        pending.extend(children.get(pid, ()))
    return found


def cpu_seconds(pids: list[int], reaped_children: bool = False) -> float:
    """User and system CPU time the processes have used so far (the dead ones are no longer counted); with
    ``reaped_children``, also that of their children already reaped (the loader's load children)."""
    last = 15 if reaped_children else 13  # utime, stime, then cutime, cstime
    total = 0
    for pid in pids:
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        total += sum(int(value) for value in fields[11:last])
    return total / TICKS


@dataclass
class Memory:
    processes: int
    rss_mib: float
    pss_mib: float


def memory(pids: list[int]) -> Memory:
    """Resident memory of the processes: RSS (pages shared across forks counted in each) and PSS (shared fairly)."""
    rss = pss = count = 0
    for pid in pids:
        try:
            lines = Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines()
        except OSError:
            continue
        count += 1
        for line in lines:
            name, _, rest = line.partition(":")
            if name == "Rss":
                rss += int(rest.split()[0])
            elif name == "Pss":
                pss += int(rest.split()[0])
    return Memory(count, rss / 1024, pss / 1024)


def describe(pids: list[int]) -> list[tuple[int, str, float]]:
    """(pid, command line, RSS MiB) of each process, to say which process holds what."""
    rows = []
    for pid in pids:
        try:
            command = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()[:90]
            rss = int(Path(f"/proc/{pid}/statm").read_text().split()[1]) * PAGE / 2**20
        except OSError:
            continue
        rows.append((pid, command, rss))
    return rows


@dataclass
class MachineTime:
    """CPU seconds the whole machine spent, from /proc/stat: busy (every process and the kernel, all cores) and
    stolen by the hypervisor. On a saturated machine, requests/s is the cores' time divided by the busy time per
    request, so these say where a throughput gap comes from (the database server's share: `database_seconds`)."""

    busy: float
    steal: float

    def __sub__(self, other: MachineTime) -> MachineTime:
        return MachineTime(self.busy - other.busy, self.steal - other.steal)

    def __add__(self, other: MachineTime) -> MachineTime:
        return MachineTime(self.busy + other.busy, self.steal + other.steal)


def machine_time() -> MachineTime:
    fields = [int(value) for value in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    # user nice system idle iowait irq softirq steal (guest time is counted in user already)
    busy = sum(fields[:3]) + sum(fields[5:7])
    steal = fields[7] if len(fields) > 7 else 0
    return MachineTime(busy / TICKS, steal / TICKS)


def database_seconds() -> float:
    """CPU seconds used so far by the machine's PostgreSQL server processes (any user's), 0 if none runs."""
    pids = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                if (entry / "comm").read_text().strip() in ("postgres", "postmaster"):
                    pids.append(int(entry.name))
            except OSError:
                continue
    return cpu_seconds(pids)
