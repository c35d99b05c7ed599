"""Retention (R14) with a clock moved 21 years on: the purge destroys a session's keys
and personal data, respects a legal hold, is recorded, and the audit chain still
verifies."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from videoid.bots.customer_bot import CustomerBot
from videoid.bots.operator_bot import OperatorBot
from videoid.errors import StorageError
from videoid.recordings.audit_chain import verify
from videoid.recordings.retention import YEAR, OnHold

from .conftest import PASSWORD, PHOTOS, StartServer


async def test_purge_after_the_period_respecting_holds(
    start_server: StartServer, customer_video: Path, operator_video: Path
) -> None:
    server = await start_server(live={"workers": 0})
    services, repo = server.services, server.services.repo
    await server.operator("olga")
    invitation = await server.invite(email="eve@example.org", phone="+393471234567")
    sid = invitation.session_id
    selfie = await services.objects.put(
        sid, "selfie", "image/jpeg", (PHOTOS / "obama.jpg").read_bytes(), services.clock.now()
    )
    operator = OperatorBot(
        server.url, "olga", PASSWORD, video=operator_video, decision="rejected", watch_seconds=1
    )
    customer = CustomerBot(invitation.url, customer_video)
    op_task = asyncio.create_task(operator.run(calls=1, timeout_seconds=30))
    await asyncio.wait_for(customer.run(timeout_seconds=30), 60)
    await asyncio.wait_for(op_task, 30)
    await asyncio.sleep(1.0)  # the recording closes, the evidence is sealed
    [recording] = await repo.recordings(sid)
    recording_file = services.config.data_path / "recordings" / recording["file"]
    assert recording_file.exists()

    retention = services.retention
    now = services.clock.now()
    assert retention.years == 20.0
    assert await retention.due(now) == []
    assert await retention.due(now + 19 * YEAR) == []
    later = now + 21 * YEAR
    assert await retention.due(later) == [sid]

    await retention.hold(sid, "court order 12/2046", "operator:1", later)
    assert await retention.due(later) == []
    with pytest.raises(OnHold) as held:
        await retention.purge(sid, later)
    assert held.value.code == "legal_hold"
    _, data = await services.objects.get(selfie.id)  # nothing was touched
    assert data[:3] == b"\xff\xd8\xff"

    assert await retention.release(sid, "operator:1", later)
    [report] = await retention.purge_due(later)
    # the selfie is destroyed; the evidence seals (names and hashes) are kept
    assert report.session_id == sid and report.objects >= 1 and report.recordings == 1
    seals = await services.evidence.seals(sid)
    assert [s.body["event"] for s in seals][-3:] == ["legal_hold", "hold_released", "purged"]
    assert (await services.evidence.verify(sid))["ok"]

    with pytest.raises(StorageError) as gone:
        await services.objects.get(selfie.id)
    assert gone.value.code == "object_destroyed"
    assert not recording_file.exists()
    assert (await repo.recordings(sid))[0]["wrapped_key"] is None
    assert await repo.items(sid) == [] and await repo.results(sid) == {}
    record = await repo.find_session(id=sid)
    assert record is not None and record.state == "rejected"  # the outcome stays
    customer_row = await repo.find_customer(record.customer_id)
    assert customer_row is not None and customer_row.email == "" and customer_row.phone == ""
    assert [d.outcome for d in await repo.decisions(sid)] == ["rejected"]

    entries, details = await repo.audit_entries(), await repo.audit_details()
    about = [e for e in entries if e.subject == sid]
    purge = next(e for e in about if e.action == "retention_purge")
    before = [e for e in about if e.seq < purge.seq]
    assert [e.action for e in about if e.seq > purge.seq] == ["evidence_sealed"]  # "purged"
    assert all(e.seq not in details for e in before)  # their details are erased
    verdict = verify(entries, details)
    assert verdict.ok and verdict.erased >= len(before)
    assert await retention.due(later + YEAR) == []  # purged once
