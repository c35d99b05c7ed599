"""Playing a recording back in a browser: signed, expiring links; the recording
decrypted on the fly and one side of the call remuxed (packets copied, nothing
re-encoded) into a WebM that a ``<video>`` element can seek in; HTTP ranges.

A link names the recording, the side (``customer`` or ``operator``), who asked for it
and when it expires, and carries an HMAC-SHA256 over all four with the deployment's
playback key (``keys/playback.key`` in the data directory, created on first use). The
decrypted media lives only in memory, for a few playbacks at a time; nothing clear is
written to disk.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import io
import time
from collections import OrderedDict
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import av
from aiohttp import web

from ..errors import Forbidden, ValidationError, VideoidError
from ..recordings.stream_crypto import ReadResult, open_segments
from ..storage.envelope import KeyWrapper

SIDES = ("customer", "operator")


class LinkInvalid(Forbidden):
    code = "playback_link_invalid"


class LinkExpired(Forbidden):
    code = "playback_link_expired"


class NothingToPlay(VideoidError):
    code = "recording_unplayable"
    status = 409


class PlaybackLinks:
    def __init__(self, secret: bytes, lifetime_seconds: float) -> None:
        self._secret = secret
        self.lifetime = lifetime_seconds

    def _mac(self, recording_id: str, side: str, actor: str, expires: int) -> str:
        message = f"{recording_id}|{side}|{actor}|{expires}".encode()
        return hmac.new(self._secret, message, hashlib.sha256).hexdigest()

    def sign(self, recording_id: str, side: str, actor: str, now: float) -> tuple[str, int]:
        """The link's path and query, and when it expires (Unix seconds)."""
        expires = int(now + self.lifetime)
        mac = self._mac(recording_id, side, actor, expires)
        path = f"/api/compliance/recordings/{recording_id}/{side}.webm"
        return f"{path}?by={actor}&expires={expires}&sig={mac}", expires

    def check(
        self, recording_id: str, side: str, actor: str, expires: str, mac: str, now: float
    ) -> None:
        """Raise unless the link was signed here, for exactly these, and is current."""
        if not expires.isdigit() or len(expires) > 12 or len(mac) != 64:
            raise LinkInvalid("this playback link is malformed")
        good = self._mac(recording_id, side, actor, int(expires))
        if not hmac.compare_digest(good, mac):
            raise LinkInvalid("this playback link was not issued by this server, or was changed")
        if int(expires) < now:
            raise LinkExpired("this playback link has expired; open the recording again")


def playable(mkv: bytes, side: str) -> bytes:
    """One side of the call (its video and audio tracks) as a WebM with a duration and
    cues, so that a browser can seek. Packets are copied as they are. A recording cut
    by a crash plays to where it stops. Only tracks that hold something are kept (a
    side whose camera never started plays its sound); a side with nothing at all is
    :class:`NothingToPlay`. Read twice (which tracks, then the remux) rather than
    holding every packet in memory."""
    wanted = {f"{side}_video", f"{side}_audio"}
    try:
        kept = _tracks_with_packets(mkv, wanted)
        if not kept:
            raise NothingToPlay(f"the recording holds nothing of the {side}")
        out = io.BytesIO()
        with av.open(io.BytesIO(mkv), "r", format="matroska") as src:
            chosen = [s for s in src.streams if s.index in kept]
            with av.open(out, "w", format="webm") as dst:
                mapping = {s.index: dst.add_stream_from_template(s) for s in chosen}
                for packet in _packets(src, chosen):
                    packet.stream = mapping[packet.stream.index]
                    dst.mux(packet)
    except av.error.FFmpegError as err:
        raise NothingToPlay(f"the recording cannot be read: {err}") from err
    return out.getvalue()


def _packets(src: Any, streams: list[Any]) -> Iterator[Any]:
    """The streams' packets with data, to where an interrupted recording stops."""
    try:
        for packet in src.demux(streams):
            if packet.dts is not None and packet.size:  # None: the end-of-stream marker
                yield packet
    except (av.error.InvalidDataError, av.error.EOFError):
        return  # an interrupted recording: the clusters before the cut play


def _tracks_with_packets(mkv: bytes, titles: set[str]) -> set[int]:
    with av.open(io.BytesIO(mkv), "r", format="matroska") as src:
        chosen = [s for s in src.streams if s.metadata.get("title") in titles]
        found: set[int] = set()
        for packet in _packets(src, chosen):
            found.add(packet.stream.index)
            if len(found) == len(chosen):
                break
        return found


class Playback:
    """Decrypts and remuxes on demand; keeps the last few results in memory (a
    ``<video>`` asks for many ranges of the same file)."""

    def __init__(
        self,
        recordings_dir: Path,
        wrapper: KeyWrapper,
        *,
        keep: int = 4,
        keep_seconds: float = 900.0,
        now: Callable[[], float] = time.monotonic,
    ) -> None:
        self._dir, self._wrapper = recordings_dir, wrapper
        self._keep, self._keep_seconds, self._now = keep, keep_seconds, now
        self._cache: OrderedDict[tuple[str, str], tuple[float, asyncio.Future[bytes]]] = (
            OrderedDict()
        )

    async def media(self, recording: dict[str, Any], side: str) -> bytes:
        key = (recording["id"], side)
        now = self._now()
        for old, (made, _) in list(self._cache.items()):
            if now - made > self._keep_seconds:
                del self._cache[old]
        cached = self._cache.get(key)
        if cached is None:
            future: asyncio.Future[bytes] = asyncio.ensure_future(
                asyncio.to_thread(self._build, recording, side)
            )
            self._cache[key] = (now, future)
            while len(self._cache) > self._keep:
                self._cache.popitem(last=False)
        else:
            future = cached[1]
            self._cache.move_to_end(key)
        try:
            return await asyncio.shield(future)
        except Exception:
            if self._cache.get(key, (0.0, None))[1] is future:
                del self._cache[key]  # a failure is not kept: the next try builds again
            raise

    def _build(self, recording: dict[str, Any], side: str) -> bytes:
        if recording["wrapped_key"] is None:
            raise NothingToPlay("this recording was destroyed at the end of its retention")
        result = ReadResult()
        try:
            mkv = b"".join(
                open_segments(
                    self._dir / recording["file"], self._wrapper, result, recording["wrapped_key"]
                )
            )
        except FileNotFoundError as err:
            raise NothingToPlay("the recording's file is missing") from err
        if not mkv:
            raise NothingToPlay("the recording is empty")
        return playable(mkv, side)


def ranged(request: web.Request, data: bytes, content_type: str) -> web.Response:
    """``data`` as a whole (200) or the one byte range asked for (206), as RFC 9110
    says; a range past the end is 416."""
    size = len(data)
    headers = {"Accept-Ranges": "bytes", "Cache-Control": "no-store"}
    if "Range" not in request.headers:
        return web.Response(body=data, content_type=content_type, headers=headers)
    try:
        wanted = request.http_range
    except ValueError as err:
        raise ValidationError("the Range header is malformed", code="invalid_range") from err
    start = wanted.start or 0
    if start < 0:
        start = max(0, size + start)
    stop = size if wanted.stop is None else min(size, wanted.stop)
    if start >= size or stop <= start:
        return web.Response(status=416, headers={**headers, "Content-Range": f"bytes */{size}"})
    headers["Content-Range"] = f"bytes {start}-{stop - 1}/{size}"
    return web.Response(
        status=206, body=data[start:stop], content_type=content_type, headers=headers
    )
