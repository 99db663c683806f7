"""Alignment: from a detected face to the 160x160 crop FaceNet expects.

Taught in notebook 01. FaceNet was trained on MTCNN boxes widened by a margin and resized to
160x160. facekit does the same and, by default, also rotates about the box centre so that the
eye line is horizontal (a similarity transform from the two eye landmarks), so tilted heads give
the same crop as upright ones. The crop keeps the box's aspect ratio mapping of FaceNet's
training crops (box + margin resized to a square), i.e. one ``cv2.warpAffine`` per face.
"""

from __future__ import annotations

import numpy as np

from facekit.detection.detector import Face
from facekit.core.images import as_rgb

__all__ = ["align_face", "align_faces", "crop_transform", "DEFAULT_SIZE", "DEFAULT_MARGIN", "CROPS", "align_for",
           "dlib_chips"]

DEFAULT_SIZE = 160
DEFAULT_MARGIN = 0.1  # fraction of the box width/height added on each side (best same/different separation on the sample set)


def crop_transform(face: Face, size: int = DEFAULT_SIZE, margin: float = DEFAULT_MARGIN,
                   rotate: bool = True) -> np.ndarray:
    """The 2x3 affine matrix (float64) mapping image pixels to crop pixels for ``face``.

    The crop covers the box grown by ``margin`` of its width/height on each side, centred on the
    box centre, rotated by the eye-line angle when ``rotate`` (eyes level in the crop).
    """
    x1, y1, x2, y2 = (float(v) for v in face.box)
    w, h = max(x2 - x1, 1.0), max(y2 - y1, 1.0)
    cx, cy = (x1 + x2) / 2.0, (y1 + y2) / 2.0
    theta = 0.0
    if rotate:
        (lx, ly), (rx, ry) = face.landmarks[0], face.landmarks[1]
        if np.isfinite([lx, ly, rx, ry]).all() and (rx - lx) ** 2 + (ry - ly) ** 2 > 1e-6:
            theta = float(np.arctan2(ry - ly, rx - lx))
            if abs(theta) > np.pi / 2:  # landmarks swapped (e.g. mirrored input): keep upright
                theta = theta - np.sign(theta) * np.pi
    sx = size / (w * (1.0 + 2.0 * margin))
    sy = size / (h * (1.0 + 2.0 * margin))
    c, s = np.cos(theta), np.sin(theta)
    a = np.array([[sx * c, sx * s], [-sy * s, sy * c]])
    b = np.array([size / 2.0, size / 2.0]) - a @ np.array([cx, cy])
    return np.hstack([a, b[:, None]])


def align_face(image: np.ndarray, face: Face, size: int = DEFAULT_SIZE, margin: float = DEFAULT_MARGIN,
               rotate: bool = True) -> np.ndarray:
    """One aligned crop, RGB ``uint8 (size, size, 3)``. Pixels outside the image repeat the edge."""
    import cv2

    img = as_rgb(image)
    m = crop_transform(face, size, margin, rotate)
    # Large downscales alias with bilinear sampling: pre-shrink the image when the crop is tiny.
    scale = float(np.sqrt(abs(np.linalg.det(m[:, :2]))))
    if scale < 0.5:
        k = int(np.floor(1.0 / scale))
        if k >= 2:
            small = cv2.resize(img, (max(1, img.shape[1] // k), max(1, img.shape[0] // k)),
                               interpolation=cv2.INTER_AREA)
            fx, fy = img.shape[1] / small.shape[1], img.shape[0] / small.shape[0]
            m = m @ np.array([[fx, 0, 0], [0, fy, 0], [0, 0, 1.0]])
            img = small
    return cv2.warpAffine(img, m, (size, size), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)


def align_faces(image: np.ndarray, faces: list[Face], size: int = DEFAULT_SIZE,
                margin: float = DEFAULT_MARGIN, rotate: bool = True) -> np.ndarray:
    """Aligned crops of several faces of one image: ``uint8 (N, size, size, 3)`` (N may be 0)."""
    if not faces:
        return np.zeros((0, size, size, 3), np.uint8)
    img = as_rgb(image)
    return np.stack([align_face(img, f, size, margin, rotate) for f in faces])


# -- each model's own crop ------------------------------------------------------------------------
#: how a model wants its faces cut (``ModelSpec.crop``): FaceNet's box-with-margin crop (160 px);
#: dlib's 150 px chip from MTCNN's five landmarks mapped onto dlib's template ("dlib-mtcnn5") or
#: from dlib's own 5-point shape predictor run on the MTCNN box ("dlib-sp5"); and a fused model's
#: two views stacked on the channel axis (FaceNet's crop, then dlib's chip padded to 160): (N, 160, 160, 6)
CROPS = ("facenet", "dlib-mtcnn5", "dlib-sp5", "facenet+dlib-mtcnn5", "facenet+dlib-sp5")
DLIB_CHIP = 150


_predictors: dict = {}


def _shape_predictor():
    """dlib's 5-point shape predictor (numpy, :class:`facekit.runtime.dlib_chip.ShapePredictor5`), loaded once."""
    if "sp5" not in _predictors:
        from facekit.core.cache import dlib_model_file
        from facekit.runtime.dlib_chip import ShapePredictor5

        _predictors["sp5"] = ShapePredictor5(dlib_model_file("shape_predictor_5_face_landmarks.dat"))
    return _predictors["sp5"]


def dlib_chips(image: np.ndarray, faces: list[Face], how: str = "dlib-mtcnn5") -> np.ndarray:
    """dlib's face chips of ``faces``: ``uint8 (N, 150, 150, 3)``, cut as ``dlib.get_face_chip``
    cuts them (padding 0.25), from MTCNN's landmarks (``"dlib-mtcnn5"``) or from dlib's 5-point
    shape predictor on each MTCNN box (``"dlib-sp5"``)."""
    from facekit.runtime.dlib_chip import face_chip, mtcnn_chip

    img = as_rgb(image)
    if not faces:
        return np.zeros((0, DLIB_CHIP, DLIB_CHIP, 3), np.uint8)
    if how == "dlib-mtcnn5":  # a face without landmarks (NaN) gets the shape predictor's chip
        return np.stack([mtcnn_chip(img, f.landmarks, DLIB_CHIP) if np.isfinite(f.landmarks).all()
                         else dlib_chips(img, [f], "dlib-sp5")[0] for f in faces])
    if how == "dlib-sp5":
        sp = _shape_predictor()
        return np.stack([face_chip(img, sp(img, tuple(float(v) for v in f.box)), DLIB_CHIP) for f in faces])
    raise ValueError(f"unknown dlib chip {how!r}; choose 'dlib-mtcnn5' or 'dlib-sp5'")


def align_for(crop: str, image: np.ndarray, faces: list[Face], facenet_crops: np.ndarray | None = None) -> np.ndarray:
    """The crops a model takes (``ModelSpec.crop``, one of :data:`CROPS`) for ``faces`` of ``image``.
    ``facenet_crops``: FaceNet's crops when the caller already cut them (reused, not cut again)."""
    if crop not in CROPS:
        raise ValueError(f"unknown crop {crop!r}; choose one of {CROPS}")
    fn = facenet_crops if facenet_crops is not None else (
        align_faces(image, faces) if crop.startswith("facenet") else None)
    if crop == "facenet":
        return fn
    chips = dlib_chips(image, faces, crop.split("+")[-1])
    if "+" not in crop:
        return chips
    both = np.zeros((len(faces), DEFAULT_SIZE, DEFAULT_SIZE, 6), np.uint8)
    both[..., :3] = fn
    both[:, :DLIB_CHIP, :DLIB_CHIP, 3:] = chips
    return both
