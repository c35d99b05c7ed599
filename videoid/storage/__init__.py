"""Encrypted storage of objects at rest (images now; snapshots and recordings later)."""

from .envelope import EncryptedStore, KeyWrapper, LocalMasterKey, Sealed
from .objects import ObjectStore

__all__ = ["EncryptedStore", "KeyWrapper", "LocalMasterKey", "ObjectStore", "Sealed"]
