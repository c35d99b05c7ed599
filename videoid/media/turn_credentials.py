"""Time-limited TURN credentials (draft-uberti-behave-turn-rest-00, coturn's
``use-auth-secret`` with ``static-auth-secret``).

The server and the TURN server share a secret; for each client the server makes
``username = "<expiry>:<subject>"`` (expiry in Unix seconds) and ``credential =
base64(HMAC-SHA1(secret, username))``. The TURN server recomputes the credential and
refuses it after the expiry, so a credential read from a page is worth little and
nothing per user is stored on either side.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class IceServer:
    """One entry of ``ice_servers`` as the browsers' ``RTCIceServer`` takes it."""

    urls: tuple[str, ...]
    """STUN or TURN URLs (``stun:host:port``, ``turn:host:port?transport=udp``)."""
    username: str | None = None
    """TURN only: ``<expiry>:<subject>``."""
    credential: str | None = field(default=None, repr=False)
    """TURN only: the HMAC of the username (never logged: not in the repr)."""

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {"urls": list(self.urls)}
        if self.username is not None:
            out["username"] = self.username
            out["credential"] = self.credential
        return out


class TurnCredentials:
    """Issues TURN REST credentials for ``urls`` with ``secret``, valid ``ttl_seconds``."""

    def __init__(self, urls: tuple[str, ...], secret: bytes, ttl_seconds: float) -> None:
        if not secret:
            raise ValueError("a TURN secret is required")
        self.urls = urls
        self._secret = secret
        self.ttl_seconds = ttl_seconds

    def __repr__(self) -> str:
        return f"TurnCredentials(urls={self.urls!r}, ttl_seconds={self.ttl_seconds})"

    def issue(self, subject: str, now: float) -> IceServer:
        """Credentials for ``subject`` (a session id, ``staff-<id>``, ``server``),
        expiring ``ttl_seconds`` after ``now`` (Unix seconds)."""
        username = f"{int(now + self.ttl_seconds)}:{subject.replace(':', '_')}"
        return IceServer(self.urls, username, self.credential(username))

    def credential(self, username: str) -> str:
        digest = hmac.new(self._secret, username.encode(), hashlib.sha1).digest()
        return base64.b64encode(digest).decode()
