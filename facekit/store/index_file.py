"""A large gallery's trained index, kept on disk between runs, so it is trained once.

Taught in notebook 07 ("At scale"). Beyond :data:`facekit.store.index.EXACT_MAX` faces a
:class:`facekit.store.index.GalleryIndex` trains a FAISS inverted file on the gallery (at 1M faces ~65 s,
most of it the OPQ rotation); ``facekit identify`` is a new process each time, so without a saved
index every call would train again. :func:`gallery_from_store` loads the index saved for this
store and model, brings it in step with the store (:meth:`facekit.store.index.GalleryIndex.sync`:
enrolments added, ``forget`` removed, and any face id whose vector or name changed replaced, so a
stale or foreign file can never answer with the wrong person), and saves it again when it changed.

The file is a cache, never user data: ``<cache_dir>/galleries/<store+model key>.npz`` (arrays
only, read without pickle; the FAISS index serialised to bytes), written atomically (a temporary
file in the same folder, then renamed), so a crash leaves the old file or the new one. A damaged
or unreadable file is reported with a warning naming it and the index is rebuilt from the store.
Small galleries (exact search) are not saved: building them takes milliseconds.
"""

from __future__ import annotations

import hashlib
import os
import tempfile
import warnings
from pathlib import Path

import numpy as np

from facekit.store.index import GalleryIndex

__all__ = ["gallery_path", "save_gallery", "load_gallery", "gallery_from_store"]


def gallery_path(store, model=None) -> Path:
    """Where the index of ``store`` (a :class:`facekit.store.db.FaceStore`) for ``model`` is kept:
    ``<cache_dir>/galleries/<sha256 of the store's absolute path and the model fingerprint>.npz``."""
    from facekit.store.records import model_fingerprint
    from facekit.core.cache import cache_dir

    key = hashlib.sha256(f"{Path(store.path).resolve()}\n{model_fingerprint(model)}".encode()).hexdigest()[:24]
    return cache_dir() / "galleries" / f"{key}.npz"


def save_gallery(index: GalleryIndex, path: str | os.PathLike) -> Path:
    """Write ``index`` to ``path`` atomically (temporary file + rename); returns the path."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.stem}-", suffix=".npz", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            np.savez(f, **index.__getstate__())
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def load_gallery(path: str | os.PathLike) -> GalleryIndex:
    """The index saved at ``path``. Raises ``FileNotFoundError``, or ``ValueError`` naming the
    file when it is damaged or not a gallery index."""
    path = Path(path)
    try:
        with np.load(path, allow_pickle=False) as z:
            state = {k: z[k] for k in z.files}
        index = GalleryIndex.__new__(GalleryIndex)
        index.__setstate__(state)
    except FileNotFoundError:
        raise
    except Exception as exc:  # zip, npz or FAISS errors all mean the same: not a usable index
        raise ValueError(f"{path}: not a readable gallery index ({type(exc).__name__}: {exc}). "
                         "Fix: delete it; it is a cache and is rebuilt from the face store.") from exc
    return index


def gallery_from_store(store, model=None, *, cache: bool = True, **kwargs) -> GalleryIndex:
    """The :class:`facekit.store.index.GalleryIndex` of every face of ``model`` in ``store``, trained
    at most once across runs: with ``cache`` (default), the index saved at :func:`gallery_path`
    (facekit's own cache, never a path of the user's, so a rebuild overwrites nothing of theirs)
    is loaded and synced with the store, and saved again when it changed. ``kwargs`` go to
    :class:`GalleryIndex` when it is built anew (``exact_max``, ``nprobe``, ``threads``)."""
    if not cache:
        return GalleryIndex.from_store(store, model, **kwargs)
    path = gallery_path(store, model)
    index = None
    if path.exists():
        try:
            index = load_gallery(path)
        except ValueError as exc:
            warnings.warn(f"{exc} Rebuilding it now.", stacklevel=2)
    if index is not None and kwargs.get("exact_max", index.exact_max) != index.exact_max:
        index = None  # built with other settings: build anew
    if index is None:
        index, changed = GalleryIndex.from_store(store, model, **kwargs), True
    else:
        try:
            changed = any(index.sync(store, model))
        except ValueError as exc:  # e.g. a file from another embedding size under this key
            warnings.warn(f"{path}: the saved gallery index does not fit the store ({exc}). Rebuilding it now.",
                          stacklevel=2)
            index, changed = GalleryIndex.from_store(store, model, **kwargs), True
        if kwargs.get("nprobe"):
            index.nprobe = kwargs["nprobe"]
        if kwargs.get("threads"):
            index.threads = int(kwargs["threads"])
    if index.kind != "ivf":
        path.unlink(missing_ok=True)  # exact search: nothing worth keeping
    elif changed:
        save_gallery(index, path)
    return index
