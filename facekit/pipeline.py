"""One call from an image to its faces with embeddings: detect -> align -> embed.

Taught in notebook 02 (and used by 04-06).
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import numpy as np

from .align import DEFAULT_MARGIN, align_faces
from .detect import Detector, Face, get_detector
from .embed import Embedder, get_embedder
from .io import as_rgb, load_image

__all__ = ["FaceEmbedding", "extract_faces", "largest_face"]


@dataclass(frozen=True)
class FaceEmbedding:
    """A face found in an image: detection, its aligned 160x160 crop and its unit embedding."""

    face: Face
    crop: np.ndarray  # uint8 (160, 160, 3)
    embedding: np.ndarray  # float32 (dim,), unit L2 norm

    @property
    def box(self) -> np.ndarray:
        return self.face.box


def largest_face(faces: list[Face]) -> Face | None:
    """The face with the largest box area (the photo's subject, usually), or None."""
    return max(faces, key=lambda f: f.area) if faces else None


def extract_faces(image: np.ndarray | str | os.PathLike, *, detector: Detector | None = None,
                  embedder: Embedder | None = None, min_face_size: float | None = None,
                  margin: float = DEFAULT_MARGIN, rotate: bool = True) -> list[FaceEmbedding]:
    """Every face in ``image`` (an RGB array or a file path) with crop and embedding.

    Faces come sorted by confidence, highest first; ``[]`` when there are none.
    """
    img = load_image(image) if isinstance(image, (str, os.PathLike)) else as_rgb(image)
    det = detector or get_detector()
    faces = det.detect(img, min_face_size=min_face_size)
    if not faces:
        return []
    crops = align_faces(img, faces, margin=margin, rotate=rotate)
    embs = (embedder or get_embedder()).embed(crops)
    return [FaceEmbedding(f, c, e) for f, c, e in zip(faces, crops, embs)]
