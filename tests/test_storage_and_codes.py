"""Envelope encryption at rest and the Italian tax code's check character."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from videoid.customer_client.tax_code import check_character, valid_tax_code
from videoid.errors import ConfigError, StorageError
from videoid.storage import EncryptedStore, LocalMasterKey


def store(tmp_path: Path, key_file: str = "master.key") -> EncryptedStore:
    return EncryptedStore(
        tmp_path / "objects", LocalMasterKey.from_file(tmp_path / key_file, create=True)
    )


def test_objects_round_trip_and_are_not_in_clear(tmp_path: Path) -> None:
    s = store(tmp_path)
    secret = b"\xff\xd8\xff portrait of a customer " * 100
    sealed = s.seal("a1b2", "selfie", secret)
    raw = s.path("a1b2").read_bytes()
    assert secret[:20] not in raw and b"portrait" not in raw
    assert sealed.size == len(secret) and len(sealed.sha256) == 64
    assert s.open("a1b2", "selfie", sealed.wrapped_key) == secret
    assert oct((tmp_path / "master.key").stat().st_mode & 0o777) == "0o600"


def test_tampering_swapping_and_a_wrong_key_are_detected(tmp_path: Path) -> None:
    s = store(tmp_path)
    a = s.seal("aaaa", "selfie", b"first object")
    b = s.seal("bbbb", "selfie", b"second object")
    # a flipped bit
    path = s.path("aaaa")
    raw = bytearray(path.read_bytes())
    raw[-5] ^= 1
    path.write_bytes(bytes(raw))
    with pytest.raises(StorageError, match="altered"):
        s.open("aaaa", "selfie", a.wrapped_key)
    # another object's file under this name, with its own key: the identity is bound
    s.path("aaaa").write_bytes(s.path("bbbb").read_bytes())
    with pytest.raises(StorageError):
        s.open("aaaa", "selfie", b.wrapped_key)
    # the right file opened as another kind
    with pytest.raises(StorageError):
        s.open("bbbb", "document_front", b.wrapped_key)
    # another master key cannot unwrap
    other = store(tmp_path, "other.key")
    with pytest.raises(StorageError):
        other.open("bbbb", "selfie", b.wrapped_key)


def test_a_bad_master_key_file_is_refused(tmp_path: Path) -> None:
    (tmp_path / "bad.key").write_text("not hex")
    with pytest.raises(ConfigError):
        LocalMasterKey.from_file(tmp_path / "bad.key", create=False)
    with pytest.raises(ConfigError):
        LocalMasterKey.from_file(tmp_path / "missing.key", create=False)
    (tmp_path / "short.key").write_text(os.urandom(16).hex())
    with pytest.raises(ConfigError):
        LocalMasterKey.from_file(tmp_path / "short.key", create=False)


@pytest.mark.parametrize("code", ["RSSMRA85T10A562S", "MRTMTT25D09F205Z", "rssmra85t10a562s"])
def test_valid_tax_codes(code: str) -> None:
    assert valid_tax_code(code)


@pytest.mark.parametrize(
    "code",
    [
        "RSSMRA85T10A562T",
        "RSSMRA85T10A562",
        "RSSMRA85Z10A562S",
        "1SSMRA85T10A562S",
        "",
        "RSSMRA85T10A562SX",
    ],
)
def test_invalid_tax_codes(code: str) -> None:
    assert not valid_tax_code(code)


def test_omocodia_letters_are_accepted() -> None:
    first15 = "RSSMRA85T10A56N"  # the last digit 2 written as N
    assert valid_tax_code(first15 + check_character(first15))


async def test_a_wrong_master_key_is_refused_at_start(tmp_path: Path) -> None:
    """The deployment's master key replaced by another: the server refuses to start,
    says why, and changes nothing; with the right key back it starts and reads."""
    from aiohttp import web

    from videoid.app import create_app
    from videoid.config import load_config
    from videoid.services import SERVICES

    config = load_config(
        environ={},
        overrides={
            "server": {"data_dir": str(tmp_path / "data")},
            "onboarding": {"required_steps": ()},
            "live": {"warm_up": False},
            "ca": {"create_at_start": False},
        },
    )
    runner = web.AppRunner(create_app(config))
    await runner.setup()
    services = runner.app[SERVICES]
    invitation = await services.invitations.create(
        "ada@example.org", "+393471234567", services.clock.now(), services.base_url
    )
    stored = await services.objects.put(
        invitation.session_id, "selfie", "image/jpeg", b"\xff\xd8 a face", services.clock.now()
    )
    await runner.cleanup()

    key = tmp_path / "data" / "keys" / "master.key"
    original = key.read_bytes()
    key.write_text(os.urandom(32).hex())
    runner = web.AppRunner(create_app(config))
    with pytest.raises(ConfigError) as refused:
        await runner.setup()
    assert refused.value.code == "wrong_master_key"
    assert "Refusing to start" in refused.value.message
    await runner.cleanup()

    key.write_bytes(original)
    runner = web.AppRunner(create_app(config))
    await runner.setup()
    _, data = await runner.app[SERVICES].objects.get(stored.id)
    assert data == b"\xff\xd8 a face"
    await runner.cleanup()
