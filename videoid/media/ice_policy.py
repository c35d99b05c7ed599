"""What the server's ICE agents offer, whom they send checks to, and which STUN/TURN
servers the clients are given (ASVS V17, R20).

- Local candidates: only ``media.announced_addresses`` (each ``ADDRESS``, or
  ``PUBLIC/PRIVATE`` behind a 1:1 NAT: bound on PRIVATE, announced as PUBLIC, like
  coturn's ``external-ip``); none configured keeps aioice's choice (every address but
  loopback), for one machine.
- Remote candidates naming loopback, link-local, private (RFC 1918, RFC 6598 shared,
  ULA), unspecified, multicast or reserved addresses, and mDNS ``.local`` names, are
  dropped before the ICE agent sees them, unless ``media.allow_private_peers``: a
  customer must not make the server send STUN to its own or its neighbours'
  services. A client that names none reachable still connects: its own checks reach
  the server, which learns its address from them (a peer-reflexive candidate).
- Clients get ``ice_servers`` in the browsers' shape, TURN with time-limited REST
  credentials, and customers ``ice_transport_policy: "relay"`` when
  ``media.force_relay``.
"""

from __future__ import annotations

import ipaddress
import logging
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from aiortc import RTCIceServer

from ..config import MediaConfig
from ..errors import ConfigError
from .host_addresses import host_addresses
from .turn_credentials import IceServer, TurnCredentials

logger = logging.getLogger(__name__)

_NOT_PEERS = tuple(
    ipaddress.ip_network(n)
    for n in (
        "0.0.0.0/8",  # "this network"
        "10.0.0.0/8",  # RFC 1918
        "100.64.0.0/10",  # RFC 6598, carrier-grade NAT
        "172.16.0.0/12",  # RFC 1918
        "192.168.0.0/16",  # RFC 1918
        "192.0.0.0/24",  # IETF protocol assignments
        "198.18.0.0/15",  # benchmarking
        "64:ff9b:1::/48",  # local-use NAT64 (RFC 8215): the provider's own network
        "fc00::/7",  # unique local (ULA)
    )
)

_NAT64 = ipaddress.ip_network("64:ff9b::/96")


def is_private_peer(host: str) -> bool:
    """Whether an ICE candidate's address is one the server must not send checks to
    (without ``allow_private_peers``): loopback, link-local, private, shared, ULA,
    unspecified, multicast, reserved, an mDNS ``.local`` name or any other name."""
    try:
        ip = ipaddress.ip_address(host.strip("[]"))
    except ValueError:
        return True  # a name (mDNS or not): the server does not resolve names for peers
    if isinstance(ip, ipaddress.IPv6Address):
        mapped = ip.ipv4_mapped or ip.sixtofour
        if mapped is None and ip in _NAT64:  # a NAT64 gateway would reach the IPv4 inside
            mapped = ipaddress.IPv4Address(int(ip) & 0xFFFFFFFF)
        if mapped is not None:
            return is_private_peer(str(mapped))
        if ip.is_site_local:
            return True
    return (
        ip.is_loopback
        or ip.is_link_local
        or ip.is_unspecified
        or ip.is_multicast
        or ip.is_reserved
        or any(ip in net for net in _NOT_PEERS if net.version == ip.version)
    )


def candidate_address(line: str) -> str | None:
    """The connection address of an ``a=candidate:`` / ``candidate:`` line, read as
    aiortc reads it (the fifth field after the first colon), or None."""
    fields = line.partition(":")[2].split()
    return fields[4] if len(fields) >= 8 else None


@dataclass(frozen=True)
class AnnouncedAddress:
    public: str
    """Written in the candidates the server offers."""
    local: str
    """Bound on this machine (the same address without a NAT)."""

    @classmethod
    def parse(cls, entry: str) -> AnnouncedAddress:
        """``ADDRESS`` or ``PUBLIC/PRIVATE``. Raises ConfigError."""
        public, _, local = entry.strip().partition("/")
        local = local or public
        try:
            pub, loc = ipaddress.ip_address(public), ipaddress.ip_address(local)
        except ValueError as err:
            raise ConfigError(
                f"media.announced_addresses: {entry!r} is not ADDRESS or PUBLIC/PRIVATE"
            ) from err
        if pub.version != loc.version:
            raise ConfigError(f"media.announced_addresses: {entry!r} mixes IPv4 and IPv6")
        return cls(str(pub), str(loc))


class IcePolicy:
    """The server's ICE rules for one process. Pure apart from reading the TURN secret
    file in :meth:`from_config`."""

    def __init__(
        self,
        *,
        ice_servers: tuple[str, ...] = (),
        turn: TurnCredentials | None = None,
        force_relay: bool = False,
        allow_private_peers: bool = False,
        announced_addresses: tuple[str, ...] = (),
    ) -> None:
        if force_relay and turn is None:
            raise ConfigError("media.force_relay needs media.turn_urls and a TURN secret")
        self.ice_servers = ice_servers
        self.turn = turn
        self.force_relay = force_relay
        self.allow_private_peers = allow_private_peers
        self.announced = tuple(AnnouncedAddress.parse(a) for a in announced_addresses)

    @classmethod
    def from_config(cls, media: MediaConfig) -> IcePolicy:
        turn = None
        if media.turn_urls:
            secret = media.turn_secret
            if media.turn_secret_file:
                try:
                    secret = Path(media.turn_secret_file).read_text("utf-8").strip()
                except OSError as err:
                    raise ConfigError(
                        f"media.turn_secret_file: cannot read it ({err.strerror})"
                    ) from err
            if not secret:
                raise ConfigError("media.turn_urls needs media.turn_secret or turn_secret_file")
            turn = TurnCredentials(media.turn_urls, secret.encode(), media.turn_ttl_seconds)
        return cls(
            ice_servers=media.ice_servers,
            turn=turn,
            force_relay=media.force_relay,
            allow_private_peers=media.allow_private_peers,
            announced_addresses=media.announced_addresses,
        )

    # -- what clients are given -----------------------------------------------------------

    def client_ice(self, subject: str, now: float, *, customer: bool) -> dict[str, Any]:
        """``{"ice_servers": [...], "ice_transport_policy": "all"|"relay"}`` for one
        client: ``subject`` is the session id for a customer, ``staff-<id>`` for staff."""
        servers = [IceServer((url,)) for url in self.ice_servers]
        if self.turn is not None:
            servers.append(self.turn.issue(subject, now))
        return {
            "ice_servers": [s.to_json() for s in servers],
            "ice_transport_policy": "relay" if customer and self.force_relay else "all",
        }

    def server_ice_servers(self) -> list[RTCIceServer]:
        """The STUN servers of the server's own peers (``media.ice_servers``; TURN URLs
        in it are skipped: the server is where media ends, it relays through no one)."""
        return [RTCIceServer(urls=u) for u in self.ice_servers if u.startswith("stun")]

    # -- the server's own candidates --------------------------------------------------------

    def gathering(self) -> AbstractContextManager[None]:
        """Wrap ``setLocalDescription``: host candidates on the announced addresses only."""
        if not self.announced:
            return nullcontext()
        return host_addresses(a.local for a in self.announced)

    def local_sdp(self, sdp: str) -> str:
        """The answer as sent: with announced addresses, each candidate's local address
        becomes its public one and any other candidate is left out."""
        if not self.announced:
            return sdp
        public = {a.local: a.public for a in self.announced}
        lines = []
        for line in sdp.splitlines():
            if line.startswith("a=candidate:"):
                fields = line.split(" ")
                if len(fields) < 8 or fields[4] not in public:
                    continue
                fields[4] = public[fields[4]]
                line = " ".join(fields)
            elif line.startswith("c=IN IP"):
                parts = line.split(" ")
                parts[2] = public.get(parts[2], self.announced[0].public)
                version = "IP6" if ":" in parts[2] else "IP4"
                line = f"c=IN {version} {parts[2]}"
            lines.append(line)
        return "\r\n".join(lines) + "\r\n"

    # -- the peer's candidates ---------------------------------------------------------------

    def allows_peer(self, host: str) -> bool:
        return self.allow_private_peers or not is_private_peer(host)

    def remote_sdp(self, sdp: str, label: str) -> str:
        """The offer without the candidates the server must not check. When any is
        dropped, so is ``a=end-of-candidates``: the agent then waits for the peer's own
        checks (peer-reflexive) instead of failing at once with nothing to check."""
        if self.allow_private_peers:
            return sdp
        kept, dropped = [], 0
        # every line ending aiortc's parser accepts (it splits lines as Python does)
        for line in sdp.splitlines():
            if line.startswith("a=candidate:"):
                address = candidate_address(line)
                if address is None or is_private_peer(address):
                    dropped += 1
                    continue
            kept.append(line)
        if not dropped:
            return sdp
        logger.info("%s: %d candidate(s) naming private addresses ignored", label, dropped)
        return "".join(f"{line}\r\n" for line in kept if line != "a=end-of-candidates")
