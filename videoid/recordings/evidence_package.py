"""The evidence package on disk: writing it, and checking it offline trusting nothing
inside it.

A package is a zip of:

- ``seals/0001.json`` … every seal of the session, oldest first (canonical JSON: the
  manifest, the provider's Ed25519 signature over it, the TSA's timestamp over the
  signature); each manifest after the first names its predecessor's digest;
- ``manifest.json`` / ``manifest.sig`` / ``manifest.tsr``: the latest seal, readable;
- ``evidence-key.pem``: the provider's public key, for convenience only: verification
  uses the key the verifier brings (``--trusted-key``) or this one only when its
  fingerprint is the one the verifier brings (``--fingerprint``);
- ``items/…``: every item the latest manifest lists, and nothing else.

:func:`verify_package` refuses duplicate entry names, entries outside the manifest and
unknown manifest formats, each with its own message.
"""

from __future__ import annotations

import hashlib
import json
import re
import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from .evidence import (
    FORMATS,
    EvidenceError,
    EvidenceKey,
    Item,
    Seal,
    _json,
    canonical,
    check_history,
    fingerprint_of,
)
from .timestamps import check_token

_SEAL_NAME = re.compile(r"seals/(\d{4,})\.json")
FIXED = ("manifest.json", "manifest.sig", "manifest.tsr", "evidence-key.pem")

# how far a seal's time may stand from its timestamp's: the server's clock against the TSA's
MAX_CLOCK_SKEW_SECONDS = 600.0


def write_package(path: Path, seals: list[Seal], items: list[Item], key: EvidenceKey) -> None:
    latest = seals[-1]
    tmp = path.with_suffix(path.suffix + ".part")
    with zipfile.ZipFile(tmp, "w", zipfile.ZIP_DEFLATED) as z:
        z.writestr("manifest.json", _json(latest.body))
        z.writestr("manifest.sig", latest.signature.hex() + "\n")
        if latest.timestamp is not None:
            z.writestr("manifest.tsr", latest.timestamp)
        z.writestr("evidence-key.pem", key.public_pem)
        for n, s in enumerate(seals, 1):
            z.writestr(f"seals/{n:04d}.json", canonical(s.record()))
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
    fingerprint: str | None = None
    """The fingerprint of the key the signatures were checked with."""
    seals: list[dict[str, Any]] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    """What is worth knowing but is no failure (a seal without a timestamp)."""


class Refused(Exception):
    """The package is refused outright (its own message)."""


def verify_package(
    path: Path,
    trusted_key_pem: bytes | None = None,
    fingerprint: str | None = None,
    tsa_roots: list[x509.Certificate] | None = None,
    allow_untimestamped: bool = False,
) -> PackageVerdict:
    """Check a package offline against the provider's key, given as ``trusted_key_pem``
    or as the ``fingerprint`` (SHA-256 of its SubjectPublicKeyInfo, hex) of the key in
    the package. Then every seal's signature and link, their timestamps (chained to
    ``tsa_roots`` when given; a seal without one fails unless ``allow_untimestamped``),
    and every item against the latest manifest."""
    if trusted_key_pem is None and not fingerprint:
        raise EvidenceError(
            "give the provider's evidence key (--trusted-key) or its fingerprint "
            "(--fingerprint): a package cannot vouch for itself",
            code="trusted_key_required",
        )
    try:
        with zipfile.ZipFile(path) as z:
            return _verify(z, trusted_key_pem, fingerprint, tsa_roots, allow_untimestamped)
    except (zipfile.BadZipFile, EOFError, OSError) as err:
        return PackageVerdict(False, None, 0, [f"the package is not a readable zip: {err}"], None)
    except Refused as err:
        return PackageVerdict(False, None, 0, [str(err)], None)
    except (ValueError, KeyError, TypeError, zipfile.LargeZipFile) as err:
        return PackageVerdict(False, None, 0, [f"the package is malformed: {err}"], None)


def _verify(
    z: zipfile.ZipFile,
    trusted_key_pem: bytes | None,
    fingerprint: str | None,
    tsa_roots: list[x509.Certificate] | None,
    allow_untimestamped: bool,
) -> PackageVerdict:
    names = z.namelist()
    duplicates = sorted({n for n in names if names.count(n) > 1})
    if duplicates:
        raise Refused(
            f"duplicate entries in the package: {', '.join(duplicates)} (a reader could be "
            "shown either copy): refused"
        )
    for needed in ("manifest.json", "manifest.sig"):
        if needed not in names:
            raise Refused(f"the package has no {needed}")
    body = json.loads(z.read("manifest.json"))
    if not isinstance(body, dict) or body.get("format") not in FORMATS:
        raise Refused(
            f"unknown manifest format {body.get('format') if isinstance(body, dict) else None!r}"
            f" (known: {', '.join(FORMATS)}): refused"
        )
    public, used = _key(z, names, trusted_key_pem, fingerprint)
    listed = {e["name"]: e for e in body["items"]}
    outside = sorted(
        n
        for n in names
        if n not in FIXED
        and not _SEAL_NAME.fullmatch(n)
        and not (n.startswith("items/") and n[len("items/") :] in listed)
    )
    if outside:
        raise Refused(f"entries outside the manifest: {', '.join(outside)}: refused")
    seal_names = sorted(n for n in names if _SEAL_NAME.fullmatch(n))
    if seal_names:
        seals = [Seal.from_record(json.loads(z.read(n))) for n in seal_names]
        for n, name in enumerate(seal_names, 1):
            if name != f"seals/{n:04d}.json":
                raise Refused(f"the seals are not numbered 1 to {len(seal_names)}: {name}")
    else:  # a package of the first format: one seal, no history
        stamp = z.read("manifest.tsr") if "manifest.tsr" in names else None
        seals = [Seal(body, bytes.fromhex(z.read("manifest.sig").decode().strip()), stamp)]
    latest = seals[-1]
    problems = check_history(seals, public)
    if canonical(latest.body) != canonical(body) or latest.signature.hex() != (
        z.read("manifest.sig").decode().strip()
    ):
        problems.append("manifest.json is not the latest seal's manifest")
    notes: list[str] = []
    described = []
    for n, s in enumerate(seals, 1):
        row: dict[str, Any] = {
            "seq": n,
            "event": s.body.get("event", "sealed"),
            "sealed_at": s.body.get("sealed_at"),
            "timestamp": None,
        }
        if s.timestamp is None:
            # the seals are signed with a key file: without the TSA's word on the time,
            # whoever holds the key could have made the seal at any time
            if allow_untimestamped:
                notes.append(f"seal {n} has no timestamp (allowed)")
            else:
                problems.append(f"seal {n} has no timestamp: its time rests on the key alone")
        else:
            check = check_token(s.timestamp, hashlib.sha256(s.signature).digest(), tsa_roots)
            row["timestamp"] = {"at": check.gen_time, "tsa": check.tsa, "chained": check.chained}
            if not check.ok:
                problems.append(f"seal {n}'s timestamp: {check.problem}")
            elif not tsa_roots:
                notes.append(
                    f"seal {n}'s timestamp was not checked against a trusted TSA root "
                    "(give --tsa-root): it proves the time only as far as its TSA is trusted"
                )
            elif (
                check.gen_time is not None
                and abs(check.gen_time - float(s.body["sealed_at"])) > MAX_CLOCK_SKEW_SECONDS
            ):
                problems.append(
                    f"seal {n}: sealed at {s.body['sealed_at']:.0f} but timestamped at "
                    f"{check.gen_time:.0f}"
                )
        described.append(row)
    for name, entry in sorted(listed.items()):
        member = f"items/{name}"
        if member not in names:
            problems.append(f"{name}: missing from the package")
            continue
        data = z.read(member)
        if hashlib.sha256(data).hexdigest() != entry["sha256"] or len(data) != entry["size"]:
            problems.append(f"{name}: does not match the manifest")
    return PackageVerdict(
        not problems,
        body.get("session_id"),
        len(listed),
        problems,
        body.get("key_id"),
        used,
        described,
        notes,
    )


def _key(
    z: zipfile.ZipFile, names: list[str], trusted_key_pem: bytes | None, fingerprint: str | None
) -> tuple[Ed25519PublicKey, str]:
    """The key to check with, and its fingerprint."""
    if trusted_key_pem is not None:
        pem = trusted_key_pem
    else:
        if "evidence-key.pem" not in names:
            raise Refused("the package carries no key to match the fingerprint against")
        pem = z.read("evidence-key.pem")
    try:
        public = serialization.load_pem_public_key(pem)
    except ValueError as err:
        raise Refused(f"the evidence key cannot be read: {err}") from err
    if not isinstance(public, Ed25519PublicKey):
        raise Refused("the evidence key is not an Ed25519 key")
    used = fingerprint_of(public)
    if trusted_key_pem is None and fingerprint is not None:
        wanted = fingerprint.replace(":", "").strip().lower()
        if used != wanted:
            raise Refused(
                f"the package's key has fingerprint {used}, not the trusted {wanted}: refused"
            )
    return public, used
