"""Triplet loss with online in-batch mining, and a small CNN that learns face embeddings on a CPU.

Taught in notebook 03. FaceNet's loss for a triplet (anchor ``a``, positive ``p`` of the same
person, negative ``n`` of another) on L2-normalised embeddings ``f``::

    L = max(0, ||f(a) - f(p)||^2 - ||f(a) - f(n)||^2 + margin)      margin (alpha) = 0.2

Distances are squared L2 in [0, 4] (= 2 - 2 cos), as everywhere in facekit. Squared distances
also keep the gradient finite when two embeddings coincide (no ``sqrt`` at 0).

Triplets are mined *online*, inside each batch of ``P`` identities x ``K`` images
(:class:`PKSampler`), with one of :data:`STRATEGIES`:

- ``"all"`` (alias ``"random"``): every valid triplet of the batch, averaged -- the expected loss
  of a uniformly random triplet. Most are easy (zero loss), so the signal fades as training goes.
- ``"semihard"``: FaceNet's choice (its Eq. 4 and Sec. 3.2): every anchor-positive pair, with the
  closest negative that is still *farther* than the positive (``d_ap < d_an``; it is active when
  also ``d_an < d_ap + margin``). When no negative is farther than the positive, the farthest
  negative is used (the least hard of the hard ones), as in TensorFlow Addons.
- ``"batch_hard"``: per anchor, its farthest positive and closest negative (Hermans et al.,
  2017). Strong signal, but from a random start it can collapse every face to one point, where
  the loss is stuck at exactly ``margin`` (shown in notebook 03).

TensorFlow is imported on first use only.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import numpy as np

__all__ = [
    "STRATEGIES", "DEFAULT_MARGIN", "LFW_FACE_BOX",
    "pairwise_squared_distances", "triplet_loss", "PKSampler",
    "lfw_face_crops", "split_identities", "make_pairs", "VerificationPairs",
    "verification_accuracy", "triplet_separation",
    "mean_pairwise_distance",
]

#: Mining strategies understood by :func:`triplet_loss` (``"random"`` is an alias of ``"all"``).
STRATEGIES = ("all", "semihard", "batch_hard")
_ALIASES = {"random": "all", "semi-hard": "semihard", "batch-hard": "batch_hard", "batchhard": "batch_hard"}

#: FaceNet's alpha, in squared-L2 units on unit embeddings.
DEFAULT_MARGIN = 0.2

#: Face region (x1, y1, x2, y2) of the 250x250 funneled LFW images: the face fills the centre,
#: its chin a little below. Cropping this box needs no detector.
LFW_FACE_BOX = (70, 75, 180, 185)

_BIG = 1e9  # stands in for +-inf in masked min/max (inf would put 0 * inf = NaN in gradients)


def check_strategy(name: str) -> str:
    """The canonical name of a mining strategy (aliases resolved); ValueError for an unknown one."""
    s = _ALIASES.get(str(name).lower(), str(name).lower())
    if s not in STRATEGIES:
        raise ValueError(f"unknown mining strategy {name!r}; choose one of {STRATEGIES} "
                         "(or 'random', an alias of 'all')")
    return s


# --- the loss ------------------------------------------------------------------------------

def pairwise_squared_distances(embeddings):
    """``(B, D)`` float -> ``(B, B)`` squared L2 distances (TensorFlow), >= 0, exact 0 diagonal.

    Uses ``|x|^2 - 2 x.y + |y|^2`` (one matmul) and clips the tiny negatives rounding makes.
    """
    import tensorflow as tf

    e = tf.convert_to_tensor(embeddings, tf.float32)
    dot = tf.matmul(e, e, transpose_b=True)
    sq = tf.linalg.diag_part(dot)
    d = tf.maximum(sq[:, None] - 2.0 * dot + sq[None, :], 0.0)
    return d * (1.0 - tf.eye(tf.shape(e)[0], dtype=d.dtype))


def _masks(labels):
    import tensorflow as tf

    labels = tf.reshape(tf.convert_to_tensor(labels), [-1])
    same = tf.equal(labels[:, None], labels[None, :])
    eye = tf.eye(tf.shape(labels)[0], dtype=tf.bool)
    return tf.logical_and(same, tf.logical_not(eye)), tf.logical_not(same)


def _per_triplet(d, labels, margin: float, strategy: str):
    """Hinge values and their validity mask for one strategy (shapes depend on it)."""
    import tensorflow as tf

    pos, neg = _masks(labels)
    if strategy == "all":  # (a, p, n)
        valid = tf.logical_and(pos[:, :, None], neg[:, None, :])
        values = tf.nn.relu(d[:, :, None] - d[:, None, :] + margin)
        return values, valid
    has_neg = tf.reduce_any(neg, axis=1)
    if strategy == "semihard":  # (a, p)
        d_an = d[:, None, :]
        farther = tf.logical_and(neg[:, None, :], d_an > d[:, :, None])
        semihard = tf.reduce_min(tf.where(farther, d_an, _BIG), axis=2)
        fallback = tf.reduce_max(tf.where(neg, d, -_BIG), axis=1, keepdims=True)
        chosen = tf.where(tf.reduce_any(farther, axis=2), semihard, fallback)
        valid = tf.logical_and(pos, has_neg[:, None])
        return tf.nn.relu(d - chosen + margin), valid
    # batch_hard, (a,)
    hardest_pos = tf.reduce_max(tf.where(pos, d, -_BIG), axis=1)
    hardest_neg = tf.reduce_min(tf.where(neg, d, _BIG), axis=1)
    valid = tf.logical_and(tf.reduce_any(pos, axis=1), has_neg)
    return tf.nn.relu(hardest_pos - hardest_neg + margin), valid


def triplet_loss(embeddings, labels, margin: float = DEFAULT_MARGIN, strategy: str = "semihard",
                 normalize: bool = True):
    """Mean triplet loss of a batch and the fraction of its triplets that are active (loss > 0).

    embeddings: float ``(B, D)`` (a TensorFlow tensor to get gradients); labels: int ``(B,)``
    identities; margin: alpha in squared-L2 units (FaceNet: 0.2); strategy: one of
    :data:`STRATEGIES` (see the module docstring); normalize: L2-normalise the rows first (a no-op
    on unit embeddings). The mean runs over valid triplets: all (a, p, n) for ``"all"``, all
    (a, p) pairs for ``"semihard"``, all anchors for ``"batch_hard"``; a batch without any gives
    ``(0, 0)``. Returns two float32 scalar tensors ``(loss, active_fraction)``.
    """
    import tensorflow as tf

    e = tf.convert_to_tensor(embeddings, tf.float32)
    if normalize:
        e = tf.math.l2_normalize(e, axis=1)
    values, valid = _per_triplet(pairwise_squared_distances(e), labels, float(margin), check_strategy(strategy))
    validf = tf.cast(valid, tf.float32)
    n = tf.reduce_sum(validf)
    loss = tf.math.divide_no_nan(tf.reduce_sum(values * validf), n)
    active = tf.math.divide_no_nan(tf.reduce_sum(tf.cast(values > 0, tf.float32) * validf), n)
    return loss, active


def mean_pairwise_distance(embeddings: np.ndarray) -> float:
    """Mean squared L2 distance over all pairs of rows (float; 0 means the model collapsed).

    Random unit vectors in many dimensions give about 2.
    """
    e = np.asarray(embeddings, np.float64)
    n = len(e)
    if n < 2:
        return 0.0
    sq = (e ** 2).sum(1)
    total = 2 * n * sq.sum() - 2 * (e.sum(0) ** 2).sum()  # sum over ordered pairs of |ei - ej|^2
    return float(total / (n * (n - 1)))


# --- batches of P identities x K images ---------------------------------------------------

class PKSampler:
    """Endless batches of ``p`` identities x ``k`` images each (indices into ``labels``).

    Online mining needs several images per identity in every batch (FaceNet used about 40 faces
    per identity; on a CPU 4 is enough). Identities with fewer than 2 images cannot give a positive
    and are never drawn (a ValueError says so if too few remain); those with fewer than ``k``
    images are drawn with replacement. Each batch is ``int64 (p * k,)``, grouped by identity.
    Taught in notebook 03.
    """

    def __init__(self, labels, p: int = 16, k: int = 4, random_state: int | None = None):
        labels = np.asarray(labels)
        if p < 2 or k < 2:
            raise ValueError(f"need p >= 2 identities and k >= 2 images each, got p={p}, k={k}")
        self.p, self.k = int(p), int(k)
        self.rng = np.random.default_rng(random_state)
        _, inverse = np.unique(labels, return_inverse=True)
        groups = [np.flatnonzero(inverse == i) for i in range(inverse.max() + 1)] if len(labels) else []
        self.groups = [g for g in groups if len(g) >= 2]
        if len(self.groups) < self.p:
            raise ValueError(f"only {len(self.groups)} identities have 2+ images, but p={p} are needed "
                             "per batch. Fix: lower p or use more identities (e.g. a smaller "
                             "min_faces_per_person)")

    def sample(self) -> np.ndarray:
        """One batch of indices, ``int64 (p * k,)``."""
        ids = self.rng.choice(len(self.groups), self.p, replace=False)
        out = [self.rng.choice(self.groups[i], self.k, replace=len(self.groups[i]) < self.k) for i in ids]
        return np.concatenate(out).astype(np.int64)

    def __iter__(self):
        while True:
            yield self.sample()


# --- data: small face crops of LFW -----------------------------------------------------------

def lfw_face_crops(min_faces_per_person: int = 20, max_faces_per_person: int | None = 40,
                   size: int = 32, grayscale: bool = True,
                   box: tuple[int, int, int, int] = LFW_FACE_BOX, data_home: str | os.PathLike | None = None,
                   progress: bool = True) -> tuple[np.ndarray, np.ndarray]:
    """Small centre crops of LFW people with enough photos: ``(images, labels)``.

    images: uint8 ``(N, size, size, 1)`` (or ``(..., 3)`` when not ``grayscale``), labels: str
    ``(N,)``. The funneled 250x250 images are already roughly aligned, so cropping ``box``
    (x1, y1, x2, y2) and downscaling needs no face detector: cheap enough to train on a CPU.
    ``max_faces_per_person`` caps the few people with hundreds of photos (None: no cap).
    Taught in notebook 03.
    """
    import cv2

    from facekit.data.lfw import lfw_people
    from facekit.core.images import load_image

    paths, labels = lfw_people(data_home, min_faces_per_person=min_faces_per_person,
                               max_faces_per_person=max_faces_per_person)
    x1, y1, x2, y2 = box
    out = np.zeros((len(paths), size, size, 1 if grayscale else 3), np.uint8)
    it = paths
    if progress:
        from tqdm.auto import tqdm

        it = tqdm(paths, desc="LFW crops", unit="img")
    for i, p in enumerate(it):
        img = load_image(p)
        if img.shape[0] < y2 or img.shape[1] < x2:
            raise ValueError(f"{p}: image is {img.shape[1]}x{img.shape[0]}, smaller than the crop box "
                             f"{box}. Fix: pass a box inside the image")
        crop = cv2.resize(img[y1:y2, x1:x2], (size, size), interpolation=cv2.INTER_AREA)
        out[i] = cv2.cvtColor(crop, cv2.COLOR_RGB2GRAY)[:, :, None] if grayscale else crop
    return out, labels


def split_identities(labels, test_size: float | int = 0.3, random_state: int | None = 0
                     ) -> tuple[np.ndarray, np.ndarray]:
    """Split by *identity* (nobody is on both sides): ``(train_idx, test_idx)`` int64 arrays.

    test_size: fraction (or number) of identities held out. Verification on the held-out side
    then measures how well the embedding generalises to faces it never saw.
    """
    labels = np.asarray(labels)
    names = np.unique(labels)
    n_test = int(round(test_size * len(names))) if isinstance(test_size, float) else int(test_size)
    if not 0 < n_test < len(names):
        raise ValueError(f"test_size={test_size} leaves no identity on one side ({len(names)} identities)")
    rng = np.random.default_rng(random_state)
    test_names = rng.permutation(names)[:n_test]
    is_test = np.isin(labels, test_names)
    return np.flatnonzero(~is_test), np.flatnonzero(is_test)


def triplet_separation(embeddings: np.ndarray, labels, margin: float = DEFAULT_MARGIN) -> dict:
    """How many of ALL triplets (a, p, n) of a labelled set an embedding already gets right.

    embeddings: float (N, D) unit rows; labels: (N,) identities. Counts every ordered anchor,
    positive (same label, p != a) and negative (other label): ``ordered`` is the share with
    ``d_an > d_ap`` (the right order), ``separated`` the share with ``d_an >= d_ap + margin`` (loss 0:
    nothing left to learn from it). Exact, by sorting each anchor's negative distances (no N^3
    array). Returns ``{"triplets", "ordered", "separated", "margin"}``. Taught in notebook 03, on
    LFW with the pretrained 128-D model.
    """
    e = np.asarray(embeddings, np.float64)
    y = np.asarray(labels)
    if e.ndim != 2 or len(e) != len(y):
        raise ValueError(f"embeddings {e.shape} and labels {y.shape} must be (N, D) and (N,)")
    sq = (e ** 2).sum(1)
    total = ordered = separated = 0
    for a in range(len(e)):
        d = np.maximum(sq[a] - 2.0 * e @ e[a] + sq, 0.0)
        pos = (y == y[a])
        pos[a] = False
        d_an = np.sort(d[y != y[a]])
        d_ap = d[pos]
        total += len(d_ap) * len(d_an)
        ordered += int((len(d_an) - np.searchsorted(d_an, d_ap, side="right")).sum())
        separated += int((len(d_an) - np.searchsorted(d_an, d_ap + margin, side="left")).sum())
    if total == 0:
        raise ValueError("no valid triplet: need at least one person with 2 photos and one other person")
    return {"triplets": total, "ordered": ordered / total, "separated": separated / total, "margin": float(margin)}


# --- held-out verification ------------------------------------------------------------------

@dataclass(frozen=True)
class VerificationPairs:
    """Index pairs into a set of faces: ``i``, ``j`` int64 (M,), ``same`` bool (M,)."""

    i: np.ndarray
    j: np.ndarray
    same: np.ndarray

    def __len__(self) -> int:
        return len(self.same)

    def distances(self, embeddings: np.ndarray) -> np.ndarray:
        """Squared L2 distance of each pair, float32 (M,)."""
        e = np.asarray(embeddings, np.float32)
        return ((e[self.i] - e[self.j]) ** 2).sum(1)


def make_pairs(labels, n_pairs: int = 2000, random_state: int | None = 0) -> VerificationPairs:
    """Balanced random pairs (half same person, half different, no self-pairs, no repeats).

    Like LFW's protocol, but drawn from any labelled set (e.g. the held-out identities).
    """
    labels = np.asarray(labels)
    rng = np.random.default_rng(random_state)
    n_half = n_pairs // 2
    _, inv = np.unique(labels, return_inverse=True)
    groups = [np.flatnonzero(inv == g) for g in range(inv.max() + 1)]
    multi = [g for g in groups if len(g) >= 2]
    if not multi or len(groups) < 2:
        raise ValueError("need at least one identity with 2+ images and 2 identities to make pairs")
    n_same_possible = sum(len(g) * (len(g) - 1) // 2 for g in multi)
    n_half = min(n_half, n_same_possible)
    seen, rows = set(), []
    while len(rows) < n_half:  # same: pick an identity in proportion to its pairs, then 2 images
        w = np.array([len(g) * (len(g) - 1) for g in multi], float)
        g = multi[rng.choice(len(multi), p=w / w.sum())]
        a, b = sorted(rng.choice(g, 2, replace=False).tolist())
        if (a, b) not in seen:
            seen.add((a, b))
            rows.append((a, b, True))
    n_diff = 0
    while n_diff < n_half:
        a, b = sorted(rng.choice(len(labels), 2, replace=False).tolist())
        if inv[a] != inv[b] and (a, b) not in seen:
            seen.add((a, b))
            rows.append((a, b, False))
            n_diff += 1
    r = np.asarray(rows, dtype=np.int64)
    return VerificationPairs(r[:, 0], r[:, 1], r[:, 2].astype(bool))


def verification_accuracy(embeddings: np.ndarray, pairs: VerificationPairs, n_folds: int = 10) -> float:
    """Held-out verification accuracy of ``embeddings`` (N, D) on ``pairs`` (see :func:`make_pairs`).

    The LFW protocol (:func:`facekit.recognition.verify.evaluate_10fold`): the pairs are dealt into
    ``n_folds`` folds; each fold is scored with the threshold that is best on the others, so
    the threshold is never tuned on the pairs it is tested on. Returns the mean, in [0, 1].
    """
    from facekit.recognition.verify import evaluate_10fold

    folds = np.arange(len(pairs)) % n_folds
    return evaluate_10fold(pairs.distances(embeddings), pairs.same, folds).mean
