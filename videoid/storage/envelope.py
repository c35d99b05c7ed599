"""Envelope encryption for everything stored at rest (images, snapshots, recordings).

Each object gets its own random 256-bit data key; the object is encrypted with
AES-256-GCM under that key, with the object's identity and kind as associated data
(so a file moved to another object's name, or another kind, fails to open). The data
key is wrapped by the master key through a :class:`KeyWrapper` and kept beside the
object's metadata in the database, never with the file. Destroying the wrapped key
destroys the object (crypto-shredding) even where a copy of the file survives.

The file layout is ``MAGIC | nonce (12) | ciphertext | tag (16)``.
"""

from __future__ import annotations

import hashlib
import os
import secrets
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from ..errors import ConfigError, StorageError

MAGIC = b"VIDEOID-OBJ1\n"
_NONCE = 12


class KeyWrapper(Protocol):
    """The key-management port: wraps and unwraps data keys with a key it never shows."""

    key_id: str

    def wrap(self, data_key: bytes, context: bytes) -> bytes: ...

    def unwrap(self, wrapped: bytes, context: bytes) -> bytes: ...


def key_file(path: Path, *, create: bool) -> bytes:
    """32 random bytes kept as 64 hexadecimal digits in a file (mode 0600), made on
    first use when ``create`` (a second process making it at the same time keeps the
    first one's)."""
    if not path.exists():
        if not create:
            raise ConfigError(f"key file not found: {path}")
        path.parent.mkdir(parents=True, exist_ok=True)
        try:
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        except FileExistsError:
            pass
        else:
            with os.fdopen(fd, "wb") as f:
                f.write(secrets.token_bytes(32).hex().encode() + b"\n")
    try:
        key = bytes.fromhex(path.read_bytes().strip().decode())
    except (UnicodeDecodeError, ValueError) as err:
        raise ConfigError(f"{path}: expected 64 hexadecimal digits") from err
    if len(key) != 32:
        raise ConfigError(f"{path}: expected 64 hexadecimal digits")
    return key


class LocalMasterKey:
    """A 256-bit master key in a file (mode 0600), wrapping with AES-256-GCM.

    The default for one machine: the file is created on first start. Production
    deployments point ``storage.master_key_file`` at a key provisioned by them, or
    plug a PKCS#11 wrapper into the same port."""

    def __init__(self, key: bytes) -> None:
        if len(key) != 32:
            raise ConfigError("the master key must be 32 bytes")
        self._aead = AESGCM(key)
        self.key_id = "local:" + hashlib.sha256(b"videoid key id" + key).hexdigest()[:16]

    @classmethod
    def from_file(cls, path: Path, *, create: bool) -> LocalMasterKey:
        return cls(key_file(path, create=create))

    def wrap(self, data_key: bytes, context: bytes) -> bytes:
        nonce = secrets.token_bytes(_NONCE)
        return nonce + self._aead.encrypt(nonce, data_key, context)

    def unwrap(self, wrapped: bytes, context: bytes) -> bytes:
        try:
            return self._aead.decrypt(wrapped[:_NONCE], wrapped[_NONCE:], context)
        except InvalidTag as err:
            raise StorageError("a data key does not open with this master key") from err


@dataclass(frozen=True)
class Sealed:
    wrapped_key: bytes
    key_id: str
    sha256: str
    """Of the plaintext: evidence manifests list it."""
    size: int


def _context(object_id: str, kind: str) -> bytes:
    return f"videoid object {object_id} {kind}".encode()


class EncryptedStore:
    """Encrypted objects in a directory. Synchronous: call it from an executor."""

    def __init__(self, root: Path, wrapper: KeyWrapper) -> None:
        self.root = root
        self.wrapper = wrapper
        root.mkdir(parents=True, exist_ok=True)

    def path(self, object_id: str) -> Path:
        if not object_id.isalnum():
            raise StorageError("bad object id")
        return self.root / object_id[:2] / f"{object_id}.bin"

    def seal(self, object_id: str, kind: str, data: bytes) -> Sealed:
        context = _context(object_id, kind)
        data_key = AESGCM.generate_key(bit_length=256)
        nonce = secrets.token_bytes(_NONCE)
        body = AESGCM(data_key).encrypt(nonce, data, context)
        path = self.path(object_id)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(".tmp")
        with open(tmp, "wb") as f:
            f.write(MAGIC + nonce + body)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
        return Sealed(
            self.wrapper.wrap(data_key, context),
            self.wrapper.key_id,
            hashlib.sha256(data).hexdigest(),
            len(data),
        )

    def open(self, object_id: str, kind: str, wrapped_key: bytes) -> bytes:
        context = _context(object_id, kind)
        try:
            raw = self.path(object_id).read_bytes()
        except FileNotFoundError as err:
            raise StorageError(f"object {object_id} is missing") from err
        if not raw.startswith(MAGIC):
            raise StorageError(f"object {object_id} is not an encrypted object")
        data_key = self.wrapper.unwrap(wrapped_key, context)
        nonce = raw[len(MAGIC) : len(MAGIC) + _NONCE]
        try:
            return AESGCM(data_key).decrypt(nonce, raw[len(MAGIC) + _NONCE :], context)
        except InvalidTag as err:
            raise StorageError(f"object {object_id} has been altered") from err

    def remove(self, object_id: str) -> None:
        self.path(object_id).unlink(missing_ok=True)
