"""The server's wiring (``app.create_app``): a start that fails part-way closes what it
had opened, and the data can be served again at once."""

from __future__ import annotations

import random
from pathlib import Path

import pytest
from aiohttp import web

from videoid.analysis_pool import AnalysisPool
from videoid.app import create_app
from videoid.config import load_config
from videoid.db import Repository
from videoid.trust.service import Trust


async def test_a_start_that_fails_part_way_closes_what_it_opened(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    closed: list[str] = []
    repo_close, pool_close = Repository.close, AnalysisPool.close

    async def closing_repo(self: Repository) -> None:
        closed.append("repository")
        await repo_close(self)

    def closing_pool(self: AnalysisPool) -> None:
        closed.append("pool")
        pool_close(self)

    async def token_gone(self: Trust) -> None:
        raise RuntimeError("the token is gone")

    monkeypatch.setattr(Repository, "close", closing_repo)
    monkeypatch.setattr(AnalysisPool, "close", closing_pool)
    monkeypatch.setattr(Trust, "reconcile_keys", token_gone)  # late in the start
    config = load_config(
        environ={},
        overrides={
            "server": {"data_dir": str(tmp_path / "data")},
            "live": {"warm_up": False, "workers": 1},
            "ca": {"create_at_start": False},
        },
    )
    runner = web.AppRunner(create_app(config, rng=random.Random(1)))
    with pytest.raises(RuntimeError, match="the token is gone"):
        await runner.setup()
    await runner.cleanup()  # as web.run_app does when the start fails
    # the pools (onboarding's, the live analysis', the face match's) and the database
    assert closed.count("pool") == 3 and closed[-1] == "repository", closed
    monkeypatch.undo()
    again = web.AppRunner(create_app(config, rng=random.Random(1)))
    await again.setup()  # the process lock was let go: the same data serves again
    await again.cleanup()
