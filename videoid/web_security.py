"""The staff consoles' login cookie and what guards it: cross-site request forgery
(an Origin check and a token), ``__Host-`` cookies and HSTS behind HTTPS.

A state-changing request (anything but GET, HEAD, OPTIONS) is refused with 403 when

- it comes from a page of another origin (``Origin`` names neither the request's host
  nor ``server.public_url``): ``origin_refused``;
- it is authenticated by the login cookie and lacks the CSRF token in the
  ``X-CSRF-Token`` header: ``csrf_token_invalid``. The token is the value of the CSRF
  cookie, set next to the login cookie and readable by the consoles' scripts; it is
  derived from the login token, so another login's token does not fit.

Requests with an ``Authorization: Bearer`` header (customers, bots) carry no cookie a
browser would add on its own and are not subject to either check.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import urllib.parse
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from aiohttp import web

from .config import ServerConfig
from .errors import Forbidden

LOGIN_COOKIE = "videoid_login"
CSRF_COOKIE = "videoid_csrf"
CSRF_HEADER = "X-CSRF-Token"
HOST_PREFIX = "__Host-"
"""Cookies named so are only accepted by browsers with Secure, Path=/ and no Domain:
no other host (a sibling subdomain, a plain-http page) can set or overwrite them."""
HSTS = "max-age=31536000"
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
TOKENLESS_PATHS = frozenset({"/api/operator/login", "/api/operator/login/second-factor"})
"""Cookie-free by nature: a login request is not authenticated by the login cookie (a
stale one may come with it); it still passes the Origin check."""

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


@dataclass(frozen=True)
class CookiePolicy:
    """How the login cookie is named and marked, from ``server.*``."""

    login_cookie: str
    """The login cookie's name (``__Host-videoid_login`` behind HTTPS)."""
    csrf_cookie: str
    """The CSRF token's cookie, readable by the consoles' scripts."""
    secure: bool
    """Cookies marked Secure: ``server.secure_cookies`` or an https ``public_url``."""
    hsts: bool
    """Strict-Transport-Security on every response (an https ``public_url``)."""
    public_origin: str | None
    """``scheme://host[:port]`` of ``server.public_url``, when set."""

    @classmethod
    def from_config(cls, server: ServerConfig) -> CookiePolicy:
        url = urllib.parse.urlsplit(server.public_url) if server.public_url else None
        https = url is not None and url.scheme == "https"
        prefix = HOST_PREFIX if https else ""
        return cls(
            login_cookie=prefix + LOGIN_COOKIE,
            csrf_cookie=prefix + CSRF_COOKIE,
            secure=https or server.secure_cookies,
            hsts=https,
            public_origin=f"{url.scheme}://{url.netloc}".lower() if url else None,
        )

    def same_origin(self, origin: str, host: str) -> bool:
        """Whether an ``Origin`` header names this server (as reached, or as
        published). ``null`` (a sandboxed or privacy-redirected page) does not."""
        origin = origin.strip().lower()
        if self.public_origin is not None and origin == self.public_origin:
            return True
        parts = urllib.parse.urlsplit(origin)
        return parts.scheme in ("http", "https") and parts.netloc == host.lower()

    def set_login(self, response: web.StreamResponse, token: str, max_age: int) -> None:
        """The login cookie (HttpOnly) and its CSRF token's cookie (readable by the
        page's scripts), both SameSite=Strict."""
        for name, value, httponly in (
            (self.login_cookie, token, True),
            (self.csrf_cookie, csrf_token(token), False),
        ):
            response.set_cookie(
                name,
                value,
                httponly=httponly,
                samesite="Strict",
                secure=self.secure,
                path="/",
                max_age=max_age,
            )

    def clear_login(self, response: web.StreamResponse) -> None:
        for name in (self.login_cookie, self.csrf_cookie):
            response.del_cookie(name, path="/", secure=self.secure, samesite="Strict")


WEB_SECURITY = web.AppKey("web_security", CookiePolicy)


def csrf_token(login_token: str) -> str:
    """The CSRF token that goes with a login: a one-way function of its token, so
    a page that cannot read the login cookie cannot make it."""
    digest = hmac.new(b"videoid csrf token v1", login_token.encode(), hashlib.sha256).digest()
    return base64.urlsafe_b64encode(digest[:24]).decode()


def login_cookie(request: web.Request) -> str | None:
    """The login token from the login cookie (under this server's name for it)."""
    return request.cookies.get(request.app[WEB_SECURITY].login_cookie)


@web.middleware
async def csrf_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    policy = request.app[WEB_SECURITY]
    cookie = request.cookies.get(policy.login_cookie)
    bearer = request.headers.get("Authorization", "").startswith("Bearer ")
    if request.method not in SAFE_METHODS and not bearer:
        origin = request.headers.get("Origin")
        if origin is not None and not policy.same_origin(origin, request.host):
            raise Forbidden("the request comes from another site", code="origin_refused")
        if cookie is not None and request.path not in TOKENLESS_PATHS:
            sent = request.headers.get(CSRF_HEADER, "")
            if not hmac.compare_digest(sent.encode(), csrf_token(cookie).encode()):
                raise Forbidden(
                    f"the {CSRF_HEADER} header is missing or wrong", code="csrf_token_invalid"
                )
    response = await handler(request)
    if (
        cookie is not None
        and not bearer
        and request.method in SAFE_METHODS
        and request.cookies.get(policy.csrf_cookie) != csrf_token(cookie)
        and not response.prepared
        and policy.login_cookie not in response.cookies
    ):  # a login from before the token existed, or its cookie lost: given again
        response.set_cookie(
            policy.csrf_cookie,
            csrf_token(cookie),
            samesite="Strict",
            secure=policy.secure,
            path="/",
        )
    return response


async def _hsts(request: web.Request, response: web.StreamResponse) -> None:
    if request.app[WEB_SECURITY].hsts:
        response.headers["Strict-Transport-Security"] = HSTS


def install(app: web.Application, server: ServerConfig) -> CookiePolicy:
    """The policy in ``app[WEB_SECURITY]``, the CSRF middleware (innermost: its
    refusals go through the error middleware) and HSTS on every response."""
    policy = app[WEB_SECURITY] = CookiePolicy.from_config(server)
    app.middlewares.append(csrf_middleware)
    app.on_response_prepare.append(_hsts)
    return policy
