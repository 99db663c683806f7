"""Face verification: "same person?" from the squared L2 distance of two embeddings.

Taught in notebook 02. Embeddings are unit vectors, so the squared L2 distance
``d = ||a - b||^2 = 2 - 2 cos(a, b)`` lies in [0, 4]; two faces are called the same person when
``d < threshold``. The threshold is not a guess: :data:`DEFAULT_THRESHOLD` is the one the standard
LFW protocol picks for facekit's own pipeline (see :func:`evaluate_10fold` and ``bench/lfw.py``).

Three parts:

- distances and the decision: :func:`sq_l2`, :func:`pairwise_sq_l2`, :func:`verify`;
- evaluation: :func:`evaluate_10fold` (LFW View 2 protocol), :func:`best_threshold`,
  :func:`roc_curve`, :func:`roc_auc`, :func:`tar_at_far`;
- LFW with facekit's pipeline, cached on disk: :func:`embed_lfw`, :func:`embed_lfw_pairs`,
  :func:`lfw_verification`, :func:`lfw_subset`.
"""

from __future__ import annotations

import hashlib
import json
import os
import threading
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

import numpy as np

__all__ = [
    "DEFAULT_THRESHOLD", "sq_l2", "pairwise_sq_l2", "cosine_to_sq_l2", "sq_l2_to_cosine", "verify",
    "accuracy_at", "best_threshold", "TenFoldResult", "evaluate_10fold", "roc_curve", "roc_auc",
    "tar_at_far", "centered_cosine_distance", "evaluate_10fold_centered", "PUBLISHED_LFW", "LFWEmbeddings", "lfw_subset", "pick_subject", "detect_lfw",
    "embed_lfw", "embed_lfw_pairs", "lfw_verification", "LFW_FALLBACK_BOX", "TTA_VIEWS",
]

#: Squared-L2 threshold for "same person" with facekit's default pipeline (MTCNN -> aligned
#: 160x160 crop -> 128-D FaceNet, i.e. ``facekit.extract_faces``). Chosen by the LFW View 2 protocol
#: (``bench/lfw.py``, all 6,000 pairs): the best single threshold over all pairs is 1.219 and the
#: ten thresholds chosen on 9 folds each lie in 1.205..1.219. (The FaceNet paper reports 1.242 for
#: its own model.) Taught in notebook 02.
DEFAULT_THRESHOLD = 1.22

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


def verify(emb_a: np.ndarray, emb_b: np.ndarray, threshold: float = DEFAULT_THRESHOLD) -> tuple[bool, float]:
    """Is it the same person? ``(same, distance)`` for two unit embeddings (D,).

    ``same`` is ``distance < threshold``; ``distance`` is squared L2 in [0, 4]. The default
    :data:`DEFAULT_THRESHOLD` (1.22) is chosen by the LFW 10-fold protocol for facekit's pipeline
    (embeddings from ``facekit.extract_faces`` / ``facekit.embed``; 99.38% on LFW); lower it
    to make false matches rarer, at the cost of rejecting more genuine pairs. Taught in notebook 02.
    """
    a, b = np.asarray(emb_a), np.asarray(emb_b)
    if a.ndim != 1 or b.ndim != 1:
        raise ValueError(f"verify compares two single embeddings (D,), got {a.shape} and {b.shape}; "
                         "use sq_l2 for rows of pairs")
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
    over all pairs and its accuracy (what :data:`DEFAULT_THRESHOLD` is set from); auc: ROC AUC
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
        """Population std over folds (``np.std``, as facenet's and LFW's reports do)."""
        return float(np.std(self.accuracies))

    def __str__(self) -> str:
        return (f"LFW-protocol accuracy {100 * self.mean:.2f}% +- {100 * self.std:.2f} over "
                f"{len(self.accuracies)} folds ({self.n_pairs} pairs); per-fold thresholds "
                f"{self.thresholds.min():.3f}..{self.thresholds.max():.3f}; best single threshold "
                f"{self.threshold:.3f} ({100 * self.threshold_accuracy:.2f}%); AUC {self.auc:.4f}")

    def to_dict(self) -> dict:
        return {"accuracy": self.mean, "std": self.std, "threshold": self.threshold,
                "threshold_accuracy": self.threshold_accuracy, "auc": self.auc, "n_pairs": self.n_pairs,
                "fold_accuracies": [float(a) for a in self.accuracies],
                "fold_thresholds": [float(t) for t in self.thresholds]}


def evaluate_10fold(distances: np.ndarray, same: np.ndarray, folds: np.ndarray) -> TenFoldResult:
    """The LFW View 2 protocol: for each fold, pick the threshold on the OTHER folds, test on it.

    distances: float (M,) squared L2 of each pair; same: bool (M,); folds: int (M,) fold ids
    (10 folds for LFW, any number >= 2 works). Reports each fold's accuracy (mean +- std is the
    figure papers quote), the thresholds used, and the best single threshold over all pairs.
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


# --- LFW with facekit's pipeline -------------------------------------------------------------

#: Box (x1, y1, x2, y2) used when MTCNN finds no face in a 250x250 LFW image: about the median
#: of the subject boxes it finds on the 7,701 View 2 images (78.6, 64.8, 169.7, 187.6; the
#: funnelling centres every face), cropped without rotation. Such images are counted
#: (``no_face``), never dropped. (With facekit's default detector, MTCNN finds a face in all 7,701.)
LFW_FALLBACK_BOX = (78.0, 65.0, 170.0, 188.0)

_SELECT = ("center", "facenet", "confidence", "largest")
_FLIP = (None, "concat", "mean")


def lfw_subset(pairs, per_fold: int | None, random_state: int = 0):
    """A balanced subset of LFW pairs: ``per_fold`` pairs (half same, half different) per fold.

    Nested: a smaller ``per_fold`` (same ``random_state``) gives a subset of a larger one, so
    cached embeddings are reused. ``None`` returns ``pairs`` unchanged. Taught in notebook 02.
    """
    from .datasets import LFWPairs

    if per_fold is None:
        return pairs
    if per_fold < 2 or per_fold % 2:
        raise ValueError(f"per_fold must be an even number >= 2 (half same, half different), got {per_fold}")
    rng = np.random.default_rng(random_state)
    keep = []
    for k in np.unique(pairs.fold):
        for want in (True, False):
            idx = np.flatnonzero((pairs.fold == k) & (pairs.same == want))
            keep.append(rng.permutation(idx)[: per_fold // 2])
    idx = np.sort(np.concatenate(keep))
    return LFWPairs(pairs.paths[idx], pairs.same[idx], pairs.fold[idx])


def pick_subject(faces: Sequence, image_shape: tuple[int, int], select: str = "center"):
    """The face that is the photo's subject, or None.

    ``"center"`` (default): the face whose box centre is nearest the image centre. LFW's
    deep-funneled images are centred on the labelled person, who is not always the biggest face
    (e.g. John_McEnroe_0001: a man in front of him has a larger box). ``"facenet"``: the rule of
    facenet's ``align_dataset_mtcnn``, largest ``box area - 2 * (centre offset)^2`` (big and
    central; picks the wrong man in that photo, one of the 7,701 images).
    ``"confidence"``: highest MTCNN confidence; ``"largest"``: largest box.
    """
    if select not in _SELECT:
        raise ValueError(f"select must be one of {_SELECT}, got {select!r}")
    if not faces:
        return None
    if select == "confidence":
        return max(faces, key=lambda f: f.confidence)
    if select == "largest":
        return max(faces, key=lambda f: f.area)
    cy, cx = image_shape[0] / 2.0, image_shape[1] / 2.0

    def offset2(f):
        bx, by = (f.box[0] + f.box[2]) / 2.0, (f.box[1] + f.box[3]) / 2.0
        return (bx - cx) ** 2 + (by - cy) ** 2

    if select == "center":
        return min(faces, key=offset2)
    return max(faces, key=lambda f: f.area - 2.0 * offset2(f))


def _key(settings: dict) -> str:
    return hashlib.sha1(json.dumps(settings, sort_keys=True).encode()).hexdigest()[:12]


def _lfw_cache_dir() -> Path:
    from .registry import cache_dir

    d = cache_dir() / "lfw"
    d.mkdir(parents=True, exist_ok=True)
    return d


def _rel(path: str) -> str:
    """LFW path -> ``Person/Person_0001.jpg`` (cache keys independent of where LFW lives)."""
    p = Path(path)
    return f"{p.parent.name}/{p.name}"


class _Store:
    """An on-disk ``{name: row}`` table (npz) that grows as rows are added; writes are atomic."""

    def __init__(self, path: Path | None, settings: dict):
        self.path = path  # None: in memory only
        self.settings = settings
        self.rows: dict[str, np.ndarray] = {}
        self._load()

    def _load(self) -> None:
        """Add the rows on disk that are not in memory (the dict object itself is kept)."""
        if self.path is None or not self.path.is_file():
            return
        try:
            with np.load(self.path, allow_pickle=False) as z:
                for n, r in zip(z["names"].tolist(), z["rows"]):
                    self.rows.setdefault(n, r)
        except Exception:  # a damaged cache file is recomputed, never trusted
            pass

    def save(self) -> None:
        """Write all rows, merged with what another process wrote meanwhile (under a file lock,
        so two processes embedding LFW at once never drop each other's rows)."""
        if self.path is None:
            return
        with _file_lock(self.path.with_suffix(".lock")):
            self._load()
            names = sorted(self.rows)
            tmp = self.path.with_suffix(f".{os.getpid()}-{threading.get_ident()}.tmp.npz")
            np.savez(tmp, names=np.asarray(names, dtype=str), rows=np.stack([self.rows[n] for n in names]))
            os.replace(tmp, self.path)
            self.path.with_suffix(".json").write_text(json.dumps(self.settings, indent=1))


@contextmanager
def _file_lock(path: Path):
    """Exclusive advisory lock on ``path`` (POSIX ``flock``; no-op where unavailable)."""
    try:
        import fcntl
    except ImportError:  # Windows: atomic replace only
        yield
        return
    with open(path, "a") as f:
        fcntl.flock(f, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)


def _detector_settings(detector) -> dict:
    return {"min_face_size": detector.min_face_size, "thresholds": list(detector.thresholds),
            "scale_factor": detector.scale_factor, "max_side": detector.max_side}


def _faces_from_row(row: np.ndarray) -> list:
    """Cached detection row (up to 4 faces x 15 floats, NaN-padded) -> list[Face]."""
    from .detect import Face

    faces = []
    for r in row.reshape(-1, 15):
        if np.isnan(r[4]):
            continue
        faces.append(Face(box=r[:4].astype(np.float32), landmarks=r[5:15].reshape(5, 2).astype(np.float32),
                          confidence=float(r[4])))
    return faces


_MAX_CACHED_FACES = 4


def _row_from_faces(faces: list) -> np.ndarray:
    row = np.full((_MAX_CACHED_FACES, 15), np.nan, np.float32)
    # keep the most confident ones; pick_subject chooses among them
    for i, f in enumerate(sorted(faces, key=lambda f: -f.confidence)[:_MAX_CACHED_FACES]):
        row[i, :4] = f.box
        row[i, 4] = f.confidence
        row[i, 5:] = f.landmarks.ravel()
    return row.ravel()


def _detect_batch(detector, images: list[np.ndarray]) -> list[list]:
    """:meth:`facekit.detect.Detector.detect_batch`, or one by one for other detector objects."""
    if hasattr(detector, "detect_batch"):
        return detector.detect_batch(images)
    return [detector.detect(im) for im in images]


def detect_lfw(paths: Sequence[str], *, detector=None, batch_size: int = 32, progress: bool = True,
               cache: bool = True) -> dict[str, list]:
    """MTCNN faces of LFW images: ``{path: list[Face]}``, cached on disk per detector settings.
    Used by notebook 02 and ``bench/lfw.py``.

    The cache lives in ``facekit.cache_dir()/lfw/detections-<key>.npz`` (up to 4 most confident
    faces per image), so the notebook and ``bench/lfw.py`` detect each image once.
    """
    from .detect import get_detector
    from .io import load_image

    det = detector or get_detector()
    settings = {"kind": "mtcnn-detections", **_detector_settings(det)}
    store = _Store(_lfw_cache_dir() / f"detections-{_key(settings)}.npz" if cache else None, settings)
    rows = store.rows
    todo = list(dict.fromkeys(p for p in paths if _rel(p) not in rows))
    if todo:
        from tqdm.auto import tqdm

        bar = tqdm(total=len(todo), desc="detecting LFW faces", unit="img", disable=not progress)
        for i in range(0, len(todo), batch_size):
            chunk = todo[i:i + batch_size]
            found = _detect_batch(det, [load_image(p) for p in chunk])
            for p, faces in zip(chunk, found):
                rows[_rel(p)] = _row_from_faces(faces)
            if (i // batch_size) % 8 == 7:
                store.save()
            bar.update(len(chunk))
        bar.close()
        store.save()
    return {p: _faces_from_row(rows[_rel(p)]) for p in paths}


def _image_shape(path: str) -> tuple[int, int]:
    """(H, W) of an image file from its header (no decoding)."""
    from PIL import Image

    with Image.open(path) as im:
        w, h = im.size
    return h, w


def _fallback_face(image_shape: tuple[int, int]):
    from .detect import Face

    h, w = image_shape
    box = np.asarray(LFW_FALLBACK_BOX, np.float32) * np.asarray([w, h, w, h], np.float32) / 250.0
    return Face(box=box, landmarks=np.full((5, 2), np.nan, np.float32), confidence=0.0)


@dataclass(frozen=True)
class LFWEmbeddings:
    """Embeddings of LFW pairs: ``a``, ``b`` float32 (M, D) unit rows; ``same`` bool (M,);
    ``fold`` int (M,); ``paths`` (M, 2); ``no_face``: image paths where MTCNN found no face (a
    centre crop :data:`LFW_FALLBACK_BOX` was embedded instead); ``settings``: the pipeline."""

    a: np.ndarray
    b: np.ndarray
    same: np.ndarray
    fold: np.ndarray
    paths: np.ndarray
    no_face: list[str] = field(default_factory=list)
    settings: dict = field(default_factory=dict)

    @property
    def distances(self) -> np.ndarray:
        """Squared L2 distance of each pair: float64 (M,)."""
        return sq_l2(self.a, self.b)

    def evaluate(self, subtract_mean: bool = False) -> TenFoldResult:
        """:func:`evaluate_10fold` on these pairs (squared L2), or with ``subtract_mean``
        :func:`evaluate_10fold_centered` (facenet's ``validate_on_lfw --subtract_mean``)."""
        if subtract_mean:
            return evaluate_10fold_centered(self.a, self.b, self.same, self.fold)
        return evaluate_10fold(self.distances, self.same, self.fold)


def _fuse(e: np.ndarray, ef: np.ndarray | None, flip: str | None) -> np.ndarray:
    if flip is None:
        return e
    if flip == "concat":  # (e, ef) / sqrt(2): unit norm, distance = mean of the two distances
        return (np.hstack([e, ef]) / np.sqrt(2.0)).astype(np.float32)
    m = e + ef
    return (m / np.linalg.norm(m, axis=1, keepdims=True)).astype(np.float32)


#: Test-time augmentation views for :func:`embed_lfw` (``views=TTA_VIEWS``, with ``flip="concat"``):
#: the crop with and without eye-line rotation, each also mirrored -- four embeddings per face.
TTA_VIEWS = ({"rotate": True}, {"rotate": False})


def embed_lfw(paths: Sequence[str], *, margin: float | None = None, rotate: bool = True,
              flip: str | None = None, select: str = "center", views: Sequence[dict] | None = None,
              detector=None, embedder=None, chunk: int = 128, progress: bool = True,
              cache: bool = True) -> tuple[np.ndarray, list[str]]:
    """Embed LFW images with facekit's pipeline: ``(embeddings float32 (N, D'), no_face paths)``.

    ``paths``: images under LFW's ``lfw_funneled/`` (cache rows are keyed ``Person/Person_NNNN.jpg``).

    Pipeline per image (the defaults are ``facekit.extract_faces``'s): MTCNN (:func:`detect_lfw`,
    cached) -> the subject face (:func:`pick_subject`, ``select``) -> :func:`facekit.align.align_face`
    (``margin``, default ``facekit.align.DEFAULT_MARGIN``; ``rotate`` levels the eyes) -> FaceNet.
    With ``flip``, the horizontally mirrored crop is embedded too and fused: ``"concat"`` (D' = 2D,
    rows re-normalised, so a distance is the mean of the plain and mirrored distances) or ``"mean"``
    (D' = D). ``views`` (test-time augmentation, e.g. :data:`TTA_VIEWS`): several crops, each a dict
    overriding ``margin`` / ``rotate``, embedded as above and concatenated (re-normalised), so a
    distance is the mean over views. Images with no detected face use the centre box
    :data:`LFW_FALLBACK_BOX` and are returned in ``no_face``. Embeddings are cached under
    ``facekit.cache_dir()/lfw``: one file per (model, margin, rotate, mirrored), one row per (image,
    crop geometry), so repeated runs and other configurations reuse every crop they share.
    """
    from .align import DEFAULT_MARGIN, align_face
    from .embed import get_embedder
    from .detect import get_detector
    from .io import load_image

    if views:
        bad = [v for v in views if not set(v) <= {"margin", "rotate"}]
        if bad:
            raise ValueError(f"a view may set only 'margin' and 'rotate', got {bad}")
        common = dict(margin=margin, rotate=rotate, flip=flip, select=select, detector=detector,
                      embedder=embedder, chunk=chunk, progress=progress, cache=cache)
        parts = [embed_lfw(paths, **{**common, **v}) for v in views]
        fused = np.hstack([e for e, _ in parts]) / np.sqrt(len(parts))
        return fused.astype(np.float32), parts[0][1]
    if flip not in _FLIP:
        raise ValueError(f"flip must be one of {_FLIP}, got {flip!r}")
    if select not in _SELECT:
        raise ValueError(f"select must be one of {_SELECT}, got {select!r}")
    margin = DEFAULT_MARGIN if margin is None else float(margin)
    det = detector or get_detector()
    emb = embedder or get_embedder()
    paths = list(paths)
    faces = detect_lfw(paths, detector=det, progress=progress, cache=cache)
    settings = {"kind": "lfw-embeddings", "model": emb.model_name, "margin": margin, "rotate": bool(rotate)}
    variants = [False, True] if flip else [False]
    stores = {m: _Store(_lfw_cache_dir() / f"embeddings-{_key({**settings, 'mirrored': m})}.npz" if cache else None,
                        {**settings, "mirrored": m}) for m in variants}
    uniq = list(dict.fromkeys(paths))
    chosen, keys, no_face = {}, {}, []
    for p in uniq:
        shape = _image_shape(p)
        face = pick_subject(faces[p], shape, select)
        if face is None:
            no_face.append(p)
            face = _fallback_face(shape)
        chosen[p] = face
        # a row is keyed by image AND crop geometry: selection / detector changes never reuse a wrong row
        keys[p] = _rel(p) + "#" + ",".join(f"{v:.2f}" for v in np.concatenate([face.box, face.landmarks[:2].ravel()]))
    todo = [p for p in uniq if any(keys[p] not in stores[m].rows for m in variants)]
    if todo:
        from tqdm.auto import tqdm

        bar = tqdm(total=len(todo), desc=f"embedding LFW ({'aligned' if rotate else 'not rotated'}"
                   f"{', +mirror' if flip else ''})", unit="img", disable=not progress)
        for i in range(0, len(todo), chunk):
            part = todo[i:i + chunk]
            crops = np.stack([align_face(load_image(p), chosen[p], margin=margin, rotate=rotate) for p in part])
            for mirrored in variants:
                e = emb.embed(crops[:, :, ::-1] if mirrored else crops)
                for p, row in zip(part, e):
                    stores[mirrored].rows[keys[p]] = row
                stores[mirrored].save()
            bar.update(len(part))
        bar.close()
    plain = np.stack([stores[False].rows[keys[p]] for p in paths]).astype(np.float32)
    mirror = np.stack([stores[True].rows[keys[p]] for p in paths]).astype(np.float32) if flip else None
    return _fuse(plain, mirror, flip), no_face


def embed_lfw_pairs(pairs=None, *, per_fold: int | None = None, random_state: int = 0, **pipeline) -> LFWEmbeddings:
    """Embed both images of every LFW pair (all 6,000 of View 2 by default, or ``per_fold`` per
    fold via :func:`lfw_subset`). ``pipeline``: keyword arguments of :func:`embed_lfw`.
    Taught in notebook 02; ``bench/lfw.py`` runs it on all pairs.
    """
    from .datasets import lfw_pairs

    pairs = lfw_subset(pairs if pairs is not None else lfw_pairs(), per_fold, random_state)
    flat = pairs.paths.ravel().tolist()
    uniq = list(dict.fromkeys(flat))
    e, no_face = embed_lfw(uniq, **pipeline)
    index = {p: i for i, p in enumerate(uniq)}
    ia = np.asarray([index[p] for p in pairs.paths[:, 0]])
    ib = np.asarray([index[p] for p in pairs.paths[:, 1]])
    settings = {k: v for k, v in pipeline.items() if k not in ("detector", "embedder", "progress")}
    return LFWEmbeddings(e[ia], e[ib], pairs.same, pairs.fold, pairs.paths, no_face, settings)


def lfw_verification(pairs=None, *, per_fold: int | None = None, random_state: int = 0,
                     **pipeline) -> tuple[TenFoldResult, LFWEmbeddings]:
    """LFW View 2 accuracy of facekit's pipeline by the 10-fold protocol: ``(result, embeddings)``.

    ``per_fold=None`` uses all 6,000 pairs (the published protocol); a small even number (e.g. 20)
    gives a quick estimate on a balanced subset. Taught in notebook 02; called by ``bench/lfw.py``.
    """
    embs = embed_lfw_pairs(pairs, per_fold=per_fold, random_state=random_state, **pipeline)
    return embs.evaluate(), embs


from ._callable import make_module_callable  # noqa: E402

make_module_callable(__name__, "verify")  # fk.verify(a, b) works even after `import facekit.verify`
