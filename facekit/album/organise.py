"""Organise a photo album by person: a folder of unlabelled photos in, one group per person out.

Taught in notebook 05. Every face of every photo (several per photo allowed) is detected,
aligned and embedded; the faces are clustered (:func:`facekit.recognition.cluster.cluster_faces`); each group
of two or more faces is a person (``person_01`` is the largest group, or a real name when an
enrolled :class:`facekit.recognition.identify.FaceIdentifier` recognises most of its faces), faces left
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

from facekit.data.folders import Skipped
from facekit.detection.detector import Face
from facekit.core.names import check_name, is_generated_name

__all__ = ["AlbumFace", "Album", "organise_album", "make_group_photo", "SINGLETONS"]

SINGLETONS = "singletons"
MARKER = ".facekit-album"  # folder created inside an export that lies in the album's own folder


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

    def export(self, dest: str | os.PathLike, mode: str = "copy", *, merge: bool = False) -> Path:
        """Write ``dest/<person>/<photo>`` (and ``dest/singletons/``): ``mode`` ``"copy"``,
        ``"symlink"`` or ``"hardlink"``. Returns ``dest``.

        Safe by construction: a non-empty ``dest`` is refused unless ``merge=True`` (then files
        already there are kept, never overwritten); every written path is checked to lie inside
        ``dest`` (person names are checked too); two photos with the same file name get unique
        names (``IMG_1 (2).jpg``), never a silent skip; each file is written to a temporary name
        and moved into place with ``os.replace``. A ``dest`` inside the album's folder is marked
        (``.facekit-album``) so the next :func:`organise_album` leaves it out of the scan.
        """
        if mode not in ("copy", "symlink", "hardlink"):
            raise ValueError(f"mode must be 'copy', 'symlink' or 'hardlink', got {mode!r}")
        dest = Path(dest).expanduser()
        if dest.exists() and not dest.is_dir():
            raise NotADirectoryError(f"{dest}: is a file. Fix: export into a (new) folder")
        if dest.is_dir() and any(dest.iterdir()) and not merge:
            raise FileExistsError(f"{dest}: folder is not empty; facekit will not mix the album into it. "
                                  "Fix: choose a new folder, or pass merge=True to add to it (nothing is overwritten)")
        dest.mkdir(parents=True, exist_ok=True)
        top = dest.resolve()
        if top == Path(self.root).resolve() or Path(self.root).resolve() in top.parents:
            (dest / MARKER).mkdir(exist_ok=True)  # organise_album skips folders holding this
        for name, paths in self.people.items():
            if not is_generated_name(name):
                check_name(name)
            d = (dest / name)
            d.mkdir(exist_ok=True)
            taken = {f.name for f in d.iterdir()}
            for p in paths:
                target = _unique_target(d, Path(p), taken)
                if target is None:  # the same photo is already there (merge)
                    continue
                if top not in target.resolve().parents:
                    raise ValueError(f"refusing to write {target}: outside {dest}")
                _place(Path(p), target, mode)
        return dest


def _same_file(a: Path, b: Path) -> bool:
    try:
        if os.path.samefile(a, b):
            return True
        return a.stat().st_size == b.stat().st_size and a.read_bytes() == b.read_bytes()
    except OSError:
        return False


def _unique_target(folder: Path, src: Path, taken: set[str]) -> Path | None:
    """``folder/<src name>``, or ``<stem> (2)<suffix>``... if taken by another photo; None if the
    same photo is already there."""
    stem, suffix = src.stem, src.suffix
    for k in range(1, 100000):
        name = src.name if k == 1 else f"{stem} ({k}){suffix}"
        t = folder / name
        if name in taken or t.exists() or t.is_symlink():
            if _same_file(src, t):
                return None
            continue
        taken.add(name)
        return t
    raise RuntimeError(f"{folder}: too many photos named {src.name}")


def _place(src: Path, target: Path, mode: str) -> None:
    """Copy / link ``src`` to a temporary name beside ``target``, then ``os.replace`` it there."""
    tmp = target.with_name(f".{target.name}.{os.getpid()}.tmp")
    try:
        if mode == "copy":
            shutil.copy2(src, tmp)
        elif mode == "symlink":
            tmp.symlink_to(src.resolve())
        else:
            os.link(src, tmp, follow_symlinks=True)  # a symlinked photo: link the photo, not the link
        os.replace(tmp, target)
    except PermissionError as exc:
        raise PermissionError(f"{target}: permission denied ({exc.strerror}). Fix: export into a folder you own")
    finally:
        if tmp.exists() or tmp.is_symlink():
            tmp.unlink()


def _image_files(root: Path, recursive: bool, exclude: set[Path], skipped: list) -> list[Path]:
    """Every visible file under ``root`` (album exports and ``exclude`` left out); what cannot be
    walked (link loops, unreadable folders, files vanishing mid-walk) goes to ``skipped``."""
    from facekit.core.files import walk_files

    def prune(folder: str, names: list[str]) -> bool:
        return MARKER in names or Path(folder).resolve() in exclude

    if MARKER in {p.name for p in root.iterdir()} or root.resolve() in exclude:
        return []
    walk = walk_files(root, recursive=recursive, prune=prune)
    skipped += [Skipped(p, why) for p, why in walk.problems]
    return [Path(p) for p, _ in walk.files]


def organise_album(folder: str | os.PathLike, *, method: str = "agglomerative", threshold: float | None = None,
                   min_cluster_size: int = 2, identifier=None, min_face_size: float = 20,
                   recursive: bool = True, progress: bool = True, detector=None, embedder=None,
                   exclude: tuple = (), model: str | None = None) -> Album:
    """Group the faces of every photo under ``folder`` by person. Taught in notebook 05.

    method / threshold / min_cluster_size: see :func:`facekit.recognition.cluster.cluster_faces` (default:
    average linkage cut at the embedding model's ``thresholds(model).cluster`` squared L2).
    model / embedder: the embedding model (registry name; default ``"facenet128"``) or an
    :class:`~facekit.embedding.embedder.Embedder`; its own thresholds cut the clusters.
    identifier: an optional fitted :class:`facekit.recognition.identify.FaceIdentifier`; a group most of whose
    faces it names X (not unknown) is called X, others ``person_01``, ``person_02``, ...
    exclude: folders to leave out of the scan (an album export inside ``folder`` is left out
    anyway). Unreadable files and folders are listed in ``skipped``.
    """
    from facekit.core.images import ImageLoadError, load_image
    from facekit.embedding.embedder import get_embedder
    from facekit.faces import extract_faces
    from facekit.models.registry import spec_name
    from facekit.recognition.cluster import cluster_faces
    from facekit.recognition.identify import check_same_model

    if embedder is None:
        embedder = get_embedder(spec_name(model))
    elif model is not None and spec_name(model) != spec_name(embedder.fingerprint):
        raise ValueError(f"organise_album: model={model!r} but the embedder computes {embedder.fingerprint!r}. "
                         "Fix: pass one of them")
    check_same_model(identifier, embedder, "organise_album")

    root = Path(folder)
    if not root.is_dir():
        raise FileNotFoundError(f"{root}: no such folder. Fix: pass the folder that holds your photos")
    mfs = float(min_face_size)
    if not (np.isfinite(mfs) and mfs > 0):
        raise ValueError(f"min_face_size must be a finite size in pixels > 0, got {min_face_size!r}. "
                         "Fix: use e.g. 20 (the default)")
    skipped: list[Skipped] = []
    files = _image_files(root, recursive, {Path(e).resolve() for e in exclude}, skipped)
    it = files
    if progress:
        from tqdm.auto import tqdm

        it = tqdm(files, desc=f"faces in {root.name}", unit="photo")
    faces: list[AlbumFace] = []
    no_faces: list[str] = []
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
    emb = np.stack([f.embedding for f in faces]) if faces else np.zeros((0, embedder.dim), np.float32)
    groups = cluster_faces(emb, method=method, threshold=threshold, min_cluster_size=min_cluster_size,
                           model=embedder.fingerprint)
    names: dict[int, str] = {}
    taken: set[str] = set()
    if identifier is not None and len(faces):
        from facekit.core.constants import UNKNOWN

        guess = identifier.predict(emb)
        for g in sorted(set(groups.tolist()) - {-1}):
            votes = Counter(guess[groups == g].tolist())
            best, n = votes.most_common(1)[0]
            if best != UNKNOWN and n * 2 > int((groups == g).sum()) and best not in taken \
                    and not is_generated_name(best):
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

    from facekit.core.images import as_rgb

    if not images:
        raise ValueError("make_group_photo needs at least one image")
    parts = []
    for im in images:
        im = as_rgb(im)
        w = max(1, int(round(im.shape[1] * height / im.shape[0])))
        parts += [cv2.resize(im, (w, height), interpolation=cv2.INTER_AREA), np.full((height, gap, 3), 128, np.uint8)]
    return np.ascontiguousarray(np.hstack(parts[:-1]))
