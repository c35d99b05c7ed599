"""The evidence package: a signed manifest of everything a session produced, and a
self-contained zip that anyone can check offline (R13).

:func:`collect` gathers the session's evidence as named items (JSON records built from
the database, the decrypted images and snapshots, the decrypted recordings), each with
its SHA-256. :func:`seal` signs the manifest (canonical JSON: the items' names, hashes
and sizes, the session, the time, the audit log's head) with the provider's evidence
key (Ed25519, a key file: ``keys/evidence.key`` in the data directory, created on first
use). :func:`export` writes the zip; :func:`verify_package` checks it offline and names
every item that does not match. Never in it: a code, a PIN, a key.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import os
import zipfile
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

FORMAT = "videoid-evidence-1"
MANIFEST_KIND = "evidence_manifest"
EXTENSIONS = {"image/jpeg": "jpg", "image/png": "png", "application/json": "json"}


class EvidenceError(VideoidError):
    code = "evidence_invalid"
    status = 409


def _json(value: Any) -> bytes:
    return json.dumps(value, sort_keys=True, indent=1, ensure_ascii=False).encode()


def canonical(value: Any) -> bytes:
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()


class EvidenceKey:
    """The provider's evidence signing key (Ed25519) in a file, mode 0600."""

    def __init__(self, key: Ed25519PrivateKey) -> None:
        self._key = key
        self.public = key.public_key()
        self.public_pem = key.public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        )
        self.key_id = hashlib.sha256(self.public_pem).hexdigest()[:16]

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

    def entry(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "sha256": hashlib.sha256(self.data).hexdigest(),
            "size": len(self.data),
        }


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
    }
    items = [
        Item("session.json", _json(session)),
        Item("consents.json", _json(await repo.consents(session_id))),
        Item("onboarding.json", _json(await repo.results(session_id))),
        Item("call.json", _json(await repo.items(session_id))),
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


def manifest(
    session_id: str,
    items: list[Item],
    sealed_at: float,
    audit_head: dict[str, Any],
    key: EvidenceKey,
) -> dict[str, Any]:
    return {
        "format": FORMAT,
        "session_id": session_id,
        "sealed_at": sealed_at,
        "key_id": key.key_id,
        "audit_head": audit_head,
        "items": [i.entry() for i in items],
    }


def seal(body: dict[str, Any], key: EvidenceKey) -> bytes:
    return key.sign(canonical(body))


def export(
    path: Path, body: dict[str, Any], signature: bytes, items: list[Item], key: EvidenceKey
) -> None:
    """The self-contained package: the manifest, its signature, the public key, and
    every item. Refuses when an item no longer matches the sealed manifest."""
    listed = {e["name"]: e for e in body["items"]}
    for item in items:
        expected = listed.get(item.name)
        if expected is None or expected["sha256"] != item.entry()["sha256"]:
            raise EvidenceError(
                f"{item.name} does not match the sealed manifest: evidence changed since",
                code="evidence_changed",
            )
    missing = set(listed) - {i.name for i in items}
    if missing:
        raise EvidenceError(
            f"missing since sealing: {', '.join(sorted(missing))}", code="evidence_changed"
        )
    tmp = path.with_suffix(path.suffix + ".part")
    with zipfile.ZipFile(tmp, "w", zipfile.ZIP_DEFLATED) as z:
        z.writestr("manifest.json", _json(body))
        z.writestr("manifest.sig", signature.hex() + "\n")
        z.writestr("evidence-key.pem", key.public_pem)
        for item in items:
            z.writestr(f"items/{item.name}", item.data)
    tmp.replace(path)


@dataclass
class PackageVerdict:
    ok: bool
    session_id: str | None
    items: int
    problems: list[str]
    key_id: str | None


def verify_package(path: Path, trusted_key_pem: bytes | None = None) -> PackageVerdict:
    """Check a package offline: the signature over the manifest (with the key in the
    package, or ``trusted_key_pem``, which must then be the same), then every item."""
    problems: list[str] = []
    try:
        z = zipfile.ZipFile(path)
        with z:
            names = set(z.namelist())
            for needed in ("manifest.json", "manifest.sig", "evidence-key.pem"):
                if needed not in names:
                    raise EvidenceError(f"the package has no {needed}")
            raw = z.read("manifest.json")
            body = json.loads(raw)
            signature = bytes.fromhex(z.read("manifest.sig").decode().strip())
            pem = z.read("evidence-key.pem")
            if trusted_key_pem is not None and pem.strip() != trusted_key_pem.strip():
                problems.append("the package is signed with another key than the trusted one")
            public = serialization.load_pem_public_key(trusted_key_pem or pem)
            if not isinstance(public, Ed25519PublicKey):
                raise EvidenceError("the evidence key is not an Ed25519 key")
            try:
                public.verify(signature, canonical(body))
            except InvalidSignature:
                problems.append(
                    "the manifest's signature does not verify: the manifest was changed"
                )
            listed = {e["name"]: e for e in body.get("items", [])}
            for name, entry in sorted(listed.items()):
                member = f"items/{name}"
                if member not in names:
                    problems.append(f"{name}: missing from the package")
                    continue
                data = z.read(member)
                if (
                    hashlib.sha256(data).hexdigest() != entry["sha256"]
                    or len(data) != entry["size"]
                ):
                    problems.append(f"{name}: does not match the manifest")
            for member in sorted(names):
                if member.startswith("items/") and member[len("items/") :] not in listed:
                    problems.append(f"{member[len('items/') :]}: not in the manifest")
    except (zipfile.BadZipFile, EOFError, OSError) as err:
        return PackageVerdict(False, None, 0, [f"the package is not a readable zip: {err}"], None)
    except (ValueError, KeyError, zipfile.LargeZipFile) as err:
        return PackageVerdict(False, None, 0, [f"the package is malformed: {err}"], None)
    except EvidenceError as err:
        return PackageVerdict(False, None, 0, [err.message], None)
    return PackageVerdict(
        not problems, body.get("session_id"), len(listed), problems, body.get("key_id")
    )


class Evidence:
    """Seals sessions and exports their packages."""

    def __init__(
        self, repo: Repository, objects: ObjectStore, recordings_dir: Path, key: EvidenceKey
    ) -> None:
        self._repo, self._objects = repo, objects
        self._recordings_dir, self.key = recordings_dir, key

    async def seal(self, session_id: str, now: float) -> dict[str, Any]:
        """Seal the session's evidence as it is now; returns the manifest."""
        items = await collect(self._repo, self._objects, self._recordings_dir, session_id)
        entries = await self._repo.audit_entries()
        head = {"seq": entries[-1].seq, "hash": entries[-1].hash} if entries else {}
        body = await asyncio.to_thread(manifest, session_id, items, now, head, self.key)
        signature = seal(body, self.key)
        stored = await self._objects.put(
            session_id,
            MANIFEST_KIND,
            "application/json",
            canonical({"manifest": body, "signature": signature.hex()}),
            now,
        )
        await self._repo.append_audit(
            now,
            "evidence_sealed",
            "system",
            session_id,
            {"manifest": stored.id, "items": len(items)},
        )
        return body

    async def verify(self, session_id: str) -> dict[str, Any]:
        """Check the session's evidence as it is now against its latest seal: the
        seal's signature, then every item, naming each that changed, went missing or
        was added; and the audit chain the seal points into."""
        sealed = await self.latest_seal(session_id)
        if sealed is None:
            raise EvidenceError("this session has not been sealed yet", code="not_sealed")
        body, signature = sealed
        problems: list[str] = []
        try:
            self.key.public.verify(signature, canonical(body))
        except InvalidSignature:
            problems.append("the seal's signature does not verify: the manifest was changed")
        unreadable: dict[str, str] = {}
        items = await collect(
            self._repo, self._objects, self._recordings_dir, session_id, unreadable
        )
        now_hashes = {i.name: i.entry()["sha256"] for i in items}
        listed = {e["name"]: e["sha256"] for e in body["items"]}
        checked = []
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
            "items": checked,
            "problems": problems,
            "audit": {"ok": chain.ok, "entries": chain.entries, "problem": chain.problem},
        }

    async def latest_seal(self, session_id: str) -> tuple[dict[str, Any], bytes] | None:
        seals = [o for o in await self._repo.objects_of(session_id) if o.kind == MANIFEST_KIND]
        if not seals:
            return None
        _, data = await self._objects.get(seals[-1].id)
        sealed = json.loads(data)
        return sealed["manifest"], bytes.fromhex(sealed["signature"])

    async def export(self, session_id: str, path: Path, actor: str, now: float) -> dict[str, Any]:
        """Write the package of the session's latest seal (sealing first if there is
        none); refuses when the evidence changed since the seal."""
        sealed = await self.latest_seal(session_id)
        if sealed is None:
            await self.seal(session_id, now)
            sealed = await self.latest_seal(session_id)
            assert sealed is not None
        body, signature = sealed
        unreadable: dict[str, str] = {}
        items = await collect(
            self._repo, self._objects, self._recordings_dir, session_id, unreadable
        )
        if unreadable:
            raise EvidenceError(
                "; ".join(f"{name}: {why}" for name, why in sorted(unreadable.items())),
                code="evidence_changed",
            )
        await asyncio.to_thread(export, path, body, signature, items, self.key)
        await self._repo.append_audit(
            now, "evidence_exported", actor, session_id, {"items": len(items)}
        )
        return body
