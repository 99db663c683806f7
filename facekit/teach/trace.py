"""The MTCNN cascade made visible (notebook 01): what each stage kept, drawn step by step, and the
speed/recall trade-off of ``min_face_size``.

:func:`trace_cascade` runs the same :func:`facekit.detection.cascade.run_cascade` as
``Detector.detect``, asked to ``record`` what each stage kept, so ``trace.faces`` equals
``detector.detect(image)``. :func:`plot_cascade` draws the four steps; :func:`plot_pyramid` the
image pyramid; :func:`sweep_min_face_size` measures the trade-off.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Sequence

import numpy as np

from facekit.core.images import as_rgb
from facekit.detection.cascade import no_rows, run_cascade
from facekit.detection.detector import Detector, Face, get_detector, scale_pyramid

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
    rows = run_cascade(img, det.networks(), scales, th, record=rec) if len(scales) else no_rows()
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

    from facekit.teach.plots import draw_faces

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
