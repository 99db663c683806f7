"""facekit.index: FAISS HNSW agrees with exact search on a 10k gallery; add/forget keep it in step (issue 15)."""

import numpy as np
import pytest

from facekit.index import EF_SEARCH, GalleryIndex, cpu_count, exact_search, faiss_threads


def _faces(n, rng, people=None):
    """Unit embeddings with person structure: centres plus per-face noise (like FaceNet's)."""
    people = people or n // 4
    centres = rng.normal(size=(people, 128)).astype(np.float32)
    who = rng.integers(0, people, n)
    x = centres[who] + 0.45 * rng.normal(size=(n, 128)).astype(np.float32)
    return x / np.linalg.norm(x, axis=1, keepdims=True), who


def test_hnsw_agrees_with_exact_on_10k():
    rng = np.random.default_rng(0)
    x, who = _faces(10_000, rng)
    q = x[:300] + 0.05 * rng.normal(size=(300, 128)).astype(np.float32)
    q /= np.linalg.norm(q, axis=1, keepdims=True)
    faiss = pytest.importorskip("faiss")
    before = faiss.omp_get_max_threads()
    index = GalleryIndex(128, exact_max=0)  # force FAISS at 10k
    assert index.threads == cpu_count()
    index.add(x, np.arange(10_000) + 100, [f"p{w}" for w in who])
    assert index.kind == "hnsw" and index.ef_search == EF_SEARCH
    assert faiss.omp_get_max_threads() == before, "the index must restore FAISS's thread count"
    with faiss_threads(1):
        assert faiss.omp_get_max_threads() == 1
    assert faiss.omp_get_max_threads() == before
    d, ids = index.search(q, 5)
    ed, erows = exact_search(x, q, 5)
    assert np.mean(ids[:, 0] == erows[:, 0] + 100) >= 0.99
    np.testing.assert_allclose(d[:, 0], ed[:, 0], atol=1e-4, rtol=0)
    exact = GalleryIndex(128)  # the default: exact below EXACT_MAX
    exact.add(x, np.arange(10_000) + 100, [f"p{w}" for w in who])
    assert exact.kind == "exact"
    d2, ids2 = exact.search(q, 1)
    np.testing.assert_array_equal(ids2[:, 0], erows[:, 0] + 100)


@pytest.mark.parametrize("exact_max", [0, 10_000_000])
def test_add_and_forget_keep_in_step(exact_max):
    rng = np.random.default_rng(1)
    x, who = _faces(3_000, rng)
    index = GalleryIndex(128, exact_max=exact_max)
    index.add(x[:2000], np.arange(2000), [f"p{w}" for w in who[:2000]])
    index.add(x[2000:], np.arange(2000, 3000), "late")
    assert len(index) == 3000
    names, d = index.identify(x[2500:2510], threshold=0.1)
    assert names == ["late"] * 10 and np.all(d < 1e-4)
    assert index.remove(np.arange(2000, 3000)) == 1000  # forget "late"
    assert len(index) == 2000
    _, ids = index.search(x[2000:3000], 3)
    assert not np.isin(ids, np.arange(2000, 3000)).any()
    names, _ = index.identify(x[2500:2510], threshold=0.1)
    assert "late" not in names
    with pytest.raises(ValueError):
        index.add(x[:1], [5], "dup")  # ids must be new
    names, _ = index.identify(x[:3], threshold=float("nan"))
    assert names == ["unknown"] * 3  # NaN threshold fails closed


def test_sync_follows_the_store(tmp_path):
    from facekit.store import FaceStore

    rng = np.random.default_rng(2)
    x, _ = _faces(60, rng, people=3)
    store = FaceStore(tmp_path / "faces.sqlite3")
    store.add_faces("ada", x[:20], model="test-model")
    store.add_faces("bob", x[20:40], model="test-model")
    index = GalleryIndex.from_store(store, "test-model")
    assert len(index) == 40
    store.add_faces("cy", x[40:], model="test-model")
    store.forget("ada")
    assert index.sync(store, "test-model") == (20, 20)
    assert len(index) == 40 and set(index.names_of(index.ids)) == {"bob", "cy"}
    names, _ = index.identify(x[:5], threshold=1e-4)
    assert "ada" not in names
