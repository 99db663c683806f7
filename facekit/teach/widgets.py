"""Interactive explorers for the notebooks: sliders and dropdowns over :mod:`facekit.teach.plots` plots.

Every explorer draws into an ``ipywidgets.Image`` (PNG bytes from :func:`figure_png`), never into
an ``Output`` widget: headless runs (nbclient, the tests, the book build) answer Output widgets on
the kernel's shell channel while waiting on it, which can lose the cell's reply and hang
(jupyter/nbclient#312). Each one draws once on creation, so an executed notebook keeps a picture
of its first state. Re-exported by :mod:`facekit.teach.plots`. Notebooks: 01 (detection), 02 (pairs,
threshold/DET), 03 (triplet margin, embedding sphere over training), 04 (open set, identify),
05 (UMAP).
"""

from __future__ import annotations

from typing import Sequence

import numpy as np

from facekit.models.registry import DEFAULT_MODEL, thresholds
from facekit.teach.plots import draw_faces, plot_det, plot_sphere, plot_triplet_margin, scatter_thumbnails

__all__ = ["figure_png", "detection_explorer", "pair_explorer", "triplet_margin_explorer", "open_set_explorer",
           "identify_explorer", "umap_explorer", "threshold_explorer", "sphere_explorer"]


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

    from facekit.detection.detector import get_detector

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
                  a: int = 0, b: int = 1, *, model: str = DEFAULT_MODEL):
    """Widget: choose two faces (dropdowns), see both crops, their squared-L2 distance and the
    verdict at the threshold (slider, default: ``model``'s ``thresholds(model).verify``).

    crops: uint8 (N, h, w, 3); embeddings: (N, D) unit rows; names: N captions. Drawn once on
    creation. Taught in notebook 02. Returns the ipywidgets box.
    """
    import ipywidgets as W
    import matplotlib.pyplot as plt

    from facekit.recognition.verify import verify

    opts = [(f"{i}: {n}", i) for i, n in enumerate(names)]
    da = W.Dropdown(options=opts, value=a, description="face A")
    db = W.Dropdown(options=opts, value=b, description="face B")
    th = W.FloatSlider(value=thresholds(model).verify if threshold is None else threshold, min=0.2, max=2.0, step=0.01,
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


def _unit(deg) -> np.ndarray:
    r = np.deg2rad(np.asarray(deg, float))
    return np.stack([np.cos(r), np.sin(r)], axis=-1)


def triplet_margin_explorer(positive_deg: float = 40.0, margin: float = 0.2,
                            negatives_deg=(15, 30, 45, 70, 120, 200, 300)):
    """Sliders for the positive's angle and the margin over :func:`plot_triplet_margin` on the unit
    circle (anchor at 0 degrees, negatives at ``negatives_deg``). Drawn once on creation, so it
    shows headless too. Taught in notebook 03; returns the widget."""
    import ipywidgets as W

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


def open_set_explorer(known_scores: np.ndarray, known_correct: np.ndarray, stranger_scores: np.ndarray,
                      threshold: float | None = None, bins: int = 60, *, model: str = DEFAULT_MODEL):
    """Widget: drag the "unknown" threshold (default: ``model``'s ``thresholds(model).unknown``), see
    both score histograms and, at that threshold, the share of enrolled faces named correctly /
    turned away and of strangers let in.

    Scores: squared distances (lower = more "enrolled"); known_correct: the closed-set name was
    right. Drawn once on creation. Taught in notebook 04. Returns the ipywidgets box.
    """
    import ipywidgets as W
    import matplotlib.pyplot as plt

    ks, kc, ss = np.asarray(known_scores), np.asarray(known_correct, bool), np.asarray(stranger_scores)
    if threshold is None:
        threshold = thresholds(model).unknown
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
    "unknown") and score, from a fitted :class:`facekit.recognition.identify.FaceIdentifier`.

    ``photos``: ``{caption: RGB uint8 image or file path}``. Drawn once on creation. Taught in
    notebook 04. Returns the ipywidgets box.
    """
    import os
    import tempfile

    import ipywidgets as W
    import matplotlib.pyplot as plt

    from facekit.recognition.identify import identify_photo
    from facekit.core.images import ImageLoadError, load_image

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

    from facekit.recognition.cluster import project

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


def threshold_explorer(distances: np.ndarray, same: np.ndarray, threshold: float | None = None,
                       pair_paths: np.ndarray | None = None, max_pairs: int = 4, lo: float = 0.4, hi: float = 2.2,
                       *, model: str = DEFAULT_MODEL):
    """Widget: drag the verification threshold over a set of pairs and see, live, the false accept
    rate (FAR) and false reject rate (FRR) on the DET curve, the histograms with the cut, and the
    pairs it gets wrong at that threshold.

    distances: float (M,) squared L2 of each pair; same: bool (M,); pair_paths: optional (M, 2)
    image paths, to show up to ``max_pairs`` false accepts (the closest different-people pairs
    under the cut) and false rejects (the farthest same-person pairs over it). FAR = different
    pairs with ``d < t`` / different pairs; FRR = same pairs with ``d >= t`` / same pairs (the
    rule of :func:`facekit.recognition.verify.verify`). Drawn once on creation. Taught in notebook 02.
    """
    import ipywidgets as W
    import matplotlib.pyplot as plt

    from facekit.core.images import load_image
    from facekit.core.stats import binomial_ci

    if threshold is None:
        threshold = thresholds(model).verify
    d, s = np.asarray(distances, float).ravel(), np.asarray(same, bool).ravel()
    if d.shape != s.shape or s.all() or not s.any():
        raise ValueError("need distances and same of one shape, with both same and different pairs")
    slider = W.FloatSlider(value=round(float(threshold), 3), min=lo, max=hi, step=0.01, description="threshold",
                           continuous_update=False, readout_format=".2f")
    view = W.Image(format="png")

    def update(*_):
        t = slider.value
        fa = np.flatnonzero(~s & (d < t))
        fr = np.flatnonzero(s & (d >= t))
        n_diff, n_same = int((~s).sum()), int(s.sum())
        far, frr = len(fa) / n_diff, len(fr) / n_same
        lo_ci, hi_ci = binomial_ci(len(fa), n_diff)
        wrong = []
        if pair_paths is not None:
            wrong = [("false accept", i) for i in fa[np.argsort(-d[fa])][:max_pairs // 2 or 1]] + \
                    [("false reject", i) for i in fr[np.argsort(d[fr])][:max_pairs // 2 or 1]]
        rows = 2 if wrong else 1
        fig = plt.figure(figsize=(11, 3.6 * rows))
        grid = fig.add_gridspec(rows, max(2, 2 * len(wrong)), height_ratios=[1.2, 1][:rows])
        ax_h = fig.add_subplot(grid[0, :max(1, grid.ncols // 2)])
        ax_d = fig.add_subplot(grid[0, max(1, grid.ncols // 2):])
        edges = np.linspace(0, max(2.8, d.max()), 57)
        ax_h.hist(d[~s], edges, alpha=0.6, color="tab:red", label=f"different people ({n_diff})")
        ax_h.hist(d[s], edges, alpha=0.6, color="tab:green", label=f"same person ({n_same})")
        ax_h.axvline(t, color="k", ls="--")
        ax_h.set_yscale("log")
        ax_h.set_xlabel("squared L2 distance")
        ax_h.legend(fontsize=8)
        ax_h.set_title(f"threshold {t:.2f}: FAR {100 * far:.2f}% ({len(fa)}/{n_diff}, 95% CI "
                       f"{100 * lo_ci:.2f}-{100 * hi_ci:.2f}%), FRR {100 * frr:.2f}% ({len(fr)}/{n_same})",
                       fontsize=9)
        plot_det(d, s, threshold=t, ax=ax_d)
        for j, (kind, i) in enumerate(wrong):
            for k in (0, 1):
                ax = fig.add_subplot(grid[1, 2 * j + k])
                ax.imshow(load_image(pair_paths[i, k]))
                ax.set_axis_off()
                if k == 0:
                    ax.set_title(f"{kind}, d={d[i]:.2f}", fontsize=8, color="tab:red" if kind == "false accept"
                                 else "tab:green", loc="left")
        fig.tight_layout()
        view.value = figure_png(fig)

    slider.observe(update, names="value")
    update()
    return W.VBox([slider, view])


def sphere_explorer(snapshots: Sequence[tuple[int, np.ndarray]], labels: Sequence[str], index: int = -1,
                    figsize: tuple[float, float] = (5.5, 5.5)):
    """Widget: a slider over training checkpoints of a 3-D embedding, each drawn on the unit sphere.

    snapshots: ``[(step, float (N, 3) unit rows), ...]`` of the same N faces; labels: (N,)
    identities (one colour each); index: the checkpoint shown first (default the last). Drawn once
    on creation. Taught in notebook 03. Returns the ipywidgets box.
    """
    import ipywidgets as W
    import matplotlib.pyplot as plt

    if not snapshots:
        raise ValueError("no snapshots: record (step, embeddings) pairs while training")
    steps = [int(st) for st, _ in snapshots]
    slider = W.SelectionSlider(options=[(str(st), i) for i, st in enumerate(steps)],
                               value=range(len(steps))[index], description="step", continuous_update=False)
    view = W.Image(format="png")

    def update(*_):
        st, e = snapshots[slider.value]
        fig = plt.figure(figsize=figsize)
        ax = fig.add_subplot(projection="3d")
        plot_sphere(np.asarray(e), labels, ax=ax)
        ax.set_title(f"training step {st}", fontsize=10)
        view.value = figure_png(fig)

    slider.observe(update, names="value")
    update()
    return W.VBox([slider, view])
