"""The object store: encrypted files plus their metadata (and wrapped keys) in the
database. Async; the encryption runs in a thread (AES-GCM releases the GIL)."""

from __future__ import annotations

import asyncio
import secrets
from pathlib import Path

from ..config import Config
from ..db import Repository
from ..db.personal_data import PersonalData
from ..db.repository import ObjectRecord
from ..errors import ConfigError, StorageError
from .envelope import EncryptedStore, KeyWrapper, LocalMasterKey, key_file
from .envelope import _context as object_context


class ObjectStore:
    def __init__(self, repo: Repository, store: EncryptedStore) -> None:
        self._repo = repo
        self._store = store

    @classmethod
    def from_config(cls, repo: Repository, config: Config) -> ObjectStore:
        data = config.data_path
        directory = Path(config.storage.directory) if config.storage.directory else data / "objects"
        if config.storage.key_port == "pkcs11":
            from ..trust.token import Pkcs11MasterKey, Token

            wrapper: KeyWrapper = Pkcs11MasterKey(
                Token.from_config(config), config.pkcs11.master_key_label
            )
        elif config.storage.master_key_file:
            wrapper = LocalMasterKey.from_file(Path(config.storage.master_key_file), create=False)
        else:
            wrapper = LocalMasterKey.from_file(data / "keys" / "master.key", create=True)
        return cls(repo, EncryptedStore(directory, wrapper))

    @property
    def files(self) -> EncryptedStore:
        return self._store

    async def put(
        self, session_id: str, kind: str, content_type: str, data: bytes, now: float
    ) -> ObjectRecord:
        object_id = secrets.token_hex(16)
        sealed = await asyncio.to_thread(self._store.seal, object_id, kind, data)
        record = ObjectRecord(
            object_id,
            session_id,
            kind,
            content_type,
            sealed.size,
            sealed.sha256,
            sealed.key_id,
            sealed.wrapped_key,
            now,
        )
        try:
            await self._repo.add_object(record)
        except Exception:
            self._store.remove(object_id)
            raise
        return record

    async def get(self, object_id: str) -> tuple[ObjectRecord, bytes]:
        record = await self._repo.find_object(object_id)
        if record is None:
            raise StorageError("no such object", code="object_not_found")
        if record.wrapped_key is None:
            raise StorageError("this object has been destroyed", code="object_destroyed")
        data = await asyncio.to_thread(self._store.open, object_id, record.kind, record.wrapped_key)
        return record, data

    async def shred(self, object_id: str, now: float) -> None:
        """Destroy the object's key, then its file (crypto-shredding)."""
        await self._repo.shred_object(object_id, now)
        self._store.remove(object_id)


async def check_master_key(repo: Repository, wrapper: KeyWrapper) -> None:
    """Refuse to start with a master key that does not open the data keys already
    stored (another deployment's key file, a key file replaced by mistake): nothing
    new would open either, and nothing old would. Nothing is changed."""
    from ..recordings.stream_crypto import key_context as recording_context

    for what, item_id, kind, wrapped in await repo.latest_wrapped_keys():
        context = object_context(item_id, kind) if what == "object" else recording_context(item_id)
        try:
            wrapper.unwrap(wrapped, context)
        except StorageError as err:
            raise ConfigError(
                f"the master key ({wrapper.key_id}) does not open the data keys stored here"
                f" (the newest {what}'s): is storage.master_key_file this deployment's key?"
                " Refusing to start; nothing was changed.",
                code="wrong_master_key",
            ) from err


def personal_data(config: Config, wrapper: KeyWrapper) -> PersonalData:
    """The personal data keys: data keys wrapped by ``wrapper`` (the objects' master
    key), blind indexes under ``storage.index_key_file`` (``keys/index.key`` in the data
    directory when empty, made on first start)."""
    if config.storage.index_key_file:
        index_key = key_file(Path(config.storage.index_key_file), create=False)
    else:
        index_key = key_file(config.data_path / "keys" / "index.key", create=True)
    return PersonalData(wrapper, index_key)
