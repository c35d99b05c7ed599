"""Which local addresses aioice's ICE agents gather their host candidates on.

aioice (0.13) gathers a host candidate on every address of every interface, through its
module function ``aioice.ice.get_host_addresses``, and offers no way to choose them:
aiortc passes no such option down, the request is open upstream (aiortc/aioice#2) and
the filter callable its maintainer suggested instead of interface lists
(aiortc/aioice#57) was never added. The server must offer only
``media.announced_addresses`` (ASVS V17: no private addresses announced, no socket on
interfaces the provider did not choose), so this module wraps that one function, and
nothing else: inside :func:`host_addresses`, the agents that gather in the current
context (aiortc gathers in ``setLocalDescription``, in tasks that inherit the context)
use the given addresses; everywhere else aioice behaves as shipped.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar

import aioice.ice

_CHOSEN: ContextVar[tuple[str, ...] | None] = ContextVar("videoid_host_addresses", default=None)
_shipped = aioice.ice.get_host_addresses


def _get_host_addresses(use_ipv4: bool, use_ipv6: bool) -> list[str]:
    chosen = _CHOSEN.get()
    if chosen is None:
        return _shipped(use_ipv4, use_ipv6)
    return [a for a in chosen if (use_ipv6 if ":" in a else use_ipv4)]


def install() -> None:
    """Put the wrapper in place (idempotent). Raises RuntimeError when aioice no longer
    has the function this module wraps, so that an upgrade fails loudly, not open."""
    current = getattr(aioice.ice, "get_host_addresses", None)
    if current is _get_host_addresses:
        return
    if current is not _shipped:
        raise RuntimeError("aioice.ice.get_host_addresses changed: review host_addresses.py")
    aioice.ice.get_host_addresses = _get_host_addresses


@contextmanager
def host_addresses(addresses: Iterable[str]) -> Iterator[None]:
    """Within this block, ICE agents gathering in this context bind host candidates on
    ``addresses`` only (IPv4 and IPv6 as the agent allows)."""
    install()
    token = _CHOSEN.set(tuple(addresses))
    try:
        yield
    finally:
        _CHOSEN.reset(token)
