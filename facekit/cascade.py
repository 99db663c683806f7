"""MTCNN's cascade (Zhang et al., 2016), written once: P-Net over a pyramid, R-Net, O-Net.

Taught in notebook 01. Every detection in facekit runs :func:`run_cascade` (or, near known
boxes, :func:`refine_rows`): :meth:`facekit.detect.Detector.detect`, ``detect_batch``,
``Detector.refine`` (the live loop) and the teaching trace :func:`trace_cascade`, which only asks
the same code to ``record`` what each stage kept. Like facenet-pytorch's ``detect_face``, the
cascade takes its three networks as arguments (:class:`Networks`), so the compiled TensorFlow
nets, the eager Keras models or int8 ONNX nets all run through the same arithmetic. The box
arithmetic and NMS are mtcnn 1.0's public ``mtcnn.utils`` functions, with its settings:

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
:func:`plot_cascade` draws the four steps; :func:`sweep_min_face_size` measures the speed/recall
trade-off of ``min_face_size``.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Callable, NamedTuple, Sequence

import numpy as np

from .detect import Detector, Face, get_detector, scale_pyramid
from .io import as_rgb

__all__ = ["Networks", "run_cascade", "refine_rows", "normalize", "CascadeTrace", "trace_cascade",
           "plot_cascade", "plot_pyramid", "sweep_min_face_size", "NMS"]

#: mtcnn 1.0's NMS settings: (IoU threshold, overlap method) after each step.
NMS = {"pnet_level": (0.5, "union"), "pnet_all": (0.7, "union"), "rnet": (0.7, "union"), "onet": (0.7, "min")}
#: R-Net/O-Net input sides in pixels.
RNET_SIZE, ONET_SIZE = 24, 48


class Networks(NamedTuple):
    """MTCNN's three networks as callables on float32 NHWC images in [-1, 1] (:func:`normalize`).

    pnet: (B, H, W, 3) -> (box regression (B, h, w, 4), probabilities (B, h, w, 2));
    rnet: (N, 24, 24, 3) -> (offsets (N, 4), probabilities (N, 2));
    onet: (N, 48, 48, 3) -> (offsets (N, 4), landmarks (N, 10), probabilities (N, 2)).
    Outputs may be TensorFlow tensors or numpy arrays.
    """

    pnet: Callable
    rnet: Callable
    onet: Callable


def normalize(images: np.ndarray):
    """uint8 (B, H, W, 3) -> float32 tensor ``(x - 127.5) / 128`` (mtcnn's ``normalize_images``)."""
    import tensorflow as tf

    return tf.convert_to_tensor((np.asarray(images, np.float32) - 127.5) / 128.0)


def _tensor(v):
    import tensorflow as tf

    return v if isinstance(v, tf.Tensor) else tf.convert_to_tensor(np.asarray(v, np.float32))


def _none(n: int = 16) -> np.ndarray:
    return np.empty((0, n))


def _pnet_stage(x, pnet, scales, threshold: float, record: dict | None) -> np.ndarray:
    from mtcnn.utils.bboxes import generate_bounding_box, resize_to_square, smart_nms_from_bboxes, upscale_bboxes
    from mtcnn.utils.images import scale_images

    batch = int(x.shape[0])
    per_level = []
    for i, s in enumerate(scales):
        xs = scale_images(x, float(s))
        reg, prob = (_tensor(v) for v in pnet(xs))
        b = upscale_bboxes(generate_bounding_box(reg, prob, threshold), np.full(batch, float(s)))
        if record is not None:
            record["level_shapes"].append(tuple(int(v) for v in xs.shape[1:3]))
            record["pnet_maps"].append(np.asarray(prob[0, :, :, 1], np.float32))
            record["pnet_windows"].append(b[:, :6].copy())
            record["pnet_window_level"].append(np.full(len(b), i))
        if len(b):
            t, m = NMS["pnet_level"]
            per_level.append(smart_nms_from_bboxes(b, threshold=t, method=m, initial_sort=False))
    if not per_level:
        return _none(6)
    t, m = NMS["pnet_all"]
    return resize_to_square(smart_nms_from_bboxes(np.concatenate(per_level), threshold=t, method=m, initial_sort=True))


def _rnet_stage(x, rnet, rows: np.ndarray, threshold: float, record: dict | None) -> np.ndarray:
    from mtcnn.utils.bboxes import adjust_bboxes, pick_matches, replace_confidence, resize_to_square, smart_nms_from_bboxes
    from mtcnn.utils.images import extract_patches

    if not len(rows):
        return _none(6)
    off, scores = (_tensor(v) for v in rnet(_tensor(extract_patches(x, rows, expected_size=(RNET_SIZE,) * 2))))
    if record is not None:
        record["rnet_scores"] = np.asarray(scores)[:, 1]
    rows = pick_matches(adjust_bboxes(replace_confidence(rows, scores), off), score_threshold=threshold)
    if not len(rows):
        return _none(6)
    t, m = NMS["rnet"]
    return resize_to_square(smart_nms_from_bboxes(rows, threshold=t, method=m, initial_sort=True))


def _onet_stage(x, onet, rows: np.ndarray, threshold: float, record: dict | None) -> np.ndarray:
    from mtcnn.utils.bboxes import adjust_bboxes, pick_matches, replace_confidence, smart_nms_from_bboxes
    from mtcnn.utils.images import extract_patches
    from mtcnn.utils.landmarks import adjust_landmarks

    if not len(rows):
        return _none()
    off, lms, scores = (_tensor(v) for v in onet(_tensor(extract_patches(x, rows, expected_size=(ONET_SIZE,) * 2))))
    if record is not None:
        record["onet_scores"] = np.asarray(scores)[:, 1]
    lms = adjust_landmarks(lms, rows)
    rows = adjust_bboxes(replace_confidence(rows, scores), off)
    rows = pick_matches(np.concatenate([rows, lms], axis=-1), scores_column=5, score_threshold=threshold)
    if not len(rows):
        return _none()
    t, m = NMS["onet"]
    return smart_nms_from_bboxes(rows, threshold=t, method=m, initial_sort=True)


def _fit(rows: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    """Boxes clipped to the image (mtcnn's ``fit_to_image``; landmarks are left as found)."""
    from mtcnn.utils.bboxes import limit_bboxes

    if not len(rows):
        return _none()
    rows = np.asarray(rows, np.float64)
    shapes = np.tile(np.asarray([[shape[0], shape[1], 3]]), (int(rows[:, 0].max()) + 1, 1))
    return np.asarray(limit_bboxes(rows, images_shapes=shapes, limit_landmarks=False), np.float64).reshape(-1, 16)


def run_cascade(images: np.ndarray, nets: Networks, scales: Sequence[float],
                thresholds: tuple[float, float, float], record: dict | None = None) -> np.ndarray:
    """MTCNN on a batch of same-size RGB uint8 images ``(B, H, W, 3)`` (or one ``(H, W, 3)``).

    ``scales``: the P-Net pyramid (:func:`facekit.detect.scale_pyramid`); ``thresholds``: P-, R-,
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
    x = normalize(imgs)
    t0 = time.perf_counter()
    cand = _pnet_stage(x, nets.pnet, scales, thresholds[0], record)
    t1 = time.perf_counter()
    kept = _rnet_stage(x, nets.rnet, cand, thresholds[1], record)
    t2 = time.perf_counter()
    rows = _fit(_onet_stage(x, nets.onet, kept, thresholds[2], record), imgs.shape[1:3])
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
        return _none()
    centre = (b[:, :2] + b[:, 2:]) / 2
    side = (b[:, 2:] - b[:, :2]).max(axis=1) * float(widen)
    rows = np.column_stack([np.zeros(len(b)), centre - side[:, None] / 2, centre + side[:, None] / 2, np.ones(len(b))])
    x = normalize(img[None])
    kept = _rnet_stage(x, nets.rnet, rows, thresholds[1], None)
    return _fit(_onet_stage(x, nets.onet, kept, thresholds[2], None), img.shape[:2])


@dataclass
class CascadeTrace:
    """Everything MTCNN computed for one image. Boxes are float (K, 5) ``x1, y1, x2, y2, score``
    in pixels of ``image`` (the photo, downscaled when its long side exceeds the detector's
    ``max_side``).

    scales: pyramid scale per level; level_shapes: (H, W) of each level; pnet_maps: P-Net face
    probability per level, float32 (h_l, w_l), one cell per 2-px step of its 12-px window;
    pnet_windows / pnet_window_level: every window above the P-Net threshold (before NMS) and its
    level; pnet_boxes: candidates after NMS (squared) = R-Net's input; rnet_scores: R-Net score of
    each candidate; rnet_boxes: R-Net survivors (refined, NMS) = O-Net's input; onet_scores: O-Net
    score of each; faces: final detections (as ``Detector.detect`` returns); seconds: time per stage.
    """

    image: np.ndarray
    min_face_size: float
    thresholds: tuple[float, float, float]
    scales: np.ndarray
    level_shapes: list[tuple[int, int]]
    pnet_maps: list[np.ndarray]
    pnet_windows: np.ndarray
    pnet_window_level: np.ndarray
    pnet_boxes: np.ndarray
    rnet_scores: np.ndarray
    rnet_boxes: np.ndarray
    onet_scores: np.ndarray
    faces: list[Face]
    seconds: dict = field(default_factory=dict)

    def counts(self) -> dict:
        """How many boxes survive each step (the cascade's funnel)."""
        return {"P-Net windows": len(self.pnet_windows), "after P-Net NMS": len(self.pnet_boxes),
                "after R-Net": len(self.rnet_boxes), "after O-Net (faces)": len(self.faces)}


def trace_cascade(image: np.ndarray, *, detector: Detector | None = None, min_face_size: float | None = None,
                  thresholds: tuple[float, float, float] | None = None) -> CascadeTrace:
    """Run MTCNN on one RGB image and keep what every stage kept (:class:`CascadeTrace`).

    The same call as ``detector.detect`` (its networks, pyramid and thresholds; the shared
    detector by default), with :func:`run_cascade` asked to record its steps: ``trace.faces``
    equals ``detector.detect(image)``.
    """
    det = detector or get_detector()
    img, factor = det.working_image(image)
    mfs = float(det.min_face_size if min_face_size is None else min_face_size) * factor
    th = tuple(float(t) for t in (det.thresholds if thresholds is None else thresholds))
    scales = scale_pyramid(img.shape[0], img.shape[1], mfs, det.scale_factor)
    rec: dict = {}
    rows = run_cascade(img, det.networks(), scales, th, record=rec) if len(scales) else _none()
    faces = sorted((Face.from_mtcnn_row(r) for r in rows), key=lambda f: -f.confidence)

    def boxes(a) -> np.ndarray:
        a = np.asarray(a)
        return a[:, 1:6] if len(a) else np.zeros((0, 5))

    windows = rec.get("pnet_windows", [])
    return CascadeTrace(
        image=img, min_face_size=mfs, thresholds=th, scales=scales, level_shapes=rec.get("level_shapes", []),
        pnet_maps=rec.get("pnet_maps", []),
        pnet_windows=boxes(np.concatenate(windows)) if windows else np.zeros((0, 5)),
        pnet_window_level=np.concatenate(rec["pnet_window_level"]) if windows else np.zeros(0, int),
        pnet_boxes=boxes(rec.get("pnet_boxes", [])), rnet_scores=rec.get("rnet_scores", np.zeros(0)),
        rnet_boxes=boxes(rec.get("rnet_boxes", [])), onet_scores=rec.get("onet_scores", np.zeros(0)),
        faces=faces, seconds=rec.get("seconds", {}))


def _boxes(ax, boxes: np.ndarray, color, lw: float = 1.0, alpha: float = 1.0) -> None:
    from matplotlib.patches import Rectangle

    for x1, y1, x2, y2 in np.asarray(boxes)[:, :4]:
        ax.add_patch(Rectangle((x1, y1), x2 - x1, y2 - y1, fill=False, lw=lw, ec=color, alpha=alpha))


def plot_cascade(trace: CascadeTrace, level: int | None = None, figsize: tuple[float, float] = (16, 4.6)):
    """Four panels: a P-Net probability map, P-Net's windows, R-Net's verdicts, O-Net's faces.

    ``level``: pyramid level whose probability map is shown (default: the level where the
    best final face best fits P-Net's 12-px window). Kept boxes are green, rejected red.
    Returns the figure.
    """
    import matplotlib.pyplot as plt

    from .viz import draw_faces

    t = trace
    fig, axes = plt.subplots(1, 4, figsize=figsize)
    if level is None:
        level = 0
        if t.faces:
            size = max(t.faces[0].width, t.faces[0].height)
            level = int(np.argmin(np.abs(np.log(size * t.scales / 12.0))))
    level = int(np.clip(level, 0, max(len(t.scales) - 1, 0)))
    ax = axes[0]
    if t.pnet_maps:
        ax.imshow(t.pnet_maps[level], cmap="magma", vmin=0, vmax=1)
        lh, lw = t.level_shapes[level]
        ax.set_title(f"1. P-Net face probability, level {level}\n(image at {lw}x{lh}, scale {t.scales[level]:.3f})",
                     fontsize=9)
    ax.set_axis_off()
    ax = axes[1]
    ax.imshow(t.image)
    _boxes(ax, t.pnet_windows, "yellow", lw=0.5, alpha=0.35)
    _boxes(ax, t.pnet_boxes, "lime", lw=1.0)
    ax.set_title(f"2. P-Net: {len(t.pnet_windows)} windows > {t.thresholds[0]:g} (yellow),\n"
                 f"{len(t.pnet_boxes)} after NMS (green)", fontsize=9)
    ax.set_axis_off()
    ax = axes[2]
    ax.imshow(t.image)
    keep = t.rnet_scores > t.thresholds[1]
    _boxes(ax, t.pnet_boxes[~keep], "red", lw=0.6, alpha=0.6)
    _boxes(ax, t.rnet_boxes, "lime", lw=1.5)
    ax.set_title(f"3. R-Net: {int(keep.sum())} of {len(t.pnet_boxes)} score > {t.thresholds[1]:g};\n"
                 f"{len(t.rnet_boxes)} refined after NMS (green), rejected red", fontsize=9)
    ax.set_axis_off()
    ax = axes[3]
    ax.imshow(t.image)
    okeep = t.onet_scores > t.thresholds[2]
    _boxes(ax, t.rnet_boxes[~okeep], "red", lw=0.8)
    draw_faces(t.image, t.faces, ax=ax)
    ax.set_title(f"4. O-Net: {len(t.faces)} face(s) > {t.thresholds[2]:g},\nwith 5 landmarks", fontsize=9)
    fig.tight_layout()
    return fig


def plot_pyramid(trace: CascadeTrace, max_levels: int = 8, size: float = 2.2):
    """The image pyramid P-Net scans: each level at its true relative size, with its scale."""
    import cv2
    import matplotlib.pyplot as plt

    n = min(len(trace.scales), max_levels)
    if n == 0:
        fig, ax = plt.subplots(figsize=(4, 1))
        ax.text(0.5, 0.5, "image smaller than min_face_size: no pyramid level", ha="center")
        ax.set_axis_off()
        return fig
    H = trace.level_shapes[0][0]
    gap = max(4, trace.level_shapes[0][1] // 20)
    total_w = sum(trace.level_shapes[i][1] for i in range(n)) + gap * (n - 1)
    canvas = np.full((H, total_w, 3), 255, np.uint8)
    fig, ax = plt.subplots(figsize=(size * 4, size * 4 * H / total_w + 0.8))
    x0 = 0
    for i in range(n):
        lh, lw = trace.level_shapes[i]
        canvas[H - lh:, x0:x0 + lw] = cv2.resize(trace.image, (lw, lh), interpolation=cv2.INTER_AREA)
        ax.text(x0 + lw / 2, -4, f"x{trace.scales[i]:.2f}\n{lw}x{lh}", ha="center", va="bottom", fontsize=7)
        x0 += lw + gap
    ax.imshow(canvas)
    ax.set_axis_off()
    fig.suptitle(f"image pyramid: {len(trace.scales)} levels (a {trace.min_face_size:g}-px face is 12 px on the "
                 "first;\nP-Net's 12-px window finds bigger faces on smaller levels)", fontsize=9)
    fig.tight_layout()
    return fig


def sweep_min_face_size(images: Sequence[np.ndarray], sizes: Sequence[float], *, detector: Detector | None = None,
                        thresholds: tuple[float, float, float] | None = None, repeats: int = 1) -> dict:
    """Speed/recall trade-off of ``min_face_size``: detect every image at every size.

    Returns a dict of arrays over ``sizes``: ``min_face_size``, ``ms_per_image`` (median of
    ``repeats`` timings of the whole set, divided by its length), ``faces`` (total found),
    ``levels`` (mean pyramid levels per image). One warm-up call runs first so model loading is
    not timed. Taught in notebook 01.
    """
    det = detector or get_detector()
    imgs = [as_rgb(im) for im in images]
    if not imgs:
        raise ValueError("sweep_min_face_size needs at least one image")
    det.detect(imgs[0], min_face_size=max(sizes), thresholds=thresholds)
    ms, found, levels = [], [], []
    for s in sizes:
        times = []
        for _ in range(max(1, repeats)):
            t0 = time.perf_counter()
            res = [det.detect(im, min_face_size=s, thresholds=thresholds) for im in imgs]
            times.append(time.perf_counter() - t0)
        ms.append(1000.0 * float(np.median(times)) / len(imgs))
        found.append(sum(len(r) for r in res))
        levels.append(float(np.mean([len(_levels(im, s, det)) for im in imgs])))
    return {"min_face_size": np.asarray(sizes, float), "ms_per_image": np.asarray(ms),
            "faces": np.asarray(found), "levels": np.asarray(levels)}


def _levels(img: np.ndarray, size: float, det: Detector) -> np.ndarray:
    h, w = img.shape[:2]
    f = 1.0
    if det.max_side and max(h, w) > det.max_side:
        f = det.max_side / float(max(h, w))
    return scale_pyramid(round(h * f), round(w * f), size * f, det.scale_factor)
