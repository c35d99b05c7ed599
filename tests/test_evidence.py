"""The evidence package: sealed after the decision, exported as a zip, checked offline;
every kind of tampering named (R13)."""

from __future__ import annotations

import asyncio
import json
import sqlite3
import sys
import zipfile
from pathlib import Path

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from videoid.bots.customer_bot import CustomerBot
from videoid.bots.operator_bot import OperatorBot
from videoid.recordings.evidence import MANIFEST_KIND, verify_package

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
    code, out = await cli("evidence", "verify", str(package))
    assert code == 0 and "evidence verified" in out, out

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

    # tampering, each named
    item = f"items/objects/selfie-{selfie.id}.jpg"
    cases = {
        "item": ({item: b"\xff\xd8\xff another"}, f"selfie-{selfie.id}.jpg: does not match"),
        "missing": ({"items/call.json": None}, "call.json: missing"),
        "extra": ({"items/added.txt": None}, None),
        "manifest": ({"manifest.json": json.dumps({**body, "sealed_at": 1.0}).encode()},
                     "signature does not verify"),
    }  # fmt: skip
    for name, (change, words) in cases.items():
        if name == "extra":
            forged = tmp_path / "extra.zip"
            rewrite(package, forged, {})
            with zipfile.ZipFile(forged, "a") as z:
                z.writestr("items/added.txt", b"hello")
            words = "added.txt: not in the manifest"
        else:
            forged = rewrite(package, tmp_path / f"{name}.zip", change)
        code, out = await cli("evidence", "verify", str(forged))
        assert code == 1 and words in out, (name, out)
    (tmp_path / "cut.zip").write_bytes(package.read_bytes()[: package.stat().st_size // 2])
    code, out = await cli("evidence", "verify", str(tmp_path / "cut.zip"))
    assert code == 1 and "not a readable zip" in out, out
    other = (
        Ed25519PrivateKey.generate()
        .public_key()
        .public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
    )
    (tmp_path / "other.pem").write_bytes(other)
    verdict = verify_package(package, other)
    assert not verdict.ok and any("another key" in p for p in verdict.problems)

    # evidence changed in the database since the seal: the export refuses, naming it
    with sqlite3.connect(data / "videoid.db") as db:
        db.execute("UPDATE call_items SET data = '{}' WHERE id = (SELECT min(id) FROM call_items)")
    code, out = await cli("evidence", "export", invitation.session_id, "--data-dir", str(data),
                          "--out", str(tmp_path / "again.zip"))  # fmt: skip
    assert code != 0 and "call.json does not match the sealed manifest" in out, out
