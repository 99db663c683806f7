"""Baselines the notebooks compare FaceNet with (notebook 04): eigenfaces + SVM, and cross-validated
names for any classifier.

Eigenfaces (Turk and Pentland, 1991) are PCA on raw pixels; with an SVM on top they are the classic
pre-deep-learning recogniser that FaceNet embeddings are measured against.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np

from facekit.recognition.identify import FaceIdentifier

__all__ = ["cross_val_names", "eigenfaces_classifier"]


def cross_val_names(embeddings: np.ndarray, labels: Sequence[str], folds: int = 5, C: float = 1.0,
                    random_state: int = 0) -> tuple[np.ndarray, int]:
    """Closed-set names predicted for each face by a linear SVM that never saw it (stratified
    k-fold): ``(names (N,) str, n_splits)``. ``folds`` is capped by the smallest person's photo
    count (at least 2 photos each are needed). Taught in notebook 04."""
    from sklearn.model_selection import StratifiedKFold, cross_val_predict

    y = np.asarray([str(v) for v in labels])
    counts = np.unique(y, return_counts=True)[1]
    if len(counts) < 2 or counts.min() < 2:
        raise ValueError("cross-validation needs at least 2 people with at least 2 photos each "
                         f"(got counts {dict(zip(*np.unique(y, return_counts=True)))})")
    k = int(min(folds, counts.min()))
    cv = StratifiedKFold(n_splits=k, shuffle=True, random_state=random_state)
    est = FaceIdentifier(threshold=float("inf"), C=C, random_state=random_state)
    return cross_val_predict(est, np.asarray(embeddings, np.float32), y, cv=cv), k  # fit() makes rows unit



def eigenfaces_classifier(n_components: int = 150, kernel: str = "linear", C: float | None = None,
                          random_state: int = 0):
    """scikit-learn's classic "eigenfaces" face recogniser: PCA (whitened) on raw pixels + SVM.

    Input: flattened grey pixels in [0, 1] (N, 1850) (see :func:`eigenface_pixels`).
    ``kernel="linear"`` (``LinearSVC``, the classifier :class:`FaceIdentifier` uses) or ``"rbf"``
    (``SVC(class_weight="balanced")`` as in scikit-learn's example; ``C=1000, gamma=0.005``
    unless tuned). Taught in notebook 04.
    """
    from sklearn.decomposition import PCA
    from sklearn.pipeline import make_pipeline
    from sklearn.svm import SVC, LinearSVC

    pca = PCA(n_components=n_components, whiten=True, svd_solver="randomized", random_state=random_state)
    if kernel == "linear":
        svm = LinearSVC(C=1.0 if C is None else C, random_state=random_state, dual="auto", max_iter=10000)
    elif kernel == "rbf":
        svm = SVC(kernel="rbf", class_weight="balanced", C=1000.0 if C is None else C, gamma=0.005,
                  random_state=random_state)
    else:
        raise ValueError(f"kernel must be 'linear' or 'rbf', got {kernel!r}")
    return make_pipeline(pca, svm)
