"""Helpers the notebooks teach with (issue 14): statistics, triplet separation, the new explorers.

Each checks against an independent computation (a plain loop, scipy, a hand count)."""

from __future__ import annotations

import itertools

import numpy as np
import pytest

from facekit.core.stats import binomial_ci, mcnemar, standard_error
from facekit.training.triplet import triplet_separation


def test_standard_error_is_sample_std_over_sqrt_k():
    v = np.array([0.99, 0.995, 1.0, 0.985, 0.99, 0.99, 1.0, 0.995, 0.99, 0.993])
    assert standard_error(v) == pytest.approx(np.sqrt(((v - v.mean()) ** 2).sum() / 9) / np.sqrt(10))
    assert standard_error(v) == pytest.approx(np.std(v) / 3)  # for 10 folds: population std / 3
    with pytest.raises(ValueError):
        standard_error([1.0])


def test_mcnemar_counts_only_disagreements():
    a = np.array([1, 1, 1, 0, 1, 0] * 5, bool)
    b = np.array([1, 0, 1, 0, 1, 1] * 5, bool)
    r = mcnemar(a, b)
    assert (r.only_a, r.only_b) == (5, 5) and r.p == pytest.approx(1.0)
    r = mcnemar(np.ones(20, bool), np.r_[np.zeros(8, bool), np.ones(12, bool)])
    assert (r.only_a, r.only_b) == (8, 0) and r.p == pytest.approx(2 * 0.5 ** 8)
    assert mcnemar([True], [True]).p == 1.0
    with pytest.raises(ValueError):
        mcnemar([True, False], [True])


def test_binomial_ci_covers_and_matches_known_values():
    lo, hi = binomial_ci(3, 3000)
    assert lo < 0.001 < hi and lo == pytest.approx(2.0627e-4, rel=1e-3) and hi == pytest.approx(2.9196e-3, rel=1e-3)
    wl, wh = binomial_ci(3, 3000, method="wilson")
    assert lo < wl < 0.001 < wh and wh == pytest.approx(2.936e-3, rel=1e-3)
    assert binomial_ci(0, 100)[0] == 0.0 and binomial_ci(100, 100)[1] == 1.0
    for bad in [(4, 3), (-1, 3), (1, 0)]:
        with pytest.raises(ValueError):
            binomial_ci(*bad)
    with pytest.raises(ValueError):
        binomial_ci(1, 10, method="bogus")


def test_triplet_separation_matches_a_loop_over_all_triplets():
    rng = np.random.default_rng(1)
    e = rng.normal(size=(30, 4))
    e /= np.linalg.norm(e, axis=1, keepdims=True)
    y = rng.integers(0, 4, 30)
    d = ((e[:, None] - e[None]) ** 2).sum(-1)
    n = o = s = 0
    for a, p, q in itertools.product(range(30), repeat=3):
        if a != p and y[a] == y[p] and y[q] != y[a]:
            n += 1
            o += d[a, q] > d[a, p]
            s += d[a, q] >= d[a, p] + 0.2
    r = triplet_separation(e, y, 0.2)
    assert r["triplets"] == n and r["ordered"] == pytest.approx(o / n) and r["separated"] == pytest.approx(s / n)
    with pytest.raises(ValueError):
        triplet_separation(e, np.arange(30), 0.2)  # nobody has two photos


def test_triplet_names_in_the_flat_api_are_the_training_modules():
    import facekit as fk
    from facekit.training import triplet, triplet_train

    assert fk.TripletNet is triplet_train.TripletNet and callable(triplet_train.make_embedding_cnn)
    assert fk.triplet_loss is triplet.triplet_loss and fk.PKSampler is triplet.PKSampler


def test_new_explorers_draw_headless_and_react():
    from facekit.teach.plots import plot_det
    from facekit.teach.widgets import sphere_explorer, threshold_explorer

    rng = np.random.default_rng(0)
    same = rng.random(400) < 0.5
    d = np.where(same, rng.normal(0.8, 0.25, 400), rng.normal(1.9, 0.25, 400))
    w = threshold_explorer(d, same, 1.22)
    first = w.children[1].value
    assert first[:4] == b"\x89PNG"
    w.children[0].value = 0.6
    assert w.children[1].value != first
    ax = plot_det(d, same, threshold=1.22)
    assert ax.get_xscale() == "log"
    e = rng.normal(size=(30, 3))
    w = sphere_explorer([(0, e), (10, -e)], np.repeat(list("abc"), 10))
    shown = w.children[1].value
    w.children[0].value = 0
    assert w.children[1].value != shown and shown[:4] == b"\x89PNG"
    with pytest.raises(ValueError):
        threshold_explorer(d, np.ones(400, bool))
