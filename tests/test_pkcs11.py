"""Key custody in a real PKCS#11 token (Debian's SoftHSM2): the master key is generated
in the token, sensitive and not extractable; data keys of objects and recordings are
wrapped and unwrapped inside it (R13, R16).

A deployment has one token (its keys told apart by label); SoftHSM sees the tokens
that exist when it is loaded, so every test here uses the one token "videoid"."""

from __future__ import annotations

from pathlib import Path

import pkcs11
import pytest
from pkcs11 import Attribute

from videoid.errors import ConfigError, StorageError
from videoid.recordings.stream_crypto import ReadResult, SegmentWriter, open_segments
from videoid.trust.token import SOFTHSM_MODULE, Pkcs11MasterKey, Token, ensure_softhsm_token

from .conftest import StartServer


def test_the_master_key_stays_in_the_token(softhsm_dir: Path, tmp_path: Path) -> None:
    pin = ensure_softhsm_token(softhsm_dir, "videoid")
    assert oct((softhsm_dir / "user.pin").stat().st_mode & 0o777) == "0o600"
    assert ensure_softhsm_token(softhsm_dir, "videoid") == pin  # made once
    token = Token(SOFTHSM_MODULE, "videoid", pin)
    master = Pkcs11MasterKey(token, "m-unit")
    assert master.key_id == "pkcs11:videoid/m-unit"

    data_key = bytes(range(32))
    wrapped = master.wrap(data_key, b"videoid object a1 selfie")
    assert data_key not in wrapped and len(wrapped) == 12 + 32 + 16
    assert master.unwrap(wrapped, b"videoid object a1 selfie") == data_key
    with pytest.raises(StorageError):  # bound to its context
        master.unwrap(wrapped, b"videoid object a2 selfie")
    flipped = bytearray(wrapped)
    flipped[-1] ^= 1
    with pytest.raises(StorageError):
        master.unwrap(bytes(flipped), b"videoid object a1 selfie")

    # the same key is found again (not a new one), and it cannot be read out
    again = Pkcs11MasterKey(token, "m-unit")
    assert again.unwrap(wrapped, b"videoid object a1 selfie") == data_key
    key = master._key
    assert key[Attribute.SENSITIVE] is True and key[Attribute.EXTRACTABLE] is False
    assert key[Attribute.TOKEN] is True
    with pytest.raises(pkcs11.exceptions.AttributeSensitive):
        key[Attribute.VALUE]

    # a recording encrypted under a token-wrapped data key reads back
    writer = SegmentWriter(tmp_path / "r.vrec", "rec-1", master, created=1.0, durable=False)
    writer.write(b"cluster one")
    writer.write(b"cluster two")
    writer.close()
    result = ReadResult()
    assert b"".join(open_segments(tmp_path / "r.vrec", master, result)) == (
        b"cluster onecluster two"
    )
    assert result.complete
    token.close()


def test_a_wrong_pin_or_token_is_refused_clearly(softhsm_dir: Path) -> None:
    ensure_softhsm_token(softhsm_dir, "videoid")
    with pytest.raises(ConfigError) as wrong:
        Token(SOFTHSM_MODULE, "videoid", "000000000000")
    assert wrong.value.code == "token_pin_wrong"
    with pytest.raises(ConfigError) as missing:
        Token(SOFTHSM_MODULE, "no-such-token", "1234")
    assert missing.value.code == "token_not_found"
    with pytest.raises(ConfigError) as module:
        Token("/nonexistent/libpkcs11.so", "videoid", "1234")
    assert module.value.code == "token_unavailable"


async def test_a_server_keeps_its_master_key_in_the_token(
    start_server: StartServer, softhsm_dir: Path
) -> None:
    """``storage.key_port = "pkcs11"``: objects are wrapped by the token's key; the
    key file is not even made."""
    server = await start_server(
        storage={"key_port": "pkcs11"},
        pkcs11={"softhsm_dir": str(softhsm_dir), "master_key_label": "m-server"},
    )
    services = server.services
    assert services.objects.files.wrapper.key_id == "pkcs11:videoid/m-server"
    invitation = await server.invite()
    stored = await services.objects.put(
        invitation.session_id, "selfie", "image/jpeg", b"\xff\xd8 a face", services.clock.now()
    )
    assert stored.key_id == "pkcs11:videoid/m-server"
    _, data = await services.objects.get(stored.id)
    assert data == b"\xff\xd8 a face"
    assert not (services.config.data_path / "keys" / "master.key").exists()
