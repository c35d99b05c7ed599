"""The evidence package: sealed after the decision, exported as a zip, checked offline
against the provider's pinned key, trusting nothing inside the package; every kind of
tampering named (R13)."""

from __future__ import annotations

import asyncio
import json
import sqlite3
import sys
import warnings
import zipfile
from pathlib import Path

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from videoid.bots.customer_bot import CustomerBot
from videoid.bots.operator_bot import OperatorBot
from videoid.recordings.evidence import MANIFEST_KIND, canonical
from videoid.recordings.evidence_package import verify_package

from .conftest import PASSWORD, PHOTOS, ROOT, StartServer


async def cli(*args: str) -> tuple[int, str]:
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "videoid", *args, cwd=ROOT,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT,
    )  # fmt: skip
    out, _ = await proc.communicate()
    return proc.returncode or 0, out.decode()


def rewrite(src: Path, dst: Path, change: dict[str, bytes | None]) -> Path:
    """A copy of the package with members replaced (or dropped when None)."""
    with zipfile.ZipFile(src) as a, zipfile.ZipFile(dst, "w") as b:
        for name in a.namelist():
            if name in change:
                if change[name] is not None:
                    b.writestr(name, change[name])  # type: ignore[arg-type]
            else:
                b.writestr(name, a.read(name))
    return dst


async def test_seal_export_and_verify(
    start_server: StartServer, customer_video: Path, operator_video: Path, tmp_path: Path
) -> None:
    server = await start_server(live={"workers": 0})
    services = server.services
    await server.operator("olga")
    invitation = await server.invite()
    selfie = await services.objects.put(
        invitation.session_id, "selfie", "image/jpeg", (PHOTOS / "obama.jpg").read_bytes(),
        services.clock.now(),
    )  # fmt: skip
    operator = OperatorBot(
        server.url, "olga", PASSWORD, video=operator_video, decision="rejected", watch_seconds=2
    )
    customer = CustomerBot(invitation.url, customer_video)
    op_task = asyncio.create_task(operator.run(calls=1, timeout_seconds=30))
    await asyncio.wait_for(customer.run(timeout_seconds=30), 60)
    await asyncio.wait_for(op_task, 30)
    for _ in range(100):  # sealed in the background after the decision
        seals = [o for o in await services.repo.objects_of(invitation.session_id)
                 if o.kind == MANIFEST_KIND]  # fmt: skip
        if seals:
            break
        await asyncio.sleep(0.1)
    assert seals
    data = Path(services.config.server.data_dir)
    await server.stop()

    package = tmp_path / "evidence.zip"
    code, out = await cli("evidence", "export", invitation.session_id, "--data-dir", str(data),
                          "--out", str(package))  # fmt: skip
    assert code == 0 and "items" in out, out
    key_pem = tmp_path / "provider.pem"
    code, out = await cli("evidence", "key", "--data-dir", str(data), "--out", str(key_pem))
    assert code == 0 and "fingerprint" in out, out
    fingerprint = out.split("fingerprint (SHA-256 of the public key): ")[1].split()[0]
    code, out = await cli("evidence", "verify", str(package), "--trusted-key", str(key_pem))
    assert code == 0 and "evidence verified" in out, out
    assert f"checked against the key with fingerprint {fingerprint}" in out, out
    code, out = await cli("evidence", "verify", str(package), "--fingerprint", fingerprint)
    assert code == 0 and "evidence verified" in out, out
    # a package cannot vouch for itself: without the provider's key, nothing is checked
    code, out = await cli("evidence", "verify", str(package))
    assert code == 2 and "--trusted-key" in out, out

    with zipfile.ZipFile(package) as z:
        body = json.loads(z.read("manifest.json"))
        names = {e["name"] for e in body["items"]}
        assert {"session.json", "consents.json", "onboarding.json", "call.json",
                "recordings.json"} <= names  # fmt: skip
        assert f"objects/selfie-{selfie.id}.jpg" in names
        assert any(n.startswith("recordings/") and n.endswith(".mkv") for n in names)
        session = json.loads(z.read("items/session.json"))
        assert session["decisions"][0]["operator"] == "olga"
        assert body["audit_head"]["seq"] > 0 and len(body["audit_head"]["hash"]) == 64
        call = z.read("items/call.json").decode()
        code_sent = [m for m in call.split() if m.isdigit() and len(m) == 6]
        assert not code_sent  # no code ever in the evidence

    with zipfile.ZipFile(package) as z:
        last_seal = sorted(n for n in z.namelist() if n.startswith("seals/"))[-1]
        seal_record = json.loads(z.read(last_seal))

    # tampering, each named
    item = f"items/objects/selfie-{selfie.id}.jpg"
    cases = {
        "item": ({item: b"\xff\xd8\xff another"}, f"selfie-{selfie.id}.jpg: does not match"),
        "missing": ({"items/call.json": None}, "call.json: missing"),
        "extra": ({"items/added.txt": None}, None),
        "manifest": ({"manifest.json": json.dumps({**body, "sealed_at": 1.0}).encode()},
                     "manifest.json is not the latest seal's manifest"),
        "seal": ({last_seal: canonical({**seal_record, "manifest": {**body, "sealed_at": 1.0}})},
                 "its signature does not verify with the trusted key"),
    }  # fmt: skip
    for name, (change, words) in cases.items():
        if name == "extra":
            forged = tmp_path / "extra.zip"
            rewrite(package, forged, {})
            with zipfile.ZipFile(forged, "a") as z:
                z.writestr("items/added.txt", b"hello")
            words = "entries outside the manifest: items/added.txt"
        else:
            forged = rewrite(package, tmp_path / f"{name}.zip", change)
        code, out = await cli("evidence", "verify", str(forged), "--trusted-key", str(key_pem))
        assert code == 1 and words in out, (name, out)
    (tmp_path / "cut.zip").write_bytes(package.read_bytes()[: package.stat().st_size // 2])
    code, out = await cli("evidence", "verify", str(tmp_path / "cut.zip"), "--fingerprint",
                          fingerprint)  # fmt: skip
    assert code == 1 and "not a readable zip" in out, out
    other = (
        Ed25519PrivateKey.generate()
        .public_key()
        .public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
    )
    (tmp_path / "other.pem").write_bytes(other)
    verdict = verify_package(package, other)
    assert not verdict.ok and any("does not verify with the trusted key" in p
                                  for p in verdict.problems), verdict.problems  # fmt: skip

    # forged: the whole package rebuilt and signed again with the forger's own key (and
    # their key put in the package) passes neither the pinned key nor the fingerprint
    await forge_and_check(package, tmp_path, key_pem, fingerprint)

    # each refusal with its own message and exit 1
    refusals = {
        "duplicate": "duplicate entries in the package: items/session.json",
        "outside": "entries outside the manifest: notes.txt",
        "version": "unknown manifest format 'videoid-evidence-9'",
    }
    for name, words in refusals.items():
        forged = tmp_path / f"{name}.zip"
        if name == "duplicate":  # a forged session.json first, the real one after it
            with (
                zipfile.ZipFile(package) as a,
                zipfile.ZipFile(forged, "w") as b,
                warnings.catch_warnings(),  # zipfile warns of the duplicate: it is the point
            ):
                warnings.simplefilter("ignore", UserWarning)
                b.writestr("items/session.json", b'{"decisions": []}')
                for member in a.namelist():
                    b.writestr(member, a.read(member))
        elif name == "outside":
            rewrite(package, forged, {})
            with zipfile.ZipFile(forged, "a") as z:
                z.writestr("notes.txt", b"trust me")
        else:
            rewrite(package, forged, {"manifest.json": json.dumps(
                {**body, "format": "videoid-evidence-9"}).encode()})  # fmt: skip
        code, out = await cli("evidence", "verify", str(forged), "--trusted-key", str(key_pem))
        assert code == 1 and words in out, (name, out)

    # evidence changed in the database since the seal: the export refuses, naming it
    with sqlite3.connect(data / "videoid.db") as db:
        db.execute("UPDATE call_items SET data = '{}' WHERE id = (SELECT min(id) FROM call_items)")
    code, out = await cli("evidence", "export", invitation.session_id, "--data-dir", str(data),
                          "--out", str(tmp_path / "again.zip"))  # fmt: skip
    assert code != 0 and "call.json: changed since the seal" in out, out


async def forge_and_check(package: Path, tmp_path: Path, key_pem: Path, fingerprint: str) -> None:
    """Rebuild ``package`` with a changed session.json, its manifest and seals signed
    again with another key (put in the package too): both pinned checks refuse it."""
    forger = Ed25519PrivateKey.generate()
    forger_pem = forger.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    forged = tmp_path / "forged.zip"
    with zipfile.ZipFile(package) as a:
        names = a.namelist()
        session = json.loads(a.read("items/session.json"))
        session["decisions"] = []  # the story rewritten
        fake = json.dumps(session).encode()
        seal_names = sorted(n for n in names if n.startswith("seals/"))
        records = [json.loads(a.read(n)) for n in seal_names]
        import hashlib

        previous = None
        for record in records:
            body = record["manifest"]
            for item in body["items"]:
                if item["name"] == "session.json":
                    item["sha256"], item["size"] = hashlib.sha256(fake).hexdigest(), len(fake)
            if previous is not None:
                body["previous"]["sha256"] = previous
            signature = forger.sign(canonical(body))
            record["signature"] = signature.hex()
            record["timestamp"] = None
            previous = hashlib.sha256(canonical(body) + signature).hexdigest()
        with zipfile.ZipFile(forged, "w") as b:
            for member in names:
                if member == "items/session.json":
                    b.writestr(member, fake)
                elif member == "evidence-key.pem":
                    b.writestr(member, forger_pem)
                elif member in seal_names:
                    b.writestr(member, canonical(records[seal_names.index(member)]))
                elif member == "manifest.json":
                    b.writestr(member, json.dumps(records[-1]["manifest"]))
                elif member == "manifest.sig":
                    b.writestr(member, records[-1]["signature"])
                elif member == "manifest.tsr":
                    continue
                else:
                    b.writestr(member, a.read(member))
    # self-consistent: it would pass against the key inside it, but for the timestamps
    # the forger cannot make for past times: a seal without one fails unless allowed
    assert verify_package(forged, forger_pem, allow_untimestamped=True).ok
    stripped = verify_package(forged, forger_pem)
    assert not stripped.ok and any("has no timestamp" in p for p in stripped.problems)
    code, out = await cli("evidence", "verify", str(forged), "--trusted-key", str(key_pem))
    assert code == 1 and "does not verify with the trusted key" in out, out
    code, out = await cli("evidence", "verify", str(forged), "--fingerprint", fingerprint)
    assert code == 1 and f"not the trusted {fingerprint}" in out, out
