"""Keeping signed contracts verifiable (PAdES B-LTA): a new archive timestamp before the
newest one's TSA certificate expires (``signing.archive_margin_days``) or its digest
weakens, on a timer (``signing.extend_every_hours``) and from ``videoid signatures
extend``.

Each extension is a new version of the session's ``signed_contract`` object (the file
grows by incremental updates only, so every earlier version is a prefix of the new one
and stays as evidence of what was signed) and one ``signature_extended`` entry in the
audit log naming both versions and their digests.
"""

from __future__ import annotations

import asyncio
import datetime
import hashlib
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from ..clock import Clock
from ..config import Config
from ..db import Repository
from ..storage import ObjectStore
from .service import Trust
from .signing import archive_state, extend_pdf
from .signing_flow import signing_authority

logger = logging.getLogger(__name__)

KIND = "signed_contract"


@dataclass(frozen=True)
class SignatureExtended:
    """One contract given a new archive timestamp."""

    session_id: str
    previous_object: str
    """The version that was extended (kept)."""
    new_object: str
    sha256: str
    """Of the new version."""
    document_timestamps: int
    """How many archive timestamps the new version holds."""


class SignatureExtension:
    def __init__(
        self, config: Config, repo: Repository, objects: ObjectStore, trust: Trust, clock: Clock
    ) -> None:
        self._config, self._repo, self._objects = config, repo, objects
        self._trust, self._clock = trust, clock
        self.extended: Callable[[str, float], Awaitable[object]] | None = None
        """Told (session, time) after each extension: the new version changes the
        session's evidence, which is sealed again."""

    async def _latest(self) -> list[tuple[str, str]]:
        """(session, object id) of each session's newest signed contract."""
        sessions = sorted(
            {c.session_id for c in await self._repo.certificates(kind="customer") if c.session_id}
        )
        latest = []
        for session_id in sessions:
            signed = [o for o in await self._repo.objects_of(session_id) if o.kind == KIND]
            if signed and signed[-1].wrapped_key is not None:  # not purged
                latest.append((session_id, signed[-1].id))
        return latest

    async def extend(
        self, *, force: bool = False, session_id: str | None = None
    ) -> list[SignatureExtended]:
        """Add an archive timestamp to every contract that needs one (every one with
        ``force``; only ``session_id``'s when given). A failing contract is logged and
        the others go on."""
        margin_days = self._config.signing.archive_margin_days
        done: list[SignatureExtended] = []
        authority = None
        for session, object_id in await self._latest():
            if session_id is not None and session != session_id:
                continue
            try:  # one contract that cannot be read or extended stops none of the others
                _, pdf = await self._objects.get(object_id)
                now = datetime.datetime.fromtimestamp(self._clock.now(), datetime.UTC)
                # the whole PDF and its signatures parsed: off the event loop
                state = await asyncio.to_thread(archive_state, pdf)
                if not force and not state.due(now, margin_days):
                    continue
                authority = authority or await signing_authority(self._trust, self._config)
                # pyHanko hashes and writes in Python: in a thread with its own loop
                extended = await asyncio.to_thread(asyncio.run, extend_pdf(pdf, authority))
            except Exception:
                logger.exception("session %s: the archive timestamp failed", session)
                continue
            at = self._clock.now()
            record = await self._objects.put(session, KIND, "application/pdf", extended, at)
            result = SignatureExtended(
                session_id=session,
                previous_object=object_id,
                new_object=record.id,
                sha256=hashlib.sha256(extended).hexdigest(),
                document_timestamps=state.document_timestamps + 1,
            )
            await self._repo.append_audit(
                at,
                "signature_extended",
                "system",
                session,
                {
                    "previous": object_id,
                    "object": record.id,
                    "previous_sha256": hashlib.sha256(pdf).hexdigest(),
                    "sha256": result.sha256,
                },
            )
            logger.info("session %s: archive timestamp added", session)
            if self.extended is not None:
                await self.extended(session, at)
            done.append(result)
        return done
