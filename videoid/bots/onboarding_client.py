"""The onboarding steps over HTTP, as a customer's page does them (used by the
customer bot and the tests)."""

from __future__ import annotations

import io
from typing import Any

import aiohttp

from ..customer_client.onboarding import CONSENT_VERSIONS


class OnboardingError(Exception):
    def __init__(self, status: int, body: dict[str, Any]) -> None:
        self.status = status
        self.body = body
        error = body.get("error", {})
        self.code = error.get("code") or ",".join(body.get("problems", [])) or "unknown"
        super().__init__(f"{status} {self.code}: {error.get('message', body)}")


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
        headers = {"Content-Type": "application/octet-stream"} if data is not None else None
        body_data = io.BytesIO(data) if data is not None else None
        async with self._http.request(
            method, self.base_url + path, json=json, data=body_data, params=params, headers=headers
        ) as response:
            body: dict[str, Any] = await response.json()
            if response.status >= 400 and not (
                accept_422 and response.status == 422 and "problems" in body
            ):
                raise OnboardingError(response.status, body)
            return body

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

    async def confirm_data(self, fields: dict[str, str]) -> dict[str, Any]:
        return await self._call("POST", "/api/onboarding/data", json=fields)

    async def selfie(self, data: bytes) -> dict[str, Any]:
        return await self._call("POST", "/api/onboarding/selfie", data=data, accept_422=True)

    async def av_test(self, results: dict[str, Any]) -> dict[str, Any]:
        return await self._call("POST", "/api/onboarding/av-test", json=results)
