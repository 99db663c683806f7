"""Plotting helpers shared by the notebooks (matplotlib; numpy in).

Taught in notebook 01 (drawing detections) and used throughout. Functions take an optional
``ax`` and return it, so notebooks can compose figures.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np

from .detect import Face

__all__ = ["draw_faces", "image_grid"]


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
