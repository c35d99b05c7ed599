"""The server's end of one participant's WebRTC connection.

Each participant (customer, operator) talks to the server, never to each other (R6).
A :class:`ParticipantPeer` answers the participant's offer with its own outgoing audio
and video tracks already in place; :func:`bridge` then feeds each side's incoming media
into the other's outgoing tracks, whichever side connects first.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from typing import Any, Literal

from aiortc import (
    RTCConfiguration,
    RTCPeerConnection,
    RTCRtpReceiver,
    RTCRtpSender,
    RTCSessionDescription,
)
from aiortc.contrib.media import MediaRelay
from aiortc.mediastreams import MediaStreamTrack
from aiortc.sdp import SessionDescription, candidate_from_sdp

from ..errors import InvalidSdp, MediaError
from .encoded_tap import EncodedTap
from .forwarded_track import ForwardedTrack, RelayedTrack
from .ice_policy import IcePolicy

logger = logging.getLogger(__name__)

Forwarding = Literal["encoded", "reencode"]
KINDS = ("audio", "video")
CODECS = {"audio": "audio/opus", "video": "video/VP8"}
"""The one codec per kind the server negotiates, so encoded frames pass between peers."""


def prefer_forwardable_codecs(pc: RTCPeerConnection) -> None:
    """Restrict each audio/video transceiver to the one codec the server forwards."""
    for transceiver in pc.getTransceivers():
        if transceiver.kind in KINDS:
            caps = RTCRtpSender.getCapabilities(transceiver.kind)
            wanted = CODECS[transceiver.kind].lower()
            transceiver.setCodecPreferences(
                [c for c in caps.codecs if c.mimeType.lower() == wanted]
            )


def parse_offer(sdp: Any, max_bytes: int) -> SessionDescription:
    """Check an offer before it reaches aiortc. Raises :class:`InvalidSdp`."""
    if not isinstance(sdp, str) or not sdp.strip():
        raise InvalidSdp("the offer's sdp must be a non-empty string")
    if len(sdp.encode()) > max_bytes:
        raise InvalidSdp(f"the offer is larger than {max_bytes} bytes")
    try:
        parsed = SessionDescription.parse(sdp)
    except Exception as err:  # aiortc's parser raises many kinds on bad input
        raise InvalidSdp(f"the offer cannot be parsed: {err.__class__.__name__}") from err
    kinds = [m.kind for m in parsed.media]
    if not kinds or any(k not in (*KINDS, "application") for k in kinds):
        raise InvalidSdp("the offer must carry audio and/or video")
    if len(kinds) > 4:
        raise InvalidSdp("the offer has too many media sections")
    for media in parsed.media:
        if media.kind in KINDS and not any(
            f"{media.kind}/{c.name}".lower() == CODECS[media.kind].lower() for c in media.rtp.codecs
        ):
            raise InvalidSdp(f"the offer's {media.kind} does not support {CODECS[media.kind]}")
        if media.dtls is None or not media.dtls.fingerprints:
            raise InvalidSdp("the offer has no DTLS fingerprint (media must be encrypted)")
        if media.ice is None or not media.ice.usernameFragment:
            raise InvalidSdp("the offer has no ICE credentials")
    return parsed


class ParticipantPeer:
    """One participant's peer connection and its incoming and outgoing tracks."""

    def __init__(
        self,
        label: str,
        *,
        forwarding: Forwarding = "encoded",
        policy: IcePolicy | None = None,
        max_sdp_bytes: int = 65536,
        relay: MediaRelay | None = None,
    ) -> None:
        self.label = label
        self.forwarding = forwarding
        self._max_sdp_bytes = max_sdp_bytes
        self._policy = policy or IcePolicy()
        self._relay = relay or MediaRelay()
        self.pc: RTCPeerConnection | None = None
        self.outgoing: dict[str, ForwardedTrack | RelayedTrack] = {}
        self.taps: dict[str, EncodedTap] = {}
        self.incoming: dict[str, MediaStreamTrack] = {}
        self.partner: ParticipantPeer | None = None
        self.on_tap: Callable[[str, EncodedTap], None] | None = None
        """Called with each new encoded tap (the recorder subscribes to it)."""
        self.on_video: Callable[[MediaStreamTrack], None] | None = None
        """Called with each incoming video track to decode (the live analysis); in
        encoded forwarding, only such a track's frames are decoded."""
        self._lock = asyncio.Lock()
        self._closed = False

    async def answer(self, sdp: Any) -> str:
        """Answer the participant's offer; return the answer's SDP (with all candidates).
        A new offer replaces the previous connection. Raises :class:`InvalidSdp`."""
        parse_offer(sdp, self._max_sdp_bytes)
        sdp = self._policy.remote_sdp(sdp, self.label)
        async with self._lock:
            if self._closed:
                raise MediaError("the call has ended", code="call_ended")
            await self._close_pc()
            pc = self.pc = RTCPeerConnection(
                RTCConfiguration(iceServers=self._policy.server_ice_servers())
            )
            pc.on("track", self._on_track)
            pc.on("connectionstatechange", self._on_connection_state)
            try:
                with self._policy.gathering():
                    await pc.setRemoteDescription(RTCSessionDescription(sdp=sdp, type="offer"))
                    prefer_forwardable_codecs(pc)
                    for transceiver in pc.getTransceivers():
                        kind = transceiver.kind
                        if kind not in KINDS:
                            continue
                        track = self._make_outgoing(kind)
                        sender = pc.addTrack(track)
                        # A keyframe request from our participant goes upstream to the source.
                        sender._send_keyframe = track.request_keyframe  # type: ignore[method-assign]
                    await pc.setLocalDescription(await pc.createAnswer())
            except (ValueError, KeyError, IndexError, AttributeError, TypeError) as err:
                await self._close_pc()
                raise InvalidSdp(f"the offer was refused: {err}") from err
            if self.partner is not None:
                self._feed_from(self.partner)
                self.partner._feed_from(self)
            return self._policy.local_sdp(pc.localDescription.sdp)

    async def add_candidate(self, candidate: Any, sdp_mid: Any, sdp_mline_index: Any) -> None:
        """Add a trickled ICE candidate (``candidate:…`` line). Raises :class:`InvalidSdp`."""
        if not isinstance(candidate, str) or len(candidate) > 1024:
            raise InvalidSdp("candidate must be a string of at most 1024 characters")
        if self.pc is None or self.pc.remoteDescription is None:
            raise MediaError("send the offer first", code="out_of_order")
        if not candidate:
            return  # end of candidates
        try:
            parsed = candidate_from_sdp(candidate.removeprefix("candidate:"))
        except (ValueError, IndexError) as err:
            raise InvalidSdp("the ICE candidate cannot be parsed") from err
        if not self._policy.allows_peer(parsed.ip):
            logger.info("%s: a trickled candidate naming a private address ignored", self.label)
            return
        parsed.sdpMid = sdp_mid if isinstance(sdp_mid, str) else None
        parsed.sdpMLineIndex = sdp_mline_index if isinstance(sdp_mline_index, int) else None
        await self.pc.addIceCandidate(parsed)

    async def close(self) -> None:
        async with self._lock:
            self._closed = True
            await self._close_pc()

    # -- internals --------------------------------------------------------------------

    def _make_outgoing(self, kind: str) -> ForwardedTrack | RelayedTrack:
        track: ForwardedTrack | RelayedTrack = (
            ForwardedTrack(kind) if self.forwarding == "encoded" else RelayedTrack(kind)
        )
        self.outgoing[kind] = track
        return track

    def _feed_from(self, source: ParticipantPeer) -> None:
        """Feed our outgoing tracks from ``source``'s incoming media, where both exist."""
        for kind, track in self.outgoing.items():
            if isinstance(track, ForwardedTrack) and kind in source.taps:
                track.attach(source.taps[kind])
            elif isinstance(track, RelayedTrack) and kind in source.incoming:
                track.attach_track(self._relay.subscribe(source.incoming[kind], buffered=False))

    def _on_track(self, track: MediaStreamTrack) -> None:
        kind = track.kind
        if kind not in KINDS or self.pc is None:
            return
        self.incoming[kind] = track
        if self.forwarding == "encoded":
            receiver = next(
                t.receiver for t in self.pc.getTransceivers() if t.receiver.track is track
            )
            assert isinstance(receiver, RTCRtpReceiver)
            self.taps[kind] = EncodedTap.install(receiver, kind)
            if self.on_tap is not None:
                self.on_tap(kind, self.taps[kind])
        if kind == "video" and self.on_video is not None:
            if self.forwarding == "encoded":
                self.taps[kind].decode = True
                self.on_video(track)
            else:  # the re-encoding path reads the track too: share it through the relay
                self.on_video(self._relay.subscribe(track, buffered=False))
        if self.partner is not None:
            self.partner._feed_from(self)

    def _on_connection_state(self) -> None:
        if self.pc is not None:
            logger.info("%s: connection %s", self.label, self.pc.connectionState)

    async def _close_pc(self) -> None:
        pc, self.pc = self.pc, None
        for track in self.outgoing.values():
            track.stop()
        for tap in self.taps.values():
            await tap.close()
        self.outgoing, self.taps, self.incoming = {}, {}, {}
        if pc is not None:
            await pc.close()


def bridge(a: ParticipantPeer, b: ParticipantPeer) -> None:
    """Forward ``a``'s media to ``b`` and ``b``'s to ``a``, now and after any renegotiation."""
    a.partner, b.partner = b, a
    a._feed_from(b)
    b._feed_from(a)
