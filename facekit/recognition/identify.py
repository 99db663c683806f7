"""Who is this? A linear SVM on FaceNet embeddings, plus an open-set "unknown" rule.

Taught in notebook 04. An SVM always answers one of the names it was trained on, so a stranger
would be called by the nearest known name. :class:`FaceIdentifier` therefore also keeps the
enrolled embeddings (the *gallery*) and rejects a face as :data:`UNKNOWN` when its squared L2
distance to the nearest enrolled embedding of the predicted person is above ``threshold``.
With a single enrolled person (an SVM needs two classes) only that distance rule is used.

Rejection fails closed: a NaN or inf anywhere (query, gallery, SVM coefficients, threshold)
makes the answer :data:`UNKNOWN`, never a name. Names are checked (:func:`facekit.core.names.check_name`)
on every way in: ``fit``, ``enrol``, ``load``.

Saved identifiers are plain arrays in an ``.npz`` (loaded with ``allow_pickle=False``) plus a JSON
metadata string with a format version (:mod:`facekit.core.exchange`: written atomically under a lock,
0600, every value checked on load), so loading someone else's file cannot run code, and the
SVM's coefficients are restored exactly (a loaded identifier predicts exactly as before). Your
people themselves live in the face store (:class:`facekit.store.db.FaceStore`), which refits an
identifier from what it holds (:meth:`~facekit.store.db.FaceStore.identifier`).

Open-set evaluation (ROC, operating point) lives in :mod:`facekit.recognition.openset`, re-exported here.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Sequence

import numpy as np
from sklearn.base import BaseEstimator, ClassifierMixin  # fit/predict/get_params: clone, cross_val_predict

from facekit.core.constants import UNKNOWN
from facekit.core.exchange import (FileFormatError, check_embeddings, check_labels, check_threshold, read_npz,
    write_npz)
from facekit.core.names import check_name
from facekit.recognition.openset import (REJECTION_RULES, OpenSetResult, choose_threshold, evaluate_open_set,
    open_set_scores, open_set_split, rejection_roc)
from facekit.models.registry import DEFAULT_MODEL, model_spec, spec_name, thresholds
from facekit.recognition.verify import pairwise_sq_l2

__all__ = [
    "UNKNOWN", "FORMAT_NAME", "FORMAT_VERSION", "IdentifierFormatError",
    "FaceIdentifier", "default_threshold", "identify_photo", "check_same_model",
    "OpenSetResult", "REJECTION_RULES", "open_set_scores", "rejection_roc", "choose_threshold", "open_set_split",
    "evaluate_open_set",
]

FORMAT_NAME = "facekit.FaceIdentifier"
FORMAT_VERSION = 1
_FIX = "pass a file written by FaceIdentifier.save()"


class IdentifierFormatError(FileFormatError):
    """A file is not a saved :class:`FaceIdentifier` (or one of a newer format version, or it holds
    values facekit refuses: NaN, non-unit embeddings, bad names, a threshold outside [0, 4])."""


def default_threshold(model: str | None = None) -> float:
    """The calibrated "unknown" threshold of ``model``: a registry name or an embeddings
    fingerprint (``"facenet128/..."``; int8 fingerprints have their own); None: the default model."""
    try:
        return float(thresholds(model).unknown)
    except ValueError as exc:
        raise ValueError(f"no calibrated 'unknown' threshold for model {model!r} ({exc}). "
                         "Fix: pass threshold=... explicitly") from None


def _unit(x: np.ndarray, what: str) -> np.ndarray:
    """Rows of ``x`` as float32 (N, d) scaled to unit L2 norm (non-finite rows stay non-finite)."""
    if isinstance(x, (str, os.PathLike)) or (isinstance(x, np.ndarray) and x.dtype.kind in "USO") or \
            (isinstance(x, np.ndarray) and x.ndim == 3 and x.dtype == np.uint8):
        raise TypeError(f"{what} takes embeddings (N, d) float32, not a photo or a path. Fix: embed it first: "
                        "facekit.extract_faces(photo) gives each face's .embedding (or use identify_photo)")
    x = np.asarray(x, dtype=np.float32)
    if x.ndim == 1:
        x = x[None, :]
    if x.ndim != 2:
        raise ValueError(f"{what}: embeddings must be (N, d) float32, got shape {x.shape}")
    with np.errstate(invalid="ignore", over="ignore"):
        n = np.linalg.norm(x, axis=1, keepdims=True)
        return x / np.maximum(n, 1e-12)


def _finite_rows(x: np.ndarray) -> np.ndarray:
    return np.isfinite(x).all(axis=1) if x.ndim == 2 else np.zeros(len(x), bool)


# --- the identifier ----------------------------------------------------------------------

class FaceIdentifier(ClassifierMixin, BaseEstimator):
    """Linear SVM on L2-normalised embeddings + rejection of strangers. Taught in notebook 04.

    Parameters
    ----------
    threshold : squared L2 distance (unit embeddings, in [0, 4]) to the nearest enrolled
        embedding of the predicted person above which a face is :data:`UNKNOWN`. ``None`` ->
        ``model``'s calibrated cut, ``facekit.thresholds(model).unknown`` (0.8 for facenet128,
        chosen on LFW in notebook 04 / ``bench/identify.py``);
        ``float("inf")`` never rejects (closed-set identification); NaN rejects everyone.
    C : SVM regularisation (``sklearn.svm.LinearSVC``; default 1.0: unit embeddings are
        well separated, the value hardly matters).
    random_state : seed of liblinear's coordinate descent (fits are deterministic).
    model : the model that made the embeddings (registry name or embeddings fingerprint; default
        ``"facenet128"``): it supplies the default threshold, and :meth:`fit` refuses embeddings
        of another dimension, naming both.

    Attributes after :meth:`fit`: ``classes_`` (k,) str, ``coef_`` (k, d) float64 and
    ``intercept_`` (k,) float64 one-vs-rest scores (empty when k == 1), ``gallery_`` (N, d)
    float32 unit rows, ``gallery_labels_`` (N,) str.
    """

    def __init__(self, threshold: float | None = None, C: float = 1.0, random_state: int = 0,
                 model: str = DEFAULT_MODEL):
        self.threshold = threshold
        self.C = C
        self.random_state = random_state
        self.model = model

    # -- fitting ------------------------------------------------------------------------
    def fit(self, embeddings: np.ndarray, labels: Sequence[str]) -> "FaceIdentifier":
        """Enrol ``embeddings`` (N, d) with their ``labels`` (N names, checked) and train the SVM.

        Works with one person (then only the distance rule decides). NaN/inf embeddings are
        refused. Returns ``self``.
        """
        x = _unit(embeddings, "fit")
        labels = list(labels)
        if len(x) == 0:
            raise ValueError("fit() needs at least one embedding")
        dim = model_spec(self.model).dim
        if self.threshold is None and x.shape[1] != dim:  # the model's own cut would be meaningless
            raise ValueError(f"fit(): the embeddings have {x.shape[1]} dims, but model {self.model!r} makes {dim}. "
                             f"Fix: pass FaceIdentifier(model=...) naming the model that made them (or threshold=...)")
        if len(labels) != len(x):
            raise ValueError(f"{len(x)} embeddings but {len(labels)} labels")
        if not _finite_rows(x).all():
            raise ValueError(f"fit(): {int((~_finite_rows(x)).sum())} embedding(s) hold NaN or inf (or are all "
                             "zero). Fix: re-embed those faces; facekit never enrols a broken embedding")
        canon = {v: check_name(v) for v in set(labels)}  # raises InvalidNameError (a ValueError)
        y = np.asarray([canon[v] for v in labels], dtype=str)
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

    def enrol(self, embeddings: np.ndarray, name: str) -> "FaceIdentifier":
        """Add a person (or more photos of an enrolled one) and refit. Returns ``self``.

        This changes this object only; to keep the person, add them to the face store
        (:meth:`facekit.store.db.FaceStore.add_faces`)."""
        name = check_name(name)
        x = _unit(embeddings, "enrol")
        if getattr(self, "gallery_", None) is None or len(self.gallery_) == 0:
            return self.fit(x, [name] * len(x))
        if x.shape[1] != self.gallery_.shape[1]:
            raise ValueError(f"embeddings have {x.shape[1]} dims, the gallery {self.gallery_.shape[1]}"
                             " (embed with the same model)")
        return self.fit(np.vstack([self.gallery_, x]),
                        np.concatenate([self.gallery_labels_, [name] * len(x)]))

    enroll = enrol  # US spelling

    @property
    def names(self) -> list[str]:
        """Enrolled people, sorted (``[]`` before fit)."""
        return [str(c) for c in getattr(self, "classes_", [])]

    @property
    def threshold_(self) -> float:
        """The rejection threshold in use (``threshold``, or ``model``'s calibrated "unknown" cut;
        NaN stays NaN, which rejects every face)."""
        if self.threshold is None:
            return default_threshold(self.model)
        try:
            return float(self.threshold)
        except (TypeError, ValueError):
            return float("nan")  # unusable -> reject everyone (fail closed)

    def _check_fitted(self) -> None:
        if getattr(self, "gallery_", None) is None:
            raise RuntimeError("this FaceIdentifier is not fitted: call fit() or enrol() first")

    def _query(self, embeddings: np.ndarray, what: str) -> np.ndarray:
        """Unit query rows, refused (naming both sides) when their dimension is not the gallery's."""
        self._check_fitted()
        x = _unit(embeddings, what)
        if len(x) and x.shape[1] != self.gallery_.shape[1]:
            raise ValueError(f"{what}: the query embeddings have {x.shape[1]} dims, but this identifier's gallery "
                             f"(model {self.model!r}) has {self.gallery_.shape[1]}. Fix: embed the query with "
                             f"model {self.model!r}")
        return x

    # -- prediction ---------------------------------------------------------------------
    def decision_function(self, embeddings: np.ndarray) -> np.ndarray:
        """One-vs-rest SVM scores (M, k) float64 (higher = more that person); (M, 1) zeros if k == 1."""
        x = self._query(embeddings, "decision_function").astype(np.float64)
        if len(self.classes_) == 1:
            return np.where(_finite_rows(x)[:, None], 0.0, np.nan)
        with np.errstate(invalid="ignore", over="ignore"):
            return x @ self.coef_.T + self.intercept_

    def predict_closed(self, embeddings: np.ndarray) -> np.ndarray:
        """The SVM's name for each face (closed-set); :data:`UNKNOWN` only where a score is NaN
        or inf (broken query or coefficients): (M,) str."""
        s = self.decision_function(embeddings)
        if not len(s):
            return np.zeros(0, dtype=str)
        names = self.classes_[np.argmax(np.nan_to_num(s, nan=-np.inf), axis=1)].astype(object)
        names[~_finite_rows(s)] = UNKNOWN
        return names.astype(str)

    def nearest_distance(self, embeddings: np.ndarray, names: Sequence[str] | None = None) -> np.ndarray:
        """Squared L2 distance (M,) to the nearest enrolled embedding of ``names[i]`` (default:
        of anyone); NaN where the query or the gallery is broken, inf for a name not enrolled."""
        x = self._query(embeddings, "nearest_distance")
        with np.errstate(invalid="ignore", over="ignore"):
            d = pairwise_sq_l2(x, self.gallery_)
        d = np.where(np.isfinite(d), d, np.nan)
        if names is None:
            if not d.shape[1]:
                return np.full(len(x), 4.0)
            return np.where(np.isnan(d).any(axis=1), np.nan, np.where(np.isnan(d), np.inf, d).min(axis=1))
        mask = self.gallery_labels_[None, :] == np.asarray(names, dtype=str)[:, None]
        out = np.where(mask, d, np.inf).min(axis=1)  # NaN anywhere in the person's rows -> NaN
        return np.where(np.isnan(np.where(mask, d, 0)).any(axis=1), np.nan, out)

    def predict_scores(self, embeddings: np.ndarray, reject: bool = True) -> tuple[np.ndarray, np.ndarray]:
        """Names (M,) str (:data:`UNKNOWN` where rejected, unless ``reject=False``) and scores
        (M,) float: the squared distance to the nearest enrolled face of the predicted person
        (lower = surer; a face is accepted only when its score is ``<= threshold``, so NaN
        anywhere means :data:`UNKNOWN` even with ``reject=False``; its score is then NaN)."""
        x = _unit(embeddings, "predict")
        if len(x) == 0:
            return np.zeros(0, dtype=str), np.zeros(0)
        names = self.predict_closed(x)
        score = self.nearest_distance(x, names)
        broken = ~np.isfinite(score) | (names == UNKNOWN)
        score = np.where(broken, np.nan, score)
        if reject:
            names = np.where(score <= self.threshold_, names, UNKNOWN)  # False for NaN: fails closed
        else:
            names = np.where(broken, UNKNOWN, names)
        return names, score

    def predict(self, embeddings: np.ndarray) -> np.ndarray:
        """Names (M,) str, :data:`UNKNOWN` for faces farther than ``threshold`` from the nearest enrolled
        photo of the person the SVM names."""
        return self.predict_scores(embeddings)[0]

    # -- persistence (no pickle) --------------------------------------------------------
    @staticmethod
    def npz_path(path: str | os.PathLike) -> Path:
        if not isinstance(path, (str, os.PathLike)):
            raise TypeError(f"expected a file path (str or Path), got {type(path).__name__}. Fix: "
                            "identifier.save('identifier.npz') / FaceIdentifier.load('identifier.npz')")
        path = Path(path).expanduser()
        return path if path.suffix == ".npz" or path.is_dir() else path.with_name(path.name + ".npz")

    def save(self, path: str | os.PathLike, *, overwrite: bool | None = None) -> Path:
        """Write arrays + JSON metadata to ``path`` (``.npz`` added if missing, as :meth:`load`
        does): atomically, under a lock, private (0600). Returns the path.

        ``overwrite``: None (default) replaces only this identifier's own file (the one it was
        loaded from or saved to, or an identifier of the same face store); a file of another kind,
        another store's or another gallery's is refused (FileExistsError); True replaces any file;
        False none. An identifier fitted by :meth:`facekit.store.db.FaceStore.identifier` records
        its store and generation and is registered there (a derived file: ``forget`` fits it again
        without the person); saving it after the store changed raises
        :class:`~facekit.core.origin.StaleFileError`. For your people, prefer the face store."""
        from contextlib import nullcontext

        from facekit.core.origin import derived_write

        self._check_fitted()
        th = self.threshold_
        if self.threshold is not None and not (0 <= th <= 4 or th == float("inf")):
            raise ValueError(f"threshold {self.threshold!r} is not a squared L2 distance in [0, 4] (or inf); "
                             "refusing to save it. Fix: set threshold to e.g. 0.8, or None for the default")
        origin = getattr(self, "origin_", None)
        meta = {"format": FORMAT_NAME, "version": FORMAT_VERSION, "model": str(self.model),
                "C": float(self.C), "random_state": self.random_state,
                "threshold": None if self.threshold is None else ("inf" if th == float("inf") else th),
                "n_gallery": int(len(self.gallery_)), "dim": int(self.gallery_.shape[1]),
                "names": self.names, "origin": None if origin is None else origin.as_json()}
        arrays = {"gallery": self.gallery_, "gallery_labels": self.gallery_labels_, "classes": self.classes_,
                  "coef": self.coef_, "intercept": self.intercept_}
        target = self.npz_path(path)
        guard = nullcontext() if origin is None else derived_write(origin, target, "identifier", str(self.model))
        with guard:
            out = write_npz(target, meta, arrays, overwrite=overwrite, what="identifier .npz",
                            replaces=getattr(self, "_file_", None))
        self._file_ = out
        return out

    @classmethod
    def load(cls, path: str | os.PathLike, *, store=None) -> "FaceIdentifier":
        """Read a file written by :meth:`save` (``"g"`` finds ``"g.npz"``), checking every value:
        finite unit-norm gallery, checked names, consistent shapes, finite coefficients, a
        threshold in [0, 4] or inf. Anything else: :class:`IdentifierFormatError`.

        A file fitted from a face store is read only while that store is there, unreplaced and
        unchanged since (:mod:`facekit.core.origin`); otherwise :class:`StaleFileError`, or, with
        ``store`` (that store, open), the identifier is fitted again from it and saved over the file."""
        from facekit.core.origin import Origin, StaleFileError, origin_problem, store_stamp

        p = cls.npz_path(path) if not isinstance(path, (str, os.PathLike)) else Path(path).expanduser()
        if not p.exists() and cls.npz_path(p).exists():
            p = cls.npz_path(p)
        meta, arrays = read_npz(p, FORMAT_NAME, FORMAT_VERSION, _FIX, IdentifierFormatError)
        try:
            origin = Origin.from_json(meta.get("origin"))
        except ValueError as exc:
            raise IdentifierFormatError(f"{p}: {exc}. Fix: {_FIX}") from None
        if origin is not None:
            try:
                stamp = (store.store_id, store.generation) if store is not None else store_stamp(origin.store_path)
            except OSError as exc:
                raise StaleFileError(f"{p}: cannot check the face store it was fitted from ({exc}). Fix: make the "
                                     "store readable, or fit the identifier again") from None
            why = origin_problem(origin, stamp)
            if why and store is not None and stamp[0] == origin.store_id:
                th = meta.get("threshold")
                fresh = store.identifier(meta.get("model"), threshold=float("inf") if th == "inf" else th,
                                         C=float(meta.get("C", 1.0)), random_state=meta.get("random_state", 0))
                fresh.save(p, overwrite=True)
                return fresh
            if why:
                raise StaleFileError(f"{p}: this identifier was fitted from a face store and is out of date: {why}. "
                                     "Fix: fit it again (store.identifier(...).save(path)), or pass store= to "
                                     "FaceIdentifier.load to do so")
        obj = cls._from_arrays(p, meta, arrays)
        obj.origin_, obj._file_ = origin, p
        return obj

    @classmethod
    def _from_arrays(cls, p: Path, meta: dict, arrays: dict) -> "FaceIdentifier":
        need = {"gallery", "gallery_labels", "classes", "coef", "intercept"}
        if need - set(arrays):
            raise IdentifierFormatError(f"{p}: missing arrays {sorted(need - set(arrays))}. Fix: {_FIX}")
        try:
            th = check_threshold(meta.get("threshold"), str(p), allow_inf=True)
            gal = check_embeddings(arrays["gallery"], str(p))
            labels = check_labels(arrays["gallery_labels"], len(gal), str(p))
            classes = check_labels(arrays["classes"], len(arrays["classes"]), str(p))
            C = float(meta.get("C", 1.0))
            if not (np.isfinite(C) and C > 0) or not isinstance(meta.get("random_state", 0), (int, type(None))):
                raise FileFormatError(f"{p}: C={meta.get('C')!r} or random_state is invalid. Fix: {_FIX}")
        except FileFormatError as exc:
            raise IdentifierFormatError(str(exc)) from None
        model = meta.get("model", DEFAULT_MODEL)  # files from before the model was recorded: FaceNet's
        try:
            model_spec(model)
        except ValueError as exc:
            raise IdentifierFormatError(f"{p}: {exc}. Fix: register that model, or {_FIX}") from None
        obj = cls(threshold=th, C=C, random_state=meta.get("random_state", 0), model=model)
        obj.gallery_, obj.gallery_labels_ = gal, np.asarray(labels, dtype=str)
        obj.classes_ = np.asarray(classes, dtype=str)
        obj.coef_ = np.asarray(arrays["coef"]).astype(np.float64, copy=False)
        obj.intercept_ = np.asarray(arrays["intercept"]).astype(np.float64, copy=False)
        k, d = len(obj.classes_), gal.shape[1]
        ok = (k >= 1 and obj.coef_.shape == ((0 if k == 1 else k), d)
              and obj.intercept_.shape == ((0 if k == 1 else k),)
              and obj.classes_.tolist() == sorted(set(labels)))
        if not ok:
            raise IdentifierFormatError(f"{p}: arrays have inconsistent shapes (corrupt file). Fix: {_FIX}")
        if not (np.isfinite(obj.coef_).all() and np.isfinite(obj.intercept_).all()):
            raise IdentifierFormatError(f"{p}: SVM coefficients hold NaN or inf (corrupt or tampered file). "
                                        f"Fix: {_FIX}")
        return obj

    def __repr__(self) -> str:
        fitted = getattr(self, "gallery_", None) is not None
        extra = f", {len(self.names)} people, {len(self.gallery_)} faces" if fitted else ""
        return f"FaceIdentifier(threshold={self.threshold!r}, C={self.C!r}, model={self.model!r}{extra})"


def check_same_model(identifier, embedder, where: str = "") -> None:
    """Embeddings of two models are never compared: raise ``ValueError`` naming both when the
    identifier's gallery was made by another model than ``embedder`` (None: nothing to check)."""
    if identifier is None or embedder is None or getattr(identifier, "model", None) is None:
        return
    if spec_name(identifier.model) != spec_name(embedder.fingerprint):
        raise ValueError(f"{where + ': ' if where else ''}the gallery holds embeddings of model {identifier.model!r}, "
                         f"the embedder makes {embedder.fingerprint!r}; embeddings of two models are never "
                         "compared. Fix: use an embedder of the gallery's model, or a gallery of this model")


def identify_photo(image, identifier: FaceIdentifier, *, detector=None, embedder=None,
                   min_face_size: float | None = None) -> tuple[list, np.ndarray, np.ndarray]:
    """Every face of a photo (RGB array or path) with a name: ``(faces, names, scores)``.

    faces: list of :class:`facekit.faces.FaceEmbedding` (sorted by detector confidence);
    names (M,) str with :data:`UNKNOWN` for strangers; scores (M,) squared distances (see
    :meth:`FaceIdentifier.predict_scores`). Taught in notebook 04 (the photo widget).
    """
    from facekit.faces import extract_faces

    check_same_model(identifier, embedder, "identify_photo")
    faces = extract_faces(image, detector=detector, embedder=embedder, min_face_size=min_face_size,
                          model=None if embedder is not None else spec_name(identifier.model))
    if not faces:
        return [], np.zeros(0, dtype=str), np.zeros(0)
    names, scores = identifier.predict_scores(np.stack([f.embedding for f in faces]))
    return faces, names, scores


