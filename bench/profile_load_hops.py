"""Where an isolated load's wall time goes, hop by hop: the caller to the child, the child's own work, and back.

    .venv/bin/python bench/profile_load_hops.py                  # 80 loads of a small valved filter, 200 ms apart
    .venv/bin/python bench/profile_load_hops.py --pause-ms 0     # back to back
    .venv/bin/python bench/profile_load_hops.py --function action_cloud_storage_upload --pause-ms 300
                                                   # a corpus file, with warm imports on (its first loads not counted)

A load crosses four processes' hand-offs: the server writes the job to the zygote, the zygote hands it to a warm
spare child, the child answers the zygote, the zygote answers the server (whose reader thread then wakes the waiting
request thread). The child stamps when it received its job, when its folders and identity were in place and when
the code was described (`timing` in its answer, on the system's monotonic clock, which every process shares); the
server side is timed here around the call. Printed are the medians of:

    to child        the caller's request written, read by the zygote, handed to the child, read by it
    prepare         the child's limits, folders and identity (loader/child.py `_prepare_job`)
    describe        running the code and describing it (loader/describe.py), what Open WebUI does in-process
    back            the child's answer encoded, read by the zygote, written to the caller, read and woken up
    in process      the same describe run in this process, warm, for reference (no isolation at all)

and the cost to the writer of one pipe write that wakes a sleeping process (the zygote, here), which each hand-off
pays once. On a virtual machine with idle cores a wake-up can take milliseconds: "back" is then bimodal (its p90
says so), and the same code in-process is several times faster than across the hops.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import loader  # noqa: E402
import loader.client  # noqa: E402
import loader.connection  # noqa: E402
from loader import describe  # noqa: E402

SOURCE = '''"""
title: Hops
"""
from pydantic import BaseModel, Field


class Filter:
    class Valves(BaseModel):
        priority: int = Field(default=0, description="order")
        name: str = "x"

    def __init__(self):
        self.valves = self.Valves()

    def inlet(self, body: dict) -> dict:
        return body
# {n}
'''


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--loads", type=int, default=80)
    parser.add_argument("--pause-ms", type=float, default=200)
    parser.add_argument(
        "--function",
        help="a file of the test corpus (tests/fixtures/functions, without .py) instead of the small filter: "
        "loaded with warm imports on (SLUICE_LOAD_WARM_IMPORTS_MB's default), after --warm-up loads not counted",
    )
    parser.add_argument("--warm-up", type=int, default=4)
    args = parser.parse_args()
    source = SOURCE
    if args.function:
        corpus = Path(__file__).resolve().parent.parent / "tests" / "fixtures" / "functions"
        # Braces doubled: the text is a format string with the load's number in a comment at its end.
        code = loader.rewrite_imports((corpus / f"{args.function}.py").read_text())
        source = code.replace("{", "{{").replace("}", "}}") + "\n# {n}\n"
        loader.configure(warm_imports_mb=64)
        sys.path.insert(0, loader.connection.COMPAT_DIR)  # for the in-process reference

    # The raw answer (with the child's stamps) and the moment the reader thread handed it over.
    seen: dict = {}
    run = loader.client._run

    def timed_run(request, during=None):
        header, answer = run(request, during)
        seen["answer"] = answer
        return header, answer

    writes: list[float] = []
    post = loader.connection.ZygoteProcess.post

    def timed_post(self, request):
        began = time.perf_counter()
        try:
            return post(self, request)
        finally:
            writes.append((time.perf_counter() - began) * 1e6)

    loader.client._run = timed_run
    loader.connection.ZygoteProcess.post = timed_post
    loader.start()
    time.sleep(1.5)  # the spares fork and warm up
    rows = []
    for n in range(-args.warm_up if args.function else 0, args.loads):
        time.sleep(args.pause_ms / 1000)
        began = time.monotonic()
        result = loader.load_function(source.format(n=n), function_id=f"hops_{n}")
        ended = time.monotonic()
        timing = (seen.get("answer") or {}).get("timing") or {}
        if not result.ok or not timing:
            raise SystemExit(f"load {n} failed or gave no timing: {result.error}")
        if n < 0:
            time.sleep(1)  # the zygote warms what two loads imported while nothing waits
            continue
        rows.append(
            {
                "to child": timing["received"] - began,
                "prepare": timing["prepared"] - timing["received"],
                "describe": timing["described"] - timing["prepared"],
                "back": ended - timing["described"],
                "whole load": ended - began,
            }
        )
    loader.shutdown()

    local = []
    with tempfile.TemporaryDirectory(prefix="sluice-hops-") as workdir:
        for n in range(args.loads + 20):
            began = time.perf_counter()
            describe.answer(
                {"op": "load", "content": source.format(n=n), "function_id": f"here_{n}"}, workdir
            )
            local.append(time.perf_counter() - began)
            sys.modules.pop(f"function_here_{n}", None)

    what = args.function or "a small valved filter"
    print(f"{args.loads} loads of {what}, {args.pause_ms:g} ms apart (ms, median and p90):")
    for key in rows[0]:
        values = sorted(row[key] * 1000 for row in rows)
        print(f"  {key:<12} {statistics.median(values):7.2f}  {values[int(len(values) * 0.9)]:7.2f}")
    local = sorted(value * 1000 for value in local[20:])
    print(f"  {'in process':<12} {statistics.median(local):7.2f}  {local[int(len(local) * 0.9)]:7.2f}")
    writes.sort()
    print(
        f"  a pipe write that wakes the zygote: {statistics.median(writes):.0f} µs median, "
        f"{writes[int(len(writes) * 0.9)]:.0f} µs p90 (its writer's wall time)"
    )


if __name__ == "__main__":
    main()
