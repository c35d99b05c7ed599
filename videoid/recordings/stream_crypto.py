"""Streaming authenticated encryption for recordings: written as they arrive, readable
up to the last complete segment after a crash, and tamper-evident.

The construction is STREAM (Hoang, Reyhanitabar, Rogaway, Vizár, 2015) over
AES-256-GCM: one random 256-bit data key per recording, wrapped by the master key
through the key-management port (:class:`~videoid.storage.envelope.KeyWrapper`) and kept
in the file's header and in the database; each segment is sealed with the nonce
``prefix (7 bytes) | segment number (4 bytes, big-endian) | last flag (1 byte)`` and the
header's hash as associated data. So:

* a segment moved to another position fails (its number is in the nonce);
* a segment replaced by one of another recording, or of the same recording's other
  key, fails (other key, other prefix);
* a file cut after a complete segment reads to there, and the reader says the last
  segment is missing (an interrupted recording: the process died, nothing was
  forged); a file cut inside a segment reads to the segment before, and says so;
* a flipped byte anywhere fails that segment and is reported with its number.

File layout::

    MAGIC (16) | header length (4) | header (JSON: recording id, key id, wrapped key,
    nonce prefix, created) | segment* ; segment = length (4) | ciphertext + tag
"""

from __future__ import annotations

import hashlib
import json
import os
import secrets
import struct
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, BinaryIO

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from ..errors import StorageError
from ..storage.envelope import KeyWrapper

MAGIC = b"VIDEOID-REC1\n\x00\x00\x00"
PREFIX = 7
MAX_SEGMENT = 16 * 1024 * 1024
_LEN = struct.Struct(">I")


class RecordingTampered(StorageError):
    code = "recording_tampered"


def key_context(recording_id: str) -> bytes:
    """What a recording's data key is wrapped with (bound to the recording)."""
    return f"videoid recording {recording_id}".encode()


def _nonce(prefix: bytes, index: int, last: bool) -> bytes:
    if index >= 2**32:
        raise StorageError("a recording has at most 2^32 segments")
    return prefix + struct.pack(">IB", index, 1 if last else 0)


class SegmentWriter:
    """Appends sealed segments to a file; ``close`` seals the last one.

    Each ``write`` of a segment is flushed and fsynced when ``durable`` (the default),
    so that a killed process loses at most the segment being written."""

    def __init__(
        self,
        path: Path,
        recording_id: str,
        wrapper: KeyWrapper,
        *,
        created: float,
        durable: bool = True,
    ) -> None:
        self.path = path
        self.recording_id = recording_id
        self._key = secrets.token_bytes(32)
        self._aead = AESGCM(self._key)
        self._prefix = secrets.token_bytes(PREFIX)
        self.wrapped_key = wrapper.wrap(self._key, key_context(recording_id))
        self.key_id = wrapper.key_id
        header = json.dumps(
            {
                "recording": recording_id,
                "key_id": wrapper.key_id,
                "wrapped_key": self.wrapped_key.hex(),
                "prefix": self._prefix.hex(),
                "created": created,
            },
            sort_keys=True,
        ).encode()
        self._aad = hashlib.sha256(MAGIC + header).digest()
        self._durable = durable
        self.segments = 0
        self.bytes_in = 0
        self._pending: bytes | None = None
        self._hash = hashlib.sha256()
        self._held: list[bytes] | None = None
        path.parent.mkdir(parents=True, exist_ok=True)
        self._file: BinaryIO | None = open(path, "xb")
        self._emit(MAGIC + _LEN.pack(len(header)) + header)

    def write(self, data: bytes) -> None:
        """Queue ``data`` as the next segment. The previous one is sealed now (not as
        the last); this one waits until the next write or ``close``."""
        if self._file is None:
            raise StorageError("the recording is closed")
        if len(data) > MAX_SEGMENT:
            raise StorageError("a segment is at most 16 MiB")
        if self._pending is not None:
            self._seal(self._pending, last=False)
        self._pending = data

    def flush(self) -> None:
        """Seal what is queued as a middle segment (so that it survives a crash)."""
        if self._pending is not None:
            self._seal(self._pending, last=False)
            self._pending = None

    def hold(self) -> None:
        """From now on keep sealed segments in memory until :meth:`take_held`: the
        caller seals where it likes (an event loop: sealing is quick) and writes them
        with :meth:`put_out` where blocking is fine (a thread)."""
        self._held = []

    def take_held(self) -> bytes:
        held, self._held = self._held, []
        return b"".join(held or ())

    def put_out(self, data: bytes) -> None:
        """Write sealed bytes from :meth:`take_held`, durably."""
        if self._file is None:
            raise StorageError("the recording is closed")
        self._file.write(data)
        self._file.flush()
        os.fsync(self._file.fileno())

    def close(self) -> str:
        """Seal the last segment and close; returns the plaintext's SHA-256."""
        if self._file is None:
            return self._hash.hexdigest()
        self._seal(self._pending or b"", last=True)
        self._pending = None
        if self._held is not None:
            self.put_out(self.take_held())
            self._held = None
        self._file.close()
        self._file = None
        return self._hash.hexdigest()

    def _seal(self, data: bytes, *, last: bool) -> None:
        sealed = self._aead.encrypt(_nonce(self._prefix, self.segments, last), data, self._aad)
        self._emit(_LEN.pack(len(sealed)) + sealed)
        self.segments += 1
        self.bytes_in += len(data)
        self._hash.update(data)

    def _emit(self, data: bytes) -> None:
        assert self._file is not None
        if self._held is not None:
            self._held.append(data)
            return
        self._file.write(data)
        self._file.flush()
        if self._durable:
            os.fsync(self._file.fileno())


@dataclass
class ReadResult:
    segments: int = 0
    complete: bool = False
    """The last segment was there (the recording was closed properly)."""
    problem: str | None = None
    """Why reading stopped early, when it did (with the segment's number)."""
    sha256: str = ""
    sizes: list[int] = field(default_factory=list)


def read_header(f: BinaryIO) -> tuple[dict[str, Any], bytes]:
    magic = f.read(len(MAGIC))
    if magic != MAGIC:
        raise RecordingTampered("not a videoid recording (bad magic)")
    raw_len = f.read(4)
    if len(raw_len) != 4:
        raise RecordingTampered("the recording's header is cut")
    (length,) = _LEN.unpack(raw_len)
    if length > 65536:
        raise RecordingTampered("the recording's header is too long")
    header = f.read(length)
    if len(header) != length:
        raise RecordingTampered("the recording's header is cut")
    try:
        parsed = json.loads(header)
    except ValueError as err:
        raise RecordingTampered("the recording's header is not readable") from err
    return parsed, hashlib.sha256(MAGIC + header).digest()


def open_segments(
    path: Path, wrapper: KeyWrapper, result: ReadResult, wrapped_key: bytes | None = None
) -> Iterator[bytes]:
    """The plaintext segments, in order, each verified. Stops (without raising) at a
    missing last segment or a segment cut short, saying so in ``result``; raises
    :class:`RecordingTampered` at a segment that does not verify. ``wrapped_key`` (from
    the database) must match the header's when given: the header alone is not trusted
    with the key's identity."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        header, aad = read_header(f)
        recording_id = str(header.get("recording", ""))
        key_hex = str(header.get("wrapped_key", ""))
        if wrapped_key is not None and bytes.fromhex(key_hex) != wrapped_key:
            raise RecordingTampered("the recording's key is not the one on record")
        key = wrapper.unwrap(bytes.fromhex(key_hex), key_context(recording_id))
        aead = AESGCM(key)
        prefix = bytes.fromhex(str(header.get("prefix", "")))
        if len(prefix) != PREFIX:
            raise RecordingTampered("the recording's header is not readable")
        index = 0
        while True:
            raw_len = f.read(4)
            if not raw_len:
                result.problem = f"the last segment is missing after segment {index - 1}"
                break
            if len(raw_len) < 4:
                result.problem = f"segment {index} is cut short"
                break
            (length,) = _LEN.unpack(raw_len)
            if length > MAX_SEGMENT + 16:
                raise RecordingTampered(f"segment {index} has an impossible length")
            sealed = f.read(length)
            if len(sealed) < length:
                result.problem = f"segment {index} is cut short"
                break
            plain = None
            for last in (False, True):
                try:
                    plain = aead.decrypt(_nonce(prefix, index, last), sealed, aad)
                except InvalidTag:
                    continue
                break
            if plain is None:
                raise RecordingTampered(
                    f"segment {index} does not verify (changed, moved or from elsewhere)"
                )
            digest.update(plain)
            result.segments = index + 1
            result.sizes.append(len(plain))
            yield plain
            index += 1
            if last:
                if f.read(1):
                    raise RecordingTampered(f"data follows the last segment ({index - 1})")
                result.complete = True
                break
    result.sha256 = digest.hexdigest()
