"""MTCNN's cascade, stage by stage: what P-Net, R-Net and O-Net each keep (for teaching).

Taught in notebook 01. :func:`facekit.detect.Detector.detect` runs the three networks in one
call; :func:`trace_cascade` runs the same networks (the detector's own weights, the same mtcnn
helper functions, the same thresholds) one step at a time and keeps every intermediate result:

1. image pyramid: the photo resized so that a ``min_face_size`` face becomes 12 px (P-Net's
   window), then again and again by ``scale_factor`` until the image is smaller than 12 px;
2. P-Net: a tiny fully convolutional net slid over every level -> a face-probability map per
   level; windows above ``thresholds[0]`` become candidate boxes (regressed, mapped back to image
   pixels), thinned by non-maximum suppression (NMS) within each level then across levels;
3. R-Net: each candidate re-scored at 24x24, refined, kept above ``thresholds[1]``, NMS;
4. O-Net: each survivor re-scored at 48x48, refined, five landmarks, kept above ``thresholds[2]``,
   NMS ("min" overlap) -> the final faces.

:func:`plot_cascade` draws the four steps; :func:`sweep_min_face_size` measures the speed/recall
trade-off of ``min_face_size``.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Sequence

import numpy as np

from .detect import Face, Detector, get_detector, scale_pyramid
from .io import as_rgb

__all__ = ["CascadeTrace", "trace_cascade", "plot_cascade", "plot_pyramid", "sweep_min_face_size"]


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


def _empty(n: int = 6) -> np.ndarray:
    return np.zeros((0, n))


def trace_cascade(image: np.ndarray, *, detector: Detector | None = None, min_face_size: float | None = None,
                  thresholds: tuple[float, float, float] | None = None) -> CascadeTrace:
    """Run MTCNN on one RGB image step by step; see the module docstring and :class:`CascadeTrace`.

    Uses ``detector``'s networks and defaults (the shared detector by default). NMS overlaps are
    mtcnn's: 0.5 within a level, 0.7 across levels, 0.7 after R-Net, 0.7 ("min") after O-Net.
    """
    import tensorflow as tf
    from mtcnn.utils.bboxes import (adjust_bboxes, generate_bounding_box, limit_bboxes, pick_matches,
                                    replace_confidence, resize_to_square, smart_nms_from_bboxes, upscale_bboxes)
    from mtcnn.utils.images import extract_patches, normalize_images, scale_images
    from mtcnn.utils.landmarks import adjust_landmarks

    det = detector or get_detector()
    img, factor = det.working_image(image)
    mfs = float(det.min_face_size if min_face_size is None else min_face_size) * factor
    th = tuple(float(t) for t in (det.thresholds if thresholds is None else thresholds))
    h, w = img.shape[:2]
    pnet, rnet, onet = (s.model for s in det.mtcnn.stages)
    x = normalize_images(tf.convert_to_tensor(img[None], tf.float32))
    scales = scale_pyramid(h, w, mfs, det.scale_factor)
    sec: dict[str, float] = {}

    # 1-2. pyramid + P-Net
    t0 = time.perf_counter()
    maps, shapes, windows, levels, per_level = [], [], [], [], []
    for i, s in enumerate(scales):
        xs = scale_images(x, float(s))
        shapes.append(tuple(int(v) for v in xs.shape[1:3]))
        reg, prob = pnet(xs)
        maps.append(prob[0, :, :, 1].numpy().astype(np.float32))
        b = upscale_bboxes(generate_bounding_box(reg, prob, th[0]), np.asarray([s]))
        windows.append(b[:, 1:6])
        levels.append(np.full(len(b), i))
        if len(b):
            per_level.append(smart_nms_from_bboxes(b, threshold=0.5, method="union", initial_sort=False))
    cand = np.concatenate(per_level) if per_level else _empty()
    if len(cand):
        cand = resize_to_square(smart_nms_from_bboxes(cand, threshold=0.7, method="union", initial_sort=True))
    sec["pyramid + P-Net"] = time.perf_counter() - t0

    # 3. R-Net
    t0 = time.perf_counter()
    r_scores, r_boxes = np.zeros(0), _empty()
    if len(cand):
        offsets, scores = rnet(extract_patches(x, cand, expected_size=(24, 24)))
        r_scores = scores.numpy()[:, 1]
        b = pick_matches(adjust_bboxes(replace_confidence(cand, scores), offsets), score_threshold=th[1])
        if len(b):
            r_boxes = resize_to_square(smart_nms_from_bboxes(b, threshold=0.7, method="union", initial_sort=True))
    sec["R-Net"] = time.perf_counter() - t0

    # 4. O-Net
    t0 = time.perf_counter()
    o_scores, faces = np.zeros(0), []
    if len(r_boxes):
        offsets, lms, scores = onet(extract_patches(x, r_boxes, expected_size=(48, 48)))
        o_scores = scores.numpy()[:, 1]
        lms = adjust_landmarks(lms, r_boxes)
        b = adjust_bboxes(replace_confidence(r_boxes, scores), offsets)
        b = pick_matches(np.concatenate([b, lms], axis=-1), scores_column=5, score_threshold=th[2])
        if len(b):
            b = smart_nms_from_bboxes(b, threshold=0.7, method="min", initial_sort=True)
            b = limit_bboxes(b, images_shapes=np.asarray([[h, w, 3]]), limit_landmarks=False)
            faces = [Face.from_mtcnn_row(r) for r in b]
    faces.sort(key=lambda f: -f.confidence)
    sec["O-Net"] = time.perf_counter() - t0

    return CascadeTrace(
        image=img, min_face_size=mfs, thresholds=th, scales=scales, level_shapes=shapes, pnet_maps=maps,
        pnet_windows=np.concatenate(windows) if windows else _empty(5),
        pnet_window_level=np.concatenate(levels) if levels else np.zeros(0, int),
        pnet_boxes=cand[:, 1:6] if len(cand) else _empty(5), rnet_scores=r_scores,
        rnet_boxes=r_boxes[:, 1:6] if len(r_boxes) else _empty(5), onet_scores=o_scores,
        faces=faces, seconds=sec)


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
