"""Web hardening (issue 14): cross-site requests refused (Origin and CSRF token),
``__Host-`` cookies and HSTS behind HTTPS, 404 for another session's object, and
malformed Socket.IO frames closing their socket with one rate-limited log line."""

from __future__ import annotations

import asyncio
import io
import logging

import aiohttp
import pytest
from PIL import Image

from videoid.bots.operator_bot import AUTHENTICATOR, login_answer
from videoid.db.session_search import SessionFilter
from videoid.socket_server import RefusalLog
from videoid.web_security import csrf_token

from .conftest import PASSWORD, Server, StartServer

EVIL = "http://evil.example"


async def cookie_login(http: aiohttp.ClientSession, server: Server, username: str) -> str:
    """Logs in with the session's cookie jar; the login token."""
    token: str = (await login_answer(server.url, username, PASSWORD, http=http))["token"]
    return token


async def two_steps(
    http: aiohttp.ClientSession, base: str, username: str
) -> aiohttp.ClientResponse:
    """A login's two requests by hand (the account enrolled already): the response of
    the second, which sets the cookies."""
    async with http.post(
        f"{base}/api/operator/login", json={"username": username, "password": PASSWORD}
    ) as r:
        assert r.status == 200, await r.text()
        challenge = (await r.json())["challenge"]
    code = await AUTHENTICATOR.code(base, username)
    return await http.post(
        f"{base}/api/operator/login/second-factor", json={"challenge": challenge, "code": code}
    )


async def invitations(server: Server) -> int:
    return await server.services.repo.count_sessions(SessionFilter())


async def test_cookie_authenticated_posts_need_the_origin_and_the_csrf_token(
    start_server: StartServer,
) -> None:
    server = await start_server()
    await server.operator("sam", role="supervisor")
    url = f"{server.url}/api/invitations"
    body = {"email": "ada@example.org", "phone": "+393471234567"}
    async with aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True)) as http:
        token = await cookie_login(http, server, "sam")
        csrf = {c.key: c.value for c in http.cookie_jar}["videoid_csrf"]
        assert csrf == csrf_token(token)
        before = await invitations(server)

        # the review's attack: a text/plain form post from another site
        async with http.post(
            url,
            data='{"email": "ada@example.org", "phone": "+393471234567"}',
            headers={"Content-Type": "text/plain", "Origin": EVIL},
        ) as r:
            assert (r.status, (await r.json())["error"]["code"]) == (403, "origin_refused")
        for headers, code in (
            ({"Origin": EVIL, "X-CSRF-Token": csrf}, "origin_refused"),
            ({"Origin": "null", "X-CSRF-Token": csrf}, "origin_refused"),
            ({}, "csrf_token_invalid"),
            ({"Origin": server.url}, "csrf_token_invalid"),
            ({"X-CSRF-Token": csrf_token("another login")}, "csrf_token_invalid"),
            ({"X-CSRF-Token": csrf[:-1]}, "csrf_token_invalid"),
        ):
            async with http.post(url, json=body, headers=headers) as r:
                assert (r.status, (await r.json())["error"]["code"]) == (403, code), headers
        assert await invitations(server) == before  # nothing was created

        # the console's way: same origin, the token from the cookie
        async with http.post(
            url, json=body, headers={"Origin": server.url, "X-CSRF-Token": csrf}
        ) as r:
            assert r.status == 201, await r.text()
        async with http.post(url, json=body, headers={"X-CSRF-Token": csrf}) as r:
            assert r.status == 201, await r.text()
        assert await invitations(server) == before + 2
        # reads need no token
        async with http.get(f"{server.url}/api/operator/me") as r:
            assert r.status == 200

        # logout is a POST too; then the login is gone
        async with http.post(f"{server.url}/api/operator/logout", headers={"Origin": EVIL}) as r:
            assert r.status == 403
        async with http.post(
            f"{server.url}/api/operator/logout", headers={"X-CSRF-Token": csrf}
        ) as r:
            assert r.status == 200
            assert {"videoid_login", "videoid_csrf"} <= set(r.cookies)
        async with http.get(f"{server.url}/api/operator/me") as r:
            assert r.status == 401

    # a login from another site (login CSRF) is refused; a bearer token is not a cookie
    async with aiohttp.ClientSession() as http:
        async with http.post(
            f"{server.url}/api/operator/login",
            json={"username": "sam", "password": PASSWORD},
            headers={"Origin": EVIL},
        ) as r:
            assert (r.status, (await r.json())["error"]["code"]) == (403, "origin_refused")
        token = await cookie_login(http, server, "sam")
        async with http.post(url, json=body, headers={"Authorization": f"Bearer {token}"}) as r:
            assert r.status == 201
        # a login cookie from before the CSRF cookie existed gets its token on a read
        async with http.get(
            f"{server.url}/api/operator/me", headers={"Cookie": f"videoid_login={token}"}
        ) as r:
            assert r.status == 200 and r.cookies["videoid_csrf"].value == csrf_token(token)
    assert await invitations(server) == before + 3


async def test_host_cookies_and_hsts_behind_https(start_server: StartServer) -> None:
    plain = await start_server()
    secure = await start_server(server={"public_url": "https://videoid.example"})
    for server in (plain, secure):
        await server.operator("sam", role="supervisor")
        await login_answer(server.url, "sam", PASSWORD)  # enrolled
    async with aiohttp.ClientSession() as http:
        async with await two_steps(http, plain.url, "sam") as r:
            assert r.status == 200
            cookies = r.headers.getall("Set-Cookie")
            assert "Strict-Transport-Security" not in r.headers
        assert sorted(c.split("=")[0] for c in cookies) == ["videoid_csrf", "videoid_login"]
        assert not any("Secure" in c for c in cookies)
        login = next(c for c in cookies if c.startswith("videoid_login="))
        assert "HttpOnly" in login and "SameSite=Strict" in login
        async with http.get(f"{plain.url}/operator") as r:
            assert "Strict-Transport-Security" not in r.headers

        async with await two_steps(http, secure.url, "sam") as r:
            assert r.status == 200
            token = (await r.json())["token"]
            cookies = r.headers.getall("Set-Cookie")
            assert r.headers["Strict-Transport-Security"] == "max-age=31536000"
        assert sorted(c.split("=")[0] for c in cookies) == [
            "__Host-videoid_csrf",
            "__Host-videoid_login",
        ]
        for cookie in cookies:
            attributes = [a.strip() for a in cookie.split(";")]
            assert "Secure" in attributes and "Path=/" in attributes
            assert not any(a.lower().startswith("domain") for a in attributes)
        for path in ("/operator", "/api/health", "/api/no-such-thing", "/static/style.css"):
            async with http.get(secure.url + path) as r:
                assert r.headers["Strict-Transport-Security"] == "max-age=31536000", path
        # the login is read from the __Host- cookie only (an unprefixed one may have been
        # planted by another host or over plain http)
        async with http.get(
            f"{secure.url}/api/operator/me", headers={"Cookie": f"__Host-videoid_login={token}"}
        ) as r:
            assert r.status == 200
        async with http.get(
            f"{secure.url}/api/operator/me", headers={"Cookie": f"videoid_login={token}"}
        ) as r:
            assert r.status == 401
        async with http.post(
            f"{secure.url}/api/invitations",
            json={"email": "ada@example.org", "phone": "+393471234567"},
            headers={"Cookie": f"__Host-videoid_login={token}"},
        ) as r:
            assert (r.status, (await r.json())["error"]["code"]) == (403, "csrf_token_invalid")
        async with http.post(
            f"{secure.url}/api/operator/logout",
            headers={
                "Cookie": f"__Host-videoid_login={token}",
                "X-CSRF-Token": csrf_token(token),
                "Origin": "https://videoid.example",
            },
        ) as r:
            assert r.status == 200
            cleared = r.headers.getall("Set-Cookie")
        assert all("Secure" in c and "Max-Age=0" in c for c in cleared), cleared


def _jpeg() -> bytes:
    out = io.BytesIO()
    Image.new("RGB", (8, 8), (200, 10, 10)).save(out, "JPEG")
    return out.getvalue()


async def test_another_sessions_object_is_not_found(start_server: StartServer) -> None:
    server = await start_server()
    services = server.services
    mine, other = await server.invite(), await server.invite("bob@example.org", "+393470000002")
    stored = await services.objects.put(
        other.session_id, "snapshot_face", "image/jpeg", _jpeg(), services.clock.now()
    )
    await server.operator("carla", role="compliance")
    await server.operator("sam", role="supervisor")
    async with aiohttp.ClientSession() as http:
        for name, base in (
            ("carla", f"{server.url}/api/compliance/sessions/{{}}/objects/{stored.id}"),
            ("sam", f"{server.url}/api/sessions/{{}}/snapshots/{stored.id}"),
        ):
            token = await cookie_login(http, server, name)
            auth = {"Authorization": f"Bearer {token}"}
            async with http.get(base.format(mine.session_id), headers=auth) as r:
                assert r.status == 404, (name, await r.text())
                assert (await r.json())["error"]["code"] in ("object_not_found", "image_not_found")
        # the compliance route serves it under its own session
        token = await cookie_login(http, server, "carla")
        async with http.get(
            f"{server.url}/api/compliance/sessions/{other.session_id}/objects/{stored.id}",
            headers={"Authorization": f"Bearer {token}"},
        ) as r:
            assert r.status == 200 and await r.read() == _jpeg()


BAD_FRAMES = {
    "socket.io: not a number": "4x",
    "socket.io: broken json": "42[",
    "socket.io: event without a name": "42[]",
    "socket.io: event as an object": "42{}",
    "socket.io: empty message": "4",
    "socket.io: connect with broken json": '40/operator,{"token":',
    "engine.io: unknown packet": "zz",
}


async def _open(http: aiohttp.ClientSession, server: Server) -> aiohttp.ClientWebSocketResponse:
    ws = await http.ws_connect(f"{server.url}/socket.io/?EIO=4&transport=websocket")
    opened = await ws.receive(5)
    assert opened.type == aiohttp.WSMsgType.TEXT and opened.data.startswith("0{")
    return ws


async def _closed(ws: aiohttp.ClientWebSocketResponse, timeout_seconds: float) -> bool:
    """Whether the server closes the websocket within the timeout (what it sends
    before is read and dropped)."""
    try:
        async with asyncio.timeout(timeout_seconds):
            while True:
                message = await ws.receive()
                if message.type in (
                    aiohttp.WSMsgType.CLOSE,
                    aiohttp.WSMsgType.CLOSING,
                    aiohttp.WSMsgType.CLOSED,
                    aiohttp.WSMsgType.ERROR,
                ):
                    return True
    except TimeoutError:
        return False


def _socket_lines(caplog: pytest.LogCaptureFixture) -> list[logging.LogRecord]:
    """What the libraries and our guard logged (not the access log's one line per
    request)."""
    return [
        r
        for r in caplog.records
        if r.name.startswith(("engineio", "socketio", "aiohttp.server", "videoid.socket_server"))
        or r.exc_info
    ]


async def test_malformed_frames_close_the_socket_with_one_line(
    server: Server, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO)
    async with aiohttp.ClientSession() as http:
        logged = 0
        for what, frame in BAD_FRAMES.items():
            caplog.clear()
            ws = await _open(http, server)
            sent = 0
            for _ in range(2000):
                try:
                    await ws.send_str(frame)
                except ConnectionError:
                    break
                sent += 1
            assert await _closed(ws, 5), what
            await ws.close()
            await asyncio.sleep(0.05)
            lines = _socket_lines(caplog)
            # one line at most (the first five at once; then one a second)
            assert len(lines) <= 1 and not any(r.exc_info for r in lines), (what, caplog.text)
            assert all("malformed frame" in r.getMessage() for r in lines)
            assert len(caplog.text) < 1000, (what, len(caplog.text))
            logged += len(lines)
        assert logged >= 5
        # a well-formed client is still served
        ws = await _open(http, server)
        await ws.send_str('40/customer,{"token": "not-an-invitation"}')
        refused = await ws.receive(5)
        assert refused.data.startswith("44/customer,"), refused.data
        await ws.close()


async def test_a_flood_of_bad_sockets_is_logged_at_a_bounded_rate(
    server: Server, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO)
    sockets = 60
    async with aiohttp.ClientSession() as http:
        started = asyncio.get_running_loop().time()

        async def one(i: int) -> bool:
            ws = await _open(http, server)
            for _ in range(20):
                await ws.send_str("42[" if i % 2 else "zz")
            closed = await _closed(ws, 10)
            await ws.close()
            return closed

        closed = await asyncio.gather(*(one(i) for i in range(sockets)))
        seconds = asyncio.get_running_loop().time() - started
    assert all(closed)
    lines = _socket_lines(caplog)
    assert not any(r.exc_info for r in lines), caplog.text[:2000]
    burst, per_second = 5, 1.0  # RefusalLog's defaults
    assert 1 <= len(lines) <= burst + int(seconds * per_second) + 1, (len(lines), seconds)
    assert len(lines) < sockets


def test_refusal_log_counts_what_it_leaves_out(caplog: pytest.LogCaptureFixture) -> None:
    now = [100.0]
    log = RefusalLog(per_second=1.0, burst=2, clock=lambda: now[0])
    with caplog.at_level(logging.WARNING, logger="videoid.socket_server"):
        for i in range(10):
            log.refused(f"s{i}", ValueError("x"))
        assert [r.getMessage().split(":")[0] for r in caplog.records] == ["socket s0", "socket s1"]
        now[0] += 1.0
        log.refused("s10", ValueError("x"))
    assert caplog.records[-1].getMessage().endswith("(8 more not logged)")
    assert len(caplog.records) == 3
