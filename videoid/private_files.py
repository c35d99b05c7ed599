"""The data directory kept to its owner: the directory 0700, the database file 0600,
whatever the process's umask (issue 14: personal data at rest)."""

from __future__ import annotations

import os
from pathlib import Path

DIRECTORY_MODE = 0o700
FILE_MODE = 0o600


def make_private(directory: Path) -> None:
    """Create ``directory`` if needed and make it (and the files directly in it)
    reachable by the owner only: what is below a 0700 directory is out of other users'
    reach whatever its own mode."""
    directory.mkdir(parents=True, exist_ok=True)
    os.chmod(directory, DIRECTORY_MODE)
    for entry in directory.iterdir():
        if entry.is_file() and not entry.is_symlink():
            os.chmod(entry, FILE_MODE)
        elif entry.is_dir() and not entry.is_symlink():
            os.chmod(entry, DIRECTORY_MODE)


def private_file(path: Path) -> None:
    """Create ``path`` empty with mode 0600 if it does not exist, else set 0600: SQLite
    gives its journal and WAL the database file's mode, so they follow."""
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, FILE_MODE)
        os.close(fd)
    except FileExistsError:
        os.chmod(path, FILE_MODE)
