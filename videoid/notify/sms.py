"""The SMS port: a development outbox by default, an HTTP provider in production.

The outbox is honest about what it is: nothing leaves the machine; each message is
appended as one JSON line to ``outbox/sms.jsonl`` in the data directory (which stands
in for the customer's phone), and the log says a development outbox took it, without
the text (a message may carry a one-time code, which is never logged).
"""

from __future__ import annotations

import asyncio
import json
import logging
import secrets
from pathlib import Path
from typing import Protocol

import aiohttp

from ..config import Config
from ..errors import VideoidError

logger = logging.getLogger(__name__)


class SmsError(VideoidError):
    code = "sms_failed"
    status = 502


class SmsGateway(Protocol):
    async def send(self, phone: str, text: str) -> str:
        """Send ``text`` to ``phone``; return the message's id. Raises SmsError."""
        ...


def masked(phone: str) -> str:
    return phone[:3] + "•" * max(0, len(phone) - 5) + phone[-2:] if len(phone) > 5 else "•••"


class OutboxSms:
    """Development adapter: messages go to a file, not to a phone."""

    def __init__(self, path: Path) -> None:
        self.path = path

    async def send(self, phone: str, text: str) -> str:
        message_id = secrets.token_hex(8)
        line = json.dumps({"id": message_id, "to": phone, "text": text}) + "\n"
        await asyncio.to_thread(self._append, line)
        logger.warning(
            "DEVELOPMENT SMS OUTBOX: message %s to %s written to %s (not sent)",
            message_id,
            masked(phone),
            self.path,
        )
        return message_id

    def _append(self, line: str) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with self.path.open("a", encoding="utf-8") as f:
            f.write(line)

    def messages(self, phone: str | None = None) -> list[dict[str, str]]:
        """What the outbox holds (for the bots and tests), oldest first."""
        if not self.path.exists():
            return []
        out = [json.loads(line) for line in self.path.read_text("utf-8").splitlines() if line]
        return [m for m in out if phone is None or m["to"] == phone]


class HttpSms:
    """A provider's HTTP API: POST ``{"to", "text", "from"}`` as JSON with a bearer
    token; any 2xx answer is taken as accepted (its ``id`` if it gives one)."""

    def __init__(self, url: str, token: str, sender: str, timeout: float = 10.0) -> None:
        self.url, self._token, self.sender, self._timeout = url, token, sender, timeout

    async def send(self, phone: str, text: str) -> str:
        try:
            async with (
                aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=self._timeout)) as http,
                http.post(
                    self.url,
                    json={"to": phone, "text": text, "from": self.sender},
                    headers={"Authorization": f"Bearer {self._token}"},
                ) as response,
            ):
                if response.status // 100 != 2:
                    raise SmsError(f"the SMS provider answered {response.status}")
                body = await response.json(content_type=None)
        except (aiohttp.ClientError, TimeoutError) as err:
            raise SmsError(f"the SMS provider cannot be reached: {err.__class__.__name__}") from err
        except ValueError:
            body = {}
        return str(body.get("id", "")) if isinstance(body, dict) else ""


def sms_gateway(config: Config) -> SmsGateway:
    sms = config.sms
    if sms.backend == "http":
        token = Path(sms.token_file).read_text().strip() if sms.token_file else ""
        return HttpSms(sms.url, token, sms.sender)
    return OutboxSms(config.data_path / "outbox" / "sms.jsonl")
