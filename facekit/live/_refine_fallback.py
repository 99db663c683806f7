"""TEMPORARY: today's R-Net + O-Net re-detection, until ``Detector.refine`` lands in facekit.detect.

Delete this module (and its one use in recognizer.py) as soon as ``Detector.refine`` exists.
"""

from __future__ import annotations

import numpy as np

from ..detect import Detector, Face
from .geometry import greedy_match, iou_matrix


def refine(detector: Detector, image: np.ndarray, boxes) -> list[Face | None] | None:
    """Re-detect faces near known boxes with MTCNN's last two stages only (R-Net, O-Net).

    Returns one :class:`Face` or None (no face there any more) per box, in frame pixels, or
    None when ``detector`` offers no way to do it (then scan instead). Uses
    ``detector.refine(image, boxes)`` when the detector has one, else its R-Net and O-Net
    (``detector.compiled_nets()``, the traced networks of a fast :class:`Detector`, or the eager
    Keras models of ``detector.mtcnn``) with mtcnn's own box arithmetic, as mtcnn's R-Net and
    O-Net stages do. Taught in notebook 06 (tracking).
    """
    fn = getattr(detector, "refine", None)
    if callable(fn):
        return fn(image, boxes)
    try:
        if callable(getattr(detector, "compiled_nets", None)):
            _, rnet, onet = detector.compiled_nets()  # traced once by the detector: ~10x eager speed
        else:
            rnet, onet = detector.mtcnn.stages[1]._model, detector.mtcnn.stages[2]._model
        from mtcnn.utils.bboxes import (adjust_bboxes, pick_matches, replace_confidence, resize_to_square,
                                        smart_nms_from_bboxes)
        from mtcnn.utils.images import extract_patches
        from mtcnn.utils.landmarks import adjust_landmarks
    except (AttributeError, IndexError, TypeError, ImportError):
        return None
    import contextlib

    import tensorflow as tf

    b = np.asarray(boxes, np.float64).reshape(-1, 4)
    if not len(b):
        return []
    img = np.asarray(image)
    h, w = img.shape[:2]
    centre = (b[:, :2] + b[:, 2:]) / 2
    side = (b[:, 2:] - b[:, :2]).max(axis=1) * 1.15  # a little wider: the face moved since
    rows = np.column_stack([np.zeros(len(b)), centre - side[:, None] / 2, centre + side[:, None] / 2,
                            np.ones(len(b))])
    x = tf.convert_to_tensor(((img.astype(np.float32) - 127.5) / 128.0)[None])
    th = getattr(detector, "thresholds", (0.6, 0.7, 0.7))
    lock = getattr(detector, "_lock", None) or contextlib.nullcontext()
    with lock:
        # R-Net (as mtcnn's StageRNet): re-score and regress the boxes at 24x24
        off, scores = rnet(extract_patches(x, rows, expected_size=(24, 24)))
        rows = replace_confidence(rows, scores)
        rows = adjust_bboxes(rows, off)
        rows = pick_matches(rows, score_threshold=th[1])
        if len(rows):
            rows = smart_nms_from_bboxes(rows, threshold=0.7, method="union", initial_sort=True)
            rows = resize_to_square(rows)
        if len(rows):
            # O-Net (as mtcnn's StageONet): 48x48, final box, five landmarks
            off, lms, scores = onet(extract_patches(x, rows, expected_size=(48, 48)))
            lms = adjust_landmarks(lms, rows)
            rows = replace_confidence(rows, scores)
            rows = adjust_bboxes(rows, off)
            rows = np.concatenate([rows, lms], axis=-1)
            rows = pick_matches(rows, scores_column=5, score_threshold=th[2])
            if len(rows):
                rows = smart_nms_from_bboxes(rows, threshold=0.7, method="min", initial_sort=True)
    out = np.asarray(rows, np.float64)
    out = out.reshape(-1, 16) if out.size and out.shape[-1] == 16 else np.empty((0, 16))
    faces = []
    for r in out:
        box = np.array([np.clip(r[1], 0, w - 1), np.clip(r[2], 0, h - 1), np.clip(r[3], 0, w - 1),
                        np.clip(r[4], 0, h - 1)], np.float32)
        faces.append(Face(box=box, landmarks=r[6:16].reshape(2, 5).T.astype(np.float32).copy(),
                          confidence=float(r[5])))
    result: list[Face | None] = [None] * len(b)
    fb = np.array([f.box for f in faces], np.float64).reshape(-1, 4)
    for bi, fi in greedy_match(iou_matrix(b, fb), 0.2):
        result[bi] = faces[fi]
    return result
