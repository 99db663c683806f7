"""The files facekit derives from a face store: how they are written, found and cleaned up.

DESIGN.md, "Derived files" (:mod:`facekit.core.origin` has the contract). Three kinds: ``gallery``
(a trained index saved in facekit's cache, :mod:`facekit.store.index_file`), ``identifier`` (a
:class:`~facekit.recognition.identify.FaceIdentifier` fitted by ``FaceStore.identifier`` and
saved) and ``export`` (``FaceStore.export``). Each records its store's id and generation, and is
listed in the store's ``derived`` table so that ``forget`` reaches it (:mod:`facekit.store.forget`).

The write protocol (:func:`derived_write`, :func:`facekit.core.origin.derived_write`), under the
file's lock: register the file in the store first, then write only if the store is still at the
generation the contents were read at. A
forget that commits in between bumps the generation, so the late writer drops its stale result
instead of putting a forgotten person back; a forget that lists the files after the writer
registered finds the file and waits for its lock.

Clean-up: :func:`gc_cache` (``facekit gc``, and the start of every ``facekit`` command) removes
the cached files of stores that no longer exist or were replaced; :func:`finish_pending_forget`
removes the stale derived files of a forget that was interrupted before it reached them all.
"""

from __future__ import annotations

import os
import time
import warnings
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

from facekit.core.exchange import npz_metadata
from facekit.core.files import file_lock
from facekit.core.origin import DERIVED_KINDS as KINDS, Origin, origin_problem, store_stamp
from facekit.core.origin import derived_write as origin_write

__all__ = ["KINDS", "derived_write", "file_origin", "cached_galleries", "gc_cache", "finish_pending_forget",
           "abandoned_temps"]

#: temporary files older than this (seconds) in the cache are leftovers of a killed writer
STALE_TMP_S = 3600


def file_origin(path: str | os.PathLike) -> Origin | None:
    """The :class:`Origin` recorded in a facekit ``.npz`` (None: none, or not such a file)."""
    meta = npz_metadata(path)
    try:
        return Origin.from_json(meta.get("origin")) if meta else None
    except ValueError:
        return None


@contextmanager
def derived_write(store, path: str | os.PathLike, kind: str, generation: int, model: str | None = None) -> Iterator[None]:
    """:func:`facekit.core.origin.derived_write` for ``store`` at ``generation``: the block runs
    (under the file's lock) only once the file is registered and the store is still at that
    generation; otherwise :class:`~facekit.core.origin.StaleFileError`."""
    with origin_write(Origin(store.store_id, int(generation), str(Path(store.path).resolve())), path, kind, model):
        yield


def cached_galleries(cache: Path | None = None) -> list[Path]:
    """The saved gallery index files in facekit's cache (``<cache_dir>/galleries/*.npz``)."""
    from facekit.core.cache import cache_dir

    folder = (cache or cache_dir()) / "galleries"
    return sorted(p for p in folder.glob("*.npz") if not p.name.startswith(".")) if folder.is_dir() else []


def abandoned_temps(path: Path) -> list[Path]:
    """Temporary files beside ``path`` left by writers that were killed mid-write (every facekit
    writer makes them under the file's lock: when the caller holds it, none of them is in use)."""
    if not path.parent.is_dir():
        return []
    return [p for pattern in (f".{path.name}.*.tmp", f".{path.stem}-*.npz") for p in path.parent.glob(pattern)]


def _unlink(path: Path) -> bool:
    try:
        path.unlink()
        return True
    except FileNotFoundError:
        return False


def gc_cache(cache: Path | None = None) -> list[tuple[str, str]]:
    """Remove what facekit's cache holds for face stores that no longer exist: saved gallery
    indexes whose store is gone or was replaced (another id at its path), or that record no
    store; temporary files of killed writers; lock files left beside nothing. Files of a store
    that exists but cannot be read now (permissions, an unmounted disk) are kept. Returns
    ``(path, why)`` of each file removed. Cheap: reads only each file's metadata."""
    from facekit.core.cache import cache_dir

    folder = (cache or cache_dir()) / "galleries"
    removed: list[tuple[str, str]] = []
    if not folder.is_dir():
        return removed
    for p in cached_galleries(folder.parent):
        with file_lock(str(p) + ".lock"):
            if not p.exists():
                continue
            origin = file_origin(p)
            try:
                stamp = None if origin is None else store_stamp(origin.store_path)
            except OSError:
                continue  # the store exists but cannot be read now: keep its index
            why = origin_problem(origin, stamp, same_generation=False)
            if why and _unlink(p):
                removed.append((str(p), why))
    now = time.time()
    for p in folder.iterdir():
        try:
            old = now - p.stat().st_mtime > STALE_TMP_S
        except FileNotFoundError:
            continue
        if p.name.startswith(".") and p.suffix in (".npz", ".tmp") and old and _unlink(p):
            removed.append((str(p), "a temporary file of a writer that was stopped"))
        elif p.suffix == ".lock" and not Path(str(p)[:-5]).exists() and old and _unlink(p):
            removed.append((str(p), "a lock file of a file that is gone"))
    return removed


def finish_pending_forget(store) -> list[str]:
    """Complete a forget that was interrupted (the process stopped after the store forgot but
    before every derived file was rebuilt): remove each derived file of this store older than its
    generation, and each such file in the cache. Returns the paths removed. Runs when the store
    opens; best effort (a file it cannot remove is reported in a warning)."""
    removed, gen = [], store.generation
    paths = {Path(p): g for p, _, _, g in store.derived_files()}
    for p in cached_galleries():
        paths.setdefault(p, -1)
    for p, g in paths.items():
        if not p.parent.is_dir():
            store.unregister_derived(p)
            continue
        try:
            with file_lock(str(p) + ".lock"):
                for tmp in abandoned_temps(p):
                    _unlink(tmp)
                origin = file_origin(p)
                if origin is not None and origin.store_id == store.store_id and origin.generation < gen:
                    if _unlink(p):
                        removed.append(str(p))
                if not p.exists():
                    store.unregister_derived(p)
        except OSError as exc:
            warnings.warn(f"{p}: could not remove this stale file of {store.path} ({exc}). Fix: delete it by hand")
    with store._tx() as cur:
        cur.execute("DELETE FROM meta WHERE key = 'forget_pending'")
    return removed
