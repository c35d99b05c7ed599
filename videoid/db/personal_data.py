"""Personal data at rest: per-owner data keys, sealed fields and keyed blind indexes.

Every session and every customer (its contacts) has a data key of its own: 256 random
bits, wrapped by the master key through the ``KeyWrapper`` port of
:mod:`videoid.storage.envelope` (a key file, or an AES key in the PKCS#11 token) and
stored wrapped in ``data_keys``. A field
is sealed with AES-256-GCM under its owner's key, with the owner and the field's name as
associated data, so a value copied to another session or another field does not open.
Destroying the wrapped key destroys every field of its owner (crypto-shredding).

What a search or a uniqueness check needs is kept as keyed blind indexes: HMAC-SHA256
under a separate index key (a file, like the master key), of normalised values, never
the values. Without the index key an index is a random-looking string; with it, the
same normalised value gives the same index, and nothing else can be learnt from it.

Sealed text is ``pd1:`` and the base64 of ``nonce | ciphertext | tag``; sealed bytes
are ``VIDEOID-PD1\\n | nonce | ciphertext | tag``. Anything else is a value left in clear
by an older version (sealed at start-up, see ``Repository.seal_plain_rows``).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import re
import secrets
import time
from collections import OrderedDict
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from ..documents.mrz import mrz_name
from ..errors import StorageError

if TYPE_CHECKING:  # the storage package imports the repository, which imports this
    from ..storage.envelope import KeyWrapper

TEXT_PREFIX = "pd1:"
BYTES_MAGIC = b"VIDEOID-PD1\n"
_NONCE = 12
_INDEX_HEX = 32
"""128 bits of each HMAC: collisions stay negligible at any number of sessions."""
_DOCUMENT = re.compile(r"[^A-Z0-9]")
_SPACES = re.compile(r"\s+")


def session_owner(session_id: str) -> str:
    return f"session:{session_id}"


def customer_owner(customer_id: int) -> str:
    return f"customer:{customer_id}"


def is_sealed_text(value: str) -> bool:
    return value.startswith(TEXT_PREFIX)


def is_sealed_bytes(value: bytes) -> bool:
    return value.startswith(BYTES_MAGIC)


def name_words(text: str) -> list[str]:
    """A name's words as the machine readable zone writes them (upper case,
    transliterated: "Müller" and "MUELLER" are one word), in order, without repeats."""
    out: list[str] = []
    for word in mrz_name(text).split("<"):
        if word and word not in out:
            out.append(word)
    return out


def document_number(text: str) -> str:
    """A document number without case, spaces or separators."""
    return _DOCUMENT.sub("", text.upper())


def contact(kind: str, value: str) -> str:
    """A contact as it is compared: an e-mail address without case or surrounding
    spaces, a phone number without spaces."""
    value = value.strip()
    return value.lower() if kind == "email" else _SPACES.sub("", value)


class PersonalData:
    """Seals and opens personal data fields, and derives blind indexes. Synchronous
    and cheap (AES-GCM over a few hundred bytes; a key unwrapped once per
    ``cache_seconds``): called on the event loop."""

    def __init__(
        self,
        wrapper: KeyWrapper,
        index_key: bytes,
        *,
        cache_seconds: float = 300.0,
        cache_size: int = 4096,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if len(index_key) != 32:
            raise StorageError("the index key must be 32 bytes")
        self.wrapper = wrapper
        self._index_key = index_key
        self._cache_seconds = cache_seconds
        self._cache_size = cache_size
        self._clock = clock
        self._keys: OrderedDict[str, tuple[bytes, bytes, float]] = OrderedDict()
        """Per owner: the wrapped key, the key, when it is dropped. In memory only,
        never logged, forgotten at once when their owner's key is destroyed; used only
        for the very wrapped key it came from."""

    @classmethod
    def local(cls, directory: Path) -> PersonalData:
        """Key files ``master.key`` and ``index.key`` in ``directory``, made on first
        use (tests and tools; the server takes its wrapper from ``[storage]``)."""
        from ..storage.envelope import LocalMasterKey, key_file

        return cls(
            LocalMasterKey.from_file(directory / "master.key", create=True),
            key_file(directory / "index.key", create=True),
        )

    # -- data keys ------------------------------------------------------------------

    @staticmethod
    def _context(owner: str) -> bytes:
        return f"videoid personal data {owner}".encode()

    def new_key(self, owner: str) -> tuple[bytes, bytes]:
        """A fresh data key for ``owner`` and its wrapped form (what is stored)."""
        key = AESGCM.generate_key(bit_length=256)
        return key, self.wrapper.wrap(key, self._context(owner))

    def unwrap(self, owner: str, wrapped: bytes) -> bytes:
        """``owner``'s data key from its wrapped form, from memory when unwrapped lately."""
        now = self._clock()
        cached = self._keys.get(owner)
        if cached is not None and cached[0] == wrapped and cached[2] > now:
            self._keys.move_to_end(owner)
            return cached[1]
        key = self.wrapper.unwrap(wrapped, self._context(owner))
        self._keys[owner] = (wrapped, key, now + self._cache_seconds)
        self._keys.move_to_end(owner)
        while len(self._keys) > self._cache_size:
            self._keys.popitem(last=False)
        return key

    def forget(self, owner: str) -> None:
        """Drop ``owner``'s key from memory (its wrapped key is being destroyed)."""
        self._keys.pop(owner, None)

    # -- fields ---------------------------------------------------------------------

    @staticmethod
    def _aad(owner: str, field: str) -> bytes:
        return f"videoid field {owner} {field}".encode()

    def seal_bytes(self, key: bytes, owner: str, field: str, value: bytes) -> bytes:
        nonce = secrets.token_bytes(_NONCE)
        return BYTES_MAGIC + nonce + AESGCM(key).encrypt(nonce, value, self._aad(owner, field))

    def open_bytes(self, key: bytes, owner: str, field: str, sealed: bytes) -> bytes:
        if not is_sealed_bytes(sealed):
            raise StorageError(f"{field} of {owner} is not sealed")
        body = sealed[len(BYTES_MAGIC) :]
        try:
            return AESGCM(key).decrypt(body[:_NONCE], body[_NONCE:], self._aad(owner, field))
        except InvalidTag as err:
            raise StorageError(f"{field} of {owner} does not open (altered or moved)") from err

    def seal_text(self, key: bytes, owner: str, field: str, value: str) -> str:
        sealed = self.seal_bytes(key, owner, field, value.encode())[len(BYTES_MAGIC) :]
        return TEXT_PREFIX + base64.b64encode(sealed).decode()

    def open_text(self, key: bytes, owner: str, field: str, sealed: str) -> str:
        if not is_sealed_text(sealed):
            raise StorageError(f"{field} of {owner} is not sealed")
        try:
            raw = base64.b64decode(sealed[len(TEXT_PREFIX) :], validate=True)
        except ValueError as err:
            raise StorageError(f"{field} of {owner} is damaged") from err
        return self.open_bytes(key, owner, field, BYTES_MAGIC + raw).decode()

    # -- blind indexes --------------------------------------------------------------

    def index(self, kind: str, value: str) -> str:
        """The blind index of an already normalised ``value`` of ``kind``: HMAC-SHA256
        under the index key, 128 bits in hexadecimal."""
        mac = hmac.new(self._index_key, f"{kind}\x00{value}".encode(), hashlib.sha256)
        return mac.hexdigest()[:_INDEX_HEX]

    def name_index(self, text: str) -> str:
        """A name's words' indexes, space-delimited with a space at each end (a search
        matches whole words with ``LIKE '% index %'``); at most 7 words (they fit the
        column), ``""`` for no name."""
        words = [self.index("name", w) for w in name_words(text)][:7]
        return " " + " ".join(words) + " " if words else ""

    def word_index(self, word: str) -> str:
        """One already normalised word of a name search (see :func:`name_words`)."""
        return self.index("name", word)

    def document_index(self, number: str) -> str:
        """A document number's index, ``""`` when it has no letter or digit."""
        key = document_number(number)
        return self.index("document", key) if key else ""

    def contact_index(self, kind: str, value: str) -> str:
        """An e-mail address's or a phone number's index (``kind``: email, phone)."""
        return self.index(kind, contact(kind, value))
