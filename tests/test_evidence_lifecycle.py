"""Evidence for the whole lifecycle (R13, R14, R15): a session is sealed again after every
event that changes its evidence — decision, review, certificate, signature, revocation,
legal hold, purge —, each seal naming the one before and timestamped by the TSA; the
package exports and verifies offline against the provider's pinned key in every state."""

from __future__ import annotations

import asyncio
import json
import zipfile
from pathlib import Path
from typing import Any

import aiohttp

from .conftest import Server, StartServer
from .test_call_end_to_end import run_call
from .test_contract_signing import approved, certificate_and_signature
from .test_evidence import cli


async def export_and_verify(server: Server, session_id: str, tmp_path: Path, name: str) -> str:
    """Export the session's package in the server, verify it with the CLI against the
    provider's key and the local root for the timestamps; the CLI's output."""
    services = server.services
    await services.evidence.settle()
    package = tmp_path / f"{name}.zip"
    await services.evidence.export(session_id, package, "test", services.clock.now())
    key = tmp_path / "provider.pem"
    key.write_bytes(services.evidence.key.public_pem)
    root = tmp_path / "root.crt"
    async with aiohttp.ClientSession() as http, http.get(f"{server.url}/ca/root.crt") as r:
        der = await r.read()
    from cryptography import x509
    from cryptography.hazmat.primitives.serialization import Encoding

    root.write_bytes(x509.load_der_x509_certificate(der).public_bytes(Encoding.PEM))
    code, out = await cli("evidence", "verify", str(package), "--trusted-key", str(key),
                          "--tsa-root", str(root))  # fmt: skip
    assert code == 0 and "evidence verified" in out, out
    assert "no timestamp" not in out and "(TSA chained to a trusted root)" in out, out
    return out


async def test_a_signed_customer_through_revocation_hold_and_purge(
    start_server: StartServer, customer_video: Path, operator_video: Path, tmp_path: Path
) -> None:
    server, invitation, me = await approved(start_server, customer_video, operator_video)
    services = server.services
    session_id = invitation.session_id
    await certificate_and_signature(server, me)

    # the main flow: approved, certificate, signed, completed — exports and verifies
    out = await export_and_verify(server, session_id, tmp_path, "completed")
    seals = await services.evidence.seals(session_id)
    events = [s.body["event"] for s in seals]
    assert events[0] == "decision" and events[-1] == "completed", events
    assert "certificate_requested" in events, events
    assert all(s.timestamp is not None for s in seals)
    for n, s in enumerate(seals[1:], 2):
        assert s.body["seq"] == n and s.body["previous"]["sha256"] == seals[n - 2].digest
    assert f"seal {len(seals)}: completed, timestamped" in out, out
    with zipfile.ZipFile(tmp_path / "completed.zip") as z:
        names = {e["name"] for e in json.loads(z.read("manifest.json"))["items"]}
        assert any(n.startswith("objects/signed_contract-") for n in names), names
        certificates = [n for n in names if n.startswith("certificates/")]
        assert len(certificates) == 1
        session = json.loads(z.read("items/session.json"))
        assert session["state"] == "completed" and session["certificates"][0]["status"] == "good"
    verdict = await services.evidence.verify(session_id)
    assert verdict["ok"], verdict["problems"]
    serial = certificates[0].removeprefix("certificates/").removesuffix(".der")

    # revoked (the command line, another process): sealed again, still verifies
    data = services.config.server.data_dir
    code_, out = await cli("cert", "revoke", serial, "--reason", "key_compromise",
                           "--data-dir", data)  # fmt: skip
    assert code_ == 0, out
    # legal hold and its release
    for args in (("hold", session_id, "--reason", "court order 12/2026"),
                 ("release", session_id)):  # fmt: skip
        code_, out = await cli("retention", *args, "--data-dir", data)
        assert code_ == 0, out
    await export_and_verify(server, session_id, tmp_path, "revoked")
    events = [s.body["event"] for s in await services.evidence.seals(session_id)]
    assert events[-3:] == ["revoked", "legal_hold", "hold_released"], events
    with zipfile.ZipFile(tmp_path / "revoked.zip") as z:
        session = json.loads(z.read("items/session.json"))
        assert session["certificates"][0]["status"] == "revoked"

    # purged at the end of retention: the images, recordings and contract are gone, the
    # seals (names and hashes, no personal data) stay, and what is left verifies
    await services.retention.purge(session_id, services.clock.now())
    await export_and_verify(server, session_id, tmp_path, "purged")
    seals = await services.evidence.seals(session_id)
    assert seals[-1].body["event"] == "purged"
    with zipfile.ZipFile(tmp_path / "purged.zip") as z:
        names = z.namelist()
        assert not any(n.startswith("items/recordings/") and n.endswith(".mkv") for n in names)
        assert not any(n.startswith("items/objects/signed_contract-") for n in names)
        assert len([n for n in names if n.startswith("seals/")]) == len(seals)


async def test_suspended_then_reviewed(
    start_server: StartServer, customer_video: Path, operator_video: Path, tmp_path: Path
) -> None:
    server = await start_server(live={"workers": 0})
    invitation, result, _ = await run_call(server, customer_video, operator_video, "suspended")
    assert result.outcome == "suspended"
    services = server.services
    await services.evidence.settle()
    await export_and_verify(server, invitation.session_id, tmp_path, "suspended")
    supervisor = await server.operator("sam", "supervisor")
    await services.center.review(
        supervisor, invitation.session_id, "approved", "identity_verified", "checked again"
    )
    await asyncio.sleep(0)  # the seal is started in the background
    out = await export_and_verify(server, invitation.session_id, tmp_path, "reviewed")
    events = [s.body["event"] for s in await services.evidence.seals(invitation.session_id)]
    assert events == ["decision", "review"], events
    assert "seal 2: review, timestamped" in out, out
    with zipfile.ZipFile(tmp_path / "reviewed.zip") as z:
        session = json.loads(z.read("items/session.json"))
        assert [d["outcome"] for d in session["decisions"]] == ["suspended", "approved"]
        names = z.namelist()
        first = json.loads(z.read("seals/0001.json"))

    # two writers sealing the same session at once (the server and a command, each with
    # its own lock): the number is claimed in the database, the history stays one chain
    from videoid.app import evidence_services
    from videoid.recordings.evidence import check_history

    other, _ = evidence_services(
        services.config, services.repo, services.objects, services.trust, services.clock
    )
    await asyncio.gather(
        services.evidence.seal(invitation.session_id, services.clock.now(), "legal_hold"),
        other.seal(invitation.session_id, services.clock.now(), "hold_released"),
    )
    seals = await services.evidence.seals(invitation.session_id)
    assert [s.body["seq"] for s in seals] == [1, 2, 3, 4]
    assert check_history(seals, services.evidence.key.public) == []
    assert (await services.evidence.verify(invitation.session_id))["ok"]

    # an earlier seal's timestamp stripped: its own signature still holds, but the next
    # seal names the token it had
    from videoid.recordings.evidence_package import verify_package

    stripped = tmp_path / "stripped.zip"
    with zipfile.ZipFile(tmp_path / "reviewed.zip") as a, zipfile.ZipFile(stripped, "w") as b:
        for member in names:
            data = a.read(member)
            if member == "seals/0001.json":
                data = json.dumps({**first, "timestamp": None}).encode()
            b.writestr(member, data)
    verdict = verify_package(stripped, services.evidence.key.public_pem, allow_untimestamped=True)
    assert not verdict.ok and any(
        "seal 1's timestamp is not the one seal 2 names" in p for p in verdict.problems
    ), verdict.problems

    # sealed evidence changed in the database: a later event does not seal over it
    import sqlite3

    import pytest

    from videoid.recordings.evidence import EvidenceError

    with sqlite3.connect(services.config.data_path / "videoid.db") as db:
        db.execute("UPDATE call_items SET data = '{}' WHERE id = (SELECT min(id) FROM call_items)")
    with pytest.raises(EvidenceError) as refused:
        await services.evidence.seal(invitation.session_id, services.clock.now(), "legal_hold")
    assert refused.value.code == "evidence_changed" and "call.json" in refused.value.message
    actions = [e["action"] for e in await services.repo.audit_of(invitation.session_id)]
    assert actions[-1] == "evidence_seal_refused"


async def test_a_change_left_unsealed_by_a_stop_is_sealed_at_the_next_start(
    start_server: StartServer, customer_video: Path, operator_video: Path, tmp_path: Path
) -> None:
    """The process stops between an event and its seal: the next start seals again
    (event ``recovered``), and the evidence exports and verifies."""
    import random

    from aiohttp import web

    from videoid.app import create_app

    from .conftest import free_port

    server, invitation, me = await approved(start_server, customer_video, operator_video)
    services = server.services
    await services.evidence.settle()
    services.center.evidence_changed = None  # as if the process died before the seal
    assert (await me.call("POST", "/certificate"))[0] == 200
    verdict = await services.evidence.verify(invitation.session_id)
    assert not verdict["ok"] and any("session.json" in p for p in verdict["problems"])
    config = services.config
    await server.stop()

    app = create_app(config, rng=random.Random(1))
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    port = free_port()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    again = Server(f"http://127.0.0.1:{port}", app, runner)
    try:
        seals = await again.services.evidence.seals(invitation.session_id)
        assert [s.body["event"] for s in seals] == ["decision", "recovered"]
        await export_and_verify(again, invitation.session_id, tmp_path, "recovered")
    finally:
        await again.stop()


def test_a_timestamp_chain_needs_ca_certificates() -> None:
    """An end-entity key under a trusted root cannot vouch for a "TSA" certificate it
    signed itself: every certificate between the TSA's and the root must be a CA's."""
    import datetime

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

    from videoid.recordings.timestamps import _chains

    now = datetime.datetime.now(datetime.UTC)

    def make(name: str, issuer_name: str, key: Any, signer: Any, ca: bool) -> x509.Certificate:
        builder = (
            x509.CertificateBuilder()
            .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)]))
            .issuer_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, issuer_name)]))
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(days=1))
            .not_valid_after(now + datetime.timedelta(days=30))
            .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True)
            .add_extension(
                x509.KeyUsage(
                    digital_signature=not ca,
                    content_commitment=False,
                    key_encipherment=False,
                    data_encipherment=False,
                    key_agreement=False,
                    key_cert_sign=ca,
                    crl_sign=ca,
                    encipher_only=False,
                    decipher_only=False,
                ),
                critical=True,
            )
        )
        if name.endswith("TSA"):
            builder = builder.add_extension(
                x509.ExtendedKeyUsage([ExtendedKeyUsageOID.TIME_STAMPING]), critical=True
            )
        return builder.sign(signer, hashes.SHA256())

    root_key, mid_key, ee_key, tsa_key = (ec.generate_private_key(ec.SECP256R1())
                                          for _ in range(4))  # fmt: skip
    root = make("Root", "Root", root_key, root_key, True)
    intermediate = make("Issuing", "Root", mid_key, root_key, True)
    end_entity = make("Someone", "Root", ee_key, root_key, False)
    good = make("Good TSA", "Issuing", tsa_key, mid_key, False)
    rogue = make("Rogue TSA", "Someone", tsa_key, ee_key, False)
    assert _chains(good, [good, intermediate], [root], now)
    assert not _chains(rogue, [rogue, end_entity], [root], now)
    # a CA certificate not valid at the time the token gives does not chain either
    assert not _chains(good, [good, intermediate], [root], now + datetime.timedelta(days=60))
