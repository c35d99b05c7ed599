"""The recordings' streaming encryption: round trips, a crash, and every kind of
tampering detected and named (R13)."""

from __future__ import annotations

import secrets
import struct
from pathlib import Path

import pytest

from videoid.errors import StorageError
from videoid.recordings.stream_crypto import (
    MAGIC,
    ReadResult,
    RecordingTampered,
    SegmentWriter,
    open_segments,
)
from videoid.storage.envelope import LocalMasterKey

KEY = LocalMasterKey(bytes(range(32)))
SEGMENTS = [secrets.token_bytes(n) for n in (1000, 70_000, 5, 30_000)]


def record(path: Path, segments=SEGMENTS, close: bool = True, rid: str = "rec-1") -> SegmentWriter:
    w = SegmentWriter(path, rid, KEY, created=1.0, durable=False)
    for s in segments:
        w.write(s)
    if close:
        w.close()
    else:
        w.flush()
    return w


def read(path: Path, key=KEY, wrapped: bytes | None = None) -> tuple[list[bytes], ReadResult]:
    result = ReadResult()
    return list(open_segments(path, key, result, wrapped)), result


def spans(path: Path) -> tuple[bytes, list[tuple[int, int]]]:
    """The file's bytes and each segment's (start, end), length field included."""
    data = path.read_bytes()
    (hlen,) = struct.unpack(">I", data[len(MAGIC) : len(MAGIC) + 4])
    at, out = len(MAGIC) + 4 + hlen, []
    while at < len(data):
        (n,) = struct.unpack(">I", data[at : at + 4])
        out.append((at, at + 4 + n))
        at += 4 + n
    return data, out


def test_round_trip(tmp_path: Path) -> None:
    w = record(tmp_path / "r")
    got, result = read(tmp_path / "r", wrapped=w.wrapped_key)
    assert got == SEGMENTS and result.complete and result.problem is None
    assert result.segments == 4 and result.sha256 == w.close()
    assert SEGMENTS[1][:64] not in (tmp_path / "r").read_bytes()  # encrypted


def test_an_interrupted_recording_reads_to_its_last_complete_segment(tmp_path: Path) -> None:
    record(tmp_path / "r", close=False)  # the process died: no last segment
    got, result = read(tmp_path / "r")
    assert got == SEGMENTS and not result.complete
    assert "last segment is missing" in (result.problem or "")
    data, parts = spans(tmp_path / "r")
    (tmp_path / "cut").write_bytes(data[: parts[2][0] + 10])  # died while writing segment 2
    got, result = read(tmp_path / "cut")
    assert got == SEGMENTS[:2] and result.problem == "segment 2 is cut short"


@pytest.mark.parametrize("where", ["first", "middle", "tag", "length"])
def test_a_flipped_byte_is_found(tmp_path: Path, where: str) -> None:
    record(tmp_path / "r")
    data, parts = spans(tmp_path / "r")
    start, end = parts[1]
    offset = {"first": start + 4, "middle": (start + end) // 2, "tag": end - 1, "length": start + 3}
    bad = bytearray(data)
    bad[offset[where]] ^= 0x01
    (tmp_path / "r").write_bytes(bytes(bad))
    with pytest.raises(RecordingTampered, match="segment 1"):
        read(tmp_path / "r")


def test_moved_deleted_substituted_and_appended_segments(tmp_path: Path) -> None:
    record(tmp_path / "r")
    data, parts = spans(tmp_path / "r")
    seg = [data[a:b] for a, b in parts]
    head = data[: parts[0][0]]
    cases = {
        "swapped": head + seg[0] + seg[2] + seg[1] + seg[3],
        "deleted": head + seg[0] + seg[2] + seg[3],
        "last moved up": head + seg[0] + seg[3],
    }
    for name, forged in cases.items():
        (tmp_path / name).write_bytes(forged)
        with pytest.raises(RecordingTampered, match="segment 1"):
            read(tmp_path / name)
    (tmp_path / "appended").write_bytes(data + seg[1])
    with pytest.raises(RecordingTampered, match="follows the last segment"):
        read(tmp_path / "appended")
    # a segment from another recording (same master key) in its place
    record(tmp_path / "other", rid="rec-2")
    other_data, other_parts = spans(tmp_path / "other")
    a, b = other_parts[1]
    (tmp_path / "mixed").write_bytes(head + seg[0] + other_data[a:b] + seg[2] + seg[3])
    with pytest.raises(RecordingTampered, match="segment 1"):
        read(tmp_path / "mixed")


def test_wrong_master_key_and_header(tmp_path: Path) -> None:
    w = record(tmp_path / "r")
    with pytest.raises(StorageError, match="master key"):
        read(tmp_path / "r", key=LocalMasterKey(b"\x01" * 32))
    with pytest.raises(RecordingTampered, match="not the one on record"):
        read(tmp_path / "r", wrapped=w.wrapped_key[:-1] + b"\x00")
    (tmp_path / "junk").write_bytes(b"not a recording at all")
    with pytest.raises(RecordingTampered, match="bad magic"):
        read(tmp_path / "junk")
    data = (tmp_path / "r").read_bytes()
    forged = data.replace(b'"created": 1.0', b'"created": 2.0')  # the header is authenticated
    (tmp_path / "forged").write_bytes(forged)
    with pytest.raises(RecordingTampered, match="segment 0"):
        read(tmp_path / "forged")
