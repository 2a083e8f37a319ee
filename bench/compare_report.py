"""compare.py's report: the table it prints, and the issue's targets checked against one run's figures.

The labels name the write measurements (``Server.p50s``) that the targets read; the ``Server`` objects are
compare.py's (each GET's ``LoadResult`` in ``pooled``, and for Sluice on PostgreSQL its ``floor``).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from compare import Server

CREATE = "create (corpus, sequential) p50/p95"
FLASK_AND_POSTGRESQL = "Flask + PostgreSQL read"
VALVES_UPDATE = "valves update p50/p95"


def print_table(table: dict) -> None:
    columns = list(table)
    rows = list(dict.fromkeys(row for cells in table.values() for row in cells))
    width = max(len(row) for row in rows)
    widths = [max(len(c), *(len(table[c].get(r, "")) for r in rows)) for c in columns]
    print(" | ".join([f"{'':<{width}}", *(f"{c:<{w}}" for c, w in zip(columns, widths, strict=True))]))
    print("-+-".join(["-" * width, *("-" * w for w in widths)]))
    for row in rows:
        print(
            " | ".join(
                [
                    f"{row:<{width}}",
                    *(f"{table[c].get(row, ''):<{w}}" for c, w in zip(columns, widths, strict=True)),
                ]
            )
        )


def targets(measured: list[Server], other: Server | None, ceiling: Server, listed: int) -> list[str]:
    """Issue 13's targets, worked out from this run: each GET at 16 clients against the other server (at least 10
    times its requests/s) and the ceiling (at least half), its p99 (at most 50 ms), and create's and valves update's
    p50 (no slower than the other server's; at most 15 ms)."""
    lines = ["targets, from this run (met: +, missed: -):"]

    def mark(ok: bool) -> str:
        return "+" if ok else "-"

    for server in measured:
        parts = []
        for label in (f"GET / ({listed} fns) c=16", "GET /id/{id} c=16"):
            mine = server.pooled.get(label)
            if mine is None or not mine.rate:
                continue
            part = f"{label.split(' (')[0].split(' c=')[0]}: {mine.rate:.0f}/s"
            theirs = other.pooled.get(label) if other is not None else None
            if theirs is not None and theirs.rate:
                times = mine.rate / theirs.rate
                part += f" {mark(times >= 10)}{times:.1f}x the other"
            top = ceiling.pooled.get(label)
            if top is not None and top.rate:
                share = mine.rate / top.rate
                part += f" {mark(share >= 0.5)}{100 * share:.0f}% of the ceiling"
            floor = server.floor.pooled.get(label) if server.floor is not None else None
            if floor is not None and floor.rate and top is not None and top.rate:
                # Not a target: how far the database alone takes a bare app, for reading the line above.
                part += f" ({100 * mine.rate / floor.rate:.0f}% of {FLASK_AND_POSTGRESQL}, itself {100 * floor.rate / top.rate:.0f}% of the ceiling)"
            p99 = mine.p(0.99)
            parts.append(f"{part} {mark(p99 <= 50)}p99 {p99:.1f} ms")
        create = server.p50s.get(CREATE)
        if create is not None:
            part = f"create p50 {create:.1f} ms"
            if other is not None and other.p50s.get(CREATE):
                part = f"{mark(create <= other.p50s[CREATE])}{part} against {other.p50s[CREATE]:.1f}"
            parts.append(part)
        valves = server.p50s.get(VALVES_UPDATE)
        if valves is not None:
            parts.append(f"{mark(valves <= 15)}valves update p50 {valves:.1f} ms")
        lines.append(f"  {server.name}: " + "; ".join(parts))
    return lines
