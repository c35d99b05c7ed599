"""The audit log's chain: tamper-evident, and erasable where it holds personal data.

Each entry is chained: its hash covers the previous entry's hash, its sequence number,
time, action, actor, subject and a *salted commitment* to its details. The details
(which may name a person: a username, an address) are kept apart with their salt; at
the end of retention they can be erased and the chain still verifies, since it only
ever covered the commitment — but only where a later purge entry about the same
subject covers the erasure. While the details are there, they are checked against it.
The chain is unkeyed: anchors (:mod:`.audit_anchors`) fix its head in time.

:func:`verify` walks the entries in storage order and names the first place where the
chain breaks and how: an entry changed, entries missing, an entry inserted, entries out
of order, details changed. A cut at the end leaves a shorter valid chain: compare the
head with a checkpoint kept elsewhere (the evidence packages carry the head).

Pure: no I/O, no clock.
"""

from __future__ import annotations

import hashlib
import json
import secrets
from dataclasses import dataclass
from typing import Any

GENESIS = b"\x00" * 32
DOMAIN = b"videoid-audit-v1"
PURGE_ACTION = "retention_purge"
"""The entry a purge writes: it covers the erased details of earlier entries about the
same subject (and only those)."""


def canonical(details: dict[str, Any]) -> bytes:
    return json.dumps(details, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()


def commitment(salt: bytes, details: dict[str, Any]) -> str:
    return hashlib.sha256(b"videoid-audit-details" + salt + canonical(details)).hexdigest()


@dataclass(frozen=True)
class Entry:
    seq: int
    at: float
    action: str
    actor: str
    subject: str
    commitment: str
    hash: str

    def expected_hash(self, previous: bytes) -> str:
        return entry_hash(
            previous, self.seq, self.at, self.action, self.actor, self.subject, self.commitment
        )


def entry_hash(
    previous: bytes, seq: int, at: float, action: str, actor: str, subject: str, commit: str
) -> str:
    h = hashlib.sha256(DOMAIN)
    h.update(previous)
    for part in (str(seq), repr(float(at)), action, actor, subject, commit):
        data = part.encode()
        h.update(len(data).to_bytes(4, "big") + data)
    return h.hexdigest()


def new_entry(
    previous: Entry | None,
    at: float,
    action: str,
    actor: str,
    subject: str,
    details: dict[str, Any],
) -> tuple[Entry, bytes]:
    """The next entry after ``previous``, and the salt of its details."""
    salt = secrets.token_bytes(16)
    commit = commitment(salt, details)
    seq = previous.seq + 1 if previous else 1
    prev_hash = bytes.fromhex(previous.hash) if previous else GENESIS
    digest = entry_hash(prev_hash, seq, at, action, actor, subject, commit)
    return Entry(seq, at, action, actor, subject, commit, digest), salt


@dataclass
class Verdict:
    ok: bool
    entries: int
    head: str
    """The last entry's hash: keep it elsewhere to detect a cut at the end."""
    erased: int
    """Entries whose details were erased by a purge of their subject (retention): fine."""
    problem: str | None = None
    at_seq: int | None = None


def verify(
    entries: list[Entry],
    details: dict[int, tuple[bytes, dict[str, Any]]],
    checkpoint: tuple[int, str] | None = None,
) -> Verdict:
    """Check the chain (entries in storage order) and every detail still present.
    ``checkpoint`` (seq, hash), kept elsewhere, must still be in the chain."""
    previous_hash, expected_seq, erased = GENESIS, 1, 0
    purged: dict[str, int] = {}  # subject -> the last purge entry about it
    for e in entries:
        if e.action == PURGE_ACTION and e.subject:
            purged[e.subject] = max(purged.get(e.subject, 0), e.seq)
    head = GENESIS.hex()

    def broken(why: str, seq: int) -> Verdict:
        return Verdict(False, len(entries), head, erased, why, seq)

    for position, entry in enumerate(entries):
        if entry.seq > expected_seq:
            if any(e.seq == expected_seq for e in entries[position + 1 :]):
                return broken(
                    f"entries out of order: entry {entry.seq} stands before entry {expected_seq}",
                    expected_seq,
                )
            missing = (
                f"entry {expected_seq}"
                if entry.seq == expected_seq + 1
                else f"entries {expected_seq} to {entry.seq - 1}"
            )
            return broken(f"{missing} deleted (the chain jumps to {entry.seq})", expected_seq)
        if entry.seq < expected_seq:
            return broken(
                f"entry {entry.seq} appears after entry {expected_seq - 1}: inserted or reordered",
                entry.seq,
            )
        if entry.hash != entry.expected_hash(previous_hash):
            # intact but after the wrong entry, or changed itself
            if _links(entry, entries):
                return broken(
                    f"entry {entry.seq} does not follow entry {entry.seq - 1}: inserted, "
                    "reordered, or the entry before it was replaced",
                    entry.seq,
                )
            return broken(f"entry {entry.seq} was changed", entry.seq)
        if entry.seq in details:
            salt, body = details[entry.seq]
            if commitment(salt, body) != entry.commitment:
                return broken(f"the details of entry {entry.seq} were changed", entry.seq)
        elif purged.get(entry.subject, 0) > entry.seq:
            erased += 1
        else:
            return broken(
                f"the details of entry {entry.seq} were deleted, and no purge of "
                f"{entry.subject or 'its subject'} after it covers that",
                entry.seq,
            )
        previous_hash = bytes.fromhex(entry.hash)
        head = entry.hash
        expected_seq += 1
    if checkpoint is not None:
        seq, digest = checkpoint
        found = next((e for e in entries if e.seq == seq), None)
        if found is None:
            return broken(f"the chain ends before the checkpoint at entry {seq}: cut", seq)
        if found.hash != digest:
            return broken(f"entry {seq} is not the one checkpointed", seq)
    return Verdict(True, len(entries), head, erased)


def _links(entry: Entry, entries: list[Entry]) -> bool:
    """Whether ``entry``'s own hash is consistent with some entry's as its predecessor
    (then the entry is intact and only its place is wrong)."""
    candidates = [GENESIS, *(bytes.fromhex(o.hash) for o in entries if o is not entry)]
    return any(entry.hash == entry.expected_hash(c) for c in candidates)
