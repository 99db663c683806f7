"""MTCNN's array arithmetic in numpy: the box steps of the cascade and its two image operations.

Taught in notebook 01 (through :mod:`facekit.detection.cascade`). The box functions are mtcnn 1.0's
``mtcnn.utils.bboxes`` / ``landmarks`` (MIT licence, Ivan de Paz Centeno), ported line for line so
that the cascade needs neither the mtcnn package at run time nor TensorFlow: importing anything
from ``mtcnn`` runs its ``__init__``, which imports TensorFlow (5 s, ~0.6 GB). Same results as the
originals (the cascade with the TensorFlow networks equals ``mtcnn.MTCNN().detect_faces``, tested).

Rows are mtcnn's: float64 ``(n, 6)`` image index, x1, y1, x2, y2, score (+ 10 landmark columns
after O-Net: five x's, then five y's), in pixels.

The image operations replace TensorFlow's ``tf.image.resize(method="area")`` (the pyramid) and
``tf.image.crop_and_resize`` (R-Net/O-Net patches, bilinear, 0 outside the image) on float32
NHWC batches: :func:`area_resize` (OpenCV's ``INTER_AREA`` when shrinking, within 1e-4 of
TensorFlow's on [-1, 1] images; an exact area average in numpy when enlarging, where OpenCV's
INTER_AREA interpolates instead) and :func:`crop_and_resize` (TensorFlow's arithmetic in float32:
equal bit for bit in our tests).
"""

from __future__ import annotations

import numpy as np

__all__ = ["generate_bounding_box", "upscale_bboxes", "smart_nms_from_bboxes", "resize_to_square",
           "replace_confidence", "adjust_bboxes", "pick_matches", "limit_bboxes", "adjust_landmarks",
           "normalize_images", "scale_images", "extract_patches", "area_resize", "crop_and_resize"]


# -- boxes (mtcnn.utils.bboxes / landmarks) -----------------------------------------------------
def _sort_desc(rows: np.ndarray, scores: np.ndarray) -> np.ndarray:
    """Rows by descending score; equal scores keep their order (a stable sort).

    mtcnn's ``sort_by_scores`` uses numpy's default (unstable) sort. P-Net's softmax saturates, so
    many windows of a clear face tie at exactly 1.0, and the unstable order of those ties depends on
    every other row of the batch: the same photo got boxes up to 5.6 px apart when detected alone or
    with other photos (7 of 200 LFW photos). Stable, each photo's rows keep their own raster order, and NMS keeps the
    same window whatever else is in the batch (``test_detect_batch_equals_detect``).
    """
    return rows[np.argsort(-scores, kind="stable")]


def generate_bounding_box(reg, prob, threshold: float, stride: int = 2, cell: int = 12) -> np.ndarray:
    """P-Net maps -> candidate rows (n, 6), highest score first. reg: (B, h, w, 4) regression;
    prob: (B, h, w, 2) softmax; a window is a ``cell``-px square every ``stride`` px of the level."""
    reg, score = np.asarray(reg), np.asarray(prob)[..., 1]
    b, y, x = np.where(score > threshold)
    r = reg[b, y, x].T  # (4, n)
    x1, y1 = x * stride + 1, y * stride + 1  # int64, as mtcnn's (its windows start 1 px in)
    x2, y2 = x * stride + cell, y * stride + cell
    w, h = x2 - x1, y2 - y1
    rows = np.stack([b, x1 + r[0] * w, y1 + r[1] * h, x2 + r[2] * w, y2 + r[3] * h, score[b, y, x]], axis=0).T
    return _sort_desc(rows, rows[:, -1])


def upscale_bboxes(rows: np.ndarray, scales: np.ndarray) -> np.ndarray:
    """Boxes of a pyramid level back to image pixels (divided by that level's scale), in place."""
    rows[:, 1:5] = rows[:, 1:5] / np.expand_dims(scales[rows[:, 0].astype(int)], -1)
    return rows


def _iou(boxes: np.ndarray, method: str) -> np.ndarray:
    """(n, n) overlap of boxes (n, 4): intersection over union, or over the smaller box ("min")."""
    area = (boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1])
    a, b = boxes[None], boxes[:, None]
    inter = (np.maximum(0, np.minimum(a[:, :, 2], b[:, :, 2]) - np.maximum(a[:, :, 0], b[:, :, 0]))
             * np.maximum(0, np.minimum(a[:, :, 3], b[:, :, 3]) - np.maximum(a[:, :, 1], b[:, :, 1])))
    if method == "union":
        return inter / (area[:, None] + area[None, :] - inter)
    if method == "min":
        return inter / np.minimum(area[:, None], area[None, :])
    raise ValueError("method should be either 'union' or 'min'")


def smart_nms_from_bboxes(rows: np.ndarray, threshold: float, method: str = "union",
                          initial_sort: bool = True) -> np.ndarray:
    """mtcnn's NMS, per image: a box is dropped when any higher-scored box (kept or not) overlaps
    it by more than ``threshold``."""
    if initial_sort:
        rows = _sort_desc(rows, rows[:, 5])
    out = []
    for image_id in np.unique(rows[:, 0]):
        r = rows[rows[:, 0] == image_id]
        failed = (_iou(r[:, 1:5], method) > threshold).astype(int) * np.triu(np.ones((len(r), len(r))), k=1)
        out.append(r[np.where(failed.sum(axis=0) == 0)[0]])
    return np.concatenate(out, axis=0) if out else np.empty((0, 6))


def resize_to_square(rows: np.ndarray) -> np.ndarray:
    """Boxes grown to squares around their centres (side: the longer one)."""
    rows = rows.copy()
    h, w = rows[:, 4] - rows[:, 2], rows[:, 3] - rows[:, 1]
    side = np.maximum(w, h)
    rows[:, 1] = rows[:, 1] + w * 0.5 - side * 0.5
    rows[:, 2] = rows[:, 2] + h * 0.5 - side * 0.5
    rows[:, 3:5] = rows[:, 1:3] + np.tile(side, (2, 1)).T
    return rows


def replace_confidence(rows: np.ndarray, scores) -> np.ndarray:
    """The score column replaced by the face probability (last column of ``scores``), in place."""
    rows[:, -1] = np.asarray(scores)[:, -1]
    return rows


def adjust_bboxes(rows: np.ndarray, offsets) -> np.ndarray:
    """Boxes moved by regression ``offsets`` (n, 4), in units of the box's (w + 1, h + 1)."""
    rows = rows.copy()
    w, h = rows[:, 3] - rows[:, 1] + 1, rows[:, 4] - rows[:, 2] + 1
    rows[:, 1:5] += np.asarray(offsets) * np.stack([w, h, w, h], axis=-1)
    return rows


def pick_matches(rows: np.ndarray, scores_column: int = -1, score_threshold: float = 0.7) -> np.ndarray:
    """Rows whose score is above ``score_threshold``."""
    return rows[np.where(rows[:, scores_column] > score_threshold)[0]]


def limit_bboxes(rows: np.ndarray, images_shapes: np.ndarray, limit_landmarks: bool = True) -> np.ndarray:
    """Boxes clipped to [0, width - 1] x [0, height - 1] of their image (``images_shapes`` (B, 3):
    height, width, channels)."""
    rows = rows.copy()
    s = images_shapes[rows[:, 0].astype(int)]
    for cols, lim in ((slice(1, 4, 2), s[:, 1:2]), (slice(2, 5, 2), s[:, 0:1])):
        rows[:, cols] = np.minimum(np.maximum(rows[:, cols], 0), lim - 1)
    if limit_landmarks:
        rows[:, 6:11] = np.minimum(np.maximum(rows[:, 6:11], 0), s[:, 1:2] - 1)
        rows[:, 11:16] = np.minimum(np.maximum(rows[:, 11:16], 0), s[:, 0:1] - 1)
    return rows


def adjust_landmarks(landmarks, rows: np.ndarray) -> np.ndarray:
    """O-Net's landmarks (n, 10: five x's then five y's, in [0, 1] of the box) -> image pixels."""
    lm = np.array(landmarks, copy=True)
    w, h = rows[:, 3:4] - rows[:, 1:2] + 1, rows[:, 4:5] - rows[:, 2:3] + 1
    lm[:, 0:5] = w * lm[:, 0:5] + rows[:, 1:2] - 1
    lm[:, 5:10] = h * lm[:, 5:10] + rows[:, 2:3] - 1
    return lm


# -- images (tf.image.resize "area", tf.image.crop_and_resize) -----------------------------------
def normalize_images(images: np.ndarray) -> np.ndarray:
    """uint8 (B, H, W, 3) -> float32 ``(x - 127.5) / 128`` in [-1, 1] (mtcnn's ``normalize_images``)."""
    return (np.asarray(images, np.float32) - 127.5) / 128.0


def _area_axis(x: np.ndarray, n_out: int, axis: int) -> np.ndarray:
    """Area average of float32 ``x`` along ``axis`` to ``n_out`` cells (TensorFlow's arithmetic:
    cell y covers input [y * s, (y + 1) * s), s = n_in / n_out, indices clamped to the image)."""
    n_in = x.shape[axis]
    s = np.float32(n_in) / np.float32(n_out)
    lo = np.arange(n_out, dtype=np.float32) * s
    hi = np.arange(1, n_out + 1, dtype=np.float32) * s
    first = np.floor(lo).astype(int)
    k = int((np.ceil(hi).astype(int) - first).max())
    out = np.zeros(x.shape[:axis] + (n_out,) + x.shape[axis + 1:], np.float32)
    shape = [1] * x.ndim
    shape[axis] = n_out
    for j in range(k):
        i = first + j
        w = np.clip(np.minimum(i + 1, hi) - np.maximum(i, lo), 0, None).astype(np.float32)
        out += np.take(x, np.minimum(i, n_in - 1), axis=axis) * w.reshape(shape)
    return out / s


def area_resize(x: np.ndarray, out_hw: tuple[int, int]) -> np.ndarray:
    """float32 (B, H, W, C) -> (B, oh, ow, C) by area averaging (``tf.image.resize(method="area")``)."""
    import cv2

    x = np.asarray(x, np.float32)
    oh, ow = int(out_hw[0]), int(out_hw[1])
    if oh <= x.shape[1] and ow <= x.shape[2] and x.shape[3] <= 4:
        return np.stack([cv2.resize(im, (ow, oh), interpolation=cv2.INTER_AREA).reshape(oh, ow, -1) for im in x])
    return _area_axis(_area_axis(x, ow, 2), oh, 1)


def crop_and_resize(images: np.ndarray, boxes: np.ndarray, index: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """``tf.image.crop_and_resize`` (bilinear, 0 outside the image) in numpy, float32 arithmetic.

    images: float32 (B, H, W, C); boxes: (n, 4) ``y1, x1, y2, x2`` as fractions of (H - 1, W - 1)
    (as TensorFlow reads them); index: (n,) image of each box. Returns float32 (n, ch, cw, C).
    """
    x = np.asarray(images, np.float32)
    _, H, W, C = x.shape
    ch, cw = size
    y1, x1, y2, x2 = np.asarray(boxes, np.float32).T
    iy = y1[:, None] * np.float32(H - 1) + np.arange(ch, dtype=np.float32) * ((y2 - y1) * np.float32(H - 1)
                                                                            / np.float32(ch - 1))[:, None]
    ix = x1[:, None] * np.float32(W - 1) + np.arange(cw, dtype=np.float32) * ((x2 - x1) * np.float32(W - 1)
                                                                            / np.float32(cw - 1))[:, None]
    inside = ((iy >= 0) & (iy <= H - 1))[:, :, None] & ((ix >= 0) & (ix <= W - 1))[:, None, :]
    ty, tx = np.floor(iy), np.floor(ix)
    ly, lx = (iy - ty)[:, :, None, None], (ix - tx)[:, None, :, None]
    # the four neighbours as rows of the (B * H * W, C) pixel table: one gather each
    base = np.asarray(index, np.intp)[:, None] * (H * W)
    top = (base + np.clip(ty, 0, H - 1).astype(np.intp) * W)[:, :, None]
    bottom = (base + np.clip(np.ceil(iy), 0, H - 1).astype(np.intp) * W)[:, :, None]
    left = np.clip(tx, 0, W - 1).astype(np.intp)[:, None, :]
    right = np.clip(np.ceil(ix), 0, W - 1).astype(np.intp)[:, None, :]
    px = x.reshape(-1, C)
    tl, tr, bl, br = px[top + left], px[top + right], px[bottom + left], px[bottom + right]
    upper = tl + (tr - tl) * lx
    out = upper + (bl + (br - bl) * lx - upper) * ly
    out[~inside] = 0.0
    return out.astype(np.float32, copy=False)


def scale_images(x: np.ndarray, scale: float) -> np.ndarray:
    """One pyramid level: ``x`` (B, H, W, C) area-resized to ``int(side * scale)`` (mtcnn's sizes)."""
    oh, ow = (np.asarray(x.shape[1:3]) * scale).astype(int)
    return area_resize(x, (oh, ow))


def extract_patches(x: np.ndarray, rows: np.ndarray, expected_size: tuple[int, int]) -> np.ndarray:
    """Each row's box cut out of its image of ``x`` (B, H, W, C) and resized to ``expected_size``
    (mtcnn's ``extract_patches``: box corners divided by the image's width and height)."""
    H, W = x.shape[1:3]
    coords = rows[:, [2, 1, 4, 3]] / np.asarray([[H, W, H, W]])
    return crop_and_resize(x, coords, rows[:, 0].astype(int), expected_size)
