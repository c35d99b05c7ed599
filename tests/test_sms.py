"""The SMS port: the development outbox, and the HTTP adapter against a real HTTP server
standing in for a provider."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import pytest
from aiohttp import web

from videoid.config import load_config
from videoid.notify import HttpSms, OutboxSms, SmsError, sms_gateway
from videoid.notify.sms import masked


async def test_outbox_is_a_file_and_logs_no_text(tmp_path: Path, caplog) -> None:
    outbox = OutboxSms(tmp_path / "outbox" / "sms.jsonl")
    with caplog.at_level(logging.INFO):
        first = await outbox.send("+393471234567", "Your code is 123456")
        await outbox.send("+48123456789", "Another")
    assert [m["text"] for m in outbox.messages("+393471234567")] == ["Your code is 123456"]
    assert len(outbox.messages()) == 2 and outbox.messages()[0]["id"] == first
    assert "DEVELOPMENT SMS OUTBOX" in caplog.text and "not sent" in caplog.text
    assert "123456" not in caplog.text and "+393471234567" not in caplog.text


async def provider(replies: list[tuple[int, str]], got: list[dict]) -> web.Application:
    async def send(request: web.Request) -> web.Response:
        got.append({"auth": request.headers.get("Authorization"), **(await request.json())})
        status, body = replies.pop(0)
        return web.Response(status=status, text=body, content_type="application/json")

    app = web.Application()
    app.router.add_post("/sms", send)
    return app


async def test_http_adapter_posts_to_the_provider(aiohttp_server_factory) -> None:
    got: list[dict] = []
    url = await aiohttp_server_factory(
        await provider([(200, json.dumps({"id": "m-1"})), (503, "{}"), (202, "not json")], got)
    )
    sms = HttpSms(f"{url}/sms", "secret-token", "videoid")
    assert await sms.send("+393471234567", "hello") == "m-1"
    assert got[0] == {"auth": "Bearer secret-token", "to": "+393471234567", "text": "hello",
                      "from": "videoid"}  # fmt: skip
    with pytest.raises(SmsError) as refused:
        await sms.send("+393471234567", "again")
    assert refused.value.code == "sms_failed" and "503" in refused.value.message
    assert await sms.send("+393471234567", "third") == ""  # accepted, no id given
    unreachable = HttpSms("http://127.0.0.1:9/sms", "t", "v", timeout=2)
    with pytest.raises(SmsError, match="cannot be reached"):
        await unreachable.send("+393471234567", "x")


def test_gateway_from_configuration(tmp_path: Path) -> None:
    token = tmp_path / "token"
    token.write_text("abc\n")
    config = load_config(
        environ={},
        overrides={"sms": {"backend": "http", "url": "https://sms.example/api",
                           "token_file": str(token)}},
    )  # fmt: skip
    gateway = sms_gateway(config)
    assert isinstance(gateway, HttpSms) and gateway._token == "abc"
    default = sms_gateway(
        load_config(environ={}, overrides={"server": {"data_dir": str(tmp_path)}})
    )
    assert isinstance(default, OutboxSms) and default.path == tmp_path / "outbox" / "sms.jsonl"
    assert masked("+393471234567") == "+39••••••••67"
