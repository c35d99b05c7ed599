"""What relying parties ask of the CA over HTTP: its certificates, its CRLs, OCSP
(RFC 6960: POST, and GET with the request in the path) and timestamps (RFC 3161).
Public, as their addresses are in the certificates."""

from __future__ import annotations

import base64
import binascii
import urllib.parse

from aiohttp import web

from ..errors import ValidationError
from ..web.requests import services_of

MAX_REQUEST = 64 * 1024


class TrustApi:
    def routes(self) -> list[web.AbstractRouteDef]:
        return [
            web.get("/ca/{which:root|issuing|tsa}.crt", self.certificate),
            web.get("/ca/{which:root|issuing}.crl", self.crl),
            web.post("/ca/ocsp", self.ocsp_post),
            web.get("/ca/ocsp/{request:.+}", self.ocsp_get),
            web.post("/tsa", self.timestamp),
        ]

    async def certificate(self, request: web.Request) -> web.Response:
        der = await services_of(request).trust.certificate(request.match_info["which"])
        return web.Response(body=der, content_type="application/pkix-cert")

    async def crl(self, request: web.Request) -> web.Response:
        der = await services_of(request).trust.crl(request.match_info["which"])
        return web.Response(
            body=der, content_type="application/pkix-crl", headers={"Cache-Control": "no-cache"}
        )

    async def ocsp_post(self, request: web.Request) -> web.Response:
        body = await _body(request, "application/ocsp-request")
        return await self._ocsp(request, body)

    async def ocsp_get(self, request: web.Request) -> web.Response:
        raw = urllib.parse.unquote(request.match_info["request"])
        try:
            body = base64.b64decode(raw, validate=True)
        except (binascii.Error, ValueError) as err:
            raise ValidationError("not a base64 OCSP request", code="invalid_ocsp_request") from err
        return await self._ocsp(request, body)

    async def _ocsp(self, request: web.Request, body: bytes) -> web.Response:
        der = await services_of(request).trust.ocsp(body)
        return web.Response(body=der, content_type="application/ocsp-response")

    async def timestamp(self, request: web.Request) -> web.Response:
        body = await _body(request, "application/timestamp-query")
        der = await services_of(request).trust.timestamp(body)
        return web.Response(body=der, content_type="application/timestamp-reply")


async def _body(request: web.Request, content_type: str) -> bytes:
    if request.content_type != content_type:
        raise ValidationError(f"expected {content_type}", code="invalid_content_type")
    if request.content_length is not None and request.content_length > MAX_REQUEST:
        raise ValidationError("the request is too large", code="payload_too_large")
    body = await request.read()
    if not body or len(body) > MAX_REQUEST:
        raise ValidationError("an empty or too large request", code="invalid_request")
    return body
