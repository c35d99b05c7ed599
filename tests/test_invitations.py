"""Invitations, from the server and from the command line alike."""

from __future__ import annotations

import pytest

from videoid.config import load_config
from videoid.customer_client.invitations import Invitations
from videoid.db import Repository
from videoid.errors import ConfigError


async def test_invitations_follow_the_deployment_s_steps(sqlite_repository: Repository) -> None:
    """The server and ``videoid invite`` build invitations the same way: the session
    is ready to queue after the configured steps (the command line made sessions as if
    none were required)."""
    repo = sqlite_repository
    default = Invitations(repo, load_config(environ={}))
    made = await default.create("eve@example.org", "+393471234567", 1.0, "http://x")
    record = await repo.find_session(id=made.session_id)
    assert record is not None and record.ready_state == "av_tested"
    none = Invitations(repo, load_config(environ={"VIDEOID_ONBOARDING_REQUIRED_STEPS": ""}))
    made = await none.create("bob@example.org", "+393471234568", 1.0, "http://x")
    record = await repo.find_session(id=made.session_id)
    assert record is not None and record.ready_state == "created"
    with pytest.raises(ConfigError):
        Invitations(repo, load_config(environ={}, overrides={
            "onboarding": {"required_steps": ("consented", "dancing")}}))  # fmt: skip
