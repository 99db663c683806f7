"""Plotting helpers shared by the notebooks (matplotlib; numpy in).

Taught in notebook 01 (drawing detections) and used throughout. Functions take an optional
``ax`` and return it, so notebooks can compose figures.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np

from .detect import Face

__all__ = ["draw_faces", "image_grid", "scatter_thumbnails",
           "distance_heatmap", "distance_histograms", "plot_roc", "detection_explorer", "pair_explorer",
           "figure_png"]


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

    from .verify import roc_auc, roc_curve

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


def figure_png(fig, dpi: int = 90) -> bytes:
    """Render a matplotlib figure to PNG bytes and close it (for ``ipywidgets.Image``).

    The explorers below redraw into an ``Image`` widget rather than an ``Output`` widget: headless
    runs (nbclient, the tests) answer Output widgets on the kernel's shell channel while waiting on
    it, which can lose the cell's reply and hang (jupyter/nbclient#312).
    """
    import io

    import matplotlib.pyplot as plt

    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=dpi, bbox_inches="tight")
    plt.close(fig)
    return buf.getvalue()


def detection_explorer(images: dict, detector=None, confidence: float = 0.7, min_face_size: int = 20,
                       max_size: int = 160, figsize: tuple[float, float] = (6, 5)):
    """Widget: pick a photo, drag the O-Net confidence threshold and the minimum face size, see
    the detections redrawn with the time they took.

    ``images``: ``{name: RGB uint8 image}``. Drawn once on creation (so it shows in headless
    runs too). Taught in notebook 01. Returns the ipywidgets box.
    """
    import time

    import ipywidgets as W
    import matplotlib.pyplot as plt

    from .detect import get_detector

    det = detector or get_detector()
    names = list(images)
    pick = W.Dropdown(options=names, value=names[0], description="photo")
    conf = W.FloatSlider(value=confidence, min=0.5, max=0.999, step=0.01, description="confidence",
                         continuous_update=False, readout_format=".2f")
    size = W.IntSlider(value=min_face_size, min=12, max=max_size, step=4, description="min face px",
                       continuous_update=False)
    view = W.Image(format="png")

    def update(*_):
        img = images[pick.value]
        t0 = time.perf_counter()
        faces = det.detect(img, min_face_size=size.value,
                           thresholds=(det.thresholds[0], det.thresholds[1], conf.value))
        ms = 1000 * (time.perf_counter() - t0)
        fig, ax = plt.subplots(figsize=figsize)
        draw_faces(img, faces, ax=ax)
        ax.set_title(f"{len(faces)} face(s) with confidence > {conf.value:.2f} and size >= "
                     f"{size.value} px; {ms:.0f} ms", fontsize=9)
        view.value = figure_png(fig)

    for w in (pick, conf, size):
        w.observe(update, names="value")
    update()
    return W.VBox([W.HBox([pick, conf, size]), view])


def pair_explorer(crops: np.ndarray, embeddings: np.ndarray, names: Sequence[str], threshold: float | None = None,
                  a: int = 0, b: int = 1):
    """Widget: choose two faces (dropdowns), see both crops, their squared-L2 distance and the
    verdict at the threshold (slider, default :data:`facekit.verify.DEFAULT_THRESHOLD`).

    crops: uint8 (N, h, w, 3); embeddings: (N, D) unit rows; names: N captions. Drawn once on
    creation. Taught in notebook 02. Returns the ipywidgets box.
    """
    import ipywidgets as W
    import matplotlib.pyplot as plt

    from .verify import DEFAULT_THRESHOLD, verify

    opts = [(f"{i}: {n}", i) for i, n in enumerate(names)]
    da = W.Dropdown(options=opts, value=a, description="face A")
    db = W.Dropdown(options=opts, value=b, description="face B")
    th = W.FloatSlider(value=DEFAULT_THRESHOLD if threshold is None else threshold, min=0.2, max=2.0, step=0.01,
                       description="threshold", continuous_update=False, readout_format=".2f")
    view = W.Image(format="png")

    def update(*_):
        same, d = verify(embeddings[da.value], embeddings[db.value], threshold=th.value)
        fig, axes = plt.subplots(1, 2, figsize=(5, 2.9))
        for ax, i in zip(axes, (da.value, db.value)):
            ax.imshow(crops[i])
            ax.set_title(str(names[i]), fontsize=9)
            ax.set_axis_off()
        verdict = "SAME person" if same else "DIFFERENT people"
        fig.suptitle(f"distance {d:.3f} {'<' if same else '>='} {th.value:.2f}  ->  {verdict}",
                     color="green" if same else "red", fontsize=10)
        fig.tight_layout()
        view.value = figure_png(fig)

    for w in (da, db, th):
        w.observe(update, names="value")
    update()
    return W.VBox([W.HBox([da, db]), th, view])


# --- triplet loss (notebook 03) ---------------------------------------------------------------

__all__ += ["plot_triplet_margin", "triplet_margin_explorer", "plot_training_history"]


def _unit(deg) -> np.ndarray:
    r = np.deg2rad(np.asarray(deg, float))
    return np.stack([np.cos(r), np.sin(r)], axis=-1)


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


def triplet_margin_explorer(positive_deg: float = 40.0, margin: float = 0.2,
                            negatives_deg=(15, 30, 45, 70, 120, 200, 300)):
    """Sliders for the positive's angle and the margin over :func:`plot_triplet_margin` on the unit
    circle (anchor at 0 degrees, negatives at ``negatives_deg``). Drawn once on creation, so it
    shows headless too. Taught in notebook 03; returns the widget."""
    import ipywidgets as W
    import matplotlib.pyplot as plt

    pos = W.FloatSlider(value=positive_deg, min=0, max=180, step=1, description="positive (deg)",
                        continuous_update=False)
    mar = W.FloatSlider(value=margin, min=0.0, max=1.5, step=0.05, description="margin",
                        continuous_update=False, readout_format=".2f")
    view = W.Image(format="png")

    def update(*_):
        ax = plot_triplet_margin(_unit(0.0), _unit(pos.value), _unit(negatives_deg), mar.value)
        view.value = figure_png(ax.figure)

    for w in (pos, mar):
        w.observe(update, names="value")
    update()
    return W.VBox([W.HBox([pos, mar]), view])


def plot_training_history(histories: dict, smooth: int = 20, margin: float | None = None):
    """Curves of :class:`facekit.triplet.TripletNet` runs, one colour per run: loss, fraction of
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


# --- identification and maps (notebooks 04-05) ---------------------------------------------

__all__ += ["open_set_explorer", "identify_explorer", "umap_explorer"]


def open_set_explorer(known_scores: np.ndarray, known_correct: np.ndarray, stranger_scores: np.ndarray,
                      threshold: float = 0.8, bins: int = 60):
    """Widget: drag the "unknown" threshold, see both score histograms and, at that threshold, the
    share of enrolled faces named correctly / turned away and of strangers let in.

    Scores: squared distances (lower = more "enrolled"); known_correct: the closed-set name was
    right. Drawn once on creation. Taught in notebook 04. Returns the ipywidgets box.
    """
    import ipywidgets as W
    import matplotlib.pyplot as plt

    ks, kc, ss = np.asarray(known_scores), np.asarray(known_correct, bool), np.asarray(stranger_scores)
    hi = float(max(ks.max(initial=0), ss.max(initial=0), threshold)) * 1.05 or 2.0
    slider = W.FloatSlider(value=round(float(threshold), 2), min=0.0, max=round(hi, 2), step=0.01,
                           description="threshold", continuous_update=False, readout_format=".2f")
    view = W.Image(format="png")

    def update(*_):
        t = slider.value
        acc = ks <= t
        fig, ax = plt.subplots(figsize=(7, 3))
        edges = np.linspace(0, hi, bins)
        ax.hist(ks, edges, alpha=0.6, density=True, label="enrolled people")
        ax.hist(ss, edges, alpha=0.6, density=True, label="strangers")
        ax.axvline(t, color="k", ls="--")
        ax.set_xlabel("squared distance to the nearest enrolled photo")
        ax.set_title(f"threshold {t:.2f}: enrolled named correctly {np.mean(acc & kc):.3f}, turned away "
                     f"{np.mean(~acc):.3f}; strangers let in {np.mean(ss <= t):.3f}", fontsize=9)
        ax.legend(fontsize=8)
        view.value = figure_png(fig)

    slider.observe(update, names="value")
    update()
    return W.VBox([slider, view])


def identify_explorer(identifier, photos: dict, figsize: tuple[float, float] = (7, 5)):
    """Widget: pick a photo (or upload one) and see every face boxed with its name (or
    "unknown") and score, from a fitted :class:`facekit.identify.FaceIdentifier`.

    ``photos``: ``{caption: RGB uint8 image or file path}``. Drawn once on creation. Taught in
    notebook 04. Returns the ipywidgets box.
    """
    import os
    import tempfile

    import ipywidgets as W
    import matplotlib.pyplot as plt

    from .identify import identify_photo
    from .io import ImageLoadError, load_image

    names = list(photos)
    pick = W.Dropdown(options=names, value=names[0], description="photo")
    upload = W.FileUpload(accept="image/*", multiple=False, description="or upload")
    note = W.HTML()
    view = W.Image(format="png")

    def show(image, title):
        faces, who, scores = identify_photo(image, identifier)
        fig, ax = plt.subplots(figsize=figsize)
        draw_faces(image, [f.face for f in faces], [f"{n} {s:.2f}" for n, s in zip(who, scores)], ax=ax,
                   landmarks=False, show_confidence=False)
        ax.set_title(f"{title}: {len(faces)} face(s)", fontsize=10)
        view.value = figure_png(fig)
        note.value = ""

    def on_pick(*_):
        p = photos[pick.value]
        show(load_image(p) if isinstance(p, (str, os.PathLike)) else p, pick.value)

    def on_upload(*_):
        for item in upload.value:
            suffix = os.path.splitext(item["name"])[1]
            with tempfile.TemporaryDirectory() as tmp:  # load_image handles EXIF, formats, errors
                path = os.path.join(tmp, "upload" + suffix)
                with open(path, "wb") as f:
                    f.write(bytes(item["content"]))
                try:
                    show(load_image(path), item["name"])
                except ImageLoadError as exc:
                    note.value = f"<b>{item['name']}</b>: {exc.reason}. {exc.fix}"

    pick.observe(on_pick, names="value")
    upload.observe(on_upload, names="value")
    on_pick()
    return W.VBox([W.HBox([pick, upload]), note, view])


def umap_explorer(embeddings: np.ndarray, labels: Sequence[str], n_neighbors: int = 15, min_dist: float = 0.1,
                  figsize: tuple[float, float] = (6, 6)):
    """Widget: UMAP's ``n_neighbors`` and ``min_dist`` as sliders, the 2-D map redrawn (coloured
    by ``labels``) with the time it took. Drawn once on creation. Taught in notebook 05.
    Returns the ipywidgets box."""
    import time

    import ipywidgets as W
    import matplotlib.pyplot as plt

    from .cluster import project

    x = np.asarray(embeddings)
    nn = W.IntSlider(value=n_neighbors, min=2, max=max(3, min(100, len(x) - 1)), description="n_neighbors",
                     continuous_update=False)
    md = W.FloatSlider(value=min_dist, min=0.0, max=0.99, step=0.05, description="min_dist",
                       continuous_update=False, readout_format=".2f")
    view = W.Image(format="png")

    def update(*_):
        t0 = time.perf_counter()
        p = project(x, "umap", n_neighbors=min(nn.value, len(x) - 1), min_dist=md.value)
        fig, ax = plt.subplots(figsize=figsize)
        scatter_thumbnails(p, labels, ax=ax, legend=False)
        ax.set_title(f"n_neighbors={nn.value}, min_dist={md.value:.2f} ({time.perf_counter() - t0:.1f} s)",
                     fontsize=10)
        view.value = figure_png(fig)

    for w in (nn, md):
        w.observe(update, names="value")
    update()
    return W.VBox([W.HBox([nn, md]), view])
