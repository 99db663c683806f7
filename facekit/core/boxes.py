"""Box overlap: IoU and greedy one-to-one matching (notebooks 01 and 06).

Used by :meth:`facekit.detection.detector.Detector.refine`, the live tracker and the demo scene's scoring.

Boxes are ``(x1, y1, x2, y2)`` float pixels, as everywhere in facekit.
"""

from __future__ import annotations

import numpy as np

__all__ = ["iou", "iou_matrix", "greedy_match", "match_boxes"]


def iou(a: np.ndarray, b: np.ndarray) -> float:
    """Intersection over union of two ``(x1, y1, x2, y2)`` boxes (0 when disjoint)."""
    return float(iou_matrix(np.asarray(a, np.float64)[None], np.asarray(b, np.float64)[None])[0, 0])


def iou_matrix(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Pairwise IoU of boxes ``a (N, 4)`` and ``b (M, 4)`` -> float64 ``(N, M)``."""
    a = np.asarray(a, np.float64).reshape(-1, 4)
    b = np.asarray(b, np.float64).reshape(-1, 4)
    x1 = np.maximum(a[:, None, 0], b[None, :, 0])
    y1 = np.maximum(a[:, None, 1], b[None, :, 1])
    x2 = np.minimum(a[:, None, 2], b[None, :, 2])
    y2 = np.minimum(a[:, None, 3], b[None, :, 3])
    inter = np.clip(x2 - x1, 0, None) * np.clip(y2 - y1, 0, None)
    area_a = np.clip(a[:, 2] - a[:, 0], 0, None) * np.clip(a[:, 3] - a[:, 1], 0, None)
    area_b = np.clip(b[:, 2] - b[:, 0], 0, None) * np.clip(b[:, 3] - b[:, 1], 0, None)
    union = area_a[:, None] + area_b[None, :] - inter
    return np.where(union > 0, inter / np.maximum(union, 1e-12), 0.0)


def greedy_match(m: np.ndarray, threshold: float) -> list[tuple[int, int]]:
    """Pairs ``(row, col)`` of an IoU matrix ``m (N, M)``, highest overlap first, each row and
    column used at most once, pairs below ``threshold`` left out."""
    pairs, used_r, used_c = [], set(), set()
    if m.size:
        for flat in np.argsort(-m, axis=None):
            r, c = np.unravel_index(flat, m.shape)
            if m[r, c] < threshold:
                break
            if r in used_r or c in used_c:
                continue
            used_r.add(r)
            used_c.add(c)
            pairs.append((int(r), int(c)))
    return pairs


def match_boxes(a: np.ndarray, b: np.ndarray, min_iou: float) -> list[tuple[int, int]]:
    """Greedy one-to-one matching of boxes ``a`` (K, 4) to ``b`` (M, 4), highest IoU first, pairs
    with IoU >= ``min_iou`` only: ``[(index in a, index in b), ...]``."""
    return greedy_match(iou_matrix(a, b), min_iou)
