"""MTCNN's cascade (Zhang et al., 2016), written once: P-Net over a pyramid, R-Net, O-Net.

Taught in notebook 01. Every detection in facekit runs :func:`run_cascade` (or, near known
boxes, :func:`refine_rows`): :meth:`facekit.detection.detector.Detector.detect`, ``detect_batch``,
``Detector.refine`` (the live loop) and the teaching trace :func:`trace_cascade`, which only asks
the same code to ``record`` what each stage kept. Like facenet-pytorch's ``detect_face``, the
cascade takes its three networks as arguments (:class:`Networks`), so the ONNX Runtime nets (the
default), the compiled TensorFlow nets, the eager Keras models or int8 ONNX nets all run through the
same arithmetic. The box arithmetic and NMS are mtcnn 1.0's (ported to numpy in
:mod:`facekit.detection.mtcnn_ops`, so that detecting imports neither mtcnn nor TensorFlow), with its
settings:

1. image pyramid: the photo resized so that a ``min_face_size`` face becomes 12 px (P-Net's
   window), then again and again by ``scale_factor`` while the short side is >= 12 px;
2. P-Net: a tiny fully convolutional net slid over every level -> a face-probability map per
   level; windows above ``thresholds[0]`` become candidate boxes (regressed, mapped back to image
   pixels), thinned by non-maximum suppression (NMS, IoU 0.5) within each level then (0.7)
   across levels, and made square;
3. R-Net: each candidate re-scored at 24x24, refined, kept above ``thresholds[1]``, NMS 0.7;
4. O-Net: each survivor re-scored at 48x48, refined, five landmarks, kept above ``thresholds[2]``,
   NMS 0.7 on "min" overlap (a box inside another is dropped) -> the final faces.

No state lives outside the call: two detectors in two threads never share anything here.
:mod:`facekit.teach.trace` draws the four steps (``trace_cascade``, ``plot_cascade``) and measures
the speed/recall trade-off of ``min_face_size``.
"""

from __future__ import annotations

import time
from typing import Callable, NamedTuple, Sequence

import numpy as np

from facekit.detection import mtcnn_ops as ops

__all__ = ["Networks", "run_cascade", "refine_rows", "normalize", "no_rows", "NMS"]

#: mtcnn 1.0's NMS settings: (IoU threshold, overlap method) after each step.
NMS = {"pnet_level": (0.5, "union"), "pnet_all": (0.7, "union"), "rnet": (0.7, "union"), "onet": (0.7, "min")}
#: R-Net/O-Net input sides in pixels.
RNET_SIZE, ONET_SIZE = 24, 48


class Networks(NamedTuple):
    """MTCNN's three networks as callables on float32 NHWC images in [-1, 1] (:func:`normalize`).

    pnet: (B, H, W, 3) -> (box regression (B, h, w, 4), probabilities (B, h, w, 2));
    rnet: (N, 24, 24, 3) -> (offsets (N, 4), probabilities (N, 2));
    onet: (N, 48, 48, 3) -> (offsets (N, 4), landmarks (N, 10), probabilities (N, 2)).
    Outputs may be numpy arrays or TensorFlow tensors. ``images``: which library resizes the
    pyramid levels and cuts the R-/O-Net patches: ``"numpy"`` (default; numpy and OpenCV, no
    TensorFlow import) or ``"tensorflow"`` (mtcnn's own ``tf.image`` calls: the reference path of
    ``Detector(backend="tensorflow")``, equal to ``mtcnn.MTCNN().detect_faces``).
    """

    pnet: Callable
    rnet: Callable
    onet: Callable
    images: str = "numpy"


class _NumpyImages:
    """The cascade's image operations in numpy/OpenCV (:mod:`facekit.detection.mtcnn_ops`)."""

    normalize = staticmethod(ops.normalize_images)
    scale = staticmethod(ops.scale_images)
    patches = staticmethod(ops.extract_patches)
    batch = staticmethod(lambda v: np.ascontiguousarray(v, np.float32))


class _TensorflowImages:
    """The same operations with mtcnn's ``tf.image`` calls (imports TensorFlow)."""

    @staticmethod
    def normalize(images):
        import tensorflow as tf

        return tf.convert_to_tensor(ops.normalize_images(images))

    @staticmethod
    def scale(x, s: float):
        from mtcnn.utils.images import scale_images

        return scale_images(x, float(s))

    @staticmethod
    def patches(x, rows, expected_size):
        from mtcnn.utils.images import extract_patches

        return extract_patches(x, rows, expected_size=expected_size)

    @staticmethod
    def batch(v):
        import tensorflow as tf

        return v if isinstance(v, tf.Tensor) else tf.convert_to_tensor(np.asarray(v, np.float32))


def _images(nets: Networks):
    if nets.images not in ("numpy", "tensorflow"):
        raise ValueError(f"Networks.images must be 'numpy' or 'tensorflow', got {nets.images!r}")
    return _TensorflowImages if nets.images == "tensorflow" else _NumpyImages


def normalize(images: np.ndarray) -> np.ndarray:
    """uint8 (B, H, W, 3) -> float32 ``(x - 127.5) / 128`` (mtcnn's ``normalize_images``)."""
    return ops.normalize_images(images)


def no_rows(n: int = 16) -> np.ndarray:
    """An empty ``(0, n)`` float array of cascade rows (what a stage returns when nothing survives)."""
    return np.empty((0, n))


def _arrays(outputs) -> list[np.ndarray]:
    return [np.asarray(v) for v in outputs]


def _pnet_stage(x, nets: Networks, scales, threshold: float, record: dict | None) -> np.ndarray:
    im = _images(nets)
    batch = int(x.shape[0])
    per_level = []
    for i, s in enumerate(scales):
        xs = im.scale(x, float(s))
        reg, prob = _arrays(nets.pnet(im.batch(xs)))
        b = ops.upscale_bboxes(ops.generate_bounding_box(reg, prob, threshold), np.full(batch, float(s)))
        if record is not None:
            record["level_shapes"].append(tuple(int(v) for v in xs.shape[1:3]))
            record["pnet_maps"].append(np.asarray(prob[0, :, :, 1], np.float32))
            record["pnet_windows"].append(b[:, :6].copy())
            record["pnet_window_level"].append(np.full(len(b), i))
        if len(b):
            t, m = NMS["pnet_level"]
            per_level.append(ops.smart_nms_from_bboxes(b, threshold=t, method=m, initial_sort=False))
    if not per_level:
        return no_rows(6)
    t, m = NMS["pnet_all"]
    return ops.resize_to_square(ops.smart_nms_from_bboxes(np.concatenate(per_level), threshold=t, method=m))


def _rnet_stage(x, nets: Networks, rows: np.ndarray, threshold: float, record: dict | None) -> np.ndarray:
    if not len(rows):
        return no_rows(6)
    im = _images(nets)
    off, scores = _arrays(nets.rnet(im.batch(im.patches(x, rows, (RNET_SIZE,) * 2))))
    if record is not None:
        record["rnet_scores"] = scores[:, 1]
    rows = ops.pick_matches(ops.adjust_bboxes(ops.replace_confidence(rows, scores), off), score_threshold=threshold)
    if not len(rows):
        return no_rows(6)
    t, m = NMS["rnet"]
    return ops.resize_to_square(ops.smart_nms_from_bboxes(rows, threshold=t, method=m))


def _onet_stage(x, nets: Networks, rows: np.ndarray, threshold: float, record: dict | None) -> np.ndarray:
    if not len(rows):
        return no_rows()
    im = _images(nets)
    off, lms, scores = _arrays(nets.onet(im.batch(im.patches(x, rows, (ONET_SIZE,) * 2))))
    if record is not None:
        record["onet_scores"] = scores[:, 1]
    lms = ops.adjust_landmarks(lms, rows)
    rows = ops.adjust_bboxes(ops.replace_confidence(rows, scores), off)
    rows = ops.pick_matches(np.concatenate([rows, lms], axis=-1), scores_column=5, score_threshold=threshold)
    if not len(rows):
        return no_rows()
    t, m = NMS["onet"]
    return ops.smart_nms_from_bboxes(rows, threshold=t, method=m)


def _fit(rows: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    """Boxes clipped to the image (mtcnn's ``fit_to_image``; landmarks are left as found)."""
    if not len(rows):
        return no_rows()
    rows = np.asarray(rows, np.float64)
    shapes = np.tile(np.asarray([[shape[0], shape[1], 3]]), (int(rows[:, 0].max()) + 1, 1))
    return np.asarray(ops.limit_bboxes(rows, images_shapes=shapes, limit_landmarks=False), np.float64).reshape(-1, 16)


def run_cascade(images: np.ndarray, nets: Networks, scales: Sequence[float],
                thresholds: tuple[float, float, float], record: dict | None = None) -> np.ndarray:
    """MTCNN on a batch of same-size RGB uint8 images ``(B, H, W, 3)`` (or one ``(H, W, 3)``).

    ``scales``: the P-Net pyramid (:func:`facekit.detection.detector.scale_pyramid`); ``thresholds``: P-, R-,
    O-Net score cuts. Returns mtcnn's rows, float64 ``(n, 16)``: image index, x1, y1, x2, y2,
    score, the five landmark x's, then the five y's, in pixels of the images given. ``record``:
    a dict that, when given, is filled with what each stage kept (see :func:`trace_cascade`).
    """
    imgs = np.asarray(images)
    if imgs.ndim == 3:
        imgs = imgs[None]
    if record is not None:
        record.update(level_shapes=[], pnet_maps=[], pnet_windows=[], pnet_window_level=[], seconds={},
                      rnet_scores=np.zeros(0), onet_scores=np.zeros(0))
    nets = Networks(*nets)
    x = _images(nets).normalize(imgs)
    t0 = time.perf_counter()
    cand = _pnet_stage(x, nets, scales, thresholds[0], record)
    t1 = time.perf_counter()
    kept = _rnet_stage(x, nets, cand, thresholds[1], record)
    t2 = time.perf_counter()
    rows = _fit(_onet_stage(x, nets, kept, thresholds[2], record), imgs.shape[1:3])
    if record is not None:
        record.update(pnet_boxes=cand, rnet_boxes=kept)
        record["seconds"] = {"pyramid + P-Net": t1 - t0, "R-Net": t2 - t1, "O-Net": time.perf_counter() - t2}
    return rows


def refine_rows(image: np.ndarray, nets: Networks, boxes: np.ndarray, thresholds: tuple[float, float, float],
                widen: float = 1.15) -> np.ndarray:
    """R-Net and O-Net only, started from known ``boxes`` (K, 4) instead of P-Net's candidates.

    Each box is made square around its centre and ``widen``-ed (the face moved since it was
    found), then goes through the same R-Net and O-Net steps as :func:`run_cascade`. Returns rows
    as :func:`run_cascade` does (for one image). Used by the live loop (notebook 06) to follow
    faces without scanning the whole pyramid.
    """
    b = np.asarray(boxes, np.float64).reshape(-1, 4)
    img = np.asarray(image)
    if not len(b):
        return no_rows()
    centre = (b[:, :2] + b[:, 2:]) / 2
    side = (b[:, 2:] - b[:, :2]).max(axis=1) * float(widen)
    rows = np.column_stack([np.zeros(len(b)), centre - side[:, None] / 2, centre + side[:, None] / 2, np.ones(len(b))])
    nets = Networks(*nets)
    x = _images(nets).normalize(img[None])
    kept = _rnet_stage(x, nets, rows, thresholds[1], None)
    return _fit(_onet_stage(x, nets, kept, thresholds[2], None), img.shape[:2])


