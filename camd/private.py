"""Files and folders only their owner can read: camd keeps biometric data (crops, vectors, exports)
and secrets (the API token). Files are created 0600 from their first byte (never written first and
tightened after), folders 0700; an existing file or folder is tightened too."""

from __future__ import annotations

import os
from pathlib import Path
from typing import IO

OWNER_FILE = 0o600
OWNER_DIR = 0o700


def private_dir(path: Path) -> Path:
    """`path` as an owner-only folder, created with its parents when missing."""
    path = Path(path)
    path.mkdir(parents=True, exist_ok=True, mode=OWNER_DIR)
    os.chmod(path, OWNER_DIR)
    return path


def open_private(path: Path, exclusive: bool = False) -> IO[bytes]:
    """`path` opened for writing (truncated), owner-only. `exclusive`: the file must not exist yet
    (FileExistsError otherwise), so nobody else's file is ever written through."""
    flags = os.O_WRONLY | os.O_CREAT | (os.O_EXCL if exclusive else os.O_TRUNC)
    fd = os.open(path, flags, OWNER_FILE)
    try:
        os.fchmod(fd, OWNER_FILE)  # an existing file keeps its mode through O_CREAT
    except BaseException:
        os.close(fd)
        raise
    return os.fdopen(fd, "wb")


def write_private(path: Path, data: bytes, exclusive: bool = False) -> None:
    """Write `data` to `path`, owner-only (see open_private)."""
    with open_private(path, exclusive) as out:
        out.write(data)


def create_private(path: Path) -> None:
    """An owner-only file at `path`, left as it is when it exists (bar its mode): a database file made
    before SQLite opens it, whose -wal / -shm files then copy these permissions."""
    os.close(os.open(path, os.O_CREAT | os.O_RDWR, OWNER_FILE))
    os.chmod(path, OWNER_FILE)


def restrict(path: Path) -> None:
    """A whole tree owner-only (folders 0700, files 0600); nothing when `path` does not exist."""
    path = Path(path)
    if not path.exists():
        return
    os.chmod(path, OWNER_DIR if path.is_dir() else OWNER_FILE)
    for root, dirs, files in os.walk(path):
        for name in dirs:
            os.chmod(os.path.join(root, name), OWNER_DIR)
        for name in files:
            os.chmod(os.path.join(root, name), OWNER_FILE)
