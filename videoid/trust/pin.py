"""The signature PIN and its PUK (R17): the rules, kept apart from storage so that they
can be checked with a fake clock.

A PIN is 6 to 8 digits, not trivial (one digit repeated, a run up or down, a pair or
triple repeated such as 121212 or 123123), typed twice. It is kept only as an Argon2id
hash. Three wrong PINs in a row lock the key; the PUK (12 digits, shown once at
issuance, also only hashed) unblocks it with a new PIN; ten wrong PUKs block the key
for good (a new certificate is then needed). SoftHSM keeps no retry counter of its
own: this is that counter, and it lives in the database, so no reconnection resets it.

Under concurrency the counter is consumed *before* a PIN or PUK is checked, in one
conditional statement (``Repository.reserve_pin_attempt``, ``reserve_puk_attempt``): N
parallel attempts evaluate at most the limit. The functions here say what an attempt
means (``refusal``, ``pin_matches``, ``wrong_pin``…); ``attempt`` and ``unblock`` chain
them for one attempt at a time, as a reference the storage must agree with.
"""

from __future__ import annotations

import itertools
import re
import secrets
from dataclasses import dataclass, replace

import argon2

from ..errors import ValidationError, VideoidError

MAX_PIN_FAILURES = 3
MAX_PUK_FAILURES = 10
PUK_DIGITS = 12
_hasher = argon2.PasswordHasher()


class PinError(VideoidError):
    status = 403


def check_policy(pin: str, again: str) -> None:
    """Raise a ``ValidationError`` naming the rule a new PIN breaks."""
    if not re.fullmatch(r"\d{6,8}", pin):
        raise ValidationError("the PIN is 6 to 8 digits", code="pin_format", field="pin")
    if pin != again:
        raise ValidationError(
            "the two PINs differ; type the same PIN twice", code="pin_mismatch", field="pin_again"
        )
    if trivial(pin):
        raise ValidationError(
            "this PIN is too easy to guess (repeated or consecutive digits); choose another",
            code="pin_trivial",
            field="pin",
        )


def trivial(pin: str) -> bool:
    digits = [int(c) for c in pin]
    steps = {b - a for a, b in itertools.pairwise(digits)}
    if len(set(digits)) <= 2:
        return True  # 111111, 112112, 121212
    if steps in ({1}, {-1}):
        return True  # 123456, 987654
    for size in (2, 3, 4):  # 123123, 12341234
        if len(pin) % size == 0 and pin == pin[:size] * (len(pin) // size):
            return True
    return pin in ("147258", "258369", "159753", "123321", "20252025", "19801980")


def new_puk() -> str:
    return "".join(secrets.choice("0123456789") for _ in range(PUK_DIGITS))


def hash_secret(value: str) -> str:
    return _hasher.hash(value)


def _matches(hashed: str, value: str) -> bool:
    try:
        return bool(_hasher.verify(hashed, value))
    except argon2.exceptions.VerificationError:
        return False
    except argon2.exceptions.InvalidHashError:
        return False


@dataclass(frozen=True)
class PinState:
    """What is kept of a customer's PIN and PUK (hashes and counters only)."""

    pin_hash: str
    puk_hash: str
    failures: int = 0
    puk_failures: int = 0
    locked_at: float | None = None
    blocked_at: float | None = None
    changed_at: float = 0.0

    @classmethod
    def create(cls, pin: str, again: str, now: float) -> tuple[PinState, str]:
        """A first PIN (checked against the policy) and a new PUK, returned once."""
        check_policy(pin, again)
        puk = new_puk()
        return cls(hash_secret(pin), hash_secret(puk), changed_at=now), puk


def blocked() -> PinError:
    return PinError("this key is blocked for good; ask for a new certificate", code="key_blocked")


def refusal(state: PinState) -> PinError | None:
    """Why no PIN may be tried now (blocked, or locked until the PUK), or None."""
    if state.blocked_at is not None or state.puk_failures >= MAX_PUK_FAILURES:
        return blocked()
    if state.locked_at is not None or state.failures >= MAX_PIN_FAILURES:
        return PinError(
            "the PIN was wrong three times: the key is locked; unblock it with your PUK",
            code="pin_locked",
        )
    return None


def pin_matches(state: PinState, pin: object) -> bool:
    """Whether ``pin`` is this state's PIN (an Argon2 check: run it off the event loop)."""
    return (
        isinstance(pin, str)
        and re.fullmatch(r"\d{6,8}", pin) is not None
        and _matches(state.pin_hash, pin)
    )


def puk_matches(state: PinState, puk: object) -> bool:
    """Whether ``puk`` is this state's PUK (an Argon2 check: run it off the event loop)."""
    return (
        isinstance(puk, str)
        and re.fullmatch(r"\d{12}", puk) is not None
        and _matches(state.puk_hash, puk)
    )


def wrong_pin(failures: int) -> PinError:
    """The answer to a wrong PIN, ``failures`` counting it."""
    if failures >= MAX_PIN_FAILURES:
        return PinError(
            "wrong PIN, three times: the key is now locked; unblock it with your PUK",
            code="pin_locked",
        )
    left = MAX_PIN_FAILURES - failures
    return PinError(
        f"wrong PIN; {left} attempt{'s' if left > 1 else ''} left",
        code="pin_wrong",
        attempts_left=left,
    )


def wrong_puk(failures: int) -> PinError:
    """The answer to a wrong PUK, ``failures`` counting it."""
    if failures >= MAX_PUK_FAILURES:
        return PinError("wrong PUK, ten times: the key is blocked for good", code="key_blocked")
    left = MAX_PUK_FAILURES - failures
    return PinError(
        f"wrong PUK; {left} attempt{'s' if left > 1 else ''} left",
        code="puk_wrong",
        attempts_left=left,
    )


def attempt(state: PinState, pin: str, now: float) -> tuple[PinState, PinError | None]:
    """Try a PIN: the new state to save, and the error to raise (None: right PIN)."""
    refused = refusal(state)
    if refused is not None:
        return state, refused
    if not pin_matches(state, pin):
        failures = state.failures + 1
        locked = now if failures >= MAX_PIN_FAILURES else None
        return replace(state, failures=failures, locked_at=locked), wrong_pin(failures)
    return replace(state, failures=0), None


def unblock(
    state: PinState, puk: str, pin: str, again: str, now: float
) -> tuple[PinState, PinError | None]:
    """The PUK and a new PIN: the new state to save, and the error to raise."""
    if state.blocked_at is not None:
        return state, blocked()
    check_policy(pin, again)  # a bad new PIN costs no PUK attempt
    if not puk_matches(state, puk):
        failures = state.puk_failures + 1
        at = now if failures >= MAX_PUK_FAILURES else None
        return replace(state, puk_failures=failures, blocked_at=at), wrong_puk(failures)
    return (
        replace(
            state,
            pin_hash=hash_secret(pin),
            failures=0,
            puk_failures=0,
            locked_at=None,
            changed_at=now,
        ),
        None,
    )
