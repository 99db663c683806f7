"""LFW people with their embeddings, thumbnails and eigenface pixels (notebooks 04-05).
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import numpy as np

from facekit.data.lfw import EIGEN_SLICE, LFW_SIZE, THUMB_BOX, lfw_people
from facekit.teach.lfw.pipeline import embed_lfw

__all__ = ["THUMB", "LFWFaces", "lfw_people_faces", "eigenface_pixels"]

THUMB = 48  # thumbnail side (px) for plots


def eigenface_pixels(image: np.ndarray) -> np.ndarray:
    """scikit-learn's classic LFW "eigenfaces" input from a 250x250 LFW image: the centre crop
    ``[70:195, 78:172]``, grey, scaled 0.4 -> uint8 (50, 37). Taught in notebook 04."""
    import cv2

    g = np.asarray(image, np.float32)[EIGEN_SLICE].mean(axis=2)
    return np.clip(cv2.resize(g, (37, 50), interpolation=cv2.INTER_AREA).round(), 0, 255).astype(np.uint8)


@dataclass
class LFWFaces:
    """LFW "people" images with their embeddings. Taught in notebooks 04-05.

    embeddings float32 (N, d) unit rows; labels str (N,); paths (N file paths); thumbs uint8
    (N, 48, 48, 3) centre crops for plots; pixels uint8 (N, 50, 37) grey centre crops (the
    eigenfaces input); no_face: paths where MTCNN found no face (LFW's standard face box was used).
    """

    embeddings: np.ndarray
    labels: np.ndarray
    paths: list[str]
    thumbs: np.ndarray
    pixels: np.ndarray
    no_face: list[str]

    def __len__(self) -> int:
        return len(self.paths)

    @property
    def names(self) -> list[str]:
        return sorted(set(self.labels.tolist()))

    def subset(self, idx) -> "LFWFaces":
        """Rows ``idx`` (index array or boolean mask)."""
        idx = np.arange(len(self))[idx]
        keep = [self.paths[i] for i in idx]
        return LFWFaces(self.embeddings[idx], self.labels[idx], keep, self.thumbs[idx], self.pixels[idx],
                        [p for p in self.no_face if p in set(keep)])


def lfw_people_faces(min_faces_per_person: int = 20, max_faces_per_person: int | None = None,
                     max_people: int | None = None, *, data_home: str | os.PathLike | None = None,
                     progress: bool = True, cache: bool = True, embedder=None) -> LFWFaces:
    """LFW people with at least ``min_faces_per_person`` photos (62 people, 3,023 images at 20),
    embedded with facekit's pipeline (MTCNN, centred face, aligned, 128-D FaceNet, no mirroring).

    Embeddings come from :func:`facekit.teach.lfw.embed_lfw`, cached on disk per image (shared with
    notebook 02 and the benchmarks): the first call for all 3,023 images takes several minutes on
    2 CPU cores, later calls seconds. ``max_faces_per_person`` / ``max_people`` (the first people
    by name) make small subsets for quick runs; ``embedder``: another model's (default facenet128).
    """
    import cv2

    from facekit.core.images import load_image

    paths, labels = lfw_people(data_home, min_faces_per_person=min_faces_per_person,
                               max_faces_per_person=max_faces_per_person)
    if max_people is not None:
        keep = np.isin(labels, sorted(set(labels.tolist()))[:max_people])
        paths, labels = [p for p, k in zip(paths, keep) if k], labels[keep]
    emb, no_face = embed_lfw(paths, flip=None, progress=progress, cache=cache, embedder=embedder)
    thumbs = np.zeros((len(paths), THUMB, THUMB, 3), np.uint8)
    pixels = np.zeros((len(paths), 50, 37), np.uint8)
    for i, p in enumerate(paths):
        img = load_image(p)
        if img.shape[:2] != (LFW_SIZE, LFW_SIZE):
            img = cv2.resize(img, (LFW_SIZE, LFW_SIZE), interpolation=cv2.INTER_AREA)
        thumbs[i] = cv2.resize(img[THUMB_BOX], (THUMB, THUMB), interpolation=cv2.INTER_AREA)
        pixels[i] = eigenface_pixels(img)
    return LFWFaces(emb, labels, list(paths), thumbs, pixels, list(no_face))
