"""A large gallery's trained index, kept on disk between runs, trained when the store changes.

Taught in notebook 07 ("At scale"). Beyond :data:`facekit.store.index.EXACT_MAX` faces (or
``$FACEKIT_EXACT_MAX``, :func:`exact_max_default`) a :class:`facekit.store.index.GalleryIndex`
trains a FAISS inverted file on the gallery (62-103 s at 1M faces on 2 cores, most of it the OPQ
rotation). ``facekit identify`` is a new process each time, so the trained index is saved, and
``facekit enrol`` / ``facekit index`` bring it up to date when they change the store
(:func:`refresh_gallery`, with a progress bar), so the next identify starts at once.

The saved file is a derived file (DESIGN.md, :mod:`facekit.core.origin`): it records the store's
id and generation. :func:`gallery_from_store` uses it as is only when both match; a file of an
older generation is refilled from the store (its trained lists kept: no training, nothing of
its old contents read); one of another store, of another size or model, or damaged, is replaced
(with a warning) by a fresh build. ``forget`` reaches it (:func:`refresh_saved`), and
``facekit gc`` removes the files of stores that no longer exist.

Where: ``<cache_dir>/galleries/<store+model key>.npz`` (arrays and JSON metadata only, read
without pickle; the FAISS index serialised to bytes), written atomically (a temporary file in the
same folder, then renamed), 0600. Small galleries (exact search) are not saved: building them
takes milliseconds.
"""

from __future__ import annotations

import hashlib
import json
import os
import sys
import tempfile
import warnings
from pathlib import Path

import numpy as np

from facekit.core.exchange import write_refusal
from facekit.core.files import file_lock
from facekit.core.origin import Origin, StaleFileError
from facekit.store.derived import derived_write
from facekit.store.index import EXACT_MAX, MIN_TRAIN, GalleryIndex

__all__ = ["GALLERY_FORMAT", "ENV_EXACT_MAX", "exact_max_default", "gallery_path", "save_gallery", "read_gallery",
           "load_gallery", "gallery_from_store", "refresh_gallery", "refresh_saved"]

GALLERY_FORMAT = "facekit.GalleryIndex"
GALLERY_VERSION = 1
#: environment variable that sets the gallery size beyond which a trained index is used (and
#: saved): lower it to try the trained index, its saving and its refresh on a small store
ENV_EXACT_MAX = "FACEKIT_EXACT_MAX"


def exact_max_default() -> int:
    """``$FACEKIT_EXACT_MAX`` if set (an integer >= 0), else :data:`EXACT_MAX`."""
    v = os.environ.get(ENV_EXACT_MAX)
    if v is None or v == "":
        return EXACT_MAX
    try:
        n = int(v)
        if n < 0:
            raise ValueError
    except ValueError:
        raise ValueError(f"{ENV_EXACT_MAX}={v!r} is not a number of faces >= 0. Fix: unset it, or use e.g. "
                         f"{EXACT_MAX}") from None
    return n


def gallery_path(store, model=None) -> Path:
    """Where the index of ``store`` (a :class:`facekit.store.db.FaceStore`) for ``model`` is kept:
    ``<cache_dir>/galleries/<sha256 of the store's absolute path and the model fingerprint>.npz``."""
    from facekit.core.cache import cache_dir
    from facekit.store.records import model_fingerprint

    key = hashlib.sha256(f"{Path(store.path).resolve()}\n{model_fingerprint(model)}".encode()).hexdigest()[:24]
    return cache_dir() / "galleries" / f"{key}.npz"


def save_gallery(index: GalleryIndex, path: str | os.PathLike, *, origin: Origin | None = None,
                 overwrite: bool | None = None) -> Path:
    """Write ``index`` to ``path`` atomically (temporary file + rename, 0600, under a lock), with
    its ``origin`` (the store and generation it holds). ``overwrite`` as in
    :func:`facekit.core.exchange.write_npz`: None replaces only a gallery index of the same store;
    a file of another kind or another store needs ``overwrite=True``. Returns the path."""
    path = Path(path).expanduser()
    meta = {"format": GALLERY_FORMAT, "version": GALLERY_VERSION, "model": index.model,
            "origin": None if origin is None else origin.as_json()}
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    with file_lock(str(path) + ".lock"):
        if path.exists() or path.is_symlink():
            why = write_refusal(path, meta, overwrite, None)
            if why:
                raise FileExistsError(f"{path}: already exists and {why}; facekit does not write over it. Fix: "
                                      "choose another file, or pass overwrite=True to replace it")
        state = index.__getstate__()
        fd, tmp = tempfile.mkstemp(prefix=f".{path.stem}-", suffix=".npz", dir=path.parent)
        try:
            with os.fdopen(fd, "wb") as f:
                os.fchmod(f.fileno(), 0o600)
                np.savez(f, metadata=np.asarray(json.dumps(meta)), **state)
                f.flush()
                os.fsync(f.fileno())
            os.replace(tmp, path)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
    return path


def read_gallery(path: str | os.PathLike) -> tuple[GalleryIndex, dict]:
    """The index saved at ``path`` and its metadata (``{}`` for a file without). Raises
    ``FileNotFoundError``, or ``ValueError`` naming the file when it is damaged or not an index."""
    path = Path(path)
    try:
        with np.load(path, allow_pickle=False) as z:
            state = {k: z[k] for k in z.files}
        meta = json.loads(str(state.pop("metadata"))) if "metadata" in state else {}
        if meta and meta.get("format") != GALLERY_FORMAT:
            raise ValueError(f"format {meta.get('format')!r}")
        index = GalleryIndex.__new__(GalleryIndex)
        index.__setstate__(state)
    except FileNotFoundError:
        raise
    except Exception as exc:  # zip, npz, JSON or FAISS errors all mean the same: not a usable index
        raise ValueError(f"{path}: not a readable gallery index ({type(exc).__name__}: {exc}). "
                         "Fix: delete it; it is a cache and is rebuilt from the face store.") from exc
    return index, meta if isinstance(meta, dict) else {}


def load_gallery(path: str | os.PathLike) -> GalleryIndex:
    """The index saved at ``path`` (see :func:`read_gallery`)."""
    return read_gallery(path)[0]


def _record_matches(store):
    """The hook that tells ``store`` whom identification named (best effort: a closed or busy
    store loses the note, never the answer)."""
    def hook(names: list[str]) -> None:
        try:
            store.record_matches(names)
        except Exception:  # noqa: BLE001 - retention notes must never break identification
            pass
    return hook


def _current(store, model, path: Path, *, exact_max: int, progress: bool, forgotten=None, kwargs=None
             ) -> tuple[GalleryIndex, str]:
    """The index of the store's faces of ``model`` now, from the file at ``path`` where it may be
    used, saved again when it changed: ``(index, what was done)``."""
    from facekit.store.records import model_fingerprint

    kwargs = dict(kwargs or {})
    fp = model_fingerprint(model)
    x, names, ids, gen = store.snapshot(model)
    dim = x.shape[1] if x.ndim == 2 and x.shape[1] else kwargs.pop("dim", 128)
    kwargs.pop("dim", None)
    if len(x) <= max(exact_max, MIN_TRAIN - 1):  # exact search: nothing worth keeping
        gone = path.exists()
        if gone:
            with file_lock(str(path) + ".lock"):
                path.unlink(missing_ok=True)
            store.unregister_derived(path)
        index = GalleryIndex(dim, exact_max=exact_max, model=fp, **kwargs)
        index.add(x, ids, names)
        return index, "removed (exact search)" if gone else "exact search"
    saved, meta = None, {}
    if path.exists():
        try:
            saved, meta = read_gallery(path)
        except ValueError as exc:
            warnings.warn(f"{exc} Rebuilding it now.", stacklevel=3)
    try:
        origin = Origin.from_json(meta.get("origin"))
    except ValueError:
        origin = None
    if saved is not None:
        why = ("it records no face store" if origin is None else "it is another store's"
               if origin.store_id != store.store_id else f"{saved.dim}-D, the store's faces {dim}-D"
               if saved.dim != dim else f"model {meta.get('model')!r}, not {fp!r}" if meta.get("model") != fp
               else None if saved.exact_max == exact_max else "built with other settings")
        if why:
            if why != "built with other settings":
                warnings.warn(f"{path}: the saved gallery index does not fit the store ({why}). Rebuilding it now.",
                              stacklevel=3)
            saved = None
    if saved is not None and origin.generation == gen:
        index, action = saved, "up to date"
    elif saved is not None and saved.keeps_training(len(x)) and not (
            forgotten is not None and saved.trained_on_any(forgotten)):
        index, action = saved, "refilled"
        index.model = fp
        index.refill(x, ids, names, progress=progress)
    else:
        if progress:
            print(f"facekit: training the gallery index of {len(x):,} faces; this happens once per change of the "
                  "store (`facekit enrol` and `facekit index` do it ahead of `identify`)", file=sys.stderr, flush=True)
        index, action = GalleryIndex(dim, exact_max=exact_max, model=fp, **kwargs), "trained"
        index.add(x, ids, names, progress=progress)
    if kwargs.get("nprobe"):
        index.nprobe = kwargs["nprobe"]
    if kwargs.get("threads"):
        index.threads = int(kwargs["threads"])
    if action != "up to date" and index.kind == "ivf":
        try:
            with derived_write(store, path, "gallery", gen, fp):
                save_gallery(index, path, origin=Origin(store.store_id, gen, str(Path(store.path).resolve())),
                             overwrite=True)  # the cache folder is facekit's: a stale file there is replaced
        except StaleFileError:
            action += ", not saved (the store changed meanwhile)"
    return index, action


def gallery_from_store(store, model=None, *, cache: bool = True, progress: bool = True, **kwargs) -> GalleryIndex:
    """The :class:`facekit.store.index.GalleryIndex` of every face of ``model`` in ``store``, trained
    at most once per change of the store: with ``cache`` (default), the index saved at
    :func:`gallery_path` (facekit's own cache) is used when it matches the store's id and
    generation, refilled from the store when the store changed since, or built anew (with a
    message and a progress bar when ``progress``), and saved. ``kwargs`` go to
    :class:`GalleryIndex` when it is built anew (``exact_max``, default :func:`exact_max_default`;
    ``nprobe``, ``threads``). The index notes whom it names in the store (``people.last_seen``)."""
    exact_max = int(kwargs.pop("exact_max", exact_max_default()))
    if not cache:
        index = GalleryIndex.from_store(store, model, exact_max=exact_max, progress=progress, **kwargs)
    else:
        index, _ = _current(store, model, gallery_path(store, model), exact_max=exact_max, progress=progress,
                            kwargs=kwargs)
    index.on_match = _record_matches(store)
    return index


def refresh_gallery(store, model=None, *, progress: bool = True, **kwargs) -> str:
    """Bring the saved index of ``store``'s ``model`` faces up to date now (the end of ``facekit
    enrol`` and ``facekit index``: the training happens there, with a progress bar, not in the
    next ``identify``). Returns what was done: ``"exact search"`` (small gallery, nothing saved),
    ``"up to date"``, ``"refilled"`` or ``"trained"``."""
    exact_max = int(kwargs.pop("exact_max", exact_max_default()))
    return _current(store, model, gallery_path(store, model), exact_max=exact_max, progress=progress,
                    kwargs=kwargs)[1]


def refresh_saved(store, path: str | os.PathLike, model, *, forgotten=None, progress: bool = False) -> str:
    """After a forget: bring the saved index at ``path`` in step with ``store`` (with the settings
    it was built with), trained again if a list centre is one of the ``forgotten`` vectors, or
    removed when the gallery is now small. Returns what was done."""
    path = Path(path)
    try:
        exact_max = read_gallery(path)[0].exact_max
    except (ValueError, FileNotFoundError):
        path.unlink(missing_ok=True)
        store.unregister_derived(path)
        return "removed (unreadable)"
    _, action = _current(store, model, path, exact_max=exact_max, progress=progress, forgotten=forgotten)
    if not path.exists():
        store.unregister_derived(path)
    return action
