"""The evidence of a session: a signed manifest of everything it produced, sealed
again after every event that changes it, and a self-contained zip that anyone can check
offline against the provider's key (R13).

:func:`collect` gathers the session's evidence as named items (JSON records built from
the database — the session, its certificates and legal hold included —, the decrypted
images and snapshots, the decrypted recordings), each with its SHA-256. :func:`seal`
signs the manifest (canonical JSON: the items' names, hashes and sizes, the session,
the event, the time, the audit log's head, and the digest of the seal before it) with
the provider's evidence key (Ed25519, a key file: ``keys/evidence.key`` in the data
directory, created on first use); the TSA timestamps the signature. The package is
written and checked in :mod:`.evidence_package`. Never in it: a code, a PIN, a key.
"""

from __future__ import annotations

import asyncio
import base64
import functools
import hashlib
import json
import logging
import os
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from ..db import Repository
from ..errors import StorageError, VideoidError
from ..storage import ObjectStore
from .audit_chain import verify as audit_verify
from .stream_crypto import ReadResult, open_segments
from .timestamps import TimestampPort, check_token

logger = logging.getLogger(__name__)

FORMAT_V1 = "videoid-evidence-1"
"""One seal after the decision, no history (still read)."""
FORMAT = "videoid-evidence-2"
FORMATS = (FORMAT_V1, FORMAT)
MUTABLE = frozenset({"session.json", "onboarding.json", "recordings.json"})
"""Items a later seal may record changed (see :meth:`Evidence._refuse_rewrites`)."""
MANIFEST_KIND = "evidence_manifest"
SEALED_STATES = (
    "approved",
    "rejected",
    "suspended",
    "certificate_requested",
    "contract_signed",
    "completed",
)
"""A session in one of these states was decided: its evidence must have a seal."""
EXTENSIONS = {"image/jpeg": "jpg", "image/png": "png", "application/json": "json"}


class EvidenceError(VideoidError):
    code = "evidence_invalid"
    status = 409


def _json(value: Any) -> bytes:
    return json.dumps(value, sort_keys=True, indent=1, ensure_ascii=False).encode()


def canonical(value: Any) -> bytes:
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()


def fingerprint_of(public: Ed25519PublicKey) -> str:
    """SHA-256 of the key's SubjectPublicKeyInfo (DER), hex: what a verifier pins."""
    der = public.public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    return hashlib.sha256(der).hexdigest()


class EvidenceKey:
    """The provider's evidence signing key (Ed25519) in a file, mode 0600."""

    def __init__(self, key: Ed25519PrivateKey) -> None:
        self._key = key
        self.public = key.public_key()
        self.public_pem = key.public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        )
        self.key_id = hashlib.sha256(self.public_pem).hexdigest()[:16]
        self.fingerprint = fingerprint_of(self.public)

    @classmethod
    def from_file(cls, path: Path) -> EvidenceKey:
        if not path.exists():
            path.parent.mkdir(parents=True, exist_ok=True)
            pem = Ed25519PrivateKey.generate().private_bytes(
                serialization.Encoding.PEM,
                serialization.PrivateFormat.PKCS8,
                serialization.NoEncryption(),
            )
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            with os.fdopen(fd, "wb") as f:
                f.write(pem)
        key = serialization.load_pem_private_key(path.read_bytes(), password=None)
        if not isinstance(key, Ed25519PrivateKey):
            raise StorageError(f"{path}: not an Ed25519 key")
        return cls(key)

    def sign(self, data: bytes) -> bytes:
        return self._key.sign(data)


@dataclass(frozen=True)
class Item:
    name: str
    data: bytes

    @functools.cached_property
    def sha256(self) -> str:
        """Computed once: a recording is megabytes, and it is compared more than once."""
        return hashlib.sha256(self.data).hexdigest()

    def entry(self) -> dict[str, Any]:
        return {"name": self.name, "sha256": self.sha256, "size": len(self.data)}


async def collect(
    repo: Repository,
    objects: ObjectStore,
    recordings_dir: Path,
    session_id: str,
    unreadable: dict[str, str] | None = None,
) -> list[Item]:
    """Every evidence item of the session, decrypted, in a stable order. An item that
    no longer decrypts (changed or lost on disk) raises, or, given ``unreadable``, is
    left out and named there with the reason."""
    record = await repo.find_session(id=session_id)
    if record is None:
        raise EvidenceError("no such session", code="session_not_found")
    session = {
        "session_id": session_id,
        "state": record.state,
        "created_at": record.created_at,
        "transitions": [
            {"from": a, "to": b, "at": at, "actor": actor}
            for a, b, at, actor in await repo.transitions(session_id)
        ],
        "assignments": [
            {
                "operator_id": a.operator_id,
                "candidates": list(a.candidates),
                "index": a.index,
                "at": a.at,
            }
            for a in await repo.assignments(session_id)
        ],
        "decisions": await repo.named_decisions(session_id),
        "certificates": [
            {
                "serial": c.serial,
                "subject": c.subject,
                "not_before": c.not_before,
                "not_after": c.not_after,
                "status": c.status,
                "revoked_at": c.revoked_at,
                "revocation_reason": c.revocation_reason,
            }
            for c in await repo.certificates(session_id=session_id)
        ],
        "legal_hold": session_id in await repo.holds(),
    }
    items = [
        Item("session.json", _json(session)),
        Item("consents.json", _json(await repo.consents(session_id))),
        Item("onboarding.json", _json(await repo.results(session_id))),
        Item("call.json", _json(await repo.items(session_id))),
        *(
            Item(f"certificates/{c.serial}.der", c.der)
            for c in await repo.certificates(session_id=session_id)
        ),
    ]
    for obj in await repo.objects_of(session_id):
        if obj.wrapped_key is None or obj.kind == MANIFEST_KIND:
            continue  # destroyed at the end of retention; or a seal, not evidence
        name = f"objects/{obj.kind}-{obj.id}.{EXTENSIONS.get(obj.content_type, 'bin')}"
        try:
            _, data = await objects.get(obj.id)
        except StorageError as err:  # changed or lost on disk: left out, and said why
            if unreadable is None:
                raise
            unreadable[name] = err.message
            continue
        items.append(Item(name, data))
    recordings = await repo.recordings(session_id)
    listing = []
    for rec in recordings:
        entry = {k: rec[k] for k in ("id", "status", "started_at", "ended_at", "summary")}
        if rec["wrapped_key"] is not None:
            result = ReadResult()
            name = f"recordings/{rec['id']}.mkv"
            try:
                data = await asyncio.to_thread(  # a long call is megabytes: off the loop
                    _decrypt,
                    recordings_dir / rec["file"],
                    objects.files.wrapper,
                    result,
                    rec["wrapped_key"],
                )
            except (StorageError, OSError) as err:
                if unreadable is None:
                    raise
                unreadable[name] = getattr(err, "message", None) or str(err)
                continue
            entry["read"] = {
                "segments": result.segments,
                "complete": result.complete,
                "problem": result.problem,
            }
            items.append(Item(name, data))
        listing.append(entry)
    items.append(Item("recordings.json", _json(listing)))
    return items


def _decrypt(path: Path, wrapper: Any, result: ReadResult, wrapped_key: bytes) -> bytes:
    return b"".join(open_segments(path, wrapper, result, wrapped_key))


def seal_digest(body: dict[str, Any], signature: bytes) -> str:
    """What the next seal names as its predecessor: SHA-256 over the canonical
    manifest and its signature."""
    return hashlib.sha256(canonical(body) + signature).hexdigest()


def manifest(
    session_id: str,
    items: list[Item],
    sealed_at: float,
    audit_head: dict[str, Any],
    key: EvidenceKey,
    *,
    seq: int = 1,
    event: str = "sealed",
    previous: dict[str, Any] | None = None,
) -> dict[str, Any]:
    return {
        "format": FORMAT,
        "session_id": session_id,
        "seq": seq,
        "event": event,
        "previous": previous,
        "sealed_at": sealed_at,
        "key_id": key.key_id,
        "key_fingerprint": key.fingerprint,
        "audit_head": audit_head,
        "items": [i.entry() for i in items],
    }


def seal(body: dict[str, Any], key: EvidenceKey) -> bytes:
    return key.sign(canonical(body))


@dataclass(frozen=True)
class Seal:
    """One stored seal: the manifest, the provider's signature over it, and the TSA's
    timestamp over the signature's SHA-256 (None when the TSA could not be reached)."""

    body: dict[str, Any]
    signature: bytes
    timestamp: bytes | None

    @property
    def digest(self) -> str:
        return seal_digest(self.body, self.signature)

    @property
    def timestamp_digest(self) -> str | None:
        """SHA-256 of the timestamp token: the next seal names it, so that a past
        seal's timestamp cannot be stripped unseen."""
        return None if self.timestamp is None else hashlib.sha256(self.timestamp).hexdigest()

    def record(self) -> dict[str, Any]:
        return {
            "manifest": self.body,
            "signature": self.signature.hex(),
            "timestamp": None
            if self.timestamp is None
            else base64.b64encode(self.timestamp).decode(),
        }

    @classmethod
    def from_record(cls, record: dict[str, Any]) -> Seal:
        stamp = record.get("timestamp")
        return cls(
            record["manifest"],
            bytes.fromhex(record["signature"]),
            None if stamp is None else base64.b64decode(stamp, validate=True),
        )


class Evidence:
    """Seals sessions and exports their packages. A session is sealed again after every
    event that changes its evidence (decision, review, certificate, signature, revocation,
    legal hold, purge); each seal names the one before it."""

    def __init__(
        self,
        repo: Repository,
        objects: ObjectStore,
        recordings_dir: Path,
        key: EvidenceKey,
        tsa: TimestampPort | None = None,
        clock: Callable[[], float] | None = None,
    ) -> None:
        """``clock`` gives the time a seal is made (its ``sealed_at``, which its
        timestamp must match); the event's own time is kept beside it."""
        self._repo, self._objects = repo, objects
        self._recordings_dir, self.key = recordings_dir, key
        self.tsa = tsa
        self._clock = clock
        self.after_seal: Callable[[float], Awaitable[Any]] | None = None
        """Called after each seal (the audit log's anchor)."""
        self._locks: dict[str, asyncio.Lock] = {}
        """Per session: its seals one after the other, in order (other sessions' seals
        go on meanwhile; across processes ``claim_seal`` keeps the order)."""
        self._pending: set[asyncio.Task[Any]] = set()

    async def seal(self, session_id: str, now: float, event: str = "sealed") -> dict[str, Any]:
        """Seal the session's evidence as it is now, after ``event``; returns the
        manifest. Another process sealing the same session at once (the server and a
        command): the seal's number is claimed in the database, and the one that loses
        the claim waits and seals after the other."""
        for attempt in range(SEAL_ATTEMPTS):
            try:
                return await self._seal_once(session_id, now, event)
            except _Claimed:
                await asyncio.sleep(0.2 * (attempt + 1))
        raise EvidenceError(
            "the session is being sealed elsewhere; try again", code="seal_conflict"
        )

    async def _seal_once(self, session_id: str, now: float, event: str) -> dict[str, Any]:
        lock = self._locks.setdefault(session_id, asyncio.Lock())
        try:
            async with lock:
                return await self._seal_locked(session_id, now, event)
        finally:
            if not lock.locked() and self._locks.get(session_id) is lock:
                del self._locks[session_id]

    async def _seal_locked(self, session_id: str, now: float, event: str) -> dict[str, Any]:
        items = await collect(self._repo, self._objects, self._recordings_dir, session_id)
        await _digested(items)
        seals = await self.seals(session_id)
        if seals:
            await self._refuse_rewrites(session_id, seals[-1], items, event, now)
        previous = (
            {
                "seq": _seq(seals[-1], len(seals)),
                "sha256": seals[-1].digest,
                "timestamp_sha256": seals[-1].timestamp_digest,
            }
            if seals
            else None
        )
        entries = await self._repo.audit_entries()
        head = {"seq": entries[-1].seq, "hash": entries[-1].hash} if entries else {}
        event_at = now
        # the time of signing, not of the event: a seal that waited for others
        # (recordings to decrypt, a slow TSA) must still match its timestamp
        now = self._clock() if self._clock is not None else now
        body = await asyncio.to_thread(
            manifest,
            session_id,
            items,
            now,
            head,
            self.key,
            seq=len(seals) + 1,
            event=event,
            previous=previous,
        )
        body["event_at"] = event_at
        if not await self._repo.claim_seal(session_id, body["seq"], now):
            raise _Claimed()
        try:
            signature = seal(body, self.key)
            stamp = None
            if self.tsa is not None:
                try:
                    stamp = await self.tsa.timestamp(hashlib.sha256(signature).digest())
                except Exception as err:  # sealed all the same; the gap is visible
                    logger.warning("session %s: the seal has no timestamp: %s", session_id, err)
            stored = await self._objects.put(
                session_id,
                MANIFEST_KIND,
                "application/json",
                canonical(Seal(body, signature, stamp).record()),
                now,
            )
        except BaseException:
            await self._repo.release_seal(session_id, body["seq"])
            raise
        await self._repo.append_audit(
            now,
            "evidence_sealed",
            "system",
            session_id,
            {
                "manifest": stored.id,
                "seq": body["seq"],
                "event": event,
                "items": len(items),
                "timestamped": stamp is not None,
            },
        )
        if self.after_seal is not None:
            await self.after_seal(now)
        return body

    async def _refuse_rewrites(
        self, session_id: str, last: Seal, items: list[Item], event: str, now: float
    ) -> None:
        """A new seal records what happened since the last one; it never signs over
        sealed evidence changed in the database or on disk. What may change between
        seals: the session record, the onboarding results (the contract's reference is
        added), the recordings' list; items may be added; a purge removes. Everything
        else sealed stays as it was."""
        if event == "purged":  # the purge erases what named the person (and audits it)
            return
        current = {i.name: i.entry()["sha256"] for i in items}
        changed = []
        for entry in last.body["items"]:
            name = entry["name"]
            if name in MUTABLE:
                continue
            if name not in current:
                changed.append(f"{name}: gone")
            elif current[name] != entry["sha256"]:
                changed.append(f"{name}: changed")
        if changed:
            await self._repo.append_audit(
                now, "evidence_seal_refused", "system", session_id, {"items": changed[:20]}
            )
            logger.error(
                "session %s: sealed evidence was changed (%s): not sealed again",
                session_id,
                "; ".join(changed[:5]),
            )
            raise EvidenceError(
                "sealed evidence was changed since the last seal: " + "; ".join(changed),
                code="evidence_changed",
            )

    async def reseal(self, session_id: str, now: float, event: str) -> bool:
        """Seal again after ``event`` a session sealed before (one never sealed, e.g.
        abandoned before its decision, is sealed on its first export); whether it was."""
        objects = await self._repo.objects_of(session_id)
        if not any(o.kind == MANIFEST_KIND for o in objects):
            return False
        await self.seal(session_id, now, event)
        return True

    def seal_later(self, session_id: str, now: float, event: str) -> None:
        """Seal in the background (the caller's request does not wait); :meth:`settle`
        and :meth:`close` wait for it."""
        task = asyncio.create_task(self._seal_logged(session_id, now, event))
        self._pending.add(task)
        task.add_done_callback(self._pending.discard)

    async def _seal_logged(self, session_id: str, now: float, event: str) -> None:
        try:
            await self.seal(session_id, now, event)
        except Exception:
            logger.exception("session %s: sealing after %s failed", session_id, event)

    async def settle(self, timeout_seconds: float = 60.0) -> None:
        """Wait for the seals under way."""
        if self._pending:
            await asyncio.wait(set(self._pending), timeout=timeout_seconds)

    async def close(self, timeout_seconds: float = 60.0) -> None:
        """Let the seals under way finish (a seal lost at shutdown would leave the
        evidence unverifiable until the next), then cancel what is left."""
        await self.settle(timeout_seconds)
        for task in list(self._pending):
            task.cancel()
        if self._pending:
            await asyncio.gather(*self._pending, return_exceptions=True)

    async def verify(self, session_id: str) -> dict[str, Any]:
        """Check the session's evidence as it is now against its latest seal: every
        seal's signature and link to the one before, then every item, naming each that
        changed, went missing or was added; and the audit chain the seal points into."""
        await self.settle()
        seals = await self.seals(session_id)
        if not seals:
            raise EvidenceError("this session has not been sealed yet", code="not_sealed")
        problems = check_history(seals, self.key.public)
        for n, s in enumerate(seals, 1):
            if s.timestamp is None:
                problems.append(f"seal {n} has no timestamp")
            else:
                stamp = check_token(s.timestamp, hashlib.sha256(s.signature).digest())
                if not stamp.ok:
                    problems.append(f"seal {n}'s timestamp: {stamp.problem}")
        recorded = [
            e for e in await self._repo.audit_of(session_id) if e["action"] == "evidence_sealed"
        ]
        if len(recorded) != len(seals):
            problems.append(
                f"the audit log records {len(recorded)} seals of this session, "
                f"{len(seals)} are stored: a seal was removed or added"
            )
        body = seals[-1].body
        unreadable: dict[str, str] = {}
        items = await collect(
            self._repo, self._objects, self._recordings_dir, session_id, unreadable
        )
        await _digested(items)
        checked, item_problems = compare_items(body, items, unreadable)
        problems += item_problems
        entries = await self._repo.audit_entries()
        chain = audit_verify(entries, await self._repo.audit_details())
        head = body.get("audit_head") or {}
        if not chain.ok:
            problems.append(f"the audit log: {chain.problem}")
        elif head and not any(
            e.seq == head.get("seq") and e.hash == head.get("hash") for e in entries
        ):
            problems.append(
                f"the audit log no longer holds entry {head.get('seq')} as it was at the seal"
            )
        return {
            "session_id": session_id,
            "ok": not problems,
            "sealed_at": body["sealed_at"],
            "key_id": body["key_id"],
            "fingerprint": self.key.fingerprint,
            "seals": [
                {
                    "seq": _seq(s, n),
                    "event": s.body.get("event", "sealed"),
                    "sealed_at": s.body["sealed_at"],
                    "timestamped": s.timestamp is not None,
                }
                for n, s in enumerate(seals, 1)
            ],
            "items": checked,
            "problems": problems,
            "audit": {"ok": chain.ok, "entries": chain.entries, "problem": chain.problem},
        }

    async def recover(self, now: float) -> list[str]:
        """At start: seal the decided sessions never sealed, and seal again those that
        changed after their latest seal (the process stopped between an event and its
        seal); each seal is audited (``evidence_sealed``, event ``recovered``). Only a
        change the session's record dates is taken: a changed item with no change of
        state stays a mismatch."""
        resealed = []
        unsealed = await self._repo.unsealed_sessions_in(SEALED_STATES, MANIFEST_KIND)
        changed = await self._repo.sealed_sessions_changed_since_seal(MANIFEST_KIND)
        for session_id in [*unsealed, *(sid for sid, _ in changed)]:
            try:
                await self.seal(session_id, now, "recovered")
            except Exception:  # one session's problem does not stop the start
                logger.exception("session %s: sealing at start failed", session_id)
                continue
            resealed.append(session_id)
        return resealed

    async def seals(self, session_id: str) -> list[Seal]:
        """The session's seals, oldest first."""
        found = []
        for obj in await self._repo.objects_of(session_id):
            if obj.kind != MANIFEST_KIND:
                continue
            _, data = await self._objects.get(obj.id)
            found.append(Seal.from_record(json.loads(data)))
        # by their own numbers: seals made in the same instant have no storage order
        return sorted(found, key=lambda s: int(s.body.get("seq", 1)))

    async def export(self, session_id: str, path: Path, actor: str, now: float) -> dict[str, Any]:
        """Write the package of the session's latest seal (sealing first if there is
        none); refuses, and audits the refusal, when the evidence changed since."""
        await self.settle()
        seals = await self.seals(session_id)
        if not seals:
            await self.seal(session_id, now, "exported")
            seals = await self.seals(session_id)
        try:
            problems = check_history(seals, self.key.public)
            if problems:
                raise EvidenceError("; ".join(problems), code="evidence_changed")
            unreadable: dict[str, str] = {}
            items = await collect(
                self._repo, self._objects, self._recordings_dir, session_id, unreadable
            )
            await _digested(items)
            _, item_problems = compare_items(seals[-1].body, items, unreadable)
            if item_problems:
                raise EvidenceError(
                    "the evidence changed since it was sealed: " + "; ".join(item_problems),
                    code="evidence_changed",
                )
            from .evidence_package import write_package  # it imports this module

            await asyncio.to_thread(write_package, path, seals, items, self.key)
        except EvidenceError as err:
            await self._repo.append_audit(
                now, "evidence_export_refused", actor, session_id, {"code": err.code}
            )
            raise
        await self._repo.append_audit(
            now, "evidence_exported", actor, session_id, {"items": len(items), "seals": len(seals)}
        )
        return seals[-1].body


SEAL_ATTEMPTS = 5


class _Claimed(Exception):
    """Another writer claimed this seal's number first."""


def _seq(s: Seal, position: int) -> int:
    return int(s.body.get("seq", position))


def check_history(seals: list[Seal], public: Ed25519PublicKey) -> list[str]:
    """Every seal's signature by ``public``, its format, and its link to the one before."""
    problems = []
    previous: Seal | None = None
    for n, s in enumerate(seals, 1):
        body = s.body
        if body.get("format") not in FORMATS:
            problems.append(f"seal {n}: unknown manifest format {body.get('format')!r}")
            previous = s
            continue
        try:
            public.verify(s.signature, canonical(body))
        except InvalidSignature:
            problems.append(f"seal {n}: its signature does not verify with the trusted key")
        if body["format"] != FORMAT_V1:
            want = None if previous is None else previous.digest
            link = body.get("previous")
            got = None if link is None else link.get("sha256")
            if (
                previous is not None
                and link is not None
                and "timestamp_sha256" in link
                and link["timestamp_sha256"] != previous.timestamp_digest
            ):
                problems.append(f"seal {n - 1}'s timestamp is not the one seal {n} names")
            if body.get("seq") != n:
                problems.append(f"seal {n}: numbered {body.get('seq')}: a seal is missing")
            elif got != want:
                problems.append(
                    f"seal {n}: does not name seal {n - 1} as its predecessor: "
                    "a seal was removed, replaced or reordered"
                    if n > 1
                    else f"seal {n}: names a predecessor that is not there: earlier seals removed"
                )
        previous = s
    return problems


async def _digested(items: list[Item]) -> None:
    """Every item's SHA-256 computed (and kept) in a thread: megabytes of recordings
    hashed on the event loop would hold every call."""
    await asyncio.to_thread(lambda: [i.sha256 for i in items])


def compare_items(
    body: dict[str, Any], items: list[Item], unreadable: dict[str, str]
) -> tuple[list[dict[str, Any]], list[str]]:
    """The items as they are now against a manifest: a row per item, and the problems."""
    now_hashes = {i.name: i.entry()["sha256"] for i in items}
    listed = {e["name"]: e["sha256"] for e in body["items"]}
    checked: list[dict[str, Any]] = []
    problems: list[str] = []
    for name, digest in sorted(listed.items()):
        if name in unreadable:
            problem: str | None = f"does not decrypt: {unreadable[name]}"
        elif name not in now_hashes:
            problem = "missing"
        elif now_hashes[name] != digest:
            problem = "changed since the seal"
        else:
            problem = None
        checked.append({"name": name, "ok": problem is None, "problem": problem})
        if problem is not None:
            problems.append(f"{name}: {problem}")
    for name in sorted(set(now_hashes) - set(listed)):
        checked.append({"name": name, "ok": False, "problem": "not in the seal"})
        problems.append(f"{name}: added since the seal")
    return checked, problems
