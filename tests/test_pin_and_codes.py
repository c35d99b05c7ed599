"""The signature PIN, its PUK and the SMS one-time codes, with a fake clock (R17):
policy, lockout after three wrong PINs, unblock with the PUK, a code valid ten minutes,
single use, limited attempts and sends, bound to one document's digest."""

from __future__ import annotations

from pathlib import Path

import pytest

from videoid.clock import FakeClock
from videoid.db import Repository
from videoid.db.personal_data import PersonalData
from videoid.errors import RateLimited, ValidationError
from videoid.notify.codes import OneTimeCodes, OtpError
from videoid.trust import pin as pins

GOOD = "493817"


@pytest.mark.parametrize(
    ("pin", "again", "code"),
    [
        ("12345", "12345", "pin_format"),
        ("123456789", "123456789", "pin_format"),
        ("12a456", "12a456", "pin_format"),
        ("", "", "pin_format"),
        ("493817", "493818", "pin_mismatch"),
        ("123456", "123456", "pin_trivial"),
        ("987654", "987654", "pin_trivial"),
        ("000000", "000000", "pin_trivial"),
        ("121212", "121212", "pin_trivial"),
        ("123123", "123123", "pin_trivial"),
        ("12341234", "12341234", "pin_trivial"),
        ("112112", "112112", "pin_trivial"),
    ],
)
def test_the_pin_policy(pin: str, again: str, code: str) -> None:
    with pytest.raises(ValidationError) as refused:
        pins.check_policy(pin, again)
    assert refused.value.code == code


@pytest.mark.parametrize("pin", [GOOD, "20481357", "7395021"])
def test_good_pins_pass(pin: str) -> None:
    pins.check_policy(pin, pin)


def test_lockout_after_three_wrong_pins_and_unblock_with_the_puk() -> None:
    clock = FakeClock()
    state, puk = pins.PinState.create(GOOD, GOOD, clock.now())
    assert len(puk) == 12 and puk.isdigit()
    assert GOOD not in state.pin_hash and puk not in state.puk_hash  # hashes only

    state, error = pins.attempt(state, GOOD, clock.now())
    assert error is None and state.failures == 0
    for left in (2, 1):
        state, error = pins.attempt(state, "111333", clock.now())
        assert (
            error is not None and error.code == "pin_wrong" and f"{left} attempt" in error.message
        )
    state, error = pins.attempt(state, "111333", clock.now())
    assert error is not None and error.code == "pin_locked" and state.locked_at == clock.now()
    clock.advance(86400 * 30)  # time does not unlock it
    state, error = pins.attempt(state, GOOD, clock.now())
    assert error is not None and error.code == "pin_locked"

    # the PUK: a bad new PIN costs no PUK attempt; a wrong PUK does
    with pytest.raises(ValidationError):
        pins.unblock(state, puk, "123456", "123456", clock.now())
    state, error = pins.unblock(state, "000000000000", "583920", "583920", clock.now())
    assert error is not None and error.code == "puk_wrong" and state.locked_at is not None
    state, error = pins.unblock(state, puk, "583920", "583920", clock.now())
    assert error is None and state.locked_at is None and state.failures == 0
    state, error = pins.attempt(state, GOOD, clock.now())  # the old PIN is gone
    assert error is not None and error.code == "pin_wrong"
    state, error = pins.attempt(state, "583920", clock.now())
    assert error is None


def test_ten_wrong_puks_block_the_key_for_good() -> None:
    clock = FakeClock()
    state, puk = pins.PinState.create(GOOD, GOOD, clock.now())
    for _ in range(pins.MAX_PUK_FAILURES):
        state, error = pins.unblock(state, "000000000000", "583920", "583920", clock.now())
    assert error is not None and error.code == "key_blocked" and state.blocked_at is not None
    state, error = pins.unblock(state, puk, "583920", "583920", clock.now())
    assert error is not None and error.code == "key_blocked"
    state, error = pins.attempt(state, GOOD, clock.now())
    assert error is not None and error.code == "key_blocked"


async def session(repo: Repository, clock: FakeClock) -> str:
    return await repo.create_session(
        email="ada@example.org", phone="+393471234567", token_hash="h" * 64,
        ready_state="waiting", now=clock.now(), expires_at=clock.now() + 3600,
    )  # fmt: skip


async def test_codes_expire_are_single_use_bound_and_limited(tmp_path: Path) -> None:
    clock = FakeClock()
    repo = await Repository.open(f"sqlite+aiosqlite:///{tmp_path / 'codes.db'}")
    repo.protect(PersonalData.local(tmp_path / "keys"))
    try:
        sid = await session(repo, clock)
        codes = OneTimeCodes(repo, clock)
        contract_a, contract_b = "a" * 64, "b" * 64

        async def redeem(code: str, binding: str = contract_a) -> str | None:
            try:
                await codes.redeem(sid, "signature", binding, code, 5)
            except OtpError as err:
                return err.code
            return None

        issued = await codes.issue(sid, "signature", contract_a, 600, max_sends=3)
        assert len(issued.code) == 6 and issued.expires_at == clock.now() + 600
        stored = await repo.latest_code(sid, "signature")
        assert stored is not None and issued.code not in stored.code_hash
        assert await redeem(issued.code, contract_b) == "otp_wrong_binding"  # another document
        clock.advance(601)
        assert await redeem(issued.code) == "otp_expired"

        issued = await codes.issue(sid, "signature", contract_a, 600, max_sends=3)
        wrong = f"{(int(issued.code) + 1) % 10**6:06d}"
        assert await redeem(wrong) == "otp_wrong"
        assert await redeem(issued.code) is None
        assert await redeem(issued.code) == "otp_used"  # single use

        for _ in range(2):  # three sends in ten minutes are fine, a fourth is not
            await codes.issue(sid, "signature", contract_a, 600, max_sends=3)
        with pytest.raises(RateLimited) as limited:
            await codes.issue(sid, "signature", contract_a, 600, max_sends=3)
        assert limited.value.code == "otp_send_limit"
        clock.advance(601)
        issued = await codes.issue(sid, "signature", contract_a, 600, max_sends=3)
        for _ in range(4):
            assert await redeem(wrong if wrong != issued.code else "000000") == "otp_wrong"
        assert await redeem(wrong) == "otp_locked"  # five attempts, then none
        assert await redeem(issued.code) == "otp_locked"  # even the right one
        with pytest.raises(ValidationError):
            await codes.redeem(sid, "signature", contract_a, "12 456", 5)
    finally:
        await repo.close()


async def test_parallel_sends_make_at_most_the_limit_of_codes(
    database_url: str, tmp_path: Path
) -> None:
    """Every limit is consumed atomically: 30 requests for a code at once (the signing
    code, the call's SMS code) make exactly ``max_sends`` codes, the rest answer
    ``otp_send_limit``, on SQLite and PostgreSQL."""
    import asyncio

    clock = FakeClock()
    url = database_url or f"sqlite+aiosqlite:///{tmp_path / 'codes.db'}"
    repo = await Repository.open(url)
    repo.protect(PersonalData.local(tmp_path / "keys"))
    try:
        sid = await session(repo, clock)
        codes = OneTimeCodes(repo, clock)

        async def ask() -> str:
            try:
                await codes.issue(sid, "signing", "a" * 64, 300, max_sends=3)
            except RateLimited as err:
                return err.code
            return "sent"

        answers = await asyncio.gather(*(ask() for _ in range(30)))
        assert answers.count("sent") == 3, answers
        assert set(answers) == {"sent", "otp_send_limit"}
        assert await repo.count_codes(sid, "signing", 0.0) == 3
    finally:
        await repo.close()
