"""Who is this? A linear SVM on FaceNet embeddings, plus an open-set "unknown" rule.

Taught in notebook 04. An SVM always answers one of the names it was trained on, so a stranger
would be called by the nearest known name. :class:`FaceIdentifier` therefore also keeps the
enrolled embeddings (the *gallery*) and rejects a face as :data:`UNKNOWN` when its squared L2
distance to the nearest enrolled embedding of the predicted person is above ``threshold``.
With a single enrolled person (an SVM needs two classes) only that distance rule is used.

Saved identifiers are plain arrays in an ``.npz`` (loaded with ``allow_pickle=False``) plus a JSON
metadata string with a format version, so loading someone else's file cannot run code, and the
SVM's coefficients are restored exactly (a loaded identifier predicts exactly as before).

Also here: LFW's "people" images with their embeddings (:func:`lfw_people_faces`; cached on
disk by :func:`facekit.verify.embed_lfw`, so notebooks 04-05 and ``bench/identify.py`` embed each
image once) and the open-set evaluation helpers (:func:`open_set_split`, :func:`rejection_roc`,
:func:`choose_threshold`, :func:`evaluate_open_set`).
"""

from __future__ import annotations

import json
import os
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np
from sklearn.base import BaseEstimator, ClassifierMixin  # fit/predict/get_params: clone, cross_val_predict

from .verify import pairwise_sq_l2

__all__ = [
    "UNKNOWN", "DEFAULT_THRESHOLD", "FORMAT_NAME", "FORMAT_VERSION", "IdentifierFormatError",
    "FaceIdentifier", "identify_photo", "cross_val_names", "eigenfaces_classifier",
    "OpenSetResult", "REJECTION_RULES", "open_set_scores", "rejection_roc", "choose_threshold", "open_set_split",
    "evaluate_open_set",
]

UNKNOWN = "unknown"
# Squared L2 distance to the nearest enrolled photo above which a face is "unknown". Chosen with
# bench/identify.py on LFW (enrolled people vs strangers, see notebook 04): the threshold that
# maximises balanced open-set accuracy on calibration people is 0.77-0.82 for personal-sized
# galleries (3-10 people x 5-10 photos) and 0.67 for 31 people x 10+ photos (the more enrolled
# photos, the closer a stranger gets to one of them). At 0.8, on held-out test people: enrolled
# faces named correctly 98.9-99.7%, strangers accepted 0.1-0.6% (3-10 people) and 2.6% (31 people).
DEFAULT_THRESHOLD = 0.8
FORMAT_NAME = "facekit.FaceIdentifier"
FORMAT_VERSION = 1


class IdentifierFormatError(ValueError):
    """A file is not a saved :class:`FaceIdentifier` (or one of a newer format version)."""


def _l2n(x: np.ndarray) -> np.ndarray:
    x = np.asarray(x, dtype=np.float32)
    if x.ndim == 1:
        x = x[None, :]
    if x.ndim != 2:
        raise ValueError(f"embeddings must be (N, d) float32, got shape {x.shape}")
    n = np.linalg.norm(x, axis=1, keepdims=True)
    return x / np.maximum(n, 1e-12)


# --- the identifier ----------------------------------------------------------------------

class FaceIdentifier(ClassifierMixin, BaseEstimator):
    """Linear SVM on L2-normalised embeddings + rejection of strangers. Taught in notebook 04.

    Parameters
    ----------
    threshold : squared L2 distance (unit embeddings, in [0, 4]) to the nearest enrolled
        embedding of the predicted person above which a face is :data:`UNKNOWN`. ``None`` ->
        :data:`DEFAULT_THRESHOLD` (chosen on LFW in notebook 04 / ``bench/identify.py``);
        ``float("inf")`` never rejects (closed-set identification).
    C : SVM regularisation (``sklearn.svm.LinearSVC``; default 1.0: unit embeddings are
        well separated, the value hardly matters).
    random_state : seed of liblinear's coordinate descent (fits are deterministic).

    Attributes after :meth:`fit`: ``classes_`` (k,) str, ``coef_`` (k, d) float64 and
    ``intercept_`` (k,) float64 one-vs-rest scores (empty when k == 1), ``gallery_`` (N, d)
    float32 unit rows, ``gallery_labels_`` (N,) str.
    """

    def __init__(self, threshold: float | None = None, C: float = 1.0, random_state: int = 0):
        self.threshold = threshold
        self.C = C
        self.random_state = random_state

    # -- fitting ------------------------------------------------------------------------
    def fit(self, embeddings: np.ndarray, labels: Sequence[str]) -> "FaceIdentifier":
        """Enrol ``embeddings`` (N, d) with their ``labels`` (N names) and train the SVM.

        Works with one person (then only the distance rule decides). Returns ``self``.
        """
        x = _l2n(embeddings)
        y = np.asarray([str(v) for v in labels], dtype=str)
        if len(x) == 0:
            raise ValueError("fit() needs at least one embedding")
        if len(y) != len(x):
            raise ValueError(f"{len(x)} embeddings but {len(y)} labels")
        if UNKNOWN in set(y.tolist()):
            raise ValueError(f"{UNKNOWN!r} is reserved for rejected faces; rename that person")
        self.gallery_ = x
        self.gallery_labels_ = y
        self.classes_ = np.asarray(sorted(set(y.tolist())), dtype=str)
        k, d = len(self.classes_), x.shape[1]
        if k == 1:
            self.coef_ = np.zeros((0, d))
            self.intercept_ = np.zeros(0)
            return self
        from sklearn.svm import LinearSVC

        svm = LinearSVC(C=self.C, random_state=self.random_state, dual="auto", max_iter=10000)
        svm.fit(x, y)
        coef, b = np.asarray(svm.coef_, np.float64), np.asarray(svm.intercept_, np.float64)
        if k == 2:  # liblinear's binary form: one row, positive = classes_[1]
            coef, b = np.vstack([-coef, coef]), np.concatenate([-b, b])
        self.coef_, self.intercept_ = coef, b
        return self

    def enroll(self, embeddings: np.ndarray, name: str) -> "FaceIdentifier":
        """Add a person (or more photos of an enrolled one) and refit. Returns ``self``."""
        x = _l2n(embeddings)
        if getattr(self, "gallery_", None) is None or len(self.gallery_) == 0:
            return self.fit(x, [name] * len(x))
        if x.shape[1] != self.gallery_.shape[1]:
            raise ValueError(f"embeddings have {x.shape[1]} dims, the gallery {self.gallery_.shape[1]}"
                             " (embed with the same model)")
        return self.fit(np.vstack([self.gallery_, x]),
                        np.concatenate([self.gallery_labels_, [str(name)] * len(x)]))

    @property
    def names(self) -> list[str]:
        """Enrolled people, sorted (``[]`` before fit)."""
        return [str(c) for c in getattr(self, "classes_", [])]

    @property
    def threshold_(self) -> float:
        """The rejection threshold in use (``threshold`` or :data:`DEFAULT_THRESHOLD`)."""
        return float(DEFAULT_THRESHOLD if self.threshold is None else self.threshold)

    def _check_fitted(self) -> None:
        if getattr(self, "gallery_", None) is None:
            raise RuntimeError("this FaceIdentifier is not fitted: call fit() or enroll() first")

    # -- prediction ---------------------------------------------------------------------
    def decision_function(self, embeddings: np.ndarray) -> np.ndarray:
        """One-vs-rest SVM scores (M, k) float64 (higher = more that person); (M, 1) zeros if k == 1."""
        self._check_fitted()
        x = _l2n(embeddings).astype(np.float64)
        if len(self.classes_) == 1:
            return np.zeros((len(x), 1))
        return x @ self.coef_.T + self.intercept_

    def predict_closed(self, embeddings: np.ndarray) -> np.ndarray:
        """The SVM's name for each face, never :data:`UNKNOWN` (closed-set): (M,) str."""
        s = self.decision_function(embeddings)
        return self.classes_[np.argmax(s, axis=1)] if len(s) else np.zeros(0, dtype=str)

    def nearest_distance(self, embeddings: np.ndarray, names: Sequence[str] | None = None) -> np.ndarray:
        """Squared L2 distance (M,) to the nearest enrolled embedding of ``names[i]`` (default:
        of anyone)."""
        self._check_fitted()
        x = _l2n(embeddings)
        d = pairwise_sq_l2(x, self.gallery_)
        if names is None:
            return d.min(axis=1) if d.shape[1] else np.full(len(x), 4.0)
        mask = self.gallery_labels_[None, :] == np.asarray(names, dtype=str)[:, None]
        return np.where(mask, d, np.inf).min(axis=1)

    def predict_scores(self, embeddings: np.ndarray, reject: bool = True) -> tuple[np.ndarray, np.ndarray]:
        """Names (M,) str (:data:`UNKNOWN` where rejected, unless ``reject=False``) and scores
        (M,) float: the squared distance to the nearest enrolled face of the predicted person
        (lower = surer; a face is rejected when its score is above ``threshold``)."""
        x = _l2n(embeddings)
        if len(x) == 0:
            return np.zeros(0, dtype=str), np.zeros(0)
        names = self.predict_closed(x)
        score = self.nearest_distance(x, names)
        if reject:
            names = np.where(score > self.threshold_, UNKNOWN, names)
        return names, score

    def predict(self, embeddings: np.ndarray) -> np.ndarray:
        """Names (M,) str, :data:`UNKNOWN` for faces farther than ``threshold`` from the gallery."""
        return self.predict_scores(embeddings)[0]

    # -- persistence (no pickle) --------------------------------------------------------
    def save(self, path: str | os.PathLike) -> Path:
        """Write arrays + JSON metadata to ``path`` (``.npz`` added if missing). Returns the path.

        The file holds only numeric and string arrays, read back with ``allow_pickle=False``.
        """
        self._check_fitted()
        path = Path(path)
        if path.suffix != ".npz":
            path = path.with_name(path.name + ".npz")
        meta = {"format": FORMAT_NAME, "version": FORMAT_VERSION,
                "C": float(self.C), "random_state": self.random_state,
                "threshold": None if self.threshold is None else float(self.threshold),
                "n_gallery": int(len(self.gallery_)), "dim": int(self.gallery_.shape[1]),
                "names": self.names}
        if meta["threshold"] is not None and not np.isfinite(meta["threshold"]):
            meta["threshold"] = "inf"
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(path.name + ".tmp.npz")
        np.savez(tmp, metadata=np.asarray(json.dumps(meta)), gallery=self.gallery_,
                 gallery_labels=self.gallery_labels_, classes=self.classes_,
                 coef=self.coef_, intercept=self.intercept_)
        os.replace(tmp, path)
        return path

    @classmethod
    def load(cls, path: str | os.PathLike) -> "FaceIdentifier":
        """Read a file written by :meth:`save`; refuses anything else with :class:`IdentifierFormatError`."""
        path = Path(path)
        fix = "pass a file written by FaceIdentifier.save()"
        if not path.is_file():
            raise FileNotFoundError(f"{path}: no such file. Fix: {fix}")
        with open(path, "rb") as fh:
            magic = fh.read(4)
        if magic != b"PK\x03\x04":  # every .npz is a zip archive
            raise IdentifierFormatError(f"{path}: not a facekit identifier file (not an .npz archive). "
                                        f"Fix: {fix}")
        try:
            with np.load(path, allow_pickle=False) as z:
                arrays = {k: z[k] for k in z.files}
        except (zipfile.BadZipFile, OSError, EOFError) as exc:
            raise IdentifierFormatError(f"{path}: not a facekit identifier file (not an .npz archive: "
                                        f"{exc}). Fix: {fix}") from None
        except ValueError as exc:  # e.g. object arrays, which would need pickle
            raise IdentifierFormatError(f"{path}: refused, it holds data that needs pickle to load "
                                        f"({exc}). Fix: {fix}") from None
        need = {"metadata", "gallery", "gallery_labels", "classes", "coef", "intercept"}
        if "metadata" not in arrays:
            raise IdentifierFormatError(f"{path}: not a facekit identifier file (no 'metadata' entry). Fix: {fix}")
        try:
            meta = json.loads(str(arrays["metadata"]))
        except json.JSONDecodeError as exc:
            raise IdentifierFormatError(f"{path}: metadata is not JSON ({exc}). Fix: {fix}") from None
        if not isinstance(meta, dict) or meta.get("format") != FORMAT_NAME:
            raise IdentifierFormatError(f"{path}: not a facekit identifier file (format "
                                        f"{meta.get('format') if isinstance(meta, dict) else meta!r}). Fix: {fix}")
        if meta.get("version") != FORMAT_VERSION:
            raise IdentifierFormatError(f"{path}: format version {meta.get('version')!r}, this facekit reads "
                                        f"version {FORMAT_VERSION}. Fix: upgrade facekit or re-save the file")
        if need - set(arrays):
            raise IdentifierFormatError(f"{path}: missing arrays {sorted(need - set(arrays))}. Fix: {fix}")
        th = meta.get("threshold")
        obj = cls(threshold=float("inf") if th == "inf" else th, C=meta.get("C", 1.0),
                  random_state=meta.get("random_state", 0))
        obj.gallery_ = arrays["gallery"].astype(np.float32, copy=False)
        obj.gallery_labels_ = arrays["gallery_labels"].astype(str)
        obj.classes_ = arrays["classes"].astype(str)
        obj.coef_ = arrays["coef"].astype(np.float64, copy=False)
        obj.intercept_ = arrays["intercept"].astype(np.float64, copy=False)
        k, d = len(obj.classes_), obj.gallery_.shape[1] if obj.gallery_.ndim == 2 else -1
        ok = (obj.gallery_.ndim == 2 and len(obj.gallery_labels_) == len(obj.gallery_)
              and k >= 1 and obj.coef_.shape == ((0 if k == 1 else k), d)
              and obj.intercept_.shape == ((0 if k == 1 else k),)
              and set(obj.gallery_labels_.tolist()) == set(obj.classes_.tolist()))
        if not ok:
            raise IdentifierFormatError(f"{path}: arrays have inconsistent shapes (corrupt file). Fix: {fix}")
        return obj

    def __repr__(self) -> str:
        fitted = getattr(self, "gallery_", None) is not None
        extra = f", {len(self.names)} people, {len(self.gallery_)} faces" if fitted else ""
        return f"FaceIdentifier(threshold={self.threshold!r}, C={self.C!r}{extra})"


def identify_photo(image, identifier: FaceIdentifier, *, detector=None, embedder=None,
                   min_face_size: float | None = None) -> tuple[list, np.ndarray, np.ndarray]:
    """Every face of a photo (RGB array or path) with a name: ``(faces, names, scores)``.

    faces: list of :class:`facekit.pipeline.FaceEmbedding` (sorted by detector confidence);
    names (M,) str with :data:`UNKNOWN` for strangers; scores (M,) squared distances (see
    :meth:`FaceIdentifier.predict_scores`). Taught in notebook 04 (the photo widget).
    """
    from .pipeline import extract_faces

    faces = extract_faces(image, detector=detector, embedder=embedder, min_face_size=min_face_size)
    if not faces:
        return [], np.zeros(0, dtype=str), np.zeros(0)
    names, scores = identifier.predict_scores(np.stack([f.embedding for f in faces]))
    return faces, names, scores


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
    return cross_val_predict(est, _l2n(embeddings), y, cv=cv), k


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


# --- open-set evaluation -----------------------------------------------------------------

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


def open_set_scores(identifier: FaceIdentifier, embeddings: np.ndarray, rule: str = "nearest") -> tuple[np.ndarray, np.ndarray]:
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
        cents = _l2n(cents)
        d = pairwise_sq_l2(_l2n(embeddings), cents)
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


# --- old import paths: LFW people moved to facekit.lfw (kept working, loaded on first use) ---
_LFW_NAMES = ("THUMB", "LFWFaces", "lfw_people_faces", "eigenface_pixels")


def __getattr__(name: str):
    if name in _LFW_NAMES:
        from . import lfw

        return getattr(lfw, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
