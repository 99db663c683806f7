"""Index a photo tree into the face store, incrementally: the local engine (no cluster).

Taught in notebook 07 ("At scale"); run by ``facekit index DIR``. Each photo goes
load -> detect (batched) -> align -> embed -> rows, and the rows are committed to the store's
photo cache (:meth:`facekit.store.db.FaceStore.put_photo`), one transaction per photo. A photo
whose path, size and modification time are already cached for this model is not read again; a
moved or copied photo whose content hash is cached reuses its faces without detection. So a
second run over an unchanged folder only lists and stats it.

Rows (one per face; a photo without a face gives one row with ``face = -1``; a photo that
cannot be read gives one row with ``error`` set) are plain dicts with the columns of
:data:`ROW_COLUMNS`; the Ray engine (:mod:`facekit.album.ray`) writes the same rows as Parquet
shards, computed by the same functions, and :func:`ingest_rows` commits either.

Speed: large JPEGs are decoded in JPEG draft mode (the decoder skips DCT detail, 2-8x less work)
straight to the size detection uses (:class:`facekit.detection.detector.Detector`'s ``max_side``); boxes and
landmarks are scaled back to full-resolution pixels. Photos of one size are detected in one
batched call (:meth:`facekit.detection.detector.Detector.detect_batch`); the crops of a whole chunk of photos
are embedded in one call; files are read and decoded on threads while the networks run.
"""

from __future__ import annotations

import hashlib
import io
import os
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable, Sequence

import numpy as np

from facekit.core.images import IMAGE_SUFFIXES, ImageLoadError
from facekit.detection.settings import DetectorSettings
from facekit.store.records import ROW_COLUMNS, photo_rows, records_of

__all__ = ["PhotoFile", "IndexReport", "ROW_COLUMNS", "list_photos", "decode_photo", "detect_align",
           "detect_batched", "align_scaled", "photo_rows", "ingest_rows", "run_local", "load", "index_folder", "records_of"]

CHUNK = 32  # photos per detect/embed round
#: why a photo of a forgotten person is not indexed (:mod:`facekit.store.tombstones`)
FORGOTTEN = ("a photo of a person who was forgotten (its content, or a folder named after them); not indexed. "
             "Fix: none needed; enrol them again if they agree, or move the photo out of the folder")


@dataclass(frozen=True)
class PhotoFile:
    """A photo to index: absolute path, size in bytes, modification time in ns."""

    path: str
    size: int
    mtime_ns: int


@dataclass
class IndexReport:
    """What an indexing run did. ``stage_s``: seconds per stage (load, detect, align, embed,
    store) summed over photos; ``failed``: ``(path, reason)`` of photos that could not be read."""

    photos: int = 0
    cached: int = 0
    reused: int = 0
    indexed: int = 0
    faces: int = 0
    no_face: int = 0
    failed: list[tuple[str, str]] = field(default_factory=list)
    seconds: float = 0.0
    stage_s: dict[str, float] = field(default_factory=lambda: dict.fromkeys(
        ("load", "detect", "align", "embed", "store"), 0.0))
    engine: str = "local"
    interrupted: bool = False

    @property
    def photos_per_s(self) -> float:
        return self.photos / self.seconds if self.seconds > 0 else 0.0

    def to_dict(self) -> dict:
        return {k: getattr(self, k) for k in ("engine", "photos", "cached", "reused", "indexed", "faces", "no_face",
                                               "seconds", "interrupted")} | {
            "failed": [{"path": p, "reason": r} for p, r in self.failed], "stage_s": dict(self.stage_s),
            "photos_per_s": round(self.photos_per_s, 2)}


def list_photos(root: str | os.PathLike, recursive: bool = True,
                problems: list[tuple[str, str]] | None = None) -> list[PhotoFile]:
    """Image files under ``root`` (by suffix, hidden files and folders skipped), sorted, stat'ed.

    Raises FileNotFoundError / NotADirectoryError / PermissionError naming the folder and the fix
    when ``root`` itself cannot be listed. Below it the walk goes on past what it cannot read
    (:func:`facekit.core.files.walk_files`: symbolic-link loops, unreadable folders, files that
    vanish mid-walk), each reported as ``(path, reason)`` in ``problems`` when a list is given,
    else in a warning: never a silent skip, never a stop."""
    import warnings

    from facekit.core.files import walk_files

    if "://" in str(root):
        return _list_uri(str(root), recursive)
    root_p = Path(root).expanduser()
    if not root_p.exists():
        raise FileNotFoundError(f"{root_p}: no such folder. Fix: pass the folder that holds your photos")
    if not root_p.is_dir():
        raise NotADirectoryError(f"{root_p}: not a folder. Fix: pass a folder (or use `facekit detect` for one photo)")
    try:
        walk = walk_files(root_p.resolve(), recursive=recursive, suffixes=IMAGE_SUFFIXES)
    except PermissionError:
        raise PermissionError(f"{root_p}: cannot read this folder (permission denied). Fix: check its "
                              "permissions (chmod u+rx)") from None
    if problems is not None:
        problems += walk.problems
    else:
        for path, why in walk.problems:
            warnings.warn(f"{path}: {why}", stacklevel=2)
    return [PhotoFile(p, int(st.st_size), int(st.st_mtime_ns)) for p, st in walk.files]


def _list_uri(root: str, recursive: bool) -> list[PhotoFile]:
    """:func:`list_photos` of a pyarrow filesystem URI (``s3://bucket/photos``, ``gs://...``,
    ``hdfs://host:port/path``, ``file:///path``); paths come back as full URIs."""
    from pyarrow import fs

    try:
        filesystem, inner = fs.FileSystem.from_uri(root.rstrip("/"))
        base = root.rstrip("/")[: len(root.rstrip("/")) - len(inner)]  # "s3://", "hdfs://host:port", ...
        infos = filesystem.get_file_info(fs.FileSelector(inner, recursive=recursive))
    except FileNotFoundError:
        raise FileNotFoundError(f"{root}: no such folder. Fix: pass the folder (prefix) that holds your photos") from None
    except OSError as exc:
        raise PermissionError(f"{root}: cannot list it ({exc}). Fix: check the URI and your credentials "
                              "(AWS_*, GOOGLE_APPLICATION_CREDENTIALS, ...)") from None
    out = [PhotoFile(base + i.path, int(i.size or 0), int(i.mtime_ns or 0)) for i in infos
           if i.type == fs.FileType.File and i.base_name.lower().endswith(IMAGE_SUFFIXES)
           and not any(part.startswith(".") for part in i.path[len(inner):].split("/"))]
    return sorted(out, key=lambda f: f.path)


def decode_photo(data: bytes, path: str, max_side: int | None = 1280) -> tuple[np.ndarray, float]:
    """Decode photo bytes to upright RGB ``uint8 (H, W, 3)`` and ``scale`` = full-resolution
    pixels per decoded pixel (1.0 unless it was decoded smaller: JPEG draft mode only down to
    ``max_side``, the size detection works at, so detection sees what it would see on the full
    photo; any photo over :data:`facekit.core.images.MAX_DECODED_PIXELS` within that bound;
    :func:`facekit.core.images.decode_image`)."""
    from facekit.core.images import decode_image

    if not data:
        raise ImageLoadError(path, "file is empty (0 bytes)", "copy the photo again or delete the file")
    return decode_image(io.BytesIO(data), path, n_bytes=len(data), max_side=max_side)


def read_bytes(path: str) -> bytes:
    """A photo's bytes from a local path or any URI pyarrow's filesystems open (``s3://``, ``gs://``,
    ``hdfs://``): the same call on a laptop and on a cluster."""
    if "://" in path:
        from pyarrow import fs

        filesystem, inner = fs.FileSystem.from_uri(path)
        with filesystem.open_input_file(inner) as f:
            return f.read()
    with open(path, "rb") as f:
        return f.read()


def load(path: str, max_side: int | None) -> tuple[np.ndarray | None, float, str, str | None]:
    """``(image or None, scale, sha256, error)`` of one photo: read, hash, decode."""
    try:
        data = read_bytes(path)
    except OSError as exc:
        return None, 1.0, "", f"cannot read the file ({exc.strerror or exc}); check its permissions"
    sha = hashlib.sha256(data).hexdigest()
    try:
        img, scale = decode_photo(data, path, max_side)
    except ImageLoadError as exc:
        return None, 1.0, sha, f"{exc.reason} ({exc.fix})"
    return img, scale, sha, None


def detect_batched(images: Sequence[np.ndarray], detector) -> list[list]:
    """Faces of decoded photos (decoded pixels); photos of one size go through one batched call."""
    found: list[list] = [[] for _ in images]
    by_shape: dict[tuple, list[int]] = {}
    for i, im in enumerate(images):
        by_shape.setdefault(im.shape, []).append(i)
    for idx in by_shape.values():
        for i, faces in zip(idx, detector.detect_batch([images[i] for i in idx])):
            found[i] = faces
    return found


def align_scaled(images: Sequence[np.ndarray], scales: Sequence[float], found: Sequence[list],
                 crop: str = "facenet") -> list[tuple[list, np.ndarray]]:
    """Per photo ``(faces in full-resolution pixels, the embedding model's crops)``: ``crop`` is its
    ``ModelSpec.crop`` (FaceNet's: uint8 (F, 160, 160, 3); see :func:`facekit.detection.align.align_for`)."""
    from facekit.detection.align import align_for

    return [([f.scaled(s) for f in faces] if s != 1.0 else list(faces), align_for(crop, im, faces))
            for im, s, faces in zip(images, scales, found)]


def detect_align(images: Sequence[np.ndarray], scales: Sequence[float], detector,
                 crop: str = "facenet") -> list[tuple[list, np.ndarray]]:
    """:func:`detect_batched` then :func:`align_scaled` (what both engines run per chunk)."""
    return align_scaled(images, scales, detect_batched(images, detector), crop)


def ingest_rows(store, rows: Iterable[dict], report: IndexReport | None = None) -> IndexReport:
    """Commit rows to the store's photo cache, one transaction per photo; photos whose row has an
    ``error`` are listed in ``report.failed`` and not cached (they are retried next time)."""
    report = report or IndexReport()
    by_photo: dict[str, list[dict]] = {}
    for r in rows:
        by_photo.setdefault(r["path"], []).append(r)
    for path, rs in by_photo.items():
        r0 = rs[0]
        if r0["error"] is not None:
            report.failed.append((path, r0["error"]))
            continue
        recs = records_of(rs)
        if not store.put_photo(path, r0["size"], r0["mtime_ns"], r0["sha256"], r0["model"], recs):
            report.failed.append((path, FORGOTTEN))
            continue
        report.indexed += 1
        report.faces += len(recs)
        report.no_face += not recs
    return report


def todo_photos(store, files: list[PhotoFile], model: str) -> list[PhotoFile]:
    """The photos whose (path, size, mtime) is not cached for ``model``."""
    known = store.photo_index(model)
    return [f for f in files if known.get(f.path, (None, None))[:2] != (f.size, f.mtime_ns)]


def embedder_for(embedder=None, precision: str | None = None, model: str | None = None):
    """The embedder an engine uses: ``embedder`` as given, else one of ``model`` (default
    ``"facenet128"``) at ``precision`` (default fp32 or ``$FACEKIT_PRECISION``). Both engines call
    this, so they embed alike."""
    from facekit.embedding.embedder import Embedder
    from facekit.models.registry import spec_name

    if embedder is not None:
        if model is not None and spec_name(model) != spec_name(embedder.fingerprint):
            raise ValueError(f"model={model!r} but the embedder computes {embedder.fingerprint!r}. Fix: pass one")
        return embedder
    return Embedder(spec_name(model), precision=precision)


def index_folder(root: str | os.PathLike, store, *, embedder=None, detector=None, precision: str | None = None,
                 recursive: bool = True, chunk: int = CHUNK, progress: bool = True,
                 settings: DetectorSettings | None = None, model: str | None = None) -> IndexReport:
    """Index every photo under ``root`` into ``store`` (a :class:`facekit.store.db.FaceStore`) with the
    local engine; only new or changed photos are detected and embedded. ``settings``: the
    :class:`~facekit.detection.settings.DetectorSettings` (default ones; the Ray engine takes the
    same object); ``model``: the embedding model (default ``"facenet128"``). Ctrl-C stops after the
    photos already committed and returns with ``report.interrupted`` set."""
    report, _ = run_local(root, store, embedder=embedder, detector=detector, precision=precision,
                          recursive=recursive, chunk=chunk, progress=progress, settings=settings, model=model)
    return report


def run_local(root, store, *, embedder=None, detector=None, precision=None, recursive=True, chunk=CHUNK,
              progress=True, keep_rows: bool = False, settings: DetectorSettings | None = None,
              model: str | None = None) -> tuple[IndexReport, list[dict]]:
    """:func:`index_folder`, also returning the new rows when ``keep_rows``. On Ctrl-C the report
    says ``interrupted=True`` and what was committed stays committed."""
    from tqdm.auto import tqdm

    from facekit.detection.detector import get_detector

    t0 = time.perf_counter()
    problems: list[tuple[str, str]] = []
    files = list_photos(root, recursive, problems)
    emb = embedder_for(embedder, precision, model)
    model = emb.fingerprint
    if detector is not None and settings is not None:
        raise ValueError("pass detector= or settings=, not both")
    det = detector or (settings.build() if settings is not None else get_detector())
    report = IndexReport(photos=len(files), failed=list(problems))
    todo = todo_photos(store, files, model)
    report.cached = len(files) - len(todo)
    kept: list[dict] = []
    bar = tqdm(total=len(todo), desc=f"indexing {Path(root).name or root}", unit="photo", disable=not progress)
    st = report.stage_s
    chunks = [todo[i:i + chunk] for i in range(0, len(todo), chunk)]
    try:
        with ThreadPoolExecutor(2) as pool:
            def loaded(part):
                return [pool.submit(load, f.path, det.max_side) for f in part]

            nxt = loaded(chunks[0]) if chunks else []
            for ci, part in enumerate(chunks):
                t = time.perf_counter()
                got = [fut.result() for fut in nxt]
                nxt = loaded(chunks[ci + 1]) if ci + 1 < len(chunks) else []
                st["load"] += time.perf_counter() - t
                rows, ok = [], []
                for f, (img, scale, sha, err) in zip(part, got):
                    if err is None:
                        cached = store.cached_content(sha, model)
                        if cached is not None:  # moved / copied / touched: same content, same faces
                            if store.put_photo(f.path, f.size, f.mtime_ns, sha, model, cached):
                                report.reused += 1
                            else:
                                report.failed.append((f.path, FORGOTTEN))
                            continue
                        ok.append((f, img, scale, sha))
                    else:
                        rows += photo_rows(f, sha, [], None, model, err)
                t = time.perf_counter()
                boxes = detect_batched([o[1] for o in ok], det)
                st["detect"] += time.perf_counter() - t
                t = time.perf_counter()
                found = align_scaled([o[1] for o in ok], [o[2] for o in ok], boxes, emb.spec.crop)
                st["align"] += time.perf_counter() - t
                t = time.perf_counter()
                crops = [c for _, c in found]
                e = emb.embed(np.concatenate(crops)) if crops and sum(map(len, crops)) else np.zeros((0, emb.dim), np.float32)
                st["embed"] += time.perf_counter() - t
                k = 0
                for (f, _, _, sha), (faces, c) in zip(ok, found):
                    rows += photo_rows(f, sha, faces, e[k:k + len(c)], model)
                    k += len(c)
                t = time.perf_counter()
                ingest_rows(store, rows, report)
                st["store"] += time.perf_counter() - t
                if keep_rows:
                    kept += rows
                bar.update(len(part))
    except KeyboardInterrupt:
        report.interrupted = True
    finally:
        bar.close()
        report.seconds = time.perf_counter() - t0
    return report, kept
