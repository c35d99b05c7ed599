"""A photo upload spooled to disk as it arrives, not gathered in memory.

Thirty uploads of 14 MB held in memory at once raised the server's memory by 650 MB
(issue 14, item 4). :class:`SpooledUpload` writes the body to an unlinked temporary file
in the data directory chunk by chunk and refuses it (``file_too_large``) as soon as it
passes the cap, so a request holds one chunk in memory, whatever its size; the bytes are
read back only when the photo's turn in the analysis pool comes. The file is encrypted
(AES-256-CTR) with a key that only this object holds and that is never written: a face
or a document never lies on disk in clear, and the file has no name to be found by.
"""

from __future__ import annotations

import asyncio
import os
import secrets
import tempfile
from pathlib import Path
from typing import IO

from aiohttp import StreamReader
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes

from ..errors import ValidationError
from ..private_files import DIRECTORY_MODE

CHUNK_BYTES = 65536


def too_large(limit: int) -> ValidationError:
    return ValidationError(
        f"the file is larger than {limit // 1_000_000 or limit // 1000} "
        f"{'MB' if limit >= 1_000_000 else 'kB'}",
        code="file_too_large",
    )


class SpooledUpload:
    """An upload kept encrypted in an unlinked temporary file; :meth:`close` it."""

    def __init__(self, directory: Path) -> None:
        directory.mkdir(parents=True, exist_ok=True)
        os.chmod(directory, DIRECTORY_MODE)
        self._file: IO[bytes] = tempfile.TemporaryFile(dir=directory)
        self._key, self._nonce = secrets.token_bytes(32), secrets.token_bytes(16)
        self._encryptor = Cipher(algorithms.AES(self._key), modes.CTR(self._nonce)).encryptor()
        self.size = 0
        """Bytes received."""

    @classmethod
    async def receive(cls, chunks: StreamReader, limit: int, directory: Path) -> SpooledUpload:
        """Spool ``chunks`` (an aiohttp request's ``content``) to a new file; raise
        ``file_too_large`` at the first chunk past ``limit`` bytes, the rest unread."""
        upload = await asyncio.to_thread(cls, directory)  # mkdir, chmod, a new file
        try:
            async for chunk in chunks.iter_chunked(CHUNK_BYTES):
                upload.size += len(chunk)
                if upload.size > limit:
                    raise too_large(limit)
                # one chunk, encrypted and handed to the page cache: microseconds
                upload._file.write(upload._encryptor.update(chunk))
        except BaseException:
            upload.close()
            raise
        return upload

    async def read(self) -> bytes:
        """The whole upload, decrypted (read in a thread: it may be large)."""
        return await asyncio.to_thread(self._read)

    def _read(self) -> bytes:
        self._file.flush()
        self._file.seek(0)
        decryptor = Cipher(algorithms.AES(self._key), modes.CTR(self._nonce)).decryptor()
        return decryptor.update(self._file.read()) + decryptor.finalize()

    def close(self) -> None:
        self._file.close()
