"""A jitter buffer for receivers whose frames are forwarded, not played.

aiortc's ``JitterBuffer`` releases a frame when the first packet of the *next* frame
arrives: one frame interval of delay (67 ms at 15 fps) at every hop, and its audio buffer
holds four packets more (80 ms). The participant's own browser buffers for playback; the
server needs only whole frames, in order. So this one releases a video frame as soon as
its last packet (RTP marker bit) is in and every packet before it, and an audio packet as
soon as it is next in sequence. Loss and reordering are handled by aiortc's own logic.
"""

from __future__ import annotations

from typing import Any

from aiortc.jitterbuffer import JitterBuffer, JitterFrame

_JITTER_BUFFER = "_RTCRtpReceiver__jitter_buffer"


class ForwardingJitterBuffer(JitterBuffer):
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
