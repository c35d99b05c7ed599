"""One call's media on its own (``media/call_media.py``): closing it leaves nothing
running, a recording whose start is under way is waited for and finished (its row is
never left open), and a closed call's media refuses what participants still send."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest
from aiortc.contrib.media import MediaRelay

from videoid.clock import FakeClock
from videoid.config import load_config
from videoid.errors import MediaError
from videoid.media import call_media
from videoid.media.call_media import CallMedia, MediaClosed, MediaParts, RecordingStore
from videoid.media.ice_policy import IcePolicy
from videoid.storage.envelope import LocalMasterKey


class Rows:
    """The recordings' rows, written slowly (as a busy database would)."""

    def __init__(self, delay: float) -> None:
        self.delay = delay
        self.added: list[tuple[str, str, str]] = []
        self.finished: list[tuple[str, str]] = []

    async def add_recording(
        self,
        recording_id: str,
        session_id: str,
        file: str,
        key_id: str,
        wrapped_key: bytes,
        created: float,
    ) -> None:
        await asyncio.sleep(self.delay)
        self.added.append((recording_id, session_id, file))

    async def finish_recording(
        self, recording_id: str, status: str, summary: dict[str, Any], now: float
    ) -> None:
        self.finished.append((recording_id, status))


def parts(tmp_path: Path, rows: Rows, *, record: bool = True) -> MediaParts:
    config = load_config(environ={}, overrides={"server": {"data_dir": str(tmp_path)}})
    return MediaParts(
        config,
        FakeClock(),
        IcePolicy.from_config(config.media),
        MediaRelay(),
        rows,
        recordings=RecordingStore(tmp_path / "recordings", LocalMasterKey(bytes(32)))
        if record
        else None,
    )


async def test_closing_while_the_recording_starts_finishes_it(tmp_path: Path) -> None:
    rows = Rows(delay=0.3)
    failed: list[bool] = []
    published: list[Any] = []

    async def publish(event: str, data: dict[str, Any]) -> None:
        published.append((event, data))

    before = asyncio.all_tasks()
    media = CallMedia("s-1", parts(tmp_path, rows), publish, lambda: failed.append(True))
    await asyncio.sleep(0)  # the recording's start is under way, its row not written
    closed = await media.close()
    # the start was waited for, not cancelled: the row exists and the recording ended
    assert [(r[1], r[2].endswith(".vrec")) for r in rows.added] == [("s-1", True)]
    assert closed.recording is not None
    assert closed.recording.recording_id == rows.added[0][0]
    assert closed.recording.status == "complete", closed.recording.summary
    assert closed.recording.summary["missing"] == [
        "customer_video",
        "customer_audio",
        "operator_video",
        "operator_audio",
    ]
    assert (tmp_path / "recordings" / rows.added[0][2]).exists()
    assert closed.analysis is None  # no live analysis configured
    assert failed == [] and published == []
    # nothing of the call runs any more
    assert {t for t in asyncio.all_tasks() - before if not t.done()} <= {asyncio.current_task()}
    # closed twice: nothing to write again
    assert await media.close() == MediaClosed(None, None)


async def test_a_closed_call_refuses_offers_and_candidates(tmp_path: Path) -> None:
    async def publish(event: str, data: dict[str, Any]) -> None:
        raise AssertionError("nothing to publish")

    media = CallMedia("s-2", parts(tmp_path, Rows(0), record=False), publish, lambda: None)
    assert media.recorder is None and media.analysis is None
    assert media.customer_connected is False
    assert await media.close() == MediaClosed(None, None)
    with pytest.raises(MediaError) as offer:
        await media.answer("customer", "v=0\r\n")
    assert offer.value.code == "call_ended"
    with pytest.raises(MediaError) as candidate:
        await media.add_candidate("operator", "candidate:1 1 udp 1 1.2.3.4 5 typ host", "0", 0)
    assert candidate.value.code == "call_ended"


async def test_a_recording_that_cannot_start_is_reported_once(tmp_path: Path) -> None:
    (tmp_path / "recordings").write_text("a file where the directory should be")
    failed: list[bool] = []

    async def publish(event: str, data: dict[str, Any]) -> None:
        return None

    media = CallMedia("s-3", parts(tmp_path, Rows(0)), publish, lambda: failed.append(True))
    for _ in range(100):
        if failed:
            break
        await asyncio.sleep(0.02)
    assert failed == [True] and media.recording_failed
    closed = await media.close()
    assert closed.recording is None  # no row was written: nothing to finish


async def test_a_start_slower_than_the_wait_finishes_the_recording_itself(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Closing a call does not wait for a slow recording start for ever (it runs under
    the center's lock): the start, once done, finishes its recording and its row."""
    monkeypatch.setattr(call_media, "START_WAIT_SECONDS", 0.05)
    rows = Rows(delay=0.5)

    async def publish(event: str, data: dict[str, Any]) -> None:
        return None

    media = CallMedia("s-4", parts(tmp_path, rows), publish, lambda: None)
    await asyncio.sleep(0)
    closed = await media.close()
    assert closed.recording is None and rows.added == []  # not written yet
    assert media.finishing is not None
    await media.finishing
    [(recording_id, _, _)] = rows.added
    assert rows.finished == [(recording_id, "complete")]
