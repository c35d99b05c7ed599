"""What every HTTP handler reads from a request: the services, who is asking (a member
of staff in a role, or a customer by their session's token), and the body.

Each refusal is an error with a stable code (see docs/protocol.md): no login or an
ended one is 401, a login in another role 403, a body that is not what the route takes
400.
"""

from __future__ import annotations

import json
from typing import Any

from aiohttp import web

from ..access import set_actor
from ..db import OperatorRecord, SessionRecord
from ..errors import Forbidden, ValidationError
from ..services import SERVICES, Services
from ..web_security import login_cookie

JSON_LIMIT = 16_384
"""A customer's JSON body (the data step is the largest) is refused past this."""


def services_of(request: web.Request) -> Services:
    return request.app[SERVICES]


def bearer_token(request: web.Request) -> str | None:
    """The request's ``Authorization: Bearer`` token (``""`` when blank), or None."""
    header = request.headers.get("Authorization", "")
    return header[len("Bearer ") :].strip() if header.startswith("Bearer ") else None


def login_token(request: web.Request) -> str | None:
    """A member of staff's login: a Bearer token (even a blank one, which is refused:
    a Bearer request never falls back to the cookie, as the CSRF check assumes), else
    the login cookie."""
    token = bearer_token(request)
    return token if token is not None else login_cookie(request)


async def require_staff(
    request: web.Request,
    *roles: str,
    refused: str = "your role does not allow this",
    use: bool = True,
) -> OperatorRecord:
    """The logged-in member of staff (401 otherwise), named as the request's actor; in
    one of ``roles`` when any are given (403 ``refused`` otherwise). ``use=False``: a
    console's own refresh, which does not keep an idle login alive."""
    services = services_of(request)
    operator = await services.accounts.authenticate(
        login_token(request), services.clock.now(), use=use
    )
    set_actor(request, f"operator:{operator.id}")
    if roles and operator.role not in roles:
        raise Forbidden(refused)
    return operator


async def require_customer(request: web.Request) -> SessionRecord:
    """The customer's session, from their token (the invitation's or a device's)."""
    services = services_of(request)
    record = await services.invitations.resolve(bearer_token(request), services.clock.now())
    set_actor(request, f"customer:{record.id}")  # named if the request is then refused
    return record


async def read_body(request: web.Request, limit: int) -> bytes:
    """The request body, refused as soon as it grows past ``limit``."""
    if request.content_length is not None and request.content_length > limit:
        raise ValidationError(
            f"the file is larger than {limit // 1_000_000 or limit // 1000} "
            f"{'MB' if limit >= 1_000_000 else 'kB'}",
            code="file_too_large",
        )
    chunks, size = [], 0
    async for chunk in request.content.iter_chunked(65536):
        size += len(chunk)
        if size > limit:
            raise ValidationError("the file is too large", code="file_too_large")
        chunks.append(chunk)
    return b"".join(chunks)


async def read_json(request: web.Request, limit: int = JSON_LIMIT) -> Any:
    """A JSON body of at most ``limit`` bytes, any shape (the route checks it)."""
    raw = await read_body(request, limit)
    try:
        return json.loads(raw)
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise ValidationError("the body must be JSON", code="invalid_json") from err


async def read_fields(request: web.Request, fields: dict[str, int]) -> dict[str, str]:
    """A JSON object of exactly the listed fields, each a string of at most the given
    length (staff forms: login, invitations, codes)."""
    try:
        body = await request.json()
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise ValidationError("the body must be JSON", code="invalid_json") from err
    if not isinstance(body, dict):
        raise ValidationError("the body must be a JSON object", code="invalid_json")
    unknown = set(body) - set(fields)
    if unknown:
        raise ValidationError(f"unknown field {sorted(unknown)[0]!r}", code="invalid_payload")
    out = {}
    for name, limit in fields.items():
        value = body.get(name)
        if not isinstance(value, str) or not value or len(value) > limit:
            raise ValidationError(
                f"{name}: required, a string of at most {limit} characters", code="invalid_payload"
            )
        out[name] = value
    return out
