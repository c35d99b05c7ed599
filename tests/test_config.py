from __future__ import annotations

from pathlib import Path

import pytest

from videoid.config import load_config
from videoid.errors import ConfigError


def test_defaults_are_for_one_machine() -> None:
    config = load_config(environ={})
    assert config.server.host == "127.0.0.1"
    assert config.database_url.startswith("sqlite+aiosqlite:///")
    assert config.media.forwarding == "encoded"


def test_file_then_environment(tmp_path: Path) -> None:
    path = tmp_path / "videoid.toml"
    path.write_text(
        '[server]\nport = 9000\n[media]\nforwarding = "reencode"\n'
        'ice_servers = ["stun:stun.example.org"]\n'
    )
    config = load_config(
        path,
        environ={"VIDEOID_SERVER_PORT": "9100", "VIDEOID_DATABASE_URL": "postgresql+asyncpg://x/y"},
    )
    assert config.server.port == 9100
    assert config.media.forwarding == "reencode"
    assert config.media.ice_servers == ("stun:stun.example.org",)
    assert config.database_url == "postgresql+asyncpg://x/y"


@pytest.mark.parametrize(
    "text,message",
    [
        ("[server]\nprot = 1\n", "unknown key in [server]: prot"),
        ("[srever]\nport = 1\n", "unknown section"),
        ('[server]\nport = "x"\n', "server.port: expected a number"),
        ("[server]\nport = -1\n", "must not be negative"),
        ('[media]\nforwarding = "magic"\n', "media.forwarding"),
        ("[server\n", "videoid.toml"),
    ],
)
def test_bad_configuration_is_rejected_clearly(tmp_path: Path, text: str, message: str) -> None:
    path = tmp_path / "videoid.toml"
    path.write_text(text)
    with pytest.raises(ConfigError, match=message.replace("[", r"\[")):
        load_config(path, environ={})


def test_unknown_environment_variable_is_rejected() -> None:
    with pytest.raises(ConfigError, match="VIDEOID_SERVR_PORT"):
        load_config(environ={"VIDEOID_SERVR_PORT": "1"})
