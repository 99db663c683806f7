"""Open-set identification, measured: known people vs strangers, ROC, operating point.

Taught in notebook 04 (section 3) and used by ``bench/identify.py``. The identifier
(:class:`facekit.recognition.identify.FaceIdentifier`) names a face or says "unknown"; these helpers split
people into enrolled ones and strangers (:func:`open_set_split`), score faces under a rejection
rule (:func:`open_set_scores`), draw the rejection ROC (:func:`rejection_roc`), choose a
threshold on calibration people (:func:`choose_threshold`) and report it on held-out ones
(:func:`evaluate_open_set`). All scores are squared L2 distances (lower = more likely enrolled).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from facekit.recognition.verify import pairwise_sq_l2

__all__ = ["OpenSetResult", "REJECTION_RULES", "open_set_scores", "rejection_roc", "choose_threshold",
           "open_set_split", "evaluate_open_set"]


@dataclass(frozen=True)
class OpenSetResult:
    """Open-set identification at one threshold (squared L2).

    known_accuracy: fraction of known people's faces accepted AND named correctly;
    known_reject_rate: fraction of known faces called unknown; stranger_accept_rate: fraction
    of strangers' faces given a name; auc: area under the rejection ROC (known vs strangers).
    """

    threshold: float
    known_accuracy: float
    known_reject_rate: float
    stranger_accept_rate: float
    auc: float

    def as_dict(self) -> dict:
        return {k: float(v) for k, v in self.__dict__.items()}


REJECTION_RULES = ("nearest", "nearest_any", "centre", "svm")


def open_set_scores(identifier, embeddings: np.ndarray, rule: str = "nearest") -> tuple[np.ndarray, np.ndarray]:
    """Closed-set names (M,) and a "strangeness" score (M,) (lower = more likely enrolled) under
    one rejection ``rule``. Taught in notebook 04, which compares them:

    - ``"nearest"`` (what :class:`FaceIdentifier` uses): squared distance to the nearest enrolled
      photo of the predicted person;
    - ``"nearest_any"``: squared distance to the nearest enrolled photo of anyone;
    - ``"centre"``: squared distance to the predicted person's mean embedding (re-normalised);
    - ``"svm"``: minus the SVM's best one-vs-rest score (no distance; needs 2+ people).
    """
    if rule not in REJECTION_RULES:
        raise ValueError(f"rule must be one of {REJECTION_RULES}, got {rule!r}")
    names = identifier.predict_closed(embeddings)
    if rule == "nearest":
        return names, identifier.nearest_distance(embeddings, names)
    if rule == "nearest_any":
        return names, identifier.nearest_distance(embeddings)
    if rule == "centre":
        cents = np.stack([identifier.gallery_[identifier.gallery_labels_ == c].mean(0) for c in identifier.classes_])
        cents = cents / np.linalg.norm(cents, axis=1, keepdims=True)
        x = np.asarray(embeddings, np.float32).reshape(len(names), -1)
        d = pairwise_sq_l2(x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12), cents)
        return names, d[np.arange(len(names)), np.searchsorted(identifier.classes_, names)]
    if len(identifier.classes_) < 2:
        raise ValueError("the 'svm' rule needs at least 2 enrolled people")
    return names, -identifier.decision_function(embeddings).max(axis=1)


def rejection_roc(known_scores: np.ndarray, stranger_scores: np.ndarray) -> dict:
    """ROC of "accept" (score <= threshold) for known faces vs strangers. Taught in notebook 04.

    Returns ``{"fpr": strangers accepted, "tpr": known accepted, "thresholds": squared L2,
    "auc": float}`` (arrays sorted by increasing threshold).
    """
    from sklearn.metrics import roc_auc_score, roc_curve

    y = np.r_[np.ones(len(known_scores)), np.zeros(len(stranger_scores))]
    s = -np.r_[known_scores, stranger_scores]  # lower distance = more "known"
    fpr, tpr, th = roc_curve(y, s)
    return {"fpr": fpr, "tpr": tpr, "thresholds": -th, "auc": float(roc_auc_score(y, s))}


def evaluate_open_set(known_scores: np.ndarray, known_correct: np.ndarray, stranger_scores: np.ndarray,
                      threshold: float) -> OpenSetResult:
    """Open-set figures at ``threshold``; ``known_correct``: the closed-set answer was right."""
    ks, kc, ss = np.asarray(known_scores), np.asarray(known_correct, bool), np.asarray(stranger_scores)
    acc = ks <= threshold
    return OpenSetResult(float(threshold), float(np.mean(acc & kc)), float(np.mean(~acc)),
                         float(np.mean(ss <= threshold)), rejection_roc(ks, ss)["auc"])


def choose_threshold(known_scores: np.ndarray, known_correct: np.ndarray, stranger_scores: np.ndarray,
                     max_stranger_accept: float | None = None) -> float:
    """The operating point on calibration data. Taught in notebook 04.

    Default: the threshold maximising the balanced open-set accuracy
    ``(known named correctly + strangers rejected) / 2`` (the middle of the best range). With ``max_stranger_accept`` (e.g. 0.01
    for a door lock): the largest threshold accepting at most that fraction of strangers.
    """
    ks, kc, ss = np.asarray(known_scores), np.asarray(known_correct, bool), np.sort(np.asarray(stranger_scores))
    cands = np.unique(np.r_[ks, ss, 0.0, 4.0])
    # midpoints between consecutive candidate scores are robust operating points
    cands = np.r_[cands[0], (cands[:-1] + cands[1:]) / 2]
    acc_known = np.array([np.mean((ks <= t) & kc) for t in cands])
    acc_str = np.searchsorted(ss, cands, side="right") / max(len(ss), 1)
    if max_stranger_accept is not None:
        ok = acc_str <= max_stranger_accept
        return float(cands[ok].max()) if ok.any() else float(cands[0])
    score = acc_known + (1 - acc_str)
    best = np.flatnonzero(score >= score.max() - 1e-12)
    run = best[: 1 + int(np.argmax(np.diff(np.r_[best, best[-1] + 2]) > 1))]  # first run of tied optima
    return float((cands[run[0]] + cands[run[-1]]) / 2)  # its middle: the widest margin on both sides


def open_set_split(labels: np.ndarray, n_known: int | float = 0.5, calib_frac: float = 0.5,
                   test_size: float = 0.25, random_state: int = 0) -> dict[str, np.ndarray]:
    """Split face indices for an honest open-set experiment. Taught in notebook 04.

    Identities are split into *known* (``n_known`` people or fraction) and *strangers*; strangers
    into calibration and test identities (``calib_frac``); each known person's faces into
    gallery / calibration / test (``test_size`` each for calibration and test). Returns index
    arrays ``gallery, known_calib, known_test, stranger_calib, stranger_test``: the threshold is
    chosen on the ``*_calib`` parts and reported on the ``*_test`` parts (people never used to
    pick it).
    """
    from sklearn.model_selection import train_test_split

    labels = np.asarray(labels)
    rng = np.random.default_rng(random_state)
    ids = np.array(sorted(set(labels.tolist())))
    rng.shuffle(ids)
    k = int(round(n_known * len(ids))) if isinstance(n_known, float) else int(n_known)
    if not 1 <= k < len(ids) - 1:
        raise ValueError(f"need at least one known person and two strangers, got {k} of {len(ids)}")
    known, strangers = ids[:k], ids[k:]
    n_cal = max(1, min(len(strangers) - 1, int(round(calib_frac * len(strangers)))))
    idx = np.arange(len(labels))
    known_idx = idx[np.isin(labels, known)]
    rest, test = train_test_split(known_idx, test_size=test_size, stratify=labels[known_idx],
                                  random_state=random_state)
    gal, cal = train_test_split(rest, test_size=test_size / (1 - test_size), stratify=labels[rest],
                                random_state=random_state)
    return {"gallery": np.sort(gal), "known_calib": np.sort(cal), "known_test": np.sort(test),
            "stranger_calib": idx[np.isin(labels, strangers[:n_cal])],
            "stranger_test": idx[np.isin(labels, strangers[n_cal:])]}
