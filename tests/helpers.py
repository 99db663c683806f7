"""Small helpers shared by several test files (one copy each; fixtures live in conftest.py)."""

from __future__ import annotations

import numpy as np

#: the sample photo the image and light tests use: one face, Ben Affleck
SAMPLE_FACE = "train/ben_afflek/httpcsvkmeuaeccjpg.jpg"

#: the live tests' gallery (sample training photos) and the stranger they must call "unknown"
ENROLLED = ["ben_afflek", "elton_john", "jerry_seinfeld", "madonna"]
STRANGER = "mindy_kaling"


def unit(rng, n: int, d: int = 128, dtype=np.float32) -> np.ndarray:
    """``n`` random unit vectors of ``d`` dims."""
    x = rng.normal(size=(n, d)).astype(dtype)
    return x / np.linalg.norm(x, axis=1, keepdims=True)


def iou(a, b) -> float:
    """Intersection over union of two ``(x1, y1, x2, y2)`` boxes, written out independently of
    facekit's own (which the tests check)."""
    ix = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    iy = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - ix * iy
    return float(ix * iy / union) if union > 0 else 0.0
