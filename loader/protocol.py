"""The wire format between the server (`loader.client`), the warm parent (`loader.parent`) and its children, and
the one shape of a load error.

Server and parent speak frames: an 8-byte prefix (header length, body length, both 4-byte big-endian), a JSON
header and a raw body. Requests carry an `id`; answers carry the same `id`. A function call (`op: "call"`, see
loader/runtime/pool.py) is answered by several frames `{"kind": "run", "id"}`, the last with `"final": true`, each
body one JSON frame; `{"op": "cancel", "target": id}` has no answer. The parent hands a child its job, and the child
its answer back, as messages: a 4-byte big-endian length and that many bytes (a runtime worker sends many, each
starting with a byte that says what it is, loader/runtime/worker.py).
"""

from __future__ import annotations

import json
import os

PREFIX = 8
MESSAGE_PREFIX = 4
READ_CHUNK = 1 << 20
# What a request may set as `output_cap` (output kept with its answer; the rest is counted, not kept) and `result_cap`
# (the largest answer a child may send), and what every part of the loader assumes when it does not.
DEFAULT_OUTPUT_CAP = 64 * 1024
DEFAULT_RESULT_CAP = 2 * 1024 * 1024


def error(kind: str, message: str, line: int | None = None, column: int | None = None) -> dict:
    """A load error as every part of the loader hands it on: `{"type", "message", "line", "column"}`."""
    return {"type": kind, "message": message, "line": line, "column": column}


def read_available(fd: int) -> bytes | None:
    """What a non-blocking descriptor holds now: None when nothing has arrived yet, b"" at its end (or on error)."""
    try:
        return os.read(fd, READ_CHUNK)
    except BlockingIOError:
        return None
    except OSError:
        return b""


def keep_within(buffer: bytearray, data: bytes, cap: int) -> int:
    """Append as much of `data` to `buffer` as keeps it within `cap` bytes; how many bytes of `data` are dropped.

    In place, so that a buffer zeroed later (forgetting a job) is the one that held the bytes.
    """
    room = max(0, cap - len(buffer))
    buffer += data[:room]
    return len(data) - min(room, len(data))


def encode_frame(header: dict, body: bytes = b"") -> bytes:
    head = json.dumps(header, ensure_ascii=True, separators=(",", ":"), default=str).encode()
    return len(head).to_bytes(4, "big") + len(body).to_bytes(4, "big") + head + body


def frame_sizes(prefix: bytes | bytearray) -> tuple[int, int]:
    """The header and body lengths a frame's prefix announces."""
    return int.from_bytes(prefix[:4], "big"), int.from_bytes(prefix[4:PREFIX], "big")


def read_frame(read) -> tuple[dict, bytes]:
    """Read one frame with `read(size)` (a stream's read): (header, body). EOFError at end of file, ValueError if
    the header is not JSON."""
    head, size = frame_sizes(read_exactly(read, PREFIX))
    header = json.loads(read_exactly(read, head))
    return header, read_exactly(read, size) if size else b""


def encode_message(payload: bytes) -> bytes:
    return len(payload).to_bytes(MESSAGE_PREFIX, "big") + payload


def message_size(buffer: bytes | bytearray) -> int | None:
    """The length a message's prefix at the start of `buffer` announces; None until the prefix has arrived."""
    return int.from_bytes(buffer[:MESSAGE_PREFIX], "big") if len(buffer) >= MESSAGE_PREFIX else None


def complete_message(buffer: bytes | bytearray) -> bytes | None:
    """The message at the start of `buffer` once all of it has arrived, else None."""
    size = message_size(buffer)
    if size is None or len(buffer) < MESSAGE_PREFIX + size:
        return None
    return bytes(buffer[MESSAGE_PREFIX : MESSAGE_PREFIX + size])


def read_message(read) -> bytes:
    """Read one message (see encode_message) with `read(size)`; EOFError at end of file."""
    return read_exactly(read, int.from_bytes(read_exactly(read, MESSAGE_PREFIX), "big"))


def read_exactly(read, size: int) -> bytes:
    """Exactly `size` bytes from `read(n)` (a stream's read, or os.read on a descriptor); EOFError if it ends first."""
    chunks, missing = [], size
    while missing:
        chunk = read(min(missing, READ_CHUNK))
        if not chunk:
            raise EOFError
        chunks.append(chunk)
        missing -= len(chunk)
    return b"".join(chunks)
