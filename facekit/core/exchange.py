"""Sharing faces as files: ``.npz`` arrays + JSON metadata with a format version, checked on read.

Taught in notebook 04. Used by :meth:`facekit.recognition.identify.FaceIdentifier.save`/``load`` and
:meth:`facekit.store.db.FaceStore.export`/``import_``. Files hold plain numeric and unicode arrays
(read with ``allow_pickle=False``, so opening someone's file cannot run code), are written
atomically and private (0600, :func:`facekit.core.files.atomic_write_bytes`), and every value is checked
when read: finite numbers, unit-norm embeddings of one width, checked names
(:func:`facekit.core.names.check_name`), thresholds inside the squared-L2 range [0, 4].
"""

from __future__ import annotations

import io
import json
import os
import zipfile
from pathlib import Path

import numpy as np

from facekit.core.files import atomic_write_bytes, file_lock
from facekit.core.names import InvalidNameError, check_name

__all__ = ["FileFormatError", "write_npz", "read_npz", "npz_metadata", "write_refusal", "check_embeddings", "check_threshold",
           "check_labels", "UNIT_NORM_TOL"]

UNIT_NORM_TOL = 1e-3
_DAMAGED = "Fix: get a fresh copy of the file (it was damaged or edited); nothing was read from it"  # |norm - 1| allowed for a stored embedding (float32 round-off is ~1e-7)


class FileFormatError(ValueError):
    """A file is not in the expected facekit format, or holds values facekit refuses."""


def write_npz(path: str | os.PathLike, meta: dict, arrays: dict[str, np.ndarray], *,
              overwrite: bool | None = True, what: str = "npz file", replaces: str | os.PathLike | None = None) -> Path:
    """Write ``arrays`` plus ``metadata`` (``meta`` as JSON, strict: no NaN) to ``path``: built in
    memory, then under a lock (``<path>.lock``) written to a unique temporary file, 0600, and
    renamed into place (:mod:`facekit.core.files`), so a crash leaves the old file or the new one.

    ``overwrite``: True replaces any file; False refuses any existing file; None (the default of
    the files facekit derives) replaces only a file of the same format (``meta["format"]``) that is
    this object's own (``replaces``: the path it was loaded from or last saved to) or that records
    the same face store (``meta["origin"]``); anything else (another kind of file, another store's,
    another gallery) raises FileExistsError naming what is there. Object arrays are refused
    (they would need pickle to read)."""
    p = Path(path).expanduser()
    if p.is_dir():
        raise IsADirectoryError(f"{p}: is a folder, cannot write the {what} there. "
                                f"Fix: give a file name inside it, e.g. {p / 'faces.npz'}")
    for k, a in arrays.items():
        if np.asarray(a).dtype == object:
            raise TypeError(f"array {k!r} has dtype object (would need pickle); convert it to str or numbers")
    buf = io.BytesIO()
    np.savez(buf, metadata=np.asarray(json.dumps(meta, allow_nan=False)), **arrays)
    try:
        p.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        with file_lock(str(p) + ".lock"):
            if p.exists() or p.is_symlink():
                why = write_refusal(p, meta, overwrite, replaces)
                if why:
                    raise FileExistsError(f"{p}: already exists and {why}; facekit does not write over it. Fix: "
                                          "choose a new file name, or pass overwrite=True (--force) to replace it")
            return atomic_write_bytes(p, buf.getvalue())
    except PermissionError as exc:
        raise PermissionError(f"{p}: permission denied ({exc.strerror}). Fix: write into a folder you own") from None
    except (FileExistsError, NotADirectoryError) as exc:
        if isinstance(exc, NotADirectoryError):
            raise NotADirectoryError(f"{p}: a part of this path is a file, not a folder. Fix: choose "
                                     "another path") from None
        raise


def npz_metadata(path: str | os.PathLike) -> dict | None:
    """The JSON metadata of a facekit ``.npz`` at ``path``, reading only that entry; None when the
    file is not one (not a zip, no metadata, not JSON): it is then some other kind of file."""
    try:
        with open(path, "rb") as fh:
            if fh.read(4) != b"PK\x03\x04":
                return None
        with np.load(path, allow_pickle=False) as z:
            if "metadata" not in z.files:
                return None
            meta = json.loads(str(z["metadata"]), parse_constant=_no_constants)
    except (OSError, ValueError, zipfile.BadZipFile, EOFError, KeyError, RuntimeError, NotImplementedError):
        return None
    return meta if isinstance(meta, dict) else None


def write_refusal(p: Path, meta: dict, overwrite: bool | None, replaces) -> str | None:
    """Why the existing file ``p`` may not be replaced by a file of ``meta`` (None: it may)."""
    if overwrite is True:
        return None
    if overwrite is False:
        return "overwrite=False"
    if p.is_symlink():
        return "is a symbolic link"
    old = npz_metadata(p)
    if old is None or old.get("format") != meta.get("format"):
        kind = "not a facekit file" if old is None else f"a {old.get('format')!r} file"
        return f"holds another kind of file ({kind}, not a {meta.get('format')!r})"
    if replaces is not None and Path(replaces).expanduser().resolve() == p.resolve():
        return None  # this object's own file
    mine, theirs = meta.get("origin"), old.get("origin")
    if isinstance(mine, dict) and isinstance(theirs, dict) and mine.get("store_id") == theirs.get("store_id"):
        return None  # the same face store's file, brought up to date
    if isinstance(theirs, dict) and theirs.get("store_id") != (mine or {}).get("store_id"):
        return f"holds a {meta.get('format')!r} of another face store ({theirs.get('store_path')})"
    return f"holds another {meta.get('format')!r} (not the one this object was loaded from or saved to)"


def read_npz(path: str | os.PathLike, format_name: str, version: int, fix: str,
             error: type[FileFormatError] = FileFormatError) -> tuple[dict, dict[str, np.ndarray]]:
    """``(metadata dict, arrays)`` of a file written by :func:`write_npz` in ``format_name``
    ``version``; anything else raises ``error`` naming the file, the problem and ``fix``."""
    path = Path(path)
    if path.is_dir():
        raise IsADirectoryError(f"{path}: is a folder, not a {format_name} file. Fix: {fix}")
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no such file. Fix: {fix}")
    try:
        with open(path, "rb") as fh:
            magic = fh.read(4)
    except PermissionError as exc:
        raise PermissionError(f"{path}: permission denied ({exc.strerror}). Fix: ask its owner to share it, "
                              "or copy it somewhere you can read") from None
    if magic != b"PK\x03\x04":  # every .npz is a zip archive
        raise error(f"{path}: not a {format_name} file (not an .npz archive). Fix: {fix}")
    try:
        with np.load(path, allow_pickle=False) as z:
            arrays = {k: z[k] for k in z.files}
    except PermissionError as exc:
        raise PermissionError(f"{path}: permission denied ({exc.strerror}). Fix: ask its owner to share it, "
                              "or copy it somewhere you can read") from None
    except (zipfile.BadZipFile, EOFError, OSError, KeyError, NotImplementedError, RuntimeError) as exc:
        raise error(f"{path}: not a {format_name} file (damaged .npz archive: {exc}). Fix: {fix}") from None
    except ValueError as exc:  # object arrays (need pickle), bad headers
        raise error(f"{path}: refused, it holds data that needs pickle to load or a bad array "
                    f"({exc}). Fix: {fix}") from None
    if "metadata" not in arrays:
        raise error(f"{path}: not a {format_name} file (no 'metadata' entry). Fix: {fix}")
    try:
        meta = json.loads(str(arrays.pop("metadata")), parse_constant=_no_constants)
    except (json.JSONDecodeError, ValueError) as exc:
        raise error(f"{path}: metadata is not valid JSON ({exc}). Fix: {fix}") from None
    if not isinstance(meta, dict) or meta.get("format") != format_name:
        got = meta.get("format") if isinstance(meta, dict) else meta
        raise error(f"{path}: not a {format_name} file (format {got!r}). Fix: {fix}")
    if meta.get("version") != version:
        raise error(f"{path}: format version {meta.get('version')!r}, this facekit reads version {version}. "
                    "Fix: upgrade facekit, or export the file again with this version")
    return meta, arrays


def _no_constants(name: str):
    raise ValueError(f"{name} is not allowed in facekit metadata")


def check_embeddings(x: np.ndarray, where: str, dim: int | None = None) -> np.ndarray:
    """``x`` as float32 (N, d) after checking it is 2-D, finite, unit-norm (and ``dim`` wide)."""
    x = np.asarray(x)
    if x.dtype.kind not in "fiu":
        raise FileFormatError(f"{where}: embeddings have dtype {x.dtype}, expected float32. {_DAMAGED}")
    if x.ndim != 2 or (dim is not None and x.shape[1] != dim) or x.shape[1] == 0:
        raise FileFormatError(f"{where}: embeddings have shape {x.shape}, expected (N, {dim or 'd'}). {_DAMAGED}")
    x = x.astype(np.float32, copy=False)
    bad = ~np.isfinite(x).all(axis=1)
    if bad.any():
        raise FileFormatError(f"{where}: {int(bad.sum())} embedding(s) hold NaN or inf (rows "
                              f"{np.flatnonzero(bad)[:5].tolist()}); refusing the file. {_DAMAGED}")
    n = np.linalg.norm(x.astype(np.float64), axis=1)
    off = np.abs(n - 1) > UNIT_NORM_TOL
    if off.any():
        raise FileFormatError(f"{where}: {int(off.sum())} embedding(s) are not unit length (norms "
                              f"{np.round(n[off][:3], 4).tolist()}); the file is damaged or not FaceNet output. {_DAMAGED}")
    return x


def check_labels(labels: np.ndarray, n: int, where: str) -> list[str]:
    """``labels`` (n,) as checked names (see :func:`facekit.core.names.check_name`)."""
    labels = np.asarray(labels)
    if labels.dtype.kind != "U" or labels.shape != (n,):
        raise FileFormatError(f"{where}: labels have dtype {labels.dtype} and shape {labels.shape}, "
                              f"expected {n} names (unicode). {_DAMAGED}")
    out = labels.tolist()
    good = {}
    for name in set(out):
        try:
            good[name] = check_name(name)
        except InvalidNameError as exc:
            raise FileFormatError(f"{where}: {exc}") from None
    return [good[v] for v in out]


def check_threshold(t, where: str, allow_inf: bool = False) -> float | None:
    """``t`` as a float in [0, 4] (squared L2 between unit vectors), or None; refuses NaN, negative
    values, values above 4 and (unless ``allow_inf``: closed-set, never reject) infinity."""
    if t is None:
        return None
    if t == "inf" and allow_inf:
        return float("inf")
    if isinstance(t, bool) or not isinstance(t, (int, float, np.floating, np.integer)):
        raise FileFormatError(f"{where}: threshold {t!r} is not a number. {_DAMAGED}")
    v = float(t)
    if v == float("inf") and allow_inf:
        return v
    if not (0.0 <= v <= 4.0):  # False for NaN
        raise FileFormatError(f"{where}: threshold {t!r} is outside [0, 4] (squared L2 between unit "
                              "embeddings); refusing it. Fix: use a threshold like 0.8, or None for the default")
    return v
