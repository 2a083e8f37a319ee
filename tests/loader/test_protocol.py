"""The wire format between client, parent and children (loader/protocol.py)."""

from __future__ import annotations

import io
import os

import pytest

from loader import protocol


def test_a_frame_reads_back_as_written():
    stream = io.BytesIO(
        protocol.encode_frame({"id": 3, "op": "load"}, b"body") + protocol.encode_frame({"id": 4})
    )

    assert protocol.read_frame(stream.read) == ({"id": 3, "op": "load"}, b"body")
    assert protocol.read_frame(stream.read) == ({"id": 4}, b"")
    with pytest.raises(EOFError):
        protocol.read_frame(stream.read)


def test_frame_sizes_come_from_the_prefix():
    frame = protocol.encode_frame({"a": 1}, b"xyz")

    assert protocol.frame_sizes(frame) == (len(b'{"a":1}'), 3)


def test_read_exactly_reads_a_descriptor_in_pieces_and_fails_at_end_of_file():
    read_fd, write_fd = os.pipe()
    try:
        os.write(write_fd, b"abcdef")
        os.close(write_fd)
        write_fd = -1
        reads = []

        def read(size):
            reads.append(size)
            return os.read(read_fd, min(size, 2))

        assert protocol.read_exactly(read, 5) == b"abcde"
        assert len(reads) == 3
        with pytest.raises(EOFError):
            protocol.read_exactly(read, 2)
    finally:
        os.close(read_fd)
        if write_fd >= 0:
            os.close(write_fd)


def test_a_message_is_complete_only_once_all_of_it_arrived():
    message = protocol.encode_message(b"hello")

    assert protocol.message_size(message[:3]) is None
    assert protocol.message_size(message) == 5
    assert protocol.complete_message(message[:-1]) is None
    assert protocol.complete_message(message + b"next") == b"hello"
    assert protocol.read_message(io.BytesIO(message).read) == b"hello"


def test_every_error_has_the_same_four_keys():
    assert protocol.error("Timeout", "too slow") == {
        "type": "Timeout",
        "message": "too slow",
        "line": None,
        "column": None,
    }
    assert protocol.error("SyntaxError", "bad", 3, 7) == {
        "type": "SyntaxError",
        "message": "bad",
        "line": 3,
        "column": 7,
    }
