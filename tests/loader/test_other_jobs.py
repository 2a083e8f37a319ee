"""A child must find none of the jobs in flight, which the zygote holds (children are forked from a clean template
where there is one, loader/namespaces.py, and else from the zygote itself).

While one job runs (its code and valves values carry a marker), other loads look for the marker the ways function
code could: up its own stack (`sys._getframe().f_back`, where the loop that forked the child was), through
everything the garbage collector knows, and through what those objects refer to. Fragments of freed memory are not
looked for: heap copied at fork is not wiped (loader/CONTRACT.md).
"""

from __future__ import annotations

import threading
import time
import uuid

from loader import client
from tests.loader.support import unique

SCAN = """
import gc, sys
from pydantic import BaseModel

NEEDLE = "SLUICE-OTHER" + "-JOB-"
ZYGOTE_TYPES = {"Zygote", "Child", "Forked"}


def holds(value):
    if isinstance(value, str):
        return NEEDLE in value and value != NEEDLE
    if isinstance(value, (bytes, bytearray, memoryview)):
        return NEEDLE.encode() in bytes(value)
    return False


def scan():
    found, names, seen = set(), [], set()
    frame, roots = sys._getframe(), []
    while frame is not None:
        names.append(frame.f_code.co_name)
        roots.extend(frame.f_locals.values())
        frame = frame.f_back
    roots.extend(gc.get_objects())
    queue, budget = list(roots), 3_000_000
    while queue and budget:
        budget -= 1
        value = queue.pop()
        if id(value) in seen:
            continue
        seen.add(id(value))
        if holds(value):
            found.add("marker")
        elif type(value).__name__ in ZYGOTE_TYPES:
            found.add(type(value).__name__)
        elif not isinstance(value, (str, bytes, int, float, type(None))):
            queue.extend(gc.get_referents(value))
    return sorted(found), names, budget > 0


FOUND, FRAMES, COMPLETE = scan()


class Pipe:
    class Valves(BaseModel):
        found: list = FOUND
        frames: list = FRAMES
        complete: bool = COMPLETE
"""


def test_function_code_finds_no_trace_of_other_jobs_in_flight(loader_fast):
    marker = "SLUICE-OTHER-JOB-" + uuid.uuid4().hex
    slow = unique(f"""
        import time
        from pydantic import BaseModel

        SECRET = {marker!r}
        time.sleep(8)  # long enough for three scans on a loaded machine

        class Pipe:
            class Valves(BaseModel):
                token: str = ""
    """)
    before = client.settings().timeout
    loader_fast.configure(timeout=20)
    answers = {}
    other = threading.Thread(
        target=lambda: answers.update(slow=loader_fast.load_function(slow, valves={"token": marker}))
    )
    try:
        other.start()
        time.sleep(0.3)
        # The first may get a spare forked before the slow job came; the next ones get spares forked during it.
        scans = []
        while len(scans) < 3 and other.is_alive():
            scans.append(loader_fast.load_function(unique(SCAN)))
        other.join(20)
    finally:
        loader_fast.configure(timeout=before)

    assert answers["slow"].ok and answers["slow"].valves_check.ok  # still running when the scans were done
    assert len(scans) == 3
    for result in scans:
        assert result.ok, result.error
        seen = {name: prop["default"] for name, prop in result.valves_schema["properties"].items()}
        assert seen["complete"]
        assert seen["found"] == []
        assert not {"serve", "_spawn", "_dispatch", "_replenish", "_read_requests"} & set(seen["frames"])
