"""The onboarding steps over HTTP, as a customer's page does them (used by the
customer bot and the tests)."""

from __future__ import annotations

import asyncio
import io
import json
from typing import Any

import aiohttp
from aiortc import RTCPeerConnection, RTCSessionDescription

from ..customer_client.onboarding import CONSENT_VERSIONS
from ..errors import VideoidError
from .media_client import rtc_configuration


class OnboardingError(VideoidError):
    """The server refused an onboarding step; ``code`` is its error code, or the
    photo's problems joined by commas."""

    def __init__(self, status: int, body: dict[str, Any]) -> None:
        self.status = status
        self.body = body
        error = body.get("error", {})
        code = error.get("code") or ",".join(body.get("problems", [])) or "unknown"
        super().__init__(f"{status} {code}: {error.get('message', body)}", code=code)


class OnboardingClient:
    def __init__(self, base_url: str, token: str) -> None:
        self.base_url = base_url.rstrip("/")
        self._http = aiohttp.ClientSession(headers={"Authorization": f"Bearer {token}"})

    async def close(self) -> None:
        await self._http.close()

    async def __aenter__(self) -> OnboardingClient:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def _call(
        self,
        method: str,
        path: str,
        *,
        json: Any = None,
        data: bytes | None = None,
        params: dict[str, str] | None = None,
        accept_422: bool = False,
    ) -> dict[str, Any]:
        """The answer's body; an error raises :class:`OnboardingError`, except, with
        ``accept_422``, a photo refused for its problems (422 ``photo_rejected``),
        answered as the page shows it: ``{"accepted": false, "problems",
        "attempts_left"}``."""
        headers = {"Content-Type": "application/octet-stream"} if data is not None else None
        body_data = io.BytesIO(data) if data is not None else None
        async with self._http.request(
            method, self.base_url + path, json=json, data=body_data, params=params, headers=headers
        ) as response:
            body: dict[str, Any] = await response.json()
            error = body.get("error") or {}
            if accept_422 and response.status == 422 and error.get("code") == "photo_rejected":
                return {
                    "accepted": False,
                    "problems": error["problems"],
                    "attempts_left": error["attempts_left"],
                }
            if response.status >= 400:
                raise OnboardingError(response.status, body)
            return body

    async def download(self, path: str) -> bytes:
        async with self._http.get(self.base_url + path) as response:
            if response.status >= 400:
                raise OnboardingError(response.status, await response.json())
            return await response.read()

    async def overview(self) -> dict[str, Any]:
        return await self._call("GET", "/api/onboarding")

    async def consent_texts(self, language: str) -> list[dict[str, str]]:
        body = await self._call("GET", "/api/onboarding/consent", params={"lang": language})
        documents: list[dict[str, str]] = body["documents"]
        return documents

    async def consent(self, language: str = "en") -> dict[str, Any]:
        accepted = [{"document": d, "version": v} for d, v in CONSENT_VERSIONS.items()]
        return await self._call(
            "POST", "/api/onboarding/consent", json={"language": language, "accepted": accepted}
        )

    async def document(
        self, side: str, data: bytes, *, country: str, doc_type: str
    ) -> dict[str, Any]:
        """The page's answer: ``accepted`` with ``warnings``, or ``problems`` to fix."""
        return await self._call(
            "POST",
            f"/api/onboarding/document/{side}",
            data=data,
            params={"country": country, "type": doc_type},
            accept_422=True,
        )

    async def document_done(self) -> dict[str, Any]:
        return await self._call("POST", "/api/onboarding/document-done")

    async def confirm_data(self, fields: dict[str, Any]) -> dict[str, Any]:
        return await self._call("POST", "/api/onboarding/data", json=fields)

    async def selfie(self, data: bytes) -> dict[str, Any]:
        return await self._call("POST", "/api/onboarding/selfie", data=data, accept_422=True)

    async def av_test(self, results: dict[str, Any]) -> dict[str, Any]:
        return await self._call("POST", "/api/onboarding/av-test", json=results)

    async def connectivity_test(
        self, *, upload_seconds: float = 1.0, timeout_seconds: float = 25.0
    ) -> dict[str, Any]:
        """The connectivity test, as the page runs it: a data channel to the server,
        which measures round trip and upstream bitrate (see media/probe.py) and
        answers with its result."""
        loop = asyncio.get_running_loop()
        result: asyncio.Future[dict[str, Any]] = loop.create_future()
        # the call's STUN/TURN servers and policy, as the page takes them
        pc = RTCPeerConnection(rtc_configuration(await self.overview()))
        channel = pc.createDataChannel("probe")
        tasks: list[asyncio.Task[None]] = []

        async def upload() -> None:
            chunk, until = bytes(16384), loop.time() + upload_seconds
            while loop.time() < until and channel.readyState == "open":
                if channel.bufferedAmount < 1_000_000:
                    channel.send(chunk)
                await asyncio.sleep(0.002)
            if channel.readyState == "open":
                channel.send(json.dumps({"type": "done"}))

        @channel.on("message")
        def on_message(message: str | bytes) -> None:
            if isinstance(message, bytes):
                return
            msg = json.loads(message)
            if msg.get("type") == "ping":
                channel.send(json.dumps({"type": "pong", "seq": msg["seq"], "t": msg["t"]}))
            elif msg.get("type") == "upload":
                tasks.append(asyncio.ensure_future(upload()))
            elif msg.get("type") == "result" and not result.done():
                result.set_result(msg)

        try:
            await pc.setLocalDescription(await pc.createOffer())
            reply = await self._call(
                "POST",
                "/api/onboarding/connectivity",
                json={"type": "offer", "sdp": pc.localDescription.sdp},
            )
            await pc.setRemoteDescription(
                RTCSessionDescription(sdp=reply["answer"]["sdp"], type="answer")
            )
            return await asyncio.wait_for(result, timeout_seconds)
        finally:
            for task in tasks:
                task.cancel()
            await pc.close()
