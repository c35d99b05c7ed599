"""The decision gate the call center is given (``operator_console/decision_gate.py``):
a reason from the outcome's own list, and the checklist done; each session's checklist
drawn once, written, and the same after it left memory."""

from __future__ import annotations

import random

import pytest

from videoid.clock import FakeClock
from videoid.config import CallConfig
from videoid.db import Repository
from videoid.errors import ValidationError
from videoid.operator_console import decision_gate
from videoid.operator_console.checklist import ChecklistIncomplete, ChecklistTemplate
from videoid.operator_console.decision_gate import Checklists, DecisionGate


async def _session(repo: Repository, n: int) -> str:
    return await repo.create_session(
        email=f"c{n}@example.org",
        phone=f"+3933300000{n:02d}",
        token_hash=f"{n:064x}",
        ready_state="av_tested",
        now=1.0,
        expires_at=1e10,
    )


async def test_a_decision_needs_its_own_reason_and_the_checklist(
    sqlite_repository: Repository,
) -> None:
    repo = sqlite_repository
    clock = FakeClock()
    checklists = Checklists(repo, clock, ChecklistTemplate.load(), random.Random(7))
    gate = DecisionGate(CallConfig(), checklists)
    session = await _session(repo, 1)
    # a reason from another outcome's list is refused, whatever the checklist says
    with pytest.raises(ValidationError) as wrong:
        await gate.check(session, "rejected", "identity_verified")
    assert wrong.value.code == "invalid_reason"
    with pytest.raises(ChecklistIncomplete) as early:
        await gate.check(session, "approved", "identity_verified")
    assert early.value.code == "checklist_incomplete"
    for item in (await checklists.of(session)).entries:
        answer = "failed" if item["kind"] == "otp" else "passed"
        await checklists.answer(session, item["id"], answer, "", "operator:1", None)
    # a failed mandatory item stops an approval, not a rejection
    with pytest.raises(ChecklistIncomplete) as failed_item:
        await gate.check(session, "approved", "identity_verified")
    assert failed_item.value.code == "checklist_failed"
    await gate.check(session, "rejected", CallConfig().reject_reasons[0])


async def test_a_checklist_is_drawn_once_and_read_back(
    sqlite_repository: Repository, monkeypatch: pytest.MonkeyPatch
) -> None:
    repo = sqlite_repository
    monkeypatch.setattr(decision_gate, "KEPT", 2)
    checklists = Checklists(repo, FakeClock(), ChecklistTemplate.load(), random.Random(3))
    sessions = [await _session(repo, n) for n in range(4)]
    first = [(await checklists.of(s)).to_json() for s in sessions]
    assert len(checklists) == 2  # the latest two kept in memory
    again = [(await checklists.of(s)).to_json() for s in sessions]
    assert again == first  # read back, not drawn again
    for session in sessions:
        assert len(await repo.items(session, ["checklist"])) == 1  # written once
    # an answer to a checklist no longer in memory goes on the one written
    item = first[0]["items"][0]["id"]
    view = await checklists.answer(sessions[0], item, "passed", "", "operator:1", None)
    assert view["items"][0]["answer"]["answer"] == "passed"
    [*_, written] = await repo.items(sessions[0], ["checklist"])
    assert written["data"] == view
