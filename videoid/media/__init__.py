"""Media: the server's peer connections, encoded forwarding and frame taps."""

from .encoded_tap import EncodedTap
from .forwarded_track import ForwardedTrack, RelayedTrack
from .participant_peer import ParticipantPeer, bridge, parse_offer

__all__ = [
    "EncodedTap",
    "ForwardedTrack",
    "ParticipantPeer",
    "RelayedTrack",
    "bridge",
    "parse_offer",
]
