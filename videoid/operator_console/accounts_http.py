"""Staff login (password, then the second factor or its enrolment), re-authentication,
and the supervisor's account management, over HTTP. See docs/protocol.md."""

from __future__ import annotations

from typing import Any

from aiohttp import web

from ..customer_client.onboarding_http import qr_data_url
from ..web.requests import login_token, read_fields, require_staff, services_of
from ..web_security import WEB_SECURITY
from .account_admin import ACTIONS, AccountAdmin
from .accounts import Login, PasswordPassed


def password_passed_json(passed: PasswordPassed) -> dict[str, Any]:
    out: dict[str, Any] = {
        "second_factor": passed.second_factor,
        "challenge": passed.challenge,
        "expires_at": passed.expires_at,
    }
    if passed.second_factor == "enrol":
        out["otpauth_uri"] = passed.otpauth_uri
        out["secret"] = passed.secret
        out["qr"] = qr_data_url(passed.otpauth_uri)
    return out


class AccountsApi:
    def routes(self) -> list[web.AbstractRouteDef]:
        return [
            web.post("/api/operator/login/second-factor", self.second_factor),
            web.post("/api/operator/reauth", self.reauth),
            web.get("/api/staff/accounts", self.list),
            web.post("/api/staff/accounts/{operator_id}/{action}", self.act),
        ]

    async def second_factor(self, request: web.Request) -> web.Response:
        body = await read_fields(request, {"challenge": 128, "code": 32})
        services = services_of(request)
        login: Login = await services.accounts.second_factor(
            body["challenge"], body["code"], services.clock.now(), address=request.remote
        )
        operator = login.operator
        out: dict[str, Any] = {
            "token": login.token,
            "expires_at": login.expires_at,
            "operator": {"id": operator.id, "username": operator.username, "role": operator.role},
        }
        if login.recovery_codes:
            out["recovery_codes"] = list(login.recovery_codes)
        response = web.json_response(out)
        request.app[WEB_SECURITY].set_login(
            response, login.token, int(services.config.operators.login_ttl_hours * 3600)
        )
        return response

    async def reauth(self, request: web.Request) -> web.Response:
        body = await read_fields(request, {"code": 32})
        services = services_of(request)
        now = services.clock.now()
        await services.accounts.reauthenticate(
            login_token(request), body["code"], now, address=request.remote
        )
        return web.json_response({"ok": True, "verified_at": now})

    async def _admin(self, request: web.Request) -> tuple[AccountAdmin, str]:
        supervisor = await require_staff(
            request, "supervisor", refused="account management is for supervisors"
        )
        services = services_of(request)
        return AccountAdmin(services.repo, services.accounts), f"operator:{supervisor.id}"

    async def list(self, request: web.Request) -> web.Response:
        admin, actor = await self._admin(request)
        accounts = await admin.list(services_of(request).clock.now())
        return web.json_response(
            {
                "accounts": [
                    {
                        "id": a.id,
                        "username": a.username,
                        "role": a.role,
                        "disabled": a.disabled,
                        "enrolled": a.enrolled,
                        "recovery_codes_left": a.recovery_codes_left,
                        "logins": a.logins,
                        "last_seen": a.last_seen,
                        "own": actor == f"operator:{a.id}",
                    }
                    for a in accounts
                ]
            }
        )

    async def act(self, request: web.Request) -> web.Response:
        admin, actor = await self._admin(request)
        services = services_of(request)
        now = services.clock.now()
        # changing an account is a decision too: a recent second-factor proof
        await services.accounts.require_recent_proof(login_token(request), now)
        action = request.match_info["action"]
        if action not in ACTIONS:
            raise web.HTTPNotFound()
        raw_id = request.match_info["operator_id"]
        target = await admin.find(id=int(raw_id) if raw_id.isdigit() and len(raw_id) < 10 else -1)
        password = await admin.act(action, target, actor, now)
        out: dict[str, Any] = {"ok": True}
        if password is not None:
            out["password"] = password
        return web.json_response(out)
