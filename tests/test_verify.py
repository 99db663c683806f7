"""facekit.recognition.verify: distances, the LFW 10-fold protocol, ROC, and LFW through facekit's pipeline."""

from __future__ import annotations

import functools

import numpy as np
import pytest

import facekit as fk
from helpers import unit

# the module, not the function facekit.recognition.verify (the package exports the function under the same name)
from facekit.recognition import verify as V  # noqa: E402
from facekit.teach import lfw as L  # noqa: E402

_unit = functools.partial(unit, dtype=np.float64)


# --- distances ---------------------------------------------------------------------------


def test_sq_l2_is_two_minus_two_cos(rng):
    a, b = _unit(rng, 50), _unit(rng, 50)
    d = V.sq_l2(a, b)
    cos = (a * b).sum(1)
    np.testing.assert_allclose(d, 2 - 2 * cos, atol=1e-12)
    np.testing.assert_allclose(V.sq_l2_to_cosine(d), cos, atol=1e-12)
    np.testing.assert_allclose(V.cosine_to_sq_l2(cos), d, atol=1e-12)
    assert ((d >= 0) & (d <= 4)).all()


def test_pairwise_matches_rowwise(rng):
    a, b = _unit(rng, 7), _unit(rng, 5)
    m = V.pairwise_sq_l2(a, b)
    assert m.shape == (7, 5)
    for i in range(7):
        np.testing.assert_allclose(m[i], V.sq_l2(a[i], b), atol=1e-10)
    s = V.pairwise_sq_l2(a)
    assert s.shape == (7, 7) and (np.diag(s) == 0).all() and np.allclose(s, s.T)
    with pytest.raises(ValueError, match="sizes differ"):
        V.pairwise_sq_l2(a, b[:, :10])


def test_verify_decision_and_errors(rng):
    a = _unit(rng, 1)[0]
    same, d = V.verify(a, a)
    assert same and d == pytest.approx(0.0)
    same, d = V.verify(a, -a)
    assert not same and d == pytest.approx(4.0)
    # the decision is exactly "distance < threshold"
    b = _unit(rng, 1)[0]
    _, d = V.verify(a, b)
    assert V.verify(a, b, threshold=d + 1e-9)[0] and not V.verify(a, b, threshold=d)[0]
    with pytest.raises(ValueError, match="single embeddings"):
        V.verify(np.stack([a, a]), b)
    assert 0.5 < fk.thresholds("facenet128").verify < 2.0


# --- the 10-fold protocol on synthetic distances with a known answer ------------------------

def test_best_threshold_takes_the_middle_of_the_plateau():
    d = np.array([0.2, 0.4, 1.0, 1.6, 2.0])
    s = np.array([True, True, True, False, False])
    t, acc = V.best_threshold(d, s)
    assert acc == 1.0 and t == pytest.approx(1.3)  # midpoint of the gap (1.0, 1.6)
    # one same pair beyond a different one: the best is 4/5 whichever side
    t, acc = V.best_threshold([0.2, 0.8, 1.0], [True, False, True])
    assert acc == pytest.approx(2 / 3)


def test_evaluate_10fold_known_answer():
    """Folds 0-8: same pairs at 1.0, different at 2.0. Fold 9: same at 1.6, different at 3.0.

    Fold 9 trained on folds 0-8 gets the threshold 1.5 (middle of (1.0, 2.0)): its same pairs at
    1.6 are all rejected -> 50%. Folds 0-8 train on data including fold 9, whose best plateau is
    (1.6, 2.0) -> threshold 1.8 -> 100%. Mean 95%. (Choosing each fold's threshold on the fold
    itself would give 100% everywhere: this checks the test fold never leaks into training.)
    """
    n = 30
    d, s, f = [], [], []
    for k in range(10):
        same_d, diff_d = (1.6, 3.0) if k == 9 else (1.0, 2.0)
        d += [same_d] * n + [diff_d] * n
        s += [True] * n + [False] * n
        f += [k] * (2 * n)
    r = V.evaluate_10fold(np.array(d), np.array(s), np.array(f))
    np.testing.assert_allclose(r.accuracies, [1.0] * 9 + [0.5])
    assert r.mean == pytest.approx(0.95)
    assert r.std == pytest.approx(np.std([1.0] * 9 + [0.5]))
    np.testing.assert_allclose(r.thresholds, [1.8] * 9 + [1.5])
    assert r.threshold == pytest.approx(1.8) and r.threshold_accuracy == 1.0
    assert r.auc == pytest.approx(1.0) and r.n_pairs == 600
    assert "95.00%" in str(r)


def test_evaluate_10fold_gaussian_matches_theory():
    """Same ~ N(0.8, 0.2), different ~ N(1.6, 0.2): the Bayes threshold is 1.2, where accuracy
    is Phi(2) = 97.72%; with 6,000 pairs the protocol must land close to both."""
    rng = np.random.default_rng(1)
    m = 3000
    d = np.concatenate([rng.normal(0.8, 0.2, m), rng.normal(1.6, 0.2, m)])
    s = np.r_[np.ones(m, bool), np.zeros(m, bool)]
    f = np.tile(np.repeat(np.arange(10), 300), 2)
    r = V.evaluate_10fold(d, s, f)
    assert r.mean == pytest.approx(0.9772, abs=0.008)
    assert abs(r.threshold - 1.2) < 0.05
    assert np.all(np.abs(r.thresholds - 1.2) < 0.08)


def test_subtract_mean_evaluation_known_answer():
    """Embeddings = common offset + r * identity direction: the offset makes plain distances
    useless (same pairs differ in r, different pairs share it), centring on the training folds'
    mean removes it, and the cosine then separates perfectly."""
    mu = np.array([0.0, 0.0, 3.0])
    dirs = [np.array(v, float) for v in ([1, 0, 0], [0, 1, 0], [-1, 0, 0], [0, -1, 0])]
    a, b, same, fold = [], [], [], []
    for k in range(4):
        for i, u in enumerate(dirs):
            v = dirs[(i + 1) % 4]  # perpendicular identity
            a += [mu + 0.1 * u, mu + 0.1 * u]
            b += [mu + 1.0 * u, mu + 0.1 * v]
            same += [True, False]
            fold += [k, k]
    a, b, same, fold = np.array(a), np.array(b), np.array(same), np.array(fold)
    # every fold holds each direction equally often at each r: its mean embedding is exactly mu
    np.testing.assert_allclose(V.centered_cosine_distance(a, b, mu)[same], 0.0, atol=1e-12)
    np.testing.assert_allclose(V.centered_cosine_distance(a, b, mu)[~same], 2.0, atol=1e-12)
    centred = V.evaluate_10fold_centered(a, b, same, fold)
    plain = V.evaluate_10fold(V.sq_l2(a, b), same, fold)
    assert centred.mean == 1.0 and centred.auc == 1.0
    assert plain.mean <= 0.5 and plain.auc == 0.0  # same pairs are the FAR ones here
    # with a zero mean the centred rule is the plain one for unit vectors
    ua, ub = a / np.linalg.norm(a, axis=1, keepdims=True), b / np.linalg.norm(b, axis=1, keepdims=True)
    np.testing.assert_allclose(V.centered_cosine_distance(ua, ub, np.zeros(3)), V.sq_l2(ua, ub), atol=1e-12)
    with pytest.raises(ValueError, match="one row per pair"):
        V.evaluate_10fold_centered(a, b[:-1], same, fold)


def test_evaluate_10fold_rejects_bad_input():
    with pytest.raises(ValueError, match="same length"):
        V.evaluate_10fold(np.zeros(4), np.zeros(3, bool), np.zeros(4))
    with pytest.raises(ValueError, match="at least 2 folds"):
        V.evaluate_10fold(np.zeros(4), np.zeros(4, bool), np.zeros(4))
    with pytest.raises(ValueError, match="NaN"):
        V.evaluate_10fold(np.array([0.1, np.nan]), np.array([True, False]), np.array([0, 1]))


def test_roc_and_tar_at_far():
    d = np.array([0.1, 0.2, 0.3, 1.5, 1.6, 1.7])
    s = np.array([1, 1, 1, 0, 0, 0], bool)
    assert V.roc_auc(d, s) == 1.0
    assert V.roc_auc(-d, s) == 0.0  # reversed ranking
    fpr, tpr, th = V.roc_curve(d, s)
    assert fpr[0] == 0 and tpr[-1] == 1 and (np.diff(fpr) >= 0).all()
    tar, t = V.tar_at_far(d, s, far=0.0)
    assert tar == 1.0 and 0.3 <= t < 1.5


def test_lfw_subset_balanced_and_nested():
    from facekit.data.lfw import LFWPairs

    paths = np.array([(f"a{i}", f"b{i}") for i in range(200)])
    same = np.tile(np.r_[np.ones(10, bool), np.zeros(10, bool)], 10)
    fold = np.repeat(np.arange(10), 20)
    pairs = LFWPairs(paths, same, fold)
    small, big = L.lfw_subset(pairs, 4), L.lfw_subset(pairs, 8)
    assert len(small) == 40 and len(big) == 80
    for k in range(10):
        assert small.same[small.fold == k].sum() == 2 and (~small.same[small.fold == k]).sum() == 2
    assert set(map(tuple, small.paths)) <= set(map(tuple, big.paths))
    assert L.lfw_subset(pairs, None) is pairs
    with pytest.raises(ValueError, match="even"):
        L.lfw_subset(pairs, 3)


def test_pick_subject_prefers_big_central_face():
    from facekit.detection.detector import Face

    def face(x1, y1, x2, y2, c):
        return Face(np.array([x1, y1, x2, y2], np.float32), np.zeros((5, 2), np.float32), c)

    centre = face(80, 70, 170, 190, 0.95)
    edge = face(0, 0, 100, 120, 0.999)  # bigger score, off-centre
    assert L.pick_subject([edge, centre], (250, 250)) is centre
    assert L.pick_subject([edge, centre], (250, 250), "confidence") is edge
    assert L.pick_subject([], (250, 250)) is None
    # John_McEnroe_0001: a larger face in front of the centred subject
    front = face(52, 66, 138, 186, 1.0)
    subject = face(107, 68, 186, 171, 1.0)
    assert L.pick_subject([front, subject], (250, 250)) is subject
    assert L.pick_subject([front, subject], (250, 250), "facenet") is front
    with pytest.raises(ValueError, match="select"):
        L.pick_subject([front], (250, 250), "biggest")


# --- real faces ------------------------------------------------------------------------------

def test_verify_on_sample_faces(celeb_train):
    """DEFAULT_THRESHOLD separates the 5 sample celebrities: nearly all same-person pairs are
    closer than it and nearly all different-person pairs farther."""
    e, lab = celeb_train.embeddings, celeb_train.labels
    np.testing.assert_allclose(np.linalg.norm(e, axis=1), 1.0, atol=1e-4)
    d = V.pairwise_sq_l2(e)
    iu = np.triu_indices(len(e), 1)
    same = (lab[:, None] == lab[None, :])[iu]
    acc = V.accuracy_at(d[iu], same, fk.thresholds("facenet128").verify)
    assert acc > 0.97, acc
    assert V.roc_auc(d[iu], same) > 0.99
    i, j = np.flatnonzero(lab == lab[0])[:2]
    k = np.flatnonzero(lab != lab[0])[0]
    assert V.verify(e[i], e[j])[0] and not V.verify(e[i], e[k])[0]


#: Accuracy of facekit's default pipeline on the fixed balanced subset of 600 LFW View 2 pairs
#: (60 per fold: ``lfw_subset(pairs, 60, random_state=0)``), by the 10-fold protocol, from a fresh
#: cache: 99.67% (598 of 600 pairs; per-fold thresholds 1.209..1.265, best single threshold
#: 1.221), no image without a face.
#: Measured at commit 284dedd (a clean checkout of it) with
#:   SCIKIT_LEARN_DATA=.cache/sklearn_data ./run.sh test tests/test_verify.py -k lfw_600 -s
#: A change of the pipeline that moves it by 0.5 points (3 pairs) or more, or moves the best
#: threshold by 0.05, fails the test: re-measure, and pin the new figures only if the change is
#: meant (bench/lfw.py: all 6,000 pairs).
LFW_600_ACCURACY = 598 / 600
LFW_600_THRESHOLD = 1.221
LFW_600_NO_FACE = 0


class _Refuse:
    """Stands in for a detector / embedder that must not run (the cache has to answer)."""

    def __init__(self, real):
        self._real = real

    def __getattr__(self, name):
        if name in ("detect", "detect_batch", "embed", "refine", "__call__"):
            raise AssertionError(f"{name}() ran: the LFW cache this test made was not used")
        return getattr(self._real, name)


@pytest.mark.slow
def test_lfw_600_pairs_accuracy_is_pinned(lfw_pairs, embedder, detector, tmp_path, monkeypatch):
    """One LFW check that can catch a regression: 600 fixed pairs, a cache made here, accuracy
    less than 0.5 points from the pinned figure (the 10-fold protocol on the subset)."""
    monkeypatch.setenv("FACEKIT_HOME", str(tmp_path))  # an LFW cache of this test's own
    res, embs = L.lfw_verification(lfw_pairs, per_fold=60, detector=detector, embedder=embedder, progress=False)
    print(f"\nLFW 600 pairs: {res} no_face={len(embs.no_face)}")
    assert len(embs.same) == 600 and embs.same.sum() == 300 and np.bincount(embs.fold).tolist() == [60] * 10
    assert embs.a.shape == embs.b.shape == (600, 128)
    np.testing.assert_allclose(np.linalg.norm(embs.a, axis=1), 1.0, atol=1e-4)
    assert abs(res.mean - LFW_600_ACCURACY) < 0.005 - 1e-9, (str(res), LFW_600_ACCURACY)
    assert abs(res.threshold - LFW_600_THRESHOLD) < 0.05, str(res)
    assert len(embs.no_face) == LFW_600_NO_FACE, embs.no_face
    # the second call is answered by the cache this test made: no detection, no embedding
    assert list((tmp_path / "lfw").glob("embeddings-*.npz"))
    res2, embs2 = L.lfw_verification(lfw_pairs, per_fold=60, detector=_Refuse(detector), embedder=_Refuse(embedder),
                                     progress=False)
    assert res2.mean == res.mean and np.array_equal(embs2.a, embs.a)


@pytest.mark.slow
def test_lfw_no_face_policy(lfw_pairs, embedder):
    """Images without a detected face are embedded from the fixed centre box and counted."""
    from facekit.detection.detector import Detector

    paths = lfw_pairs.paths[:2, 0].tolist()
    blind = Detector(min_face_size=400)  # larger than the 250x250 images: finds nothing
    e, no_face = L.embed_lfw(paths, detector=blind, flip=None, cache=False, progress=False)
    assert no_face == paths and e.shape == (2, 128)
    np.testing.assert_allclose(np.linalg.norm(e, axis=1), 1.0, atol=1e-4)
    e_det, no_face_det = L.embed_lfw(paths, flip=None, cache=False, progress=False)
    assert no_face_det == []
    # the centre crop is a usable face crop: close to the detected-face embedding
    assert (V.sq_l2(e, e_det) < 0.6).all()


@pytest.mark.slow
def test_lfw_mirror_and_views(lfw_pairs, embedder):
    """flip="concat" and views concatenate unit embeddings: a distance is the mean over crops."""
    paths = lfw_pairs.paths[0].tolist()  # a same-person pair
    kw = dict(cache=False, progress=False)
    plain, _ = L.embed_lfw(paths, **kw)
    both, _ = L.embed_lfw(paths, flip="concat", **kw)
    tta, _ = L.embed_lfw(paths, flip="concat", views=L.TTA_VIEWS, **kw)
    assert plain.shape == (2, 128) and both.shape == (2, 256) and tta.shape == (2, 512)
    np.testing.assert_allclose(np.linalg.norm(tta, axis=1), 1.0, atol=1e-4)
    np.testing.assert_allclose(both[:, :128] * np.sqrt(2), plain, atol=1e-4)
    mirrored = both[:, 128:] * np.sqrt(2)
    d = V.sq_l2(both[:1], both[1:])[0]
    assert d == pytest.approx((V.sq_l2(plain[:1], plain[1:])[0] + V.sq_l2(mirrored[:1], mirrored[1:])[0]) / 2, abs=1e-4)
    with pytest.raises(ValueError, match="only 'margin' and 'rotate'"):
        L.embed_lfw(paths, views=[{"flip": "mean"}], **kw)


def test_lfw_subject_is_the_centred_person(lfw_home_dir, embedder, detector):
    """John_McEnroe_0001: a larger face in front of him; the centred face is the labelled person,
    and only that crop matches his other photo (a same pair of View 2 that the old rule failed)."""
    from facekit.detection.align import align_face
    from facekit.core.images import load_image

    root = lfw_home_dir / "lfw_funneled" / "John_McEnroe"
    imgs = [load_image(root / f"John_McEnroe_000{i}.jpg") for i in (1, 2)]
    faces = detector.detect(imgs[0])
    assert len(faces) >= 2
    centred = L.pick_subject(faces, imgs[0].shape[:2])
    bigger = L.pick_subject(faces, imgs[0].shape[:2], "facenet")
    assert centred is not bigger
    other = embedder.embed(align_face(imgs[1], L.pick_subject(detector.detect(imgs[1]), imgs[1].shape[:2]))[None])
    e = embedder.embed(np.stack([align_face(imgs[0], centred), align_face(imgs[0], bigger)]))
    d_centred, d_bigger = V.sq_l2(e, np.repeat(other, 2, axis=0))
    assert d_centred < fk.thresholds("facenet128").verify < d_bigger



_WRITER = """
import sys, numpy as np
from pathlib import Path
from facekit.teach.lfw import RowTable
store = RowTable(Path(sys.argv[1]), {"kind": "test"})
for i in range(100):  # one save per row: many chances to interleave with the other process
    store.rows[sys.argv[2] + str(i)] = np.full(4, i, np.float32)
    store.save()
"""


def test_lfw_cache_keeps_rows_of_concurrent_writers(tmp_path):
    """Two processes filling the same on-disk cache: every row of both survives (file lock)."""
    import subprocess
    import sys

    path = tmp_path / "embeddings-test.npz"
    procs = [subprocess.Popen([sys.executable, "-c", _WRITER, str(path), p]) for p in ("a", "b")]
    assert [p.wait(timeout=120) for p in procs] == [0, 0]
    from facekit.teach.lfw import RowTable

    rows = RowTable(path, {}).rows
    assert sorted(rows) == sorted([f"a{i}" for i in range(100)] + [f"b{i}" for i in range(100)])
    assert not list(tmp_path.glob("*.tmp.npz"))
