"""The object store: encrypted files plus their metadata (and wrapped keys) in the
database. Async; the encryption runs in a thread (AES-GCM releases the GIL)."""

from __future__ import annotations

import asyncio
import secrets
from pathlib import Path

from ..config import Config
from ..db import Repository
from ..db.repository import ObjectRecord
from ..errors import StorageError
from .envelope import EncryptedStore, KeyWrapper, LocalMasterKey


class ObjectStore:
    def __init__(self, repo: Repository, store: EncryptedStore) -> None:
        self._repo = repo
        self._store = store

    @classmethod
    def from_config(cls, repo: Repository, config: Config) -> ObjectStore:
        data = config.data_path
        directory = Path(config.storage.directory) if config.storage.directory else data / "objects"
        if config.storage.master_key_file:
            wrapper: KeyWrapper = LocalMasterKey.from_file(
                Path(config.storage.master_key_file), create=False
            )
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
