"""The customer's certificate and contract over HTTP (after the approval): see
:mod:`videoid.trust.signing_flow` and docs/protocol.md."""

from __future__ import annotations

from aiohttp import web

from ..errors import ValidationError
from ..http_api import STATIC
from ..web.requests import bearer_token, read_json, require_customer, services_of


def _strings(body: object, *names: str) -> list[str]:
    if not isinstance(body, dict):
        raise ValidationError("the body must be a JSON object", code="invalid_json")
    out = []
    for name in names:
        value = body.get(name, "")
        if not isinstance(value, str) or len(value) > 64:
            raise ValidationError(f"{name}: a string", code="invalid_payload", field=name)
        out.append(value)
    return out


class SigningApi:
    def routes(self) -> list[web.AbstractRouteDef]:
        return [
            web.get("/api/signing", self.overview),
            web.post("/api/signing/certificate", self.certificate),
            web.get("/api/signing/contract", self.pages),
            web.get("/api/signing/contract.pdf", self.contract),
            web.get("/api/signing/signed.pdf", self.signed),
            web.post("/api/signing/pin", self.pin),
            web.post("/api/signing/unblock", self.unblock),
            web.post("/api/signing/code", self.code),
            web.post("/api/signing/sign", self.sign),
            # the e-mail's link (``/contract#<token>``): its page sends the token here
            web.get("/api/signing/download", self.download),
            web.get("/contract", self.download_page),
        ]

    async def download(self, request: web.Request) -> web.Response:
        """The signed contract, once, for the token of the activation e-mail's link."""
        data = await services_of(request).signing.download_signed(bearer_token(request))
        return web.Response(
            body=data,
            content_type="application/pdf",
            headers={
                "Content-Disposition": 'attachment; filename="contract-signed.pdf"',
                "Cache-Control": "no-store",
            },
        )

    async def download_page(self, request: web.Request) -> web.FileResponse:
        return web.FileResponse(STATIC / "contract.html", headers={"Cache-Control": "no-store"})

    async def overview(self, request: web.Request) -> web.Response:
        record = await require_customer(request)
        return web.json_response(await services_of(request).signing.overview(record.id))

    async def certificate(self, request: web.Request) -> web.Response:
        record = await require_customer(request)
        return web.json_response(await services_of(request).signing.request_certificate(record.id))

    async def pages(self, request: web.Request) -> web.Response:
        record = await require_customer(request)
        return web.json_response(await services_of(request).signing.pages(record.id))

    async def contract(self, request: web.Request) -> web.Response:
        return await self._pdf(request, signed=False)

    async def signed(self, request: web.Request) -> web.Response:
        return await self._pdf(request, signed=True)

    async def _pdf(self, request: web.Request, signed: bool) -> web.Response:
        record = await require_customer(request)
        data = await services_of(request).signing.download(record.id, signed)
        name = "contract-signed.pdf" if signed else "contract.pdf"
        return web.Response(
            body=data,
            content_type="application/pdf",
            headers={
                "Content-Disposition": f'inline; filename="{name}"',
                "Cache-Control": "no-store",
            },
        )

    async def pin(self, request: web.Request) -> web.Response:
        record = await require_customer(request)
        pin, again = _strings(await read_json(request), "pin", "pin_again")
        return web.json_response(await services_of(request).signing.set_pin(record.id, pin, again))

    async def unblock(self, request: web.Request) -> web.Response:
        record = await require_customer(request)
        puk, pin, again = _strings(await read_json(request), "puk", "pin", "pin_again")
        return web.json_response(
            await services_of(request).signing.unblock(record.id, puk, pin, again)
        )

    async def code(self, request: web.Request) -> web.Response:
        record = await require_customer(request)
        return web.json_response(await services_of(request).signing.send_code(record.id))

    async def sign(self, request: web.Request) -> web.Response:
        record = await require_customer(request)
        pin, code = _strings(await read_json(request), "pin", "code")
        return web.json_response(await services_of(request).signing.sign(record.id, pin, code))
