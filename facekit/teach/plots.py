"""Plotting helpers shared by the notebooks (matplotlib; numpy in).

Taught in notebook 01 (drawing detections) and used throughout. Functions take an optional
``ax`` and return it, so notebooks can compose figures. The interactive explorers (sliders over
these plots) live in :mod:`facekit.teach.widgets` and are re-exported here, so
``from facekit.teach.plots import pair_explorer`` keeps working.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np

from facekit.detection.detector import Face

__all__ = ["draw_faces", "image_grid", "show_album", "scatter_thumbnails",
           "distance_heatmap", "distance_histograms", "plot_roc"]


def draw_faces(image: np.ndarray, faces: Sequence[Face], labels: Sequence[str] | None = None,
               ax=None, landmarks: bool = True, color: str = "lime", show_confidence: bool = True):
    """Show ``image`` with each face's box, its five landmarks and a caption.

    Caption: ``labels[i]`` if given, plus the detector confidence when ``show_confidence``.
    """
    import matplotlib.pyplot as plt
    from matplotlib.patches import Rectangle

    if ax is None:
        _, ax = plt.subplots(figsize=(6, 6 * image.shape[0] / max(image.shape[1], 1)))
    ax.imshow(image)
    for i, f in enumerate(faces):
        x1, y1, x2, y2 = (float(v) for v in f.box)
        ax.add_patch(Rectangle((x1, y1), x2 - x1, y2 - y1, fill=False, lw=2, ec=color))
        if landmarks:
            ax.scatter(f.landmarks[:, 0], f.landmarks[:, 1], s=12, c=["red", "red", "yellow", "cyan", "cyan"])
        parts = []
        if labels is not None:
            parts.append(str(labels[i]))
        if show_confidence:
            parts.append(f"{f.confidence:.3f}")
        if parts:
            ax.text(x1, y1 - 3, " ".join(parts), color="black", fontsize=9,
                    bbox=dict(facecolor=color, alpha=0.8, pad=1, lw=0))
    ax.set_axis_off()
    return ax


def image_grid(images: Sequence[np.ndarray], titles: Sequence[str] | None = None, ncols: int = 8,
               size: float = 1.6, suptitle: str | None = None):
    """A grid of small images (e.g. aligned crops) with optional titles; returns the figure."""
    import matplotlib.pyplot as plt

    n = len(images)
    ncols = max(1, min(ncols, n))
    nrows = max(1, int(np.ceil(n / ncols)))
    fig, axes = plt.subplots(nrows, ncols, figsize=(ncols * size, nrows * size * 1.15), squeeze=False)
    for i, ax in enumerate(axes.ravel()):
        ax.set_axis_off()
        if i < n:
            ax.imshow(images[i])
            if titles is not None:
                ax.set_title(str(titles[i]), fontsize=8)
    if suptitle:
        fig.suptitle(suptitle)
    fig.tight_layout()
    return fig


def show_album(album, max_faces: int = 12, size: float = 1.3) -> list:
    """One :func:`image_grid` of face crops per group of an organised album
    (:class:`facekit.album.organise.Album`, largest group first); returns the figures. Notebook 05."""
    from pathlib import Path

    figs = []
    for name in album.people:
        idx = album.faces_of(name)[:max_faces]
        figs.append(image_grid([album.faces[i].crop for i in idx],
                               [Path(album.faces[i].path).name[:14] for i in idx], ncols=max_faces,
                               size=size, suptitle=f"{name}: {len(album.faces_of(name))} faces"))
    return figs


def scatter_thumbnails(points: np.ndarray, labels: Sequence[str] | None = None,
                       thumbs: np.ndarray | None = None, ax=None, max_thumbs: int = 150,
                       zoom: float = 0.45, min_gap: float = 0.05, random_state: int = 0,
                       legend: bool = True, s: float = 12):
    """A 2-D map (e.g. UMAP of embeddings): points coloured by ``labels``, with face thumbnails
    (uint8 (N, h, w, 3)) framed in their colour on up to ``max_thumbs`` random points at least
    ``min_gap`` (fraction of the map's extent) apart, so thumbnails do not hide each other.

    Taught in notebook 05. Returns the axes.
    """
    import matplotlib.pyplot as plt
    from matplotlib.offsetbox import AnnotationBbox, OffsetImage

    pts = np.asarray(points, dtype=float)
    if ax is None:
        _, ax = plt.subplots(figsize=(8, 8))
    names = sorted(set(labels)) if labels is not None else [""]
    lab = np.asarray(labels) if labels is not None else np.full(len(pts), "")
    cmap = plt.get_cmap("tab20" if len(names) > 10 else "tab10")
    colour = {n: cmap(i % cmap.N) for i, n in enumerate(names)}
    for n in names:
        m = lab == n
        ax.scatter(pts[m, 0], pts[m, 1], s=s, color=colour[n], label=n if labels is not None else None)
    if thumbs is not None and max_thumbs > 0:
        rng = np.random.default_rng(random_state)
        span = float(np.ptp(pts, axis=0).max()) or 1.0
        pick: list[int] = []
        for i in rng.permutation(len(pts)):
            if len(pick) >= max_thumbs:
                break
            if not pick or np.min(np.abs(pts[pick] - pts[i]).max(axis=1)) >= min_gap * span:
                pick.append(int(i))
        for i in pick:
            box = AnnotationBbox(OffsetImage(thumbs[i], zoom=zoom), pts[i], frameon=True, pad=0.1,
                                 bboxprops=dict(edgecolor=colour[lab[i]], lw=1.5))
            ax.add_artist(box)
    if legend and labels is not None and len(names) <= 20:
        ax.legend(fontsize=7, markerscale=1.5, loc="best", framealpha=0.7)
    ax.set_xticks([])
    ax.set_yticks([])
    return ax


# --- verification plots and explorers (notebooks 01-02) ---------------------------------------

def distance_heatmap(distances: np.ndarray, thumbs: np.ndarray | None = None,
                     labels: Sequence[str] | None = None, ax=None, zoom: float = 0.22,
                     vmax: float = 2.0):
    """Squared-L2 distance matrix (N, N) as a heatmap, with face thumbnails (uint8 (N, h, w, 3))
    along both axes and identity blocks outlined when ``labels`` are given.

    Taught in notebook 02. Colour scale 0..``vmax`` (distances above are clipped). Returns the axes.
    """
    import matplotlib.pyplot as plt
    from matplotlib.offsetbox import AnnotationBbox, OffsetImage
    from matplotlib.patches import Rectangle

    d = np.asarray(distances, float)
    n = len(d)
    if ax is None:
        _, ax = plt.subplots(figsize=(7.5, 7))
    im = ax.imshow(d, cmap="viridis_r", vmin=0, vmax=vmax)
    ax.figure.colorbar(im, ax=ax, fraction=0.046, pad=0.04, label="squared L2 distance")
    if n <= 30:
        for i in range(n):
            for j in range(n):
                ax.text(j, i, f"{d[i, j]:.2f}", ha="center", va="center", fontsize=6,
                        color="black" if d[i, j] < vmax * 0.55 else "white")
    if labels is not None:
        lab = np.asarray(labels)
        start = 0
        for k in range(1, n + 1):
            if k == n or lab[k] != lab[start]:
                ax.add_patch(Rectangle((start - 0.5, start - 0.5), k - start, k - start, fill=False, ec="red", lw=1.5))
                start = k
    ax.set_xticks([])
    ax.set_yticks([])
    if thumbs is not None:
        for i in range(n):
            for xy, box in (((-0.5, i), (1.05, 0.5)), ((i, n - 0.5), (0.5, 1.05))):
                ab = AnnotationBbox(OffsetImage(thumbs[i], zoom=zoom), xy, xycoords="data",
                                    box_alignment=box, frameon=False, annotation_clip=False)
                ax.add_artist(ab)
    return ax


def distance_histograms(distances: np.ndarray, same: np.ndarray, threshold: float | None = None,
                        ax=None, bins: int = 60, title: str | None = None):
    """Histograms of squared-L2 distances of same-person and different-person pairs, with the
    decision ``threshold`` as a vertical line and the errors it makes in the legend.

    Taught in notebook 02. Returns the axes.
    """
    import matplotlib.pyplot as plt

    d = np.asarray(distances, float)
    s = np.asarray(same, bool)
    if ax is None:
        _, ax = plt.subplots(figsize=(7, 3.5))
    edges = np.linspace(0, max(2.5, float(d.max()) if len(d) else 2.5), bins + 1)
    ax.hist(d[s], bins=edges, alpha=0.6, color="tab:green", label=f"same person ({int(s.sum())} pairs)", density=True)
    ax.hist(d[~s], bins=edges, alpha=0.6, color="tab:red", label=f"different people ({int((~s).sum())})", density=True)
    if threshold is not None:
        fr = float(np.mean(d[s] >= threshold)) if s.any() else float("nan")
        fa = float(np.mean(d[~s] < threshold)) if (~s).any() else float("nan")
        ax.axvline(threshold, color="k", ls="--",
                   label=f"threshold {threshold:.2f}: {100 * fr:.1f}% same rejected, {100 * fa:.1f}% different accepted")
    ax.set_xlabel("squared L2 distance (0 = identical, 4 = opposite)")
    ax.set_ylabel("density")
    ax.legend(fontsize=8)
    if title:
        ax.set_title(title)
    return ax


def plot_roc(distances: np.ndarray, same: np.ndarray, ax=None, threshold: float | None = None,
             label: str | None = None, log_fpr: bool = False):
    """ROC curve of "same if distance < t" (true accept rate vs false accept rate), AUC in the
    legend, and the operating point of ``threshold`` marked. Taught in notebook 02. Returns the axes.
    """
    import matplotlib.pyplot as plt

    from facekit.recognition.verify import roc_auc, roc_curve

    fpr, tpr, _ = roc_curve(distances, same)
    auc = roc_auc(distances, same)
    if ax is None:
        _, ax = plt.subplots(figsize=(4.5, 4.5))
    ax.plot(fpr, tpr, label=f"{label + ': ' if label else ''}AUC {auc:.4f}")
    if threshold is not None:
        d = np.asarray(distances, float)
        s = np.asarray(same, bool)
        x, y = float(np.mean(d[~s] < threshold)), float(np.mean(d[s] < threshold))
        ax.plot([x], [y], "ko")
        ax.annotate(f"t = {threshold:.2f}", (x, y), textcoords="offset points", xytext=(8, -12), fontsize=8)
    if log_fpr:
        ax.set_xscale("log")
        ax.set_xlim(1e-4, 1)
    else:
        ax.plot([0, 1], [0, 1], color="0.7", ls=":")
    ax.set_xlabel("false accept rate (different people called same)")
    ax.set_ylabel("true accept rate")
    ax.legend(loc="lower right", fontsize=8)
    return ax


# --- triplet loss (notebook 03) ---------------------------------------------------------------

__all__ += ["plot_triplet_margin", "plot_training_history"]


def plot_triplet_margin(anchor: np.ndarray, positive: np.ndarray, negatives: np.ndarray,
                        margin: float = 0.2, ax=None):
    """The triplet loss drawn in 2-D: which negatives are hard, semi-hard or easy.

    anchor, positive: (2,) points; negatives: (M, 2). Distances are squared L2, so the circle of
    radius ``sqrt(d_ap)`` around the anchor bounds the *hard* negatives (closer than the positive)
    and the one of radius ``sqrt(d_ap + margin)`` the *semi-hard* band (FaceNet's Eq. 4); beyond
    it negatives are *easy* (zero loss). Each negative is labelled with its loss. Unit vectors (2-D
    embeddings) also get the unit circle. Taught in notebook 03; returns the axes.
    """
    import matplotlib.pyplot as plt
    from matplotlib.patches import Circle

    a, p = np.asarray(anchor, float), np.asarray(positive, float)
    negs = np.atleast_2d(np.asarray(negatives, float))
    if ax is None:
        _, ax = plt.subplots(figsize=(5.5, 5.5))
    d_ap = float(((a - p) ** 2).sum())
    r_hard, r_semi = np.sqrt(d_ap), np.sqrt(d_ap + margin)
    pts = np.vstack([a, p, negs])
    if np.allclose(np.linalg.norm(pts, axis=1), 1, atol=1e-3):
        ax.add_patch(Circle((0, 0), 1, fill=False, ec="0.6", ls=":", lw=1))
        ax.text(-0.3, 0, "unit circle\n(2-D embeddings)", ha="center", va="center", fontsize=8, color="0.5")
    ax.add_patch(Circle(a, r_semi, color="orange", alpha=0.18, lw=0))
    ax.add_patch(Circle(a, r_hard, color="red", alpha=0.18, lw=0))
    ax.add_patch(Circle(a, r_hard, fill=False, ec="red", lw=1))
    ax.add_patch(Circle(a, r_semi, fill=False, ec="orange", lw=1, ls="--"))
    ax.plot(*zip(a, p), color="tab:blue", lw=1)
    ax.scatter(*a, s=120, marker="*", color="black", zorder=3, label="anchor")
    ax.scatter(*p, s=70, color="tab:blue", zorder=3, label="positive")
    kinds = {"hard": "red", "semi-hard": "darkorange", "easy": "green"}
    for n in negs:
        d_an = float(((a - n) ** 2).sum())
        kind = "hard" if d_an < d_ap else "semi-hard" if d_an < d_ap + margin else "easy"
        ax.scatter(*n, s=60, marker="X", color=kinds[kind], zorder=3)
        ax.annotate(f"L={max(0.0, d_ap - d_an + margin):.2f}", n, xytext=(4, 4), textcoords="offset points",
                    fontsize=8, color=kinds[kind])
    for k, c in kinds.items():
        ax.scatter([], [], marker="X", color=c, label=f"{k} negative")
    ax.set_title(f"$d_{{ap}}$ = {d_ap:.2f}, margin $\\alpha$ = {margin:.2f}:\n"
                 f"L = max(0, $d_{{ap}} - d_{{an}} + \\alpha$)", fontsize=10)
    lim = max(1.15, float(np.abs(pts).max()) + 0.15, float(np.abs(a).max()) + r_semi + 0.05)
    ax.set_xlim(-lim, lim)
    ax.set_ylim(-lim, lim)
    ax.set_aspect("equal")
    ax.legend(fontsize=7, loc="lower left", framealpha=0.8)
    return ax


def plot_training_history(histories: dict, smooth: int = 20, margin: float | None = None):
    """Curves of :class:`facekit.training.triplet_train.TripletNet` runs, one colour per run: loss, fraction of
    active triplets, mean pairwise distance within the batch (0 = collapsed) and held-out
    verification accuracy. histories: ``{name: net.history_}``; smooth: moving-average window in
    steps; margin: drawn as the loss of a collapsed model. Taught in notebook 03; returns the figure.
    """
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 4, figsize=(16, 3.6))
    keys = [("loss", "triplet loss"), ("active_fraction", "active triplets (fraction)"),
            ("mean_distance", "mean pairwise distance in batch")]
    for i, (name, h) in enumerate(histories.items()):
        c = f"C{i}"
        for ax, (k, title) in zip(axes, keys):
            v = np.asarray(h[k], float)
            w = max(1, min(smooth, len(v)))
            if len(v):
                sm = np.convolve(v, np.ones(w) / w, mode="valid")
                ax.plot(h["step"], v, color=c, alpha=0.2, lw=0.7)
                ax.plot(np.asarray(h["step"])[w - 1:], sm, color=c, lw=1.6, label=name)
            ax.set_title(title, fontsize=10)
            ax.set_xlabel("step")
        if len(h.get("val_accuracy", [])):
            axes[3].plot(h["eval_step"], h["val_accuracy"], "o-", color=c, label=name)
    if margin is not None:
        axes[0].axhline(margin, color="0.4", ls=":", lw=1)
        axes[0].text(0, margin, " margin (collapsed)", va="bottom", fontsize=8, color="0.4")
    axes[3].axhline(0.5, color="0.6", ls=":", lw=1)
    axes[3].set_title("held-out verification accuracy", fontsize=10)
    axes[3].set_xlabel("step")
    axes[0].legend(fontsize=8)
    fig.tight_layout()
    return fig


# --- the sphere and the DET curve (notebooks 02-03) ------------------------------------------

__all__ += ["plot_sphere", "plot_det"]


def plot_sphere(points: np.ndarray, labels: Sequence[str] | None = None, ax=None, pair: tuple[int, int] | None = None,
                s: float = 18):
    """Unit vectors in 3-D drawn on a wireframe unit sphere, one colour per label.

    points: float (N, 3) (rows are normalised here, so a 3-D projection of higher-dimensional
    embeddings can be shown too); pair: optional indices ``(i, j)`` whose chord is drawn and
    labelled with its squared length ``d = 2 - 2 cos`` and the angle at the centre. ``ax`` must be
    a 3-D axes (``projection="3d"``); created when None. Taught in notebooks 02 and 03.
    """
    import matplotlib.pyplot as plt

    p = np.asarray(points, float)
    if p.ndim != 2 or p.shape[1] != 3:
        raise ValueError(f"points must be (N, 3), got {p.shape}")
    p = p / np.maximum(np.linalg.norm(p, axis=1, keepdims=True), 1e-12)
    if ax is None:
        ax = plt.figure(figsize=(5.5, 5.5)).add_subplot(projection="3d")
    u, v = np.meshgrid(np.linspace(0, 2 * np.pi, 25), np.linspace(0, np.pi, 13))
    ax.plot_wireframe(np.cos(u) * np.sin(v), np.sin(u) * np.sin(v), np.cos(v), color="0.85", lw=0.5)
    if labels is None:
        ax.scatter(*p.T, s=s, color="tab:blue", depthshade=False)
    else:
        lab = np.asarray(labels)
        for k, name in enumerate(dict.fromkeys(lab.tolist())):
            q = p[lab == name]
            ax.scatter(*q.T, s=s, color=f"C{k % 10}", label=str(name), depthshade=False)
        if len(set(lab.tolist())) <= 12:
            ax.legend(fontsize=7, loc="upper left")
    if pair is not None:
        a, b = p[pair[0]], p[pair[1]]
        cos = float(a @ b)
        ax.plot(*np.c_[a, b], color="k", lw=2)
        ax.plot(*np.c_[np.zeros(3), a], color="0.4", lw=1, ls=":")
        ax.plot(*np.c_[np.zeros(3), b], color="0.4", lw=1, ls=":")
        mid = (a + b) / 2
        ax.text(*mid, f"  d = |a-b|² = {2 - 2 * cos:.2f}\n  θ = {np.degrees(np.arccos(np.clip(cos, -1, 1))):.0f}°",
                fontsize=9)
    ax.set_box_aspect((1, 1, 1))
    for setter in (ax.set_xlim, ax.set_ylim, ax.set_zlim):
        setter(-1, 1)
    ax.set_xticks([]); ax.set_yticks([]); ax.set_zticks([])  # noqa: E702
    return ax


def plot_det(distances: np.ndarray, same: np.ndarray, threshold: float | None = None, ax=None, label: str | None = None):
    """DET curve (detection error trade-off): false reject rate against false accept rate, both on
    log axes, for the rule "same person if d < threshold"; the point at ``threshold`` is marked.

    Unlike the ROC curve it spreads out the low-error corner where real systems operate (FAR of
    1e-3 and below). distances: float (M,) squared L2; same: bool (M,). Rates of 0 are drawn at
    half of one pair, so the curve stays on the log axes. Taught in notebook 02; returns the axes.
    """
    import matplotlib.pyplot as plt

    d, s = np.asarray(distances, float).ravel(), np.asarray(same, bool).ravel()
    if ax is None:
        _, ax = plt.subplots(figsize=(4.5, 4))
    n_diff, n_same = int((~s).sum()), int(s.sum())
    ts = np.unique(np.r_[d, d.max() + 1e-6])
    ds, dd = np.sort(d[s]), np.sort(d[~s])
    far = np.searchsorted(dd, ts, side="left") / n_diff
    frr = 1 - np.searchsorted(ds, ts, side="left") / n_same
    floor_a, floor_r = 0.5 / n_diff, 0.5 / n_same
    ax.plot(np.maximum(far, floor_a), np.maximum(frr, floor_r), lw=1.5, label=label)
    if threshold is not None:
        fa = np.searchsorted(dd, threshold, side="left") / n_diff
        fr = 1 - np.searchsorted(ds, threshold, side="left") / n_same
        ax.plot(max(fa, floor_a), max(fr, floor_r), "o", color="k", label=f"threshold {threshold:.2f}")
    ax.set_xscale("log"); ax.set_yscale("log")  # noqa: E702
    ax.set_xlim(floor_a * 0.8, 1); ax.set_ylim(floor_r * 0.8, 1)  # noqa: E702
    ax.set_xlabel("false accept rate (different people called same)")
    ax.set_ylabel("false reject rate")
    ax.grid(True, which="both", alpha=0.2)
    ax.legend(fontsize=8)
    ax.set_title("DET curve", fontsize=10)
    return ax
