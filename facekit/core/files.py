"""Small file-system helpers: a file lock, atomic writes, and the one folder walk.

Writes of a user's data (face store exports, galleries, caches) go through here, so that a
crash or a second process never leaves half a file or drops another writer's rows. Every folder
walk (``facekit index``, albums, enrolment folders) goes through :func:`walk_files`, which reports
what it cannot read path by path (link loops, unreadable folders, files vanishing mid-walk) and
goes on.
"""

from __future__ import annotations

import os
import tempfile
import threading
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterator

__all__ = ["file_lock", "atomic_write_bytes", "Walk", "walk_files"]


_held = threading.local()  # the lock files this thread holds: file_lock is re-entrant per thread


@contextmanager
def file_lock(path: str | os.PathLike) -> Iterator[None]:
    """Exclusive advisory lock on the file ``path`` (POSIX ``flock``; created 0600 if absent).
    Re-entrant within a thread (a derived-file write inside a forget's lock on the same file).

    On platforms without ``fcntl`` (Windows) it only serialises nothing: writers still replace
    files atomically, so a reader never sees half a file.
    """
    try:
        import fcntl
    except ImportError:  # pragma: no cover - Windows
        yield
        return
    key = os.path.abspath(os.fspath(path))
    held = getattr(_held, "paths", None)
    if held is None:
        held = _held.paths = {}
    if held.get(key, 0):
        held[key] += 1
        try:
            yield
        finally:
            held[key] -= 1
        return
    fd = os.open(key, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        held[key] = 1
        yield
    finally:
        held.pop(key, None)
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


# -- folder walks (facekit index, album, enrol) ---------------------------------------------------
@dataclass
class Walk:
    """What :func:`walk_files` found: ``files`` as ``(path, stat)`` sorted by path, and ``problems``
    as ``(path, reason with the fix)``: every entry it could not walk, each named once."""

    files: list[tuple[str, os.stat_result]] = field(default_factory=list)
    problems: list[tuple[str, str]] = field(default_factory=list)


def walk_files(root: str | os.PathLike, *, recursive: bool = True, suffixes: tuple[str, ...] | None = None,
               hidden: bool = False, prune: Callable[[str, list[str]], bool] | None = None) -> Walk:
    """Every file under ``root`` (``suffixes``: only names ending so, any case; hidden names
    ``.x`` left out unless ``hidden``), following symbolic links to folders once each.

    The walk goes on past what it cannot read and reports each such path in ``problems``:
    a symbolic-link loop (a link that points at itself, or a folder link leading back to a folder
    already walked or above the walk), an unreadable folder, a file or folder that vanished
    mid-walk, a dangling link or a pipe named like a photo. ``prune(folder, entry names)`` True leaves a folder out (an album
    export inside the album). ``root`` itself must be a readable folder (OSError otherwise).
    """
    import errno
    import stat as st_

    out = Walk()
    top = os.fspath(root)
    seen: dict[tuple[int, int], str] = {}
    st = os.stat(top)
    seen[(st.st_dev, st.st_ino)] = top
    for up in Path(top).resolve().parents:  # a link to a folder above the walk is a loop too
        try:
            su = os.stat(up)
            seen.setdefault((su.st_dev, su.st_ino), str(up))
        except OSError:
            pass
    want = tuple(s.lower() for s in suffixes) if suffixes else None

    def named_like(name: str) -> bool:
        return want is None or name.lower().endswith(want)

    def walk(folder: str, first: bool) -> None:
        try:
            with os.scandir(folder) as it:
                entries = sorted(it, key=lambda e: e.name)
        except PermissionError:
            if first:
                raise
            out.problems.append((folder, "cannot read this folder (permission denied); the rest was walked. "
                                         "Fix: make it readable (chmod u+rx) or move it out of the tree"))
            return
        except (FileNotFoundError, NotADirectoryError):
            if first:
                raise
            out.problems.append((folder, "folder vanished (or was replaced) during the walk; the rest was "
                                         "walked. Fix: run again once it has settled"))
            return
        except OSError as exc:
            if first:
                raise
            out.problems.append((folder, f"cannot read this folder ({exc.strerror or exc}). Fix: check the disk"))
            return
        names = [e.name for e in entries]
        if prune is not None and not first and prune(folder, names):
            return
        for e in entries:
            if not hidden and e.name.startswith("."):
                continue
            path = os.path.join(folder, e.name)
            try:
                s = os.stat(path)  # follows links
            except FileNotFoundError:
                if e.is_symlink():
                    if named_like(e.name):
                        out.problems.append((path, "symbolic link to a missing file (dangling); skipped. "
                                                   "Fix: remove the link or restore its target"))
                else:
                    out.problems.append((path, "vanished during the walk; skipped. Fix: run again once the "
                                               "folder has settled"))
                continue
            except OSError as exc:
                if exc.errno == errno.ELOOP:
                    out.problems.append((path, "symbolic-link loop (the link leads back to itself); skipped. "
                                               "Fix: remove or correct the link"))
                elif isinstance(exc, PermissionError):
                    out.problems.append((path, "permission denied; skipped. Fix: make it readable (chmod u+r)"))
                else:
                    out.problems.append((path, f"cannot read it ({exc.strerror or exc}); skipped"))
                continue
            if st_.S_ISDIR(s.st_mode):
                if not recursive:
                    continue
                key = (s.st_dev, s.st_ino)
                if key in seen:
                    why = (f"symbolic-link loop: leads back to {seen[key]}, which is walked already" if e.is_symlink()
                           else f"already walked through a symbolic link, as {seen[key]}")
                    out.problems.append((path, f"{why}; not walked twice. Fix: remove the link if it is a mistake"))
                    continue
                seen[key] = path
                walk(path, False)
            elif st_.S_ISREG(s.st_mode) and named_like(e.name):
                out.files.append((path, s))
            elif not st_.S_ISREG(s.st_mode) and named_like(e.name):
                out.problems.append((path, "not a regular file (a pipe, socket or device), so not read; skipped. "
                                           "Fix: remove it from the folder"))

    walk(top, True)
    out.files.sort(key=lambda f: f[0])
    return out
