"""What the face store holds and says: its records, its errors, where it lives, model keys.

Shared by :mod:`facekit.store.db`, :mod:`facekit.store.enrol`, :mod:`facekit.store.index` and the command line
(notebooks 04, 06, 07).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

__all__ = ["ROW_FIELDS", "ROW_COLUMNS", "row_schema", "photo_rows", "records_of", "StoreError", "UnknownPersonError", "EmptyStoreError", "Person", "PhotoSource", "FaceRecord",
           "default_store_path", "model_fingerprint", "unit_rows"]


class StoreError(RuntimeError):
    """The store file cannot be used (not a facekit store, damaged, newer, no permission)."""


class UnknownPersonError(LookupError):
    """A name that is not in the store."""

    def __str__(self) -> str:  # LookupError would quote the message like a key
        return str(self.args[0]) if self.args else ""


class EmptyStoreError(UnknownPersonError):
    """The store holds no faces for the model asked for."""


@dataclass(frozen=True)
class Person:
    """One enrolled person: name, when added (unix seconds), consent note, faces (all models),
    when the consent note was recorded, their last enrolment (newest face) and the last time
    identification named them (None: never)."""

    name: str
    added: float
    consent: str | None
    faces: int
    consent_at: float | None = None
    last_enrolled: float | None = None
    last_seen: float | None = None

    @property
    def last_active(self) -> float:
        """The latest of: added, last enrolment, last match (unix seconds): what retention asks."""
        return max(v for v in (self.added, self.last_enrolled, self.last_seen) if v is not None)


@dataclass(frozen=True)
class PhotoSource:
    """Where an enrolled face came from: a photo file, its content sha256 and the face box (px)."""

    path: str
    sha256: str
    box: tuple[float, float, float, float] | None = None


@dataclass(frozen=True)
class FaceRecord:
    """One detected face of a cached photo: box (4,) x1,y1,x2,y2 px; landmarks (5, 2) px;
    confidence in [0, 1]; embedding float32 (d,) unit norm; person: a name or None."""

    box: np.ndarray
    landmarks: np.ndarray
    confidence: float
    embedding: np.ndarray
    person: str | None = None


def default_store_path() -> Path:
    """``$FACEKIT_STORE``, else ``$XDG_DATA_HOME/facekit/faces.sqlite3`` (~/.local/share/...)."""
    env = os.environ.get("FACEKIT_STORE")
    if env:
        return Path(env).expanduser()
    xdg = os.environ.get("XDG_DATA_HOME")
    return (Path(xdg).expanduser() if xdg else Path.home() / ".local" / "share") / "facekit" / "faces.sqlite3"


def model_fingerprint(model=None) -> str:
    """The string that keys embeddings by model: ``Embedder.fingerprint`` (weights, export and
    precision) for an embedder, :func:`facekit.embedding.embedder.fingerprint` for a registry name; any other
    string is taken as a fingerprint. ``None`` means the default model, ``"facenet128"``."""
    from facekit.embedding.embedder import Embedder
    from facekit.models.registry import DEFAULT_MODEL, MODELS

    model = DEFAULT_MODEL if model is None else model
    if isinstance(model, Embedder):
        fp = model.fingerprint
    elif isinstance(model, str):
        # a registry name means its own precision (fp32, or int8 for a "-int8" entry); loads nothing
        fp = Embedder(model, precision=None if model.endswith("-int8") else "fp32").fingerprint if model in MODELS else model
    else:
        fp = None
    if not isinstance(fp, str) or not fp or len(fp) > 300 or not fp.isprintable():
        raise ValueError(f"model {model!r} has no usable fingerprint; pass an Embedder, a registry name "
                         "(e.g. 'facenet128') or Embedder.fingerprint")
    return fp


def unit_rows(embeddings, dim: int | None, what: str) -> np.ndarray:
    """``embeddings`` as C-contiguous little-endian float32 ``(N, dim)`` rows of unit norm (N >= 1),
    re-normalised; NaN, inf, all-zero rows or a wrong shape raise ValueError naming ``what``."""
    if isinstance(embeddings, (str, os.PathLike)) or (isinstance(embeddings, (list, tuple)) and embeddings
                                                       and isinstance(embeddings[0], (str, os.PathLike))):
        raise TypeError(f"{what}: takes embeddings (float32 (N, {dim or 'd'})), not file paths. Fix: "
                        "facekit.extract_faces(path) gives each face's .embedding (or `facekit enrol NAME PHOTO...`)")
    if isinstance(embeddings, (list, tuple)) and embeddings and hasattr(embeddings[0], "embedding"):
        raise TypeError(f"{what}: takes embeddings, not FaceEmbedding objects. Fix: pass "
                        "np.stack([f.embedding for f in faces])")
    if isinstance(embeddings, np.ndarray) and (embeddings.dtype == np.uint8 or embeddings.ndim > 2):
        raise TypeError(f"{what}: takes embeddings (float32 (N, {dim or 'd'})), got a {embeddings.dtype} array "
                        f"{embeddings.shape}: an image or face crops? Fix: facekit.extract_faces(image) (or "
                        "Embedder.embed(crops)) makes the embeddings")
    x = np.asarray(embeddings, dtype=np.float32)
    x = x[None, :] if x.ndim == 1 else x
    if x.ndim != 2 or x.shape[0] == 0 or x.shape[1] == 0 or (dim is not None and x.shape[1] != dim):
        raise ValueError(f"{what}: embeddings must be float32 (N, {dim or 'd'}) with N >= 1, got shape "
                         f"{np.shape(embeddings)}. Fix: embed with the store's model ({dim or '?'} dims)")
    n = np.linalg.norm(x.astype(np.float64), axis=1)
    if not np.all(np.isfinite(n) & (n > 1e-6)):
        raise ValueError(f"{what}: embeddings hold NaN, inf or all-zero rows; refusing them. Fix: re-embed "
                         "the faces (a face crop of a broken frame?)")
    return np.ascontiguousarray((x / n[:, None]).astype("<f4"))


# -- the per-face row: one definition for the store, the local engine and the Ray engine ---------
#: each field of an index row and its Arrow type: path, size (bytes), mtime_ns, sha256 (content),
#: face (index in the photo, -1: none), box (4 floats x1,y1,x2,y2 px), landmarks (10 floats: 5
#: (x, y) px), confidence, embedding (d float32, unit), model (embedder fingerprint), error (None
#: when read). Adding a per-face field: one entry here, one in :func:`photo_rows`, one column of
#: the store's ``faces`` table (:mod:`facekit.store.db`) and its migration.
ROW_FIELDS = (("path", "string"), ("size", "int64"), ("mtime_ns", "int64"), ("sha256", "string"),
              ("face", "int64"), ("box", "list<float64>"), ("landmarks", "list<float64>"),
              ("confidence", "float64"), ("embedding", "list<float32>"), ("model", "string"), ("error", "string"))
ROW_COLUMNS = tuple(name for name, _ in ROW_FIELDS)


def row_schema():
    """The Arrow schema of :data:`ROW_FIELDS` (fixed, so that a Parquet shard whose photos have no
    face, with null box, landmarks and embedding, has the same schema as every other shard)."""
    import pyarrow as pa

    types = {"string": pa.string(), "int64": pa.int64(), "float64": pa.float64(),
             "list<float64>": pa.list_(pa.float64()), "list<float32>": pa.list_(pa.float32())}
    return pa.schema([(name, types[kind]) for name, kind in ROW_FIELDS])


def photo_rows(photo, sha256: str, faces: list, embeddings: np.ndarray | None, model: str,
               error: str | None = None) -> list[dict]:
    """Rows of one photo (see :data:`ROW_FIELDS`; ``photo`` has ``path``, ``size``, ``mtime_ns``):
    one per face, or one with ``face = -1`` (no face, or ``error``)."""
    base = {"path": photo.path, "size": photo.size, "mtime_ns": photo.mtime_ns, "sha256": sha256, "model": model,
            "error": error}
    if error is not None or not faces:
        return [{**base, "face": -1, "box": None, "landmarks": None, "confidence": None, "embedding": None}]
    return [{**base, "face": i, "box": [float(v) for v in f.box], "landmarks": [float(v) for v in f.landmarks.ravel()],
             "confidence": float(f.confidence), "embedding": np.asarray(e, np.float32).tolist()}
            for i, (f, e) in enumerate(zip(faces, embeddings))]


def records_of(rows) -> list[FaceRecord]:
    """Store records (:class:`FaceRecord`) of one photo's rows (``[]``: no face)."""
    return [FaceRecord(np.asarray(r["box"], np.float32), np.asarray(r["landmarks"], np.float32).reshape(5, 2),
                       float(r["confidence"]), np.asarray(r["embedding"], np.float32))
            for r in sorted(rows, key=lambda r: r["face"]) if r["face"] >= 0]
