"""Face verification: "same person?" from the squared L2 distance of two embeddings.

Taught in notebook 02. Embeddings are unit vectors, so the squared L2 distance
``d = ||a - b||^2 = 2 - 2 cos(a, b)`` lies in [0, 4]; two faces are called the same person when
``d < threshold``. The threshold is not a guess, and it belongs to the model that made the
embeddings: ``facekit.thresholds(model).verify`` is the one the standard LFW protocol picks for
facekit's pipeline with that model (see :func:`evaluate_10fold` and ``bench/lfw.py``).

Three parts:

- distances and the decision: :func:`sq_l2`, :func:`pairwise_sq_l2`, :func:`verify`;
- evaluation: :func:`evaluate_10fold` (LFW View 2 protocol), :func:`best_threshold`,
  :func:`roc_curve`, :func:`roc_auc`, :func:`tar_at_far`;
- LFW with facekit's pipeline (cached on disk) lives in :mod:`facekit.teach.lfw`.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from facekit.models.registry import DEFAULT_MODEL, thresholds

__all__ = [
    "sq_l2", "pairwise_sq_l2", "cosine_to_sq_l2", "sq_l2_to_cosine", "verify",
    "accuracy_at", "best_threshold", "TenFoldResult", "evaluate_10fold", "roc_curve", "roc_auc",
    "tar_at_far", "centered_cosine_distance", "evaluate_10fold_centered", "PUBLISHED_LFW",
]

#: Published LFW accuracies (mean of the 10 folds) to compare with; taught in notebook 02.
PUBLISHED_LFW = {
    "FaceNet paper (Schroff et al. 2015)": 0.9963,
    "facenet 20170512-110547 (this model)": 0.992,
    "DeepFace (Taigman et al. 2014)": 0.9735,
    "humans, cropped faces (Kumar et al. 2009)": 0.9753,
}


# --- distances and the decision ----------------------------------------------------------

def _as_2d(x: np.ndarray, name: str) -> np.ndarray:
    x = np.asarray(x, dtype=np.float64)
    if x.ndim == 1:
        x = x[None, :]
    if x.ndim != 2:
        raise ValueError(f"{name}: expected embeddings of shape (D,) or (N, D), got {x.shape}")
    return x


def sq_l2(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Row-wise squared L2 distance of ``a`` and ``b`` (both (N, D) or (D,)): float64 (N,).

    Taught in notebook 02. For unit embeddings this is ``2 - 2 cos`` in [0, 4].
    """
    a, b = _as_2d(a, "a"), _as_2d(b, "b")
    if a.shape[1] != b.shape[1] or (len(a) != len(b) and 1 not in (len(a), len(b))):
        raise ValueError(f"shapes {a.shape} and {b.shape} do not pair up row by row")
    return ((a - b) ** 2).sum(axis=1)


def pairwise_sq_l2(a: np.ndarray, b: np.ndarray | None = None) -> np.ndarray:
    """All squared L2 distances between rows of ``a`` (N, D) and ``b`` (M, D; default ``a``).

    Returns float64 (N, M), clipped at 0 (rounding) and with an exact 0 diagonal when ``b`` is
    ``None``. Taught in notebook 02 (the distance heatmap).
    """
    a = _as_2d(a, "a")
    bb = a if b is None else _as_2d(b, "b")
    if a.shape[1] != bb.shape[1]:
        raise ValueError(f"embedding sizes differ: {a.shape[1]} vs {bb.shape[1]}")
    d = (a ** 2).sum(1)[:, None] + (bb ** 2).sum(1)[None, :] - 2.0 * a @ bb.T
    np.maximum(d, 0.0, out=d)
    if b is None:
        np.fill_diagonal(d, 0.0)
    return d


def cosine_to_sq_l2(cos: np.ndarray | float) -> np.ndarray | float:
    """Cosine similarity of unit vectors -> squared L2 distance (``2 - 2 cos``). Notebook 02."""
    return 2.0 - 2.0 * np.asarray(cos) if np.ndim(cos) else 2.0 - 2.0 * float(cos)


def sq_l2_to_cosine(d: np.ndarray | float) -> np.ndarray | float:
    """Squared L2 distance of unit vectors -> cosine similarity (``1 - d / 2``). Notebook 02."""
    return 1.0 - np.asarray(d) / 2.0 if np.ndim(d) else 1.0 - float(d) / 2.0


def verify(emb_a: np.ndarray, emb_b: np.ndarray, threshold: float | None = None, *,
           model: str = DEFAULT_MODEL) -> tuple[bool, float]:
    """Is it the same person? ``(same, distance)`` for two unit embeddings (D,) made by ``model``.

    ``same`` is ``distance < threshold``; ``distance`` is squared L2 in [0, 4]. ``threshold=None``
    takes ``model``'s calibrated cut, ``facekit.thresholds(model).verify`` (1.22 for facenet128,
    chosen by the LFW 10-fold protocol for facekit's pipeline); ``model`` may also be an embeddings
    fingerprint (``Embedder.fingerprint``). Lower the threshold to make false matches rarer, at the
    cost of rejecting more genuine pairs. Taught in notebook 02.
    """
    a, b = np.asarray(emb_a), np.asarray(emb_b)
    if a.ndim != 1 or b.ndim != 1:
        raise ValueError(f"verify compares two single embeddings (D,), got {a.shape} and {b.shape}; "
                         "use sq_l2 for rows of pairs")
    if threshold is None:
        threshold = thresholds(model).verify
    d = float(sq_l2(a, b)[0])
    return d < threshold, d


# --- evaluation ----------------------------------------------------------------------------

def _check_pairs(distances, same) -> tuple[np.ndarray, np.ndarray]:
    d = np.asarray(distances, dtype=np.float64).ravel()
    s = np.asarray(same).ravel()
    if s.dtype != bool:
        if not np.isin(s, (0, 1)).all():
            raise ValueError("same must be booleans (True = same person)")
        s = s.astype(bool)
    if d.shape != s.shape:
        raise ValueError(f"distances {d.shape} and same {s.shape} must have the same length")
    if not np.isfinite(d).all():
        raise ValueError("distances contain NaN or inf")
    return d, s


def accuracy_at(distances: np.ndarray, same: np.ndarray, threshold: float) -> float:
    """Fraction of pairs classified right when "same" means ``distance < threshold``. Notebook 02."""
    d, s = _check_pairs(distances, same)
    return float(np.mean((d < threshold) == s)) if len(d) else float("nan")


def best_threshold(distances: np.ndarray, same: np.ndarray) -> tuple[float, float]:
    """The threshold maximising accuracy on these pairs, and that accuracy.

    Exact search: every midpoint between consecutive sorted distances is a candidate (plus one
    below the smallest and one above the largest). When several thresholds tie, the middle one
    of the tied candidates is returned (the centre of the best plateau, the most robust choice).
    Taught in notebook 02.
    """
    d, s = _check_pairs(distances, same)
    if len(d) == 0:
        raise ValueError("no pairs to choose a threshold from")
    order = np.argsort(d, kind="stable")
    ds, ss = d[order], s[order]
    uniq, first = np.unique(ds, return_index=True)
    # threshold below uniq[k] classifies ds[:first[k]] as "same"
    cand = np.concatenate([[uniq[0] - 1e-6], (uniq[:-1] + uniq[1:]) / 2.0, [uniq[-1] + 1e-6]])
    n_below = np.concatenate([first, [len(ds)]])
    same_cum = np.concatenate([[0], np.cumsum(ss)])
    tp = same_cum[n_below]
    tn = (~ss).sum() - (n_below - tp)
    acc = (tp + tn) / len(ds)
    best = np.flatnonzero(acc == acc.max())
    k = best[len(best) // 2]
    return float(cand[k]), float(acc[k])


@dataclass(frozen=True)
class TenFoldResult:
    """Outcome of :func:`evaluate_10fold`.

    accuracies: float (K,) test accuracy of each fold; thresholds: float (K,) the threshold used
    on each fold (chosen on the others); threshold / threshold_accuracy: best single threshold
    over all pairs and its accuracy (what a model's ``thresholds(model).verify`` is set from); auc: ROC AUC
    over all pairs.
    """

    accuracies: np.ndarray
    thresholds: np.ndarray
    threshold: float
    threshold_accuracy: float
    auc: float
    n_pairs: int

    @property
    def mean(self) -> float:
        return float(np.mean(self.accuracies))

    @property
    def std(self) -> float:
        """Fold-to-fold spread (population ``np.std``, as facenet's ``validate_on_lfw`` prints): the
        spread of ONE fold's accuracy, not the uncertainty of the mean; see :attr:`sem`."""
        return float(np.std(self.accuracies))

    @property
    def sem(self) -> float:
        """Standard error of the mean accuracy (:func:`facekit.core.stats.standard_error`: sample std /
        sqrt(K)): what a published "±" such as FaceNet's "99.63% ± 0.09" is."""
        from facekit.core.stats import standard_error

        return standard_error(self.accuracies)

    def __str__(self) -> str:
        return (f"LFW-protocol accuracy {100 * self.mean:.2f}% (std {100 * self.std:.2f}, "
                f"s.e. {100 * self.sem:.2f}) over "
                f"{len(self.accuracies)} folds ({self.n_pairs} pairs); per-fold thresholds "
                f"{self.thresholds.min():.3f}..{self.thresholds.max():.3f}; best single threshold "
                f"{self.threshold:.3f} ({100 * self.threshold_accuracy:.2f}%); AUC {self.auc:.4f}")

    def to_dict(self) -> dict:
        return {"accuracy": self.mean, "std": self.std, "sem": self.sem, "threshold": self.threshold,
                "threshold_accuracy": self.threshold_accuracy, "auc": self.auc, "n_pairs": self.n_pairs,
                "fold_accuracies": [float(a) for a in self.accuracies],
                "fold_thresholds": [float(t) for t in self.thresholds]}


def evaluate_10fold(distances: np.ndarray, same: np.ndarray, folds: np.ndarray) -> TenFoldResult:
    """The LFW View 2 protocol: for each fold, pick the threshold on the OTHER folds, test on it.

    distances: float (M,) squared L2 of each pair; same: bool (M,); folds: int (M,) fold ids
    (10 folds for LFW, any number >= 2 works). Reports each fold's accuracy, the thresholds used,
    and the best single threshold over all pairs. Papers quote the mean of the fold accuracies
    with a "±" that is the STANDARD ERROR of the mean (FaceNet's "99.63% ± 0.09"):
    ``result.sem`` = sample std / sqrt(K). ``result.std`` is the fold-to-fold (population) std,
    about sqrt(K) times larger (3.2x for 10 folds): do not compare it with a published "±".
    Taught in notebook 02; ``bench/lfw.py`` runs it on all 6,000 pairs.
    """
    d, s = _check_pairs(distances, same)
    f = np.asarray(folds).ravel()
    if f.shape != d.shape:
        raise ValueError(f"folds {f.shape} must match distances {d.shape}")
    return _ten_fold(lambda train: d, s, f)


def _ten_fold(distances_for, s: np.ndarray, f: np.ndarray) -> TenFoldResult:
    """The fold loop: ``distances_for(train_mask)`` gives every pair's distance using statistics
    of the training pairs only (plain distances ignore the mask)."""
    ids = np.unique(f)
    if len(ids) < 2:
        raise ValueError("need at least 2 folds (LFW View 2 has 10)")
    accs, ths = [], []
    for k in ids:
        train = f != k
        d = distances_for(train)
        t, _ = best_threshold(d[train], s[train])
        ths.append(t)
        accs.append(accuracy_at(d[~train], s[~train], t))
    d = distances_for(np.ones_like(s, bool))
    t_all, a_all = best_threshold(d, s)
    auc = roc_auc(d, s) if s.any() and (~s).any() else float("nan")
    return TenFoldResult(np.asarray(accs), np.asarray(ths), t_all, a_all, auc, len(d))


def centered_cosine_distance(a: np.ndarray, b: np.ndarray, mean: np.ndarray) -> np.ndarray:
    """``2 - 2 cos(a - mean, b - mean)`` per row: float64 (M,), in [0, 4] like squared L2 of unit
    vectors (equal to it when ``mean`` is zero)."""
    a, b = _as_2d(a, "a").astype(np.float64) - mean, _as_2d(b, "b").astype(np.float64) - mean
    cos = (a * b).sum(1) / np.maximum(np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1), 1e-12)
    return 2.0 - 2.0 * cos


def evaluate_10fold_centered(a: np.ndarray, b: np.ndarray, same: np.ndarray, folds: np.ndarray) -> TenFoldResult:
    """:func:`evaluate_10fold` with facenet's ``--subtract_mean`` option: for each test fold, the
    mean embedding of the OTHER folds' images is subtracted before the cosine distance
    (:func:`centered_cosine_distance`), so no statistic of the test fold is used.

    a, b: float (M, D) embeddings of each pair's two images. The reported ``threshold`` and
    ``auc`` use the mean over all pairs. Shown in notebook 02 and ``bench/lfw.py`` as a variant:
    the default verification rule (:func:`verify`) stays plain squared L2, which needs no mean.
    """
    a, b = _as_2d(a, "a"), _as_2d(b, "b")
    s = np.asarray(same, bool).ravel()
    f = np.asarray(folds).ravel()
    if not (len(a) == len(b) == len(s) == len(f)):
        raise ValueError(f"a {a.shape}, b {b.shape}, same {s.shape} and folds {f.shape} must have one row per pair")

    def distances_for(train: np.ndarray) -> np.ndarray:
        mean = np.concatenate([a[train], b[train]]).astype(np.float64).mean(0)
        return centered_cosine_distance(a, b, mean)

    return _ten_fold(distances_for, s, f)


def roc_curve(distances: np.ndarray, same: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """ROC of the rule ``distance < t``: ``(fpr, tpr, thresholds)`` as t sweeps (scikit-learn's).

    fpr: false accept rate (different people called same); tpr: true accept rate. Thresholds
    are in squared L2 (the first is +inf's counterpart, larger than every distance). Notebook 02.
    """
    from sklearn.metrics import roc_curve as _roc

    d, s = _check_pairs(distances, same)
    fpr, tpr, th = _roc(s, -d)
    return fpr, tpr, -th


def roc_auc(distances: np.ndarray, same: np.ndarray) -> float:
    """Area under the ROC curve: probability that a same pair is closer than a different pair.
    Taught in notebook 02."""
    from sklearn.metrics import roc_auc_score

    d, s = _check_pairs(distances, same)
    return float(roc_auc_score(s, -d))


def tar_at_far(distances: np.ndarray, same: np.ndarray, far: float = 1e-3) -> tuple[float, float]:
    """True accept rate at a false accept rate <= ``far`` (FaceNet's "VAL@FAR"), and its threshold.
    Taught in notebook 02."""
    fpr, tpr, th = roc_curve(distances, same)
    ok = np.flatnonzero(fpr <= far)
    k = ok[-1]
    return float(tpr[k]), float(th[k])
