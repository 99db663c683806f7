"""Organise a photo album by person: a folder of unlabelled photos in, one group per person out.

Taught in notebook 05. Every face of every photo (several per photo allowed) is detected,
aligned and embedded; the faces are clustered (:func:`facekit.cluster.cluster_faces`); each group
of two or more faces is a person (``person_01`` is the largest group, or a real name when an
enrolled :class:`facekit.identify.FaceIdentifier` recognises most of its faces), faces left
alone are "singletons". A photo appears under every person it shows. Files that are not images
(or are broken) and photos without faces are listed, never dropped silently.
"""

from __future__ import annotations

import os
import shutil
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from .datasets import Skipped
from .detect import Face

__all__ = ["AlbumFace", "Album", "organise_album", "make_group_photo", "SINGLETONS"]

SINGLETONS = "singletons"


@dataclass(frozen=True)
class AlbumFace:
    """One face of the album: its photo, detection, aligned crop (uint8 160x160x3) and embedding."""

    path: str
    face: Face
    crop: np.ndarray
    embedding: np.ndarray


@dataclass
class Album:
    """The result of :func:`organise_album`.

    faces: every face found; groups: int (F,) cluster per face (-1: singleton); group_names:
    ``{group: name}``; no_faces: photos without a detected face; skipped: files that are not
    usable images, with the reason.
    """

    root: str
    faces: list[AlbumFace]
    groups: np.ndarray
    group_names: dict[int, str]
    no_faces: list[str] = field(default_factory=list)
    skipped: list[Skipped] = field(default_factory=list)

    def name_of(self, i: int) -> str:
        """The person (or :data:`SINGLETONS`) of face ``i``."""
        g = int(self.groups[i])
        return SINGLETONS if g < 0 else self.group_names[g]

    @property
    def people(self) -> dict[str, list[str]]:
        """``{person: sorted photo paths}`` (a photo with two people is under both), largest
        group first; then ``"singletons"`` (photos of faces that matched nobody) if any."""
        out: dict[str, set[str]] = {}
        order = [self.group_names[g] for g in sorted(self.group_names)] + [SINGLETONS]
        for i, f in enumerate(self.faces):
            out.setdefault(self.name_of(i), set()).add(f.path)
        return {n: sorted(out[n]) for n in order if n in out}

    def faces_of(self, name: str) -> list[int]:
        """Indices of the faces in group ``name``."""
        return [i for i in range(len(self.faces)) if self.name_of(i) == name]

    def listing(self) -> str:
        """A printable summary: one line per person with their photos' file names."""
        lines = [f"{self.root}: {len(self.faces)} faces in {len({f.path for f in self.faces})} photos"]
        for name, paths in self.people.items():
            lines.append(f"  {name} ({len(self.faces_of(name))} faces): "
                         + ", ".join(Path(p).name for p in paths))
        if self.no_faces:
            lines.append(f"  no face found in: {', '.join(Path(p).name for p in self.no_faces)}")
        for s in self.skipped:
            lines.append(f"  skipped {s.path}: {s.reason}")
        return "\n".join(lines)

    def export(self, dest: str | os.PathLike, mode: str = "copy") -> Path:
        """Write ``dest/<person>/<photo>`` (and ``dest/singletons/``): ``mode`` ``"copy"``,
        ``"symlink"`` or ``"hardlink"``. Existing files are kept. Returns ``dest``."""
        if mode not in ("copy", "symlink", "hardlink"):
            raise ValueError(f"mode must be 'copy', 'symlink' or 'hardlink', got {mode!r}")
        dest = Path(dest)
        for name, paths in self.people.items():
            d = dest / name
            d.mkdir(parents=True, exist_ok=True)
            for p in paths:
                target = d / Path(p).name
                if target.exists() or target.is_symlink():
                    continue
                if mode == "copy":
                    shutil.copy2(p, target)
                elif mode == "symlink":
                    target.symlink_to(Path(p).resolve())
                else:
                    os.link(p, target)
        return dest

    def show(self, max_faces: int = 12, size: float = 1.3):
        """One image grid of face crops per group (largest first); returns the figures."""
        from .viz import image_grid

        figs = []
        for name in self.people:
            idx = self.faces_of(name)[:max_faces]
            figs.append(image_grid([self.faces[i].crop for i in idx],
                                   [Path(self.faces[i].path).name[:14] for i in idx], ncols=max_faces,
                                   size=size, suptitle=f"{name}: {len(self.faces_of(name))} faces"))
        return figs


def _image_files(root: Path, recursive: bool) -> list[Path]:
    it = root.rglob("*") if recursive else root.iterdir()
    return sorted(p for p in it if p.is_file() and not any(part.startswith(".") for part in p.relative_to(root).parts))


def organise_album(folder: str | os.PathLike, *, method: str = "agglomerative", threshold: float | None = None,
                   min_cluster_size: int = 2, identifier=None, min_face_size: float = 20,
                   recursive: bool = True, progress: bool = True, detector=None, embedder=None) -> Album:
    """Group the faces of every photo under ``folder`` by person. Taught in notebook 05.

    method / threshold / min_cluster_size: see :func:`facekit.cluster.cluster_faces` (default:
    average linkage cut at :data:`facekit.cluster.DEFAULT_CLUSTER_THRESHOLD` squared L2).
    identifier: an optional fitted :class:`facekit.identify.FaceIdentifier`; a group most of whose
    faces it names X (not unknown) is called X, others ``person_01``, ``person_02``, ...
    """
    from .cluster import cluster_faces
    from .io import ImageLoadError, load_image
    from .pipeline import extract_faces

    root = Path(folder)
    if not root.is_dir():
        raise FileNotFoundError(f"{root}: no such folder. Fix: pass the folder that holds your photos")
    files = _image_files(root, recursive)
    it = files
    if progress:
        from tqdm.auto import tqdm

        it = tqdm(files, desc=f"faces in {root.name}", unit="photo")
    faces: list[AlbumFace] = []
    no_faces: list[str] = []
    skipped: list[Skipped] = []
    for p in it:
        try:
            img = load_image(p)
        except ImageLoadError as exc:
            skipped.append(Skipped(str(p), f"{exc.reason} ({exc.fix})"))
            continue
        found = extract_faces(img, detector=detector, embedder=embedder, min_face_size=min_face_size)
        if not found:
            no_faces.append(str(p))
        faces += [AlbumFace(str(p), f.face, f.crop, f.embedding) for f in found]
    emb = np.stack([f.embedding for f in faces]) if faces else np.zeros((0, 128), np.float32)
    groups = cluster_faces(emb, method=method, threshold=threshold, min_cluster_size=min_cluster_size)
    names: dict[int, str] = {}
    taken: set[str] = set()
    if identifier is not None and len(faces):
        from .identify import UNKNOWN

        guess = identifier.predict(emb)
        for g in sorted(set(groups.tolist()) - {-1}):
            votes = Counter(guess[groups == g].tolist())
            best, n = votes.most_common(1)[0]
            if best != UNKNOWN and n * 2 > int((groups == g).sum()) and best not in taken:
                names[g] = best
                taken.add(best)
    k = 0
    for g in sorted(set(groups.tolist()) - {-1}):
        if g not in names:
            k += 1
            names[g] = f"person_{k:02d}"
    return Album(str(root), faces, groups, names, no_faces, skipped)


def make_group_photo(images: list[np.ndarray], height: int = 320, gap: int = 16) -> np.ndarray:
    """A synthetic "group photo": RGB photos resized to ``height`` px and placed left to right on
    a grey canvas, uint8 (height, W, 3). For demos and tests of albums (notebooks 04-05)."""
    import cv2

    from .io import as_rgb

    if not images:
        raise ValueError("make_group_photo needs at least one image")
    parts = []
    for im in images:
        im = as_rgb(im)
        w = max(1, int(round(im.shape[1] * height / im.shape[0])))
        parts += [cv2.resize(im, (w, height), interpolation=cv2.INTER_AREA), np.full((height, gap, 3), 128, np.uint8)]
    return np.ascontiguousarray(np.hstack(parts[:-1]))
