"""The e-mail port: a development outbox by default, SMTP by configuration.

The outbox is honest about what it is: nothing leaves the machine; each message is
appended as one JSON line to ``outbox/mail.jsonl`` in the data directory, and the log
says so (without the text)."""

from __future__ import annotations

import asyncio
import json
import logging
import secrets
import smtplib
import ssl
from email.message import EmailMessage
from pathlib import Path
from typing import Protocol

from ..config import Config
from ..errors import VideoidError

logger = logging.getLogger(__name__)


class MailError(VideoidError):
    code = "mail_failed"
    status = 502


class MailGateway(Protocol):
    async def send(self, to: str, subject: str, text: str) -> str:
        """Send; return the message's id. Raises MailError."""
        ...


class OutboxMail:
    """Development adapter: messages go to a file, not to a mailbox."""

    def __init__(self, path: Path) -> None:
        self.path = path

    async def send(self, to: str, subject: str, text: str) -> str:
        message_id = secrets.token_hex(8)
        line = json.dumps({"id": message_id, "to": to, "subject": subject, "text": text})
        await asyncio.to_thread(self._append, line + "\n")
        logger.warning(
            "DEVELOPMENT MAIL OUTBOX: message %s written to %s (not sent)", message_id, self.path
        )
        return message_id

    def _append(self, line: str) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with self.path.open("a", encoding="utf-8") as f:
            f.write(line)

    def messages(self, to: str | None = None) -> list[dict[str, str]]:
        if not self.path.exists():
            return []
        out = [json.loads(line) for line in self.path.read_text("utf-8").splitlines() if line]
        return [m for m in out if to is None or m["to"] == to]


class SmtpMail:
    """An SMTP server (STARTTLS when it offers it, or required with ``starttls``)."""

    def __init__(
        self,
        host: str,
        port: int,
        sender: str,
        *,
        username: str = "",
        password: str = "",
        starttls: bool = False,
        timeout: float = 15.0,
    ) -> None:
        self.host, self.port, self.sender = host, port, sender
        self._username, self._password = username, password
        self._starttls, self._timeout = starttls, timeout

    async def send(self, to: str, subject: str, text: str) -> str:
        message = EmailMessage()
        message_id = f"<{secrets.token_hex(12)}@videoid>"
        message["From"], message["To"], message["Subject"] = self.sender, to, subject
        message["Message-ID"] = message_id
        message.set_content(text)
        try:
            await asyncio.to_thread(self._send, message)
        except (OSError, smtplib.SMTPException) as err:
            raise MailError(f"the mail server refused or cannot be reached: {err}") from err
        return message_id

    def _send(self, message: EmailMessage) -> None:
        with smtplib.SMTP(self.host, self.port, timeout=self._timeout) as smtp:
            smtp.ehlo()
            if self._starttls or smtp.has_extn("starttls"):
                smtp.starttls(context=ssl.create_default_context())
                smtp.ehlo()
            if self._username:
                smtp.login(self._username, self._password)
            smtp.send_message(message)


def mail_gateway(config: Config) -> MailGateway:
    mail = config.mail
    if mail.backend == "smtp":
        password = Path(mail.password_file).read_text().strip() if mail.password_file else ""
        return SmtpMail(
            mail.host,
            mail.port,
            mail.sender,
            username=mail.username,
            password=password,
            starttls=mail.starttls,
        )
    return OutboxMail(config.data_path / "outbox" / "mail.jsonl")
