"""What the zygote's children send, read within their caps, and the answers it gives the caller for them.

`Replies` is a part of `Zygote` (loader/parent.py), whose `__init__` sets up the state these methods share.
"""

from __future__ import annotations

import os
import time

from loader.protocol import (
    DEFAULT_OUTPUT_CAP,
    DEFAULT_RESULT_CAP,
    MESSAGE_PREFIX,
    complete_message,
    encode_frame,
    error,
    keep_within,
    message_size,
    read_available,
)
from loader.spares import ANSWERED_GRACE, Child


class Replies:
    """Reading children's pipes and answering the caller (a part of `Zygote`, loader/parent.py)."""

    def _read_pipe(self, fd: int, rounds: int = 1) -> None:
        item, which = self.pipes[fd]
        if item.worker is not None:
            return self.pool.read(item, fd, which, rounds)
        for _ in range(rounds):
            data = read_available(fd)
            if data is None:
                return
            if not data:
                self._close_pipe(fd)
                return
            if which == "output":
                cap = int((item.request or {}).get("output_cap") or DEFAULT_OUTPUT_CAP)
                item.dropped += keep_within(item.output, data, cap)
                item.printed += len(data)
                limit = (item.request or {}).get("output_limit")
                if limit and item.printed > limit and not item.answered:
                    self._fail(
                        item,
                        "OutputLimit",
                        f"the code printed more than {limit / (1024 * 1024):g} MB of output while loading, the most "
                        "a load may print (SLUICE_LOAD_OUTPUT_MB); Sluice stopped it",
                    )
                    self._kill(item)
                    return
                continue
            if item.answered or item.request is None:
                continue  # already answered (or refused), or a spare writing before its job: discarded
            item.result += data
            cap = int(item.request.get("result_cap") or DEFAULT_RESULT_CAP) + 65536
            if (message_size(item.result) or 0) > cap or len(item.result) > cap + MESSAGE_PREFIX:
                self._fail(item, "ResultTooLarge", "the answer is too large: is the valves schema huge?")
                self._kill(item)
            elif complete_message(item.result) is not None:
                self._answer_from_child(item)
                item.ending = time.monotonic() + ANSWERED_GRACE  # killed then by `_expire`
                return

    def _answer_from_child(self, item: Child) -> None:
        if item.output_fd >= 0:
            self._read_pipe(item.output_fd, rounds=8)
        self._reply(item, None, complete_message(item.result))

    def _fail(self, item: Child, kind: str, message: str) -> None:
        self._reply(item, error(kind, message))

    def _fail_request(self, request, kind: str, message: str) -> None:
        request_id = request.get("id") if isinstance(request, dict) else None
        self._send(
            {"kind": "answer", "id": request_id, "error": error(kind, message), "output": "", "dropped": 0}
        )

    def _reply(self, item: Child, error: dict | None, body: bytes = b"") -> None:
        if item.answered:
            return
        item.answered = True
        header = {
            "kind": "answer",
            "id": item.id,
            "error": error,
            "output": item.output.decode("utf-8", "replace"),
            "dropped": item.dropped,
            "elapsed": round(time.monotonic() - item.started, 6),
        }
        if item.notice:
            header["notices"] = item.notice
        self._send(header, body)

    def send(self, header: dict, body: bytes = b"") -> None:
        self._send(header, body)

    def _send(self, header: dict, body: bytes = b"") -> None:
        view = memoryview(encode_frame(header, body))
        while view:
            try:
                written = os.write(self.answer_fd, view)
            except InterruptedError:
                continue
            except OSError:
                self.shutdown()
                os._exit(0)
            view = view[written:]
