"""What runtime workers send, and the frames that answer each call: a part of `Pool` (loader/runtime/pool.py),
whose `__init__` sets up the state these methods share.

Answers go to the client as frames `{"kind": "run", "id", "final"?}` whose body is the frame's JSON, exactly one
final frame per call.
"""

from __future__ import annotations

import json
import time

from loader.protocol import (
    DEFAULT_OUTPUT_CAP,
    MESSAGE_PREFIX,
    complete_message,
    error,
    keep_within,
    message_size,
    read_available,
)
from loader.runtime.records import Call, Worker

# A call that prints more than this many times the output cap is stopped: it floods the pipe, nobody reads it.
FLOOD_FACTOR = 16
FINAL = (b"d", b"x")
STREAMED = (b"e", b"c")


class Answers:
    """Reading workers' pipes and answering their calls (a part of `Pool`, loader/runtime/pool.py)."""

    # --- what workers send ------------------------------------------------------------------------------------

    def read(self, child, fd: int, which: str, rounds: int = 1) -> None:
        """Data on a worker's result or output pipe (called by the zygote's loop)."""
        with self._guard(child.worker):
            self._read(child, fd, which, rounds)

    def _read(self, child, fd: int, which: str, rounds: int = 1) -> None:
        worker = child.worker
        for _ in range(rounds):
            if fd not in (
                child.result_fd,
                child.output_fd,
            ):  # closed meanwhile (end of file read further down)
                return
            data = read_available(fd)
            if data is None:
                return
            if not data:
                self.zygote.close_pipe(fd)
                return
            if worker.state == "dead":
                continue
            if which == "output":
                self._output(worker, data)
            else:
                worker.buffer += data
                self._messages(worker)

    def _messages(self, worker: Worker) -> None:
        while worker.state != "dead":
            size = message_size(worker.buffer)
            if size is not None and size > worker.result_cap + 65536:
                self._fail_worker(
                    worker, "ResultTooLarge", "the function sent more than the result cap at once"
                )
                return
            message = complete_message(worker.buffer)
            if message is None:
                return
            del worker.buffer[: MESSAGE_PREFIX + len(message)]
            self._message(worker, message)

    def _message(self, worker: Worker, message: bytes) -> None:
        kind, payload = message[:1], message[1:]
        call = worker.call
        if kind in STREAMED:
            if call is not None:
                if call.stream:
                    call.idle_deadline = time.monotonic() + call.settings["idle_timeout"]
                self.zygote.send({"kind": "run", "id": call.id}, payload)
        elif kind == b"r":
            worker.load_output.clear()
            if call is not None:
                worker.state = "busy"
                self._arm(call)
            else:
                self._idle(worker)
        elif kind == b"l":
            answer = _parse(payload)
            load_error = answer.get("error") if isinstance(answer.get("error"), dict) else None
            load_error = load_error or error("BadAnswer", "the worker could not load the function")
            self._drain_output(worker)
            if call is not None:
                output = worker.load_output
                self._final(call, {"kind": "error", "error": load_error}, output=bytes(output))
            self._kill(worker)
        elif kind in FINAL:
            self._drain_output(worker)
            if worker.state == "dead":  # it flooded its output before answering: answered OutputLimit
                return
            frame = _parse(payload)
            if not frame:
                frame = {"kind": "error", "error": error("BadAnswer", "the worker gave an unreadable answer")}
            retire = bool(frame.pop("retire", False))
            if call is not None:
                self._final(call, frame)
            worker.call = None
            if retire or worker.stale:
                self._kill(worker)
            else:
                self._idle(worker)
        elif (
            message[:1] == b"{"
        ):  # a reaper's report of how the worker ended (a process-id namespace's pid 1)
            answer = _parse(message)
            if isinstance(answer.get("error"), dict):
                worker.exit_error = answer["error"]

    def _idle(self, worker: Worker) -> None:
        worker.state = "idle"
        worker.last_used = time.monotonic()
        self._drain_queue()

    def _output(self, worker: Worker, data: bytes) -> None:
        call = worker.call
        if worker.state == "starting":
            keep_within(worker.load_output, data, DEFAULT_OUTPUT_CAP)
            return
        if call is None or worker.state != "busy":
            return  # printed between calls (a task the code left running): nobody's
        cap = call.settings["output_cap"]
        dropped = keep_within(call.output, data, cap)
        kept = data[: len(data) - dropped]
        call.dropped += dropped
        call.total += len(data)
        if call.stream and kept:
            text = call.decoder.decode(kept)
            if text:
                self.zygote.send(
                    {"kind": "run", "id": call.id}, compact_json({"kind": "output", "text": text})
                )
        if call.total > max(cap, 4096) * FLOOD_FACTOR:
            limit = max(cap, 4096) * FLOOD_FACTOR
            message = (
                f"the call printed more than {_size(limit)} of output; Sluice stopped it (output is kept up to "
                f"{_size(cap)} per call)"
            )
            self._fail_worker(worker, "OutputLimit", message)

    def _drain_output(self, worker: Worker) -> None:
        """Read what the worker printed before it sent its answer (written before the answer, on another pipe)."""
        fd = worker.child.output_fd
        if fd >= 0:
            self.read(worker.child, fd, "output", rounds=16)

    def _final(self, call: Call, frame: dict, *, output: bytes | None = None) -> None:
        """Answer `call` once with its final frame, its captured output added."""
        if self.calls.pop(call.id, None) is None:
            return
        if call.worker is not None and call.worker.call is call:
            call.worker.call = None
        kept = bytes(call.output) if output is None else output
        frame["output"] = kept.decode("utf-8", "replace")
        frame["dropped"] = call.dropped
        if "ms" not in frame:
            frame["ms"] = round((time.monotonic() - call.sent) * 1000, 3) if call.sent else 0.0
        header = {"kind": "run", "id": call.id, "final": True}
        if call.notices:
            header["notices"] = call.notices
        self.zygote.send(header, compact_json(frame))


def _size(count: int) -> str:
    return f"{count / 1048576:g} MiB" if count >= 1048576 else f"{count / 1024:g} KiB"


def compact_json(data) -> bytes:
    return json.dumps(data, ensure_ascii=True, separators=(",", ":"), default=str).encode()


def _parse(payload: bytes) -> dict:
    try:
        found = json.loads(payload)
    except ValueError:
        return {}
    return found if isinstance(found, dict) else {}
