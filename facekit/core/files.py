"""Small file-system helpers shared by every module that writes: a file lock and atomic writes.

Writes of a user's data (face store exports, galleries, caches) go through here, so that a
crash or a second process never leaves half a file or drops another writer's rows.
"""

from __future__ import annotations

import os
import tempfile
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

__all__ = ["file_lock", "atomic_write_bytes"]


@contextmanager
def file_lock(path: str | os.PathLike) -> Iterator[None]:
    """Exclusive advisory lock on the file ``path`` (POSIX ``flock``; created 0600 if absent).

    On platforms without ``fcntl`` (Windows) it only serialises nothing: writers still replace
    files atomically, so a reader never sees half a file.
    """
    try:
        import fcntl
    except ImportError:  # pragma: no cover - Windows
        yield
        return
    fd = os.open(os.fspath(path), os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        try:
            fcntl.flock(fd, fcntl.LOCK_UN)
        finally:
            os.close(fd)


def atomic_write_bytes(path: str | os.PathLike, data: bytes, mode: int = 0o600) -> Path:
    """Write ``data`` to ``path`` via a unique temporary file in the same folder, fsync, then
    ``os.replace``: readers see the old file or the new one, never a mix. ``mode``: permissions
    of the new file (default 0600: private to the user, as faces are biometric data)."""
    path = Path(path)
    if path.is_dir():
        raise IsADirectoryError(f"{path} is a folder. Fix: give a file name inside it, e.g. {path / 'out'}")
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            os.fchmod(f.fileno(), mode)
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
        raise
    return path
