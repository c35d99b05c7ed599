"""Anchors for the audit log: its head, signed by a key in the token and timestamped.

The chain alone is unkeyed: whoever can write the database can edit an entry and
recompute every hash after it. An anchor fixes the head at a time: the entry's number
and hash, signed with ECDSA P-256 by a key that never leaves the token (label
``videoid-audit-anchor``), and an RFC 3161 timestamp over that signature. The server
anchors at every evidence seal and at least every ``audit.anchor_minutes`` when the
log has grown. :func:`check_anchors` finds the first anchor the log no longer matches,
and so names the last entry up to which the log is known to be as it was.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, Protocol

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec

from ..db import Repository
from ..db.repository import AuditAnchor
from ..errors import VideoidError
from .audit_chain import Entry, verify
from .timestamps import TimestampPort, check_token

logger = logging.getLogger(__name__)

ANCHOR_KEY = "videoid-audit-anchor"
DOMAIN = "videoid-audit-anchor-v1"
# how far an anchor's time may stand from its timestamp's (the server's clock and the TSA's)
MAX_CLOCK_SKEW_SECONDS = 600.0


class Keys(Protocol):
    """What the anchors need of the token (``trust.ca.TokenKeys``)."""

    def generate(self, label: str) -> bytes: ...
    def public_key(self, label: str) -> bytes | None: ...
    def sign(self, label: str, data: bytes) -> bytes: ...


def message(seq: int, digest: str, at: float, number: int, previous: bytes | None) -> bytes:
    """What an anchor's signature covers: the head, the time, and its place in the
    anchors' own chain (its number and the previous anchor's signature's SHA-256), so
    that an anchor removed from the middle breaks the next one."""
    return json.dumps(
        {
            "domain": DOMAIN,
            "seq": seq,
            "hash": digest,
            "at": at,
            "number": number,
            "previous": "" if previous is None else hashlib.sha256(previous).hexdigest(),
        },
        sort_keys=True,
        separators=(",", ":"),
    ).encode()


class AuditAnchors:
    def __init__(
        self, repo: Repository, keys: Callable[[], Awaitable[Keys]], tsa: TimestampPort | None
    ) -> None:
        """``keys`` opens the token (on first use)."""
        self._repo, self._open_keys, self._tsa = repo, keys, tsa
        self._lock = asyncio.Lock()

    async def public_key(self) -> bytes:
        """The anchor key's SubjectPublicKeyInfo (DER), made in the token on first use."""
        found = await self.existing_public_key()
        if found is None:
            keys = await self._open_keys()
            found = await asyncio.to_thread(keys.generate, ANCHOR_KEY)
        return found

    async def existing_public_key(self) -> bytes | None:
        """The anchor key's public half, or None when there is none yet (verifying
        never makes one)."""
        keys = await self._open_keys()
        return await asyncio.to_thread(keys.public_key, ANCHOR_KEY)

    async def anchor(self, now: float, reason: str, *, force: bool = False) -> AuditAnchor | None:
        """Anchor the log's head now; None when it is already anchored (unless
        ``force``) or the log is empty."""
        async with self._lock:
            entries = await self._repo.audit_entries()
            if not entries:
                return None
            head = entries[-1]
            found = await self._repo.anchors()
            last = found[-1] if found else None
            if not force and last is not None and last.seq == head.seq and last.hash == head.hash:
                return None
            if last is not None:
                # never sign over a rewritten log: the entry last anchored must still be
                # there as it was, and the chain must hold
                anchored = next((e for e in entries if e.seq == last.seq), None)
                details = await self._repo.audit_details()
                # every entry's hash again: a long log's work, off the event loop
                chain = await asyncio.to_thread(verify, entries, details)
                if anchored is None or anchored.hash != last.hash or not chain.ok:
                    why = chain.problem or f"entry {last.seq} is not the one last anchored"
                    logger.error(
                        "audit: the log no longer matches its anchors (%s): not anchored", why
                    )
                    raise VideoidError(
                        f"the audit log no longer matches its last anchor: {why}",
                        code="audit_log_changed",
                    )
            await self.public_key()
            keys = await self._open_keys()
            signature = await asyncio.to_thread(
                keys.sign,
                ANCHOR_KEY,
                message(
                    head.seq,
                    head.hash,
                    now,
                    len(found) + 1,
                    None if last is None else last.signature,
                ),
            )
            stamp = None
            if self._tsa is not None:
                try:
                    stamp = await self._tsa.timestamp(hashlib.sha256(signature).digest())
                except Exception as err:  # anchored all the same; the gap is visible
                    logger.warning(
                        "the audit anchor at entry %d has no timestamp: %s", head.seq, err
                    )
            anchor = AuditAnchor(head.seq, head.hash, now, reason, signature, stamp)
            await self._repo.add_anchor(anchor)
            return anchor


@dataclass(frozen=True)
class AnchorCheck:
    ok: bool
    anchors: int
    matched_through: int | None
    """The last entry (seq) up to which the log matches an anchor."""
    problem: str | None = None
    notes: tuple[str, ...] = ()


def check_anchors(
    entries: list[Entry],
    anchors: list[AuditAnchor],
    public_key_der: bytes | None,
    *,
    now: float | None = None,
    max_unanchored_seconds: float | None = None,
) -> AnchorCheck:
    """Every anchor's signature (its place in the anchors' chain included) and
    timestamp, and whether the log still holds each anchored entry as it was; names the
    first entry after which it no longer does. Given ``now`` and
    ``max_unanchored_seconds``, entries after the last anchor older than that fail too
    (the server anchors every ``audit.anchor_minutes``: older unanchored entries mean
    anchors were removed)."""
    if public_key_der is None:
        if anchors:
            return AnchorCheck(False, len(anchors), None, "the anchor key is not in the token")
        key = None
    else:
        loaded = serialization.load_der_public_key(public_key_der)
        if not isinstance(loaded, ec.EllipticCurvePublicKey):
            raise VideoidError("the anchor key is not an EC key", code="anchor_key_invalid")
        key = loaded
    by_seq = {e.seq: e for e in entries}
    matched: int | None = None
    notes = []
    previous: bytes | None = None
    for n, anchor in enumerate(anchors, 1):
        where = f"anchor {n} (entry {anchor.seq}, {_when(anchor.at)})"
        assert key is not None
        signed = message(anchor.seq, anchor.hash, anchor.at, n, previous)
        previous = anchor.signature
        try:
            key.verify(anchor.signature, signed, ec.ECDSA(hashes.SHA256()))
        except InvalidSignature:
            return AnchorCheck(
                False,
                len(anchors),
                matched,
                f"{where}: its signature does not verify: forged, or an anchor before it "
                "was removed",
            )
        if anchor.timestamp is None:
            notes.append(f"{where} has no timestamp")
        else:
            check = check_token(anchor.timestamp, hashlib.sha256(anchor.signature).digest())
            if not check.ok:
                return AnchorCheck(
                    False, len(anchors), matched, f"{where}'s timestamp: {check.problem}"
                )
            if (
                check.gen_time is not None
                and abs(check.gen_time - anchor.at) > MAX_CLOCK_SKEW_SECONDS
            ):
                return AnchorCheck(
                    False, len(anchors), matched, f"{where}: its timestamp gives another time"
                )
        entry = by_seq.get(anchor.seq)
        if entry is None or entry.hash != anchor.hash:
            after = f"entry {matched}" if matched is not None else "the first entry"
            why = "is gone" if entry is None else "is not the one anchored"
            return AnchorCheck(
                False,
                len(anchors),
                matched,
                f"the log no longer matches {where}: entry {anchor.seq} {why}; the log is as "
                f"anchored up to {after} and was changed after it (at or before entry "
                f"{anchor.seq})",
            )
        matched = max(matched or 0, anchor.seq)
    if now is not None and max_unanchored_seconds is not None:
        stale = [
            e for e in entries if e.seq > (matched or 0) and e.at < now - max_unanchored_seconds
        ]
        if stale:
            return AnchorCheck(
                False,
                len(anchors),
                matched,
                f"entries {stale[0].seq} to {stale[-1].seq} are older than "
                f"{max_unanchored_seconds / 60:.0f} minutes and no anchor covers them: "
                "anchors were removed, or the server has not run since",
            )
    return AnchorCheck(True, len(anchors), matched, None, tuple(notes))


def _when(at: float) -> str:
    import datetime

    return datetime.datetime.fromtimestamp(at, datetime.UTC).strftime("%Y-%m-%d %H:%M:%S UTC")


def describe(check: AnchorCheck) -> dict[str, Any]:
    return {
        "ok": check.ok,
        "anchors": check.anchors,
        "matched_through": check.matched_through,
        "problem": check.problem,
        "notes": list(check.notes),
    }
