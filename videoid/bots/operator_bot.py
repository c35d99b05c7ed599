"""The operator bot: logs in, becomes available, accepts what it is assigned, watches the
customer for a while and decides. So that one person can try the customer side alone."""

from __future__ import annotations

import asyncio
import logging
import re
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import aiohttp
from aiortc.mediastreams import MediaStreamTrack

from ..operator_console import totp
from .media_client import ClientPeer
from .signaling_client import ProtocolError, SignalingClient

logger = logging.getLogger(__name__)


@dataclass
class Authenticator:
    """What an authenticator app holds for the bot: per server and username, the TOTP
    secret it enrolled and the last time step whose code it gave (the server accepts
    each step once, so a second login in the same 30 seconds takes the next step,
    waiting when it must). ``path`` keeps the secrets in a file (mode 0600) between
    runs (``videoid bot operator --totp-file``)."""

    path: Path | None = None
    secrets: dict[str, bytes] = field(default_factory=dict)
    last_steps: dict[str, int] = field(default_factory=dict)
    recovery_codes: dict[str, list[str]] = field(default_factory=dict)
    """What the enrolment showed, per account."""

    def __post_init__(self) -> None:
        if self.path is not None and self.path.exists():
            for line in self.path.read_text().splitlines():
                key, secret, step = line.rsplit(" ", 2)
                self.secrets[key] = totp.secret_from_text(secret)
                self.last_steps[key] = int(step)

    def enrolled(self, server: str, username: str, secret: bytes, step: int) -> None:
        key = _key(server, username)
        self.secrets[key], self.last_steps[key] = secret, step
        self._save()

    async def code(self, server: str, username: str) -> str:
        """The code of the next unused step, within the server's window."""
        key = _key(server, username)
        secret = self.secrets.get(key)
        if secret is None:
            raise ProtocolError(f"no TOTP secret for {username}", code="second_factor_missing")
        now = time.time()
        step = max(_oldest_step(now), self.last_steps.get(key, 0) + 1)
        wait_seconds = (step - totp.WINDOW) * totp.STEP_SECONDS - now
        if wait_seconds > 0:  # until the server's window reaches the step
            logger.info(
                "authenticator: %s waits %.0f s for the next time step", username, wait_seconds
            )
            await asyncio.sleep(wait_seconds + 0.2)
        self.last_steps[key] = step
        self._save()
        return totp.code_at(secret, step)

    def _save(self) -> None:
        # the secret and the last step given (a code is accepted once), per account
        if self.path is None:
            return
        self.path.touch(mode=0o600)
        lines = [
            f"{k} {totp.secret_text(v)} {self.last_steps.get(k, 0)}"
            for k, v in self.secrets.items()
        ]
        self.path.write_text("\n".join(lines) + "\n")


AUTHENTICATOR = Authenticator()
"""The bots' authenticator of this process (tests log in through it)."""


def _oldest_step(now: float) -> int:
    """The oldest step the server still accepts, a second from now (the earlier the
    step, the more logins before one waits for the clock)."""
    return totp.step_at(now + 1) - totp.WINDOW


def _key(server: str, username: str) -> str:
    return f"{server.rstrip('/')}|{username}"


async def _post(
    http: aiohttp.ClientSession,
    url: str,
    body: dict[str, str],
    headers: dict[str, str] | None = None,
) -> dict[str, Any]:
    async with http.post(url, json=body, headers=headers) as response:
        out: dict[str, Any] = await response.json()
        if response.status != 200:
            error = out.get("error", {})
            raise ProtocolError(
                error.get("message", "login failed"), code=error.get("code", "login_failed")
            )
        return out


async def login(
    server: str, username: str, password: str, authenticator: Authenticator | None = None
) -> str:
    """Logs in as staff with the real flow: the password, then a code of the
    authenticator's secret; an account without a second factor is enrolled first
    (the secret read from the ``otpauth://`` URI, as an app reads it from the QR
    code). The login token."""
    return str((await login_answer(server, username, password, authenticator))["token"])


async def login_answer(
    server: str,
    username: str,
    password: str,
    authenticator: Authenticator | None = None,
    http: aiohttp.ClientSession | None = None,
) -> dict[str, Any]:
    """:func:`login`, with the server's whole answer (``recovery_codes`` after an
    enrolment); through ``http`` (its cookie jar gets the login cookie) if given."""
    if http is None:
        async with aiohttp.ClientSession() as own:
            return await login_answer(server, username, password, authenticator, own)
    keys = authenticator or AUTHENTICATOR
    base = server.rstrip("/")
    passed = await _post(
        http, f"{base}/api/operator/login", {"username": username, "password": password}
    )
    if passed["second_factor"] == "enrol":
        query = parse_qs(urlsplit(passed["otpauth_uri"]).query)
        secret = totp.secret_from_text(query["secret"][0])
        step = _oldest_step(time.time())
        keys.enrolled(server, username, secret, step)
        code = totp.code_at(secret, step)
    else:
        code = await keys.code(server, username)
    out = await _post(
        http,
        f"{base}/api/operator/login/second-factor",
        {"challenge": passed["challenge"], "code": code},
    )
    if "recovery_codes" in out:
        keys.recovery_codes[_key(server, username)] = list(out["recovery_codes"])
    return out


async def reauthenticate(
    server: str, username: str, token: str, authenticator: Authenticator | None = None
) -> None:
    """A fresh second-factor proof for a login (``POST /api/operator/reauth``)."""
    code = await (authenticator or AUTHENTICATOR).code(server, username)
    async with aiohttp.ClientSession() as http:
        await _post(
            http,
            f"{server.rstrip('/')}/api/operator/reauth",
            {"code": code},
            {"Authorization": f"Bearer {token}"},
        )


async def take_snapshot(
    client: SignalingClient, kind: str, no_video_seconds: float = 20.0
) -> dict[str, Any] | None:
    """Take a snapshot as an operator would: while the customer's picture is missing
    (``no_video``: none yet, or none for a few seconds on a loaded machine), wait for it
    and try again; None from a server without live analysis, which takes none."""
    deadline = time.monotonic() + no_video_seconds
    while True:
        try:
            return await client.request("snapshot", {"kind": kind})
        except ProtocolError as err:
            if err.code == "analysis_off":
                return None
            if err.code != "no_video" or time.monotonic() > deadline:
                raise
        await asyncio.sleep(0.5)


async def answer_checklist(
    client: SignalingClient, items: list[dict[str, Any]], *, otp: str, others: str = "passed"
) -> None:
    """Answer every checklist item not yet answered: ``otp`` for the code's item (the
    server passes it only on a matching code; an operator may fail it), ``others`` for
    the rest."""
    for item in items:
        if "answer" in item:
            continue
        answer = otp if item["kind"] == "otp" else others
        if answer == "passed" and item.get("snapshot"):  # "snapshot taken": take it
            await take_snapshot(client, item["snapshot"])
        await client.request("checklist_answer", {"item": item["id"], "answer": answer})


@dataclass
class CallResult:
    session_id: str
    decision: str
    video_frames_received: int
    audio_frames_received: int
    accepted_at: float
    first_video_at: float | None


@dataclass
class OperatorBot:
    server: str
    username: str
    password: str
    video: str | Path | MediaStreamTrack | None = None
    decision: str = "approved"
    reason_code: str = ""
    """From the provider's list for the outcome; the list's first when empty."""
    checklist: bool = True
    """Go through the checklist before deciding: to approve, the code read-back (the
    customer bot reads it back in the chat) and every other item passed; otherwise the
    code's item failed (no code sent) and the others passed."""
    watch_seconds: float = 3.0
    """How long the bot looks at the customer (after the first video frame) before deciding."""
    min_video_frames: int = 1
    on_video_frame: Any = None
    calls: list[CallResult] = field(default_factory=list)
    authenticator: Authenticator | None = None
    """Holds the account's TOTP secret (the process's :data:`AUTHENTICATOR` if None)."""
    reauthentications: int = 0
    """Codes given because a decision asked for a fresh second factor."""

    def __post_init__(self) -> None:
        self.signaling = SignalingClient(self.server, "/operator")

    async def connect(self) -> dict[str, Any]:
        token = self.token = await login(
            self.server, self.username, self.password, self.authenticator
        )
        await self.signaling.connect({"token": token})
        hello = await self.signaling.next("hello", 10)
        self.reasons: dict[str, list[str]] = hello.get("reasons", {})
        return hello

    async def decide(self, payload: dict[str, Any]) -> dict[str, Any]:
        """Sends the decision; when the server asks for a fresh second factor
        (``reauthentication_required``), gives a code and sends it again, as the
        console does."""
        try:
            return await self.signaling.request("decide", payload)
        except ProtocolError as err:
            if err.code != "reauthentication_required":
                raise
        self.reauthentications += 1
        await reauthenticate(self.server, self.username, self.token, self.authenticator)
        return await self.signaling.request("decide", payload)

    async def set_presence(self, status: str) -> None:
        await self.signaling.request("set_presence", {"status": status})

    async def accept_next(self, timeout_seconds: float = 120.0) -> tuple[str, ClientPeer]:
        """Wait for an assignment, accept it and connect the media."""
        offered = await self.signaling.next("assignment_offered", timeout_seconds)
        session_id: str = offered["session_id"]
        accepted = await self.signaling.request("accept", {"session_id": session_id})
        peer = ClientPeer(self.video, on_video_frame=self.on_video_frame, ice=accepted)
        try:
            reply = await self.signaling.request(
                "webrtc_offer", {"type": "offer", "sdp": await peer.offer()}
            )
            await peer.accept_answer(reply["answer"]["sdp"])
        except BaseException:
            await peer.close()
            raise
        return session_id, peer

    async def handle_one(self, timeout_seconds: float = 120.0) -> CallResult:
        """Wait for an assignment, accept it, watch the customer, decide."""
        session_id, peer = await self.accept_next(timeout_seconds)
        accepted_at = time.monotonic()
        try:
            await peer.wait_frames("video", self.min_video_frames, timeout_seconds)
            await asyncio.sleep(self.watch_seconds)
            if self.checklist:  # every decision needs the checklist answered
                await self.run_checklist(timeout_seconds, approving=self.decision == "approved")
            reason = self.reason_code or self.reasons.get(self.decision, ["unknown"])[0]
            await self.decide(
                {"session_id": session_id, "outcome": self.decision, "reason_code": reason}
            )
            counter = peer.counters.get("video")
            result = CallResult(
                session_id,
                self.decision,
                peer.frames("video"),
                peer.frames("audio"),
                accepted_at,
                counter.first_frame_at if counter else None,
            )
        finally:
            await peer.close()
        self.calls.append(result)
        return result

    async def run_checklist(
        self, timeout_seconds: float = 60.0, approving: bool = True
    ) -> dict[str, Any]:
        """To approve: the code read back, then every other item passed. Otherwise the
        code is not sent: its item is marked failed, the others passed."""
        view = await self.signaling.request("call_view")
        items = view["checklist"]["items"]
        if approving and any(i["kind"] == "otp" for i in items):
            await self.read_back_code(timeout_seconds)
            items = (await self.signaling.request("call_view"))["checklist"]["items"]
        await answer_checklist(self.signaling, items, otp="failed")
        checklist: dict[str, Any] = (await self.signaling.request("call_view"))["checklist"]
        return checklist

    async def read_back_code(self, timeout_seconds: float = 60.0) -> None:
        """Send the SMS code and enter what the customer reads back (in the chat)."""
        sent = await self.signaling.request("otp_send")
        deadline = time.monotonic() + timeout_seconds
        while True:
            message = await self.signaling.next("chat", max(0.1, deadline - time.monotonic()))
            code = re.search(r"\b(\d{6})\b", message.get("text", ""))
            if code and message.get("at", 0) >= sent["sent_at"]:  # not an earlier code
                await self.signaling.request("otp_check", {"code": code.group(1)})
                return

    async def run(self, calls: int = 1, timeout_seconds: float = 600.0) -> list[CallResult]:
        try:
            await self.connect()
            await self.set_presence("available")
            for _ in range(calls):
                result = await self.handle_one(timeout_seconds)
                logger.info("session %s: %s", result.session_id, result.decision)
        finally:
            await self.signaling.close()
        return self.calls
