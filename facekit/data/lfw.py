"""LFW (Labeled Faces in the Wild): files, pair lists, people, and where the face sits.

Taught in notebooks 02 (verification, View 1/View 2 pairs), 03 (training crops) and 04-05
(people). LFW lives in scikit-learn's layout (``$SCIKIT_LEARN_DATA/lfw_home``: ``lfw_funneled/``
and the pair files). Every "where is the face in a 250x250 LFW image" constant is here, once.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np

__all__ = [
    "LFW_SIZE", "LFW_FALLBACK_BOX", "LFW_FACE_BOX", "EIGEN_SLICE", "THUMB_BOX", "make_writable_data_home",
    "lfw_home", "LFWPairs", "lfw_pairs", "lfw_people", "lfw_subset", "pick_subject", "SELECT_RULES",
]

#: Side of LFW's deep-funneled images (pixels); the constants below are in its pixels.
LFW_SIZE = 250

#: Box (x1, y1, x2, y2) used when MTCNN finds no face in a 250x250 LFW image: about the median
#: of the subject boxes it finds on the 7,701 View 2 images (78.6, 64.8, 169.7, 187.6; the
#: funnelling centres every face), cropped without rotation. Such images are counted
#: (``no_face``), never dropped. (With facekit's default detector, MTCNN finds a face in all 7,701.)
LFW_FALLBACK_BOX = (78.0, 65.0, 170.0, 188.0)

#: Face region (x1, y1, x2, y2) for detector-free training crops (notebook 03): the face fills the
#: centre, its chin a little below.
LFW_FACE_BOX = (70, 75, 180, 185)

#: scikit-learn's ``fetch_lfw_people`` crop (rows, cols): the classic "eigenfaces" input (notebook 04).
EIGEN_SLICE = (slice(70, 195), slice(78, 172))

#: Square (rows, cols) around LFW's standard face position, for thumbnails in plots.
THUMB_BOX = (slice(66, 188), slice(63, 185))

#: Rules of :func:`pick_subject`.
SELECT_RULES = ("center", "facenet", "confidence", "largest")


def make_writable_data_home(source: str | os.PathLike, dest: str | os.PathLike) -> Path:
    """Mirror a read-only scikit-learn data home as symlinks in a writable folder.

    scikit-learn writes a joblib cache next to LFW; pointing ``SCIKIT_LEARN_DATA`` at the mirror
    keeps the read-only originals untouched. Returns ``dest``.
    """
    src, dst = Path(source).resolve(), Path(dest)
    lfw_src = src / "lfw_home" if (src / "lfw_home").is_dir() else src
    lfw_dst = dst / "lfw_home"
    lfw_dst.mkdir(parents=True, exist_ok=True)
    for entry in lfw_src.iterdir():
        link = lfw_dst / entry.name
        if not link.exists() and entry.name != "joblib":
            link.symlink_to(entry)
    return dst


def lfw_home(data_home: str | os.PathLike | None = None, download_if_missing: bool = True) -> Path:
    """Folder holding ``lfw_funneled/`` and ``pairs.txt`` (scikit-learn's layout).

    ``data_home`` defaults to ``$SCIKIT_LEARN_DATA`` or ``~/scikit_learn_data``; LFW is downloaded
    there by scikit-learn when missing (about 230 MB), else an error says where it looked.
    """
    from sklearn.datasets import get_data_home

    home = (Path(get_data_home(data_home)) / "lfw_home").resolve()
    if (home / "lfw_funneled").is_dir() and (home / "pairs.txt").is_file():
        return home
    if not download_if_missing:
        raise FileNotFoundError(f"LFW not found in {home}. Fix: set SCIKIT_LEARN_DATA to a folder "
                                "holding lfw_home/ or allow the download (download_if_missing=True)")
    from sklearn.datasets import fetch_lfw_pairs

    try:
        # public API: fetches the funneled images and each pairs file (View 2, DevTrain, DevTest)
        for subset in ("10_folds", "train", "test"):
            fetch_lfw_pairs(subset=subset, data_home=data_home, funneled=True, resize=0.1,
                            download_if_missing=True)
    except Exception as exc:
        raise FileNotFoundError(
            f"LFW is not in {home} and scikit-learn could not download it ({exc}). Fix: connect to "
            "the internet, or set SCIKIT_LEARN_DATA to a folder that holds lfw_home/") from exc
    return home


@dataclass(frozen=True)
class LFWPairs:
    """LFW View 2: ``paths`` (M, 2) str, ``same`` (M,) bool, ``fold`` (M,) int in 0..9."""

    paths: np.ndarray
    same: np.ndarray
    fold: np.ndarray

    def __len__(self) -> int:
        return len(self.same)

    @property
    def unique_paths(self) -> list[str]:
        return sorted(set(self.paths.ravel().tolist()))


def _lfw_path(folder: Path, name: str, idx: str) -> str:
    return str(folder / name / f"{name}_{int(idx):04d}.jpg")


def lfw_pairs(data_home: str | os.PathLike | None = None, subset: str = "10_folds",
              download_if_missing: bool = True) -> LFWPairs:
    """The official LFW pair list as file paths (no pixels loaded: 7,701 images for View 2).

    ``subset``: ``"10_folds"`` (View 2, 6,000 pairs, 10 folds of 300+300), ``"train"``/``"test"``
    (View 1, pairsDevTrain/DevTest; fold is 0).
    """
    home = lfw_home(data_home, download_if_missing)
    fname = {"10_folds": "pairs.txt", "train": "pairsDevTrain.txt", "test": "pairsDevTest.txt"}[subset]
    folder = home / "lfw_funneled"
    lines = (home / fname).read_text().split("\n")
    header = lines[0].split()
    n_folds, per = (int(header[0]), int(header[1])) if len(header) == 2 else (1, int(header[0]))
    rows = [ln.split("\t") for ln in lines[1:] if ln.strip()]
    paths, same, fold = [], [], []
    for i, r in enumerate(rows):
        if len(r) == 3:
            paths.append((_lfw_path(folder, r[0], r[1]), _lfw_path(folder, r[0], r[2])))
            same.append(True)
        elif len(r) == 4:
            paths.append((_lfw_path(folder, r[0], r[1]), _lfw_path(folder, r[2], r[3])))
            same.append(False)
        else:
            raise ValueError(f"{home / fname}: line {i + 2} has {len(r)} fields, expected 3 or 4")
        fold.append(i // (2 * per) if n_folds > 1 else 0)
    return LFWPairs(np.asarray(paths), np.asarray(same), np.asarray(fold))


def lfw_people(data_home: str | os.PathLike | None = None, min_faces_per_person: int = 20,
               max_faces_per_person: int | None = None, download_if_missing: bool = True) -> tuple[list[str], np.ndarray]:
    """LFW images of people with at least ``min_faces_per_person`` photos.

    Returns ``(paths, labels)``: N file paths and str labels (N,), sorted by name then file. The
    same selection rule as scikit-learn's ``fetch_lfw_people(min_faces_per_person=...)``.
    """
    folder = lfw_home(data_home, download_if_missing) / "lfw_funneled"
    paths, labels = [], []
    for d in sorted(p for p in folder.iterdir() if p.is_dir()):
        files = sorted(f for f in d.iterdir() if f.suffix.lower() == ".jpg")
        if len(files) < min_faces_per_person:
            continue
        files = files[:max_faces_per_person]
        paths += [str(f) for f in files]
        labels += [d.name] * len(files)
    return paths, np.asarray(labels, dtype=str)


def lfw_subset(pairs, per_fold: int | None, random_state: int = 0):
    """A balanced subset of LFW pairs: ``per_fold`` pairs (half same, half different) per fold.

    Nested: a smaller ``per_fold`` (same ``random_state``) gives a subset of a larger one, so
    cached embeddings are reused. ``None`` returns ``pairs`` unchanged. Taught in notebook 02.
    """
    if per_fold is None:
        return pairs
    if per_fold < 2 or per_fold % 2:
        raise ValueError(f"per_fold must be an even number >= 2 (half same, half different), got {per_fold}")
    rng = np.random.default_rng(random_state)
    keep = []
    for k in np.unique(pairs.fold):
        for want in (True, False):
            idx = np.flatnonzero((pairs.fold == k) & (pairs.same == want))
            keep.append(rng.permutation(idx)[: per_fold // 2])
    idx = np.sort(np.concatenate(keep))
    return LFWPairs(pairs.paths[idx], pairs.same[idx], pairs.fold[idx])


def pick_subject(faces: Sequence, image_shape: tuple[int, int], select: str = "center"):
    """The face that is the photo's subject, or None.

    ``"center"`` (default): the face whose box centre is nearest the image centre. LFW's
    deep-funneled images are centred on the labelled person, who is not always the biggest face
    (e.g. John_McEnroe_0001: a man in front of him has a larger box). ``"facenet"``: the rule of
    facenet's ``align_dataset_mtcnn``, largest ``box area - 2 * (centre offset)^2`` (big and
    central; picks the wrong man in that photo, one of the 7,701 images).
    ``"confidence"``: highest MTCNN confidence; ``"largest"``: largest box.
    """
    if select not in SELECT_RULES:
        raise ValueError(f"select must be one of {SELECT_RULES}, got {select!r}")
    if not faces:
        return None
    if select == "confidence":
        return max(faces, key=lambda f: f.confidence)
    if select == "largest":
        return max(faces, key=lambda f: f.area)
    cy, cx = image_shape[0] / 2.0, image_shape[1] / 2.0

    def offset2(f):
        bx, by = (f.box[0] + f.box[2]) / 2.0, (f.box[1] + f.box[3]) / 2.0
        return (bx - cx) ** 2 + (by - cy) ** 2

    if select == "center":
        return min(faces, key=offset2)
    return max(faces, key=lambda f: f.area - 2.0 * offset2(f))

