"""A jitter buffer for receivers whose frames are forwarded, not played.

aiortc's ``JitterBuffer`` releases a frame when the first packet of the *next* frame
arrives: one frame interval of delay (67 ms at 15 fps) at every hop, and its audio buffer
holds four packets more (80 ms). The participant's own browser buffers for playback; the
server needs only whole frames, in order. So this one releases a video frame as soon as
its last packet (RTP marker bit) is in and every packet before it, and an audio packet as
soon as it is next in sequence. Loss and reordering are handled by aiortc's own logic,
with one bound added: a video packet lost for good (its retransmission lost too) held
every later frame until 512 more packets had come, several seconds of a frozen picture
for the operator, the recording and the analysis. Once the frames waiting behind a hole
span :data:`MAX_HOLE_SECONDS`, the hole is given up: the frame it belongs to is dropped,
the next complete ones go on, and a keyframe is asked for (the PLI aiortc's receiver
sends when ``add`` says so), since what follows refers to what was lost.
"""

from __future__ import annotations

from typing import Any

from aiortc.jitterbuffer import JitterBuffer, JitterFrame

_JITTER_BUFFER = "_RTCRtpReceiver__jitter_buffer"
VIDEO_CLOCK = 90_000
MAX_HOLE_SECONDS = 1.0
"""How long (in the frames' own time) video waits for a missing packet: time enough
for a retransmission on a slow network."""


def _newer(a: int, b: int) -> int:
    """How far RTP timestamp ``a`` is after ``b`` (32-bit wrap-around)."""
    delta = (a - b) & 0xFFFFFFFF
    return delta if delta < 2**31 else delta - 2**32


class ForwardingJitterBuffer(JitterBuffer):
    def add(self, packet: Any) -> tuple[bool, JitterFrame | None]:
        pli, frame = super().add(packet)
        if frame is None and self._is_video and self._hole_too_old(packet.timestamp):
            self._give_up_hole()
            return True, self._remove_frame(packet.sequence_number)
        return pli, frame

    def _hole_too_old(self, newest: int) -> bool:
        """No frame could be released (a packet is missing before the newest) and what
        waits spans too long: from the oldest packet waiting to the newest."""
        if self._origin is None:
            return False
        for count in range(self.capacity):
            waiting = self._packets[(self._origin + count) % self._capacity]
            if waiting is not None:
                return _newer(newest, waiting.timestamp) > MAX_HOLE_SECONDS * VIDEO_CLOCK
        return False

    def _give_up_hole(self) -> None:
        """Drop the missing packets and the rest of the frame they belong to: up to the
        first packet of a frame that begins after the hole."""
        assert self._origin is not None
        timestamp = None
        for _ in range(self.capacity):
            packet = self._packets[self._origin % self._capacity]
            if packet is not None:
                if timestamp is None:
                    timestamp = packet.timestamp
                elif packet.timestamp != timestamp:
                    return  # a frame that starts after the hole
            self.remove(1)

    def _remove_frame(self, sequence_number: int) -> JitterFrame | None:
        packets: list[Any] = []
        timestamp = None
        if self._origin is None:
            return None
        for count in range(self.capacity):
            packet = self._packets[(self._origin + count) % self._capacity]
            if packet is None:
                return None
            if timestamp is None:
                timestamp = packet.timestamp
            elif packet.timestamp != timestamp:
                # the previous frame ended without a marker: release it as aiortc would
                return self._release(packets, timestamp, count)
            packets.append(packet)
            if packet.marker or not self._is_video:
                return self._release(packets, timestamp, count + 1)
        return None

    def _release(self, packets: list[Any], timestamp: int, count: int) -> JitterFrame:
        frame = JitterFrame(data=b"".join(p._data for p in packets), timestamp=timestamp)
        self.remove(count)
        return frame


def install(receiver: Any, kind: str) -> ForwardingJitterBuffer:
    """Put a :class:`ForwardingJitterBuffer` in ``receiver`` (before it starts)."""
    if not isinstance(getattr(receiver, _JITTER_BUFFER, None), JitterBuffer):
        from ..errors import MediaError

        raise MediaError("this aiortc version does not expose its jitter buffer")
    buffer = (
        ForwardingJitterBuffer(capacity=512, is_video=True)
        if kind == "video"
        else ForwardingJitterBuffer(capacity=16)
    )
    setattr(receiver, _JITTER_BUFFER, buffer)
    return buffer
