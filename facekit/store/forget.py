"""Forget reaches every file facekit derived from the store (issue 25, DESIGN.md "Derived files").

``FaceStore.forget`` removes the person from the SQLite file (zeroed pages, WAL truncated), then
calls :func:`reach_derived`, which visits every derived file the store lists (and every saved
gallery of this store in facekit's cache, listed or not), under the file's lock:

- a saved **gallery index** is refilled from the store (its trained lists kept, unless a list's
  centre is one of the forgotten faces: then it is trained again) or removed when the gallery is
  now small enough for exact search;
- an **identifier** fitted from the store is fitted again from it, with the same settings, and
  saved over the old one (removed when no face of its model is left);
- an **export** is written again with the same people, less those no longer in the store
  (removed when nobody is left).

A file that no longer records this store (moved away, replaced by the user) is left alone and
dropped from the list. A file that cannot be rebuilt is removed, with a warning. Every file
rewritten records the new generation.
"""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np

from facekit.core.exchange import npz_metadata
from facekit.core.files import file_lock
from facekit.store.derived import abandoned_temps, cached_galleries, file_origin

__all__ = ["reach_derived"]


def reach_derived(store, gone: dict[str, np.ndarray], *, progress: bool = False) -> list[tuple[str, str]]:
    """Rebuild or remove every derived file of ``store`` after a forget; ``gone``: the forgotten
    person's embeddings per model fingerprint. Returns ``(path, what was done)`` per file."""
    files = {Path(p): (k, m) for p, k, m, _ in store.derived_files()}
    for p in cached_galleries():
        files.setdefault(p.resolve(), ("gallery", None))
    done = []
    for path, (kind, model) in sorted(files.items()):
        if not path.parent.is_dir():  # its folder is gone: so is the file
            store.unregister_derived(path)
            continue
        with file_lock(str(path) + ".lock"):
            for tmp in abandoned_temps(path):  # temporary files of writers killed mid-write hold data too
                tmp.unlink(missing_ok=True)
            origin = file_origin(path) if path.exists() else None
            if origin is None or origin.store_id != store.store_id:
                store.unregister_derived(path)  # gone, or no longer this store's file: not ours to touch
                continue
            try:
                what = _rebuild(store, path, kind, model, gone, progress)
            except Exception as exc:  # noqa: BLE001 - whatever failed, the old contents must go
                path.unlink(missing_ok=True)
                store.unregister_derived(path)
                warnings.warn(f"{path}: could not be rebuilt after forget ({type(exc).__name__}: {exc}); removed "
                              "instead. Fix: none needed; facekit writes it again when asked")
                what = "removed (rebuild failed)"
            done.append((str(path), what))
    return done


def _rebuild(store, path: Path, kind: str, model: str | None, gone: dict[str, np.ndarray], progress: bool) -> str:
    meta = npz_metadata(path) or {}
    if kind == "gallery":
        from facekit.store.index_file import refresh_saved

        model = model or meta.get("model")
        return refresh_saved(store, path, model, forgotten=gone.get(model), progress=progress)
    if kind == "identifier":
        return _refit_identifier(store, path, meta)
    if kind == "export":
        from facekit.store.enrol import export_store

        names = sorted({p.get("name") for p in meta.get("people", []) if isinstance(p, dict)} & set(store.names))
        if not names:
            path.unlink(missing_ok=True)
            store.unregister_derived(path)
            return "removed (nobody left in it)"
        export_store(store, path, names, overwrite=True)
        return f"written again ({len(names)} people)"
    raise ValueError(f"unknown kind of derived file {kind!r}")


def _refit_identifier(store, path: Path, meta: dict) -> str:
    """Fit the identifier of ``path`` again from ``store`` with its saved settings and save it
    over the old file; remove it when the store holds no face of its model any more."""
    th = meta.get("threshold")
    threshold = float("inf") if th == "inf" else th
    kw = {k: meta[k] for k in ("C", "random_state") if k in meta}
    ident = store.identifier(meta.get("model"), threshold=threshold, allow_empty=True, **kw)
    if ident is None:
        path.unlink(missing_ok=True)
        store.unregister_derived(path)
        return "removed (no face of its model left)"
    ident.save(path, overwrite=True)
    return f"fitted again ({len(ident.names)} people)"
