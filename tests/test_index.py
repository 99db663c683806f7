"""facekit.store.index: the FAISS inverted file agrees with exact search on a 10k gallery at the chosen settings;
add/forget keep it in step; it retrains as the gallery grows (issue 15)."""

import numpy as np
import pytest

from facekit.store.index import MIN_PROBES, PROBE_SHARE, GalleryIndex, exact_search, factory_string, nlist_for
from facekit.core.threads import cpu_count, faiss_threads


def _faces(n, rng, people=None):
    """Unit embeddings with person structure: centres plus per-face noise (like FaceNet's)."""
    people = people or n // 4
    centres = rng.normal(size=(people, 128)).astype(np.float32)
    who = rng.integers(0, people, n)
    x = centres[who] + 0.45 * rng.normal(size=(n, 128)).astype(np.float32)
    return x / np.linalg.norm(x, axis=1, keepdims=True), who


def test_ivf_agrees_with_exact_on_10k():
    rng = np.random.default_rng(0)
    x, who = _faces(10_000, rng)
    q = x[:300] + 0.05 * rng.normal(size=(300, 128)).astype(np.float32)
    q /= np.linalg.norm(q, axis=1, keepdims=True)
    import faiss  # a required package: a broken install fails here, it does not skip

    before = faiss.omp_get_max_threads()
    index = GalleryIndex(128, exact_max=0)  # force FAISS at 10k
    assert index.threads == cpu_count()
    index.add(x, np.arange(10_000) + 100, [f"p{w}" for w in who])
    assert index.kind == "ivf" and index.description.startswith(factory_string(10_000))
    assert index.nprobe == max(MIN_PROBES, int(np.ceil(nlist_for(10_000) * PROBE_SHARE)))
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
    _d2, ids2 = exact.search(q, 1)
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
    from facekit.store.db import FaceStore

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


def test_settings_follow_the_gallery_size():
    assert nlist_for(1_000_000) == 1024 and nlist_for(100_000) == 256 and nlist_for(1_000) == 16
    assert factory_string(1_000_000) == "OPQ32_128,IVF1024,PQ32x4fs,RFlat"
    assert factory_string(2_000) == "IVF32,PQ32x4fs,RFlat"  # too few faces to train the rotation
    assert factory_string(50_000, dim=512).startswith("OPQ32_512,")


def test_exact_search_k1_equals_topk_and_brute_force():
    rng = np.random.default_rng(3)
    x, _ = _faces(2_000, rng)
    q = x[:50] + 0.1 * rng.normal(size=(50, 128)).astype(np.float32)
    q /= np.linalg.norm(q, axis=1, keepdims=True)
    _d1, r1 = exact_search(x, q, 1)
    d5, r5 = exact_search(x, q, 5)
    brute = ((q[:, None, :] - x[None, :, :]) ** 2).sum(-1)
    np.testing.assert_array_equal(r1[:, 0], r5[:, 0])
    np.testing.assert_array_equal(r1[:, 0], brute.argmin(1))
    np.testing.assert_allclose(d5, np.sort(brute, 1)[:, :5], atol=1e-4)
    d, r = exact_search(x[:3], q[:2], 5)  # fewer faces than k: -1 / inf pad
    assert (r[:, 3:] == -1).all() and np.isinf(d[:, 3:]).all()


def test_growth_retrains_and_search_stays_exact_after_rerank():
    rng = np.random.default_rng(4)
    x, _who = _faces(9_000, rng)
    index = GalleryIndex(128, exact_max=0)
    index.add(x[:1_500], np.arange(1_500), "a")  # trains at 1,500 faces
    assert index.kind == "ivf" and "IVF32," in index.description
    index.add(x[1_500:], np.arange(1_500, 9_000), "b")  # > 4x growth: trained again on all 9,000
    assert "IVF128," in index.description and len(index) == 9_000
    d, ids = index.search(x[8_000:8_100], 1)
    assert np.mean(ids[:, 0] == np.arange(8_000, 8_100)) >= 0.99 and np.all(d[:, 0] < 1e-4)
    assert index.memory_bytes() > 9_000 * 128 * 4  # the float32 vectors for re-ranking are kept
    with pytest.raises(ValueError, match="NaN"):
        index.search(np.full(128, np.nan, np.float32))


def test_identification_stops_early_without_changing_who():
    rng = np.random.default_rng(5)
    centres = rng.normal(size=(900, 128)).astype(np.float32)
    who = rng.integers(0, 900, 9_400)
    x = centres[who] + 0.32 * rng.normal(size=(9_400, 128)).astype(np.float32)  # FaceNet-like: same ~0.3, others > 1.3
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    q, x, q_who, who = x[9_000:], x[:9_000], who[9_000:], who[:9_000]  # queries held out of the gallery
    names = [f"p{w}" for w in who]
    index = GalleryIndex(128, exact_max=0)
    index.add(x, np.arange(9_000), names)
    assert index.nprobe > 8  # so that the first, short visit is shorter than a full search
    _full_d, full_ids = index.search(q, 1)
    _never_d, never_ids = index.search(q, 1, stop_within=-1.0)  # nothing is that close: every query searched fully
    np.testing.assert_array_equal(never_ids, full_ids)
    early_d, early_ids = index.search(q, 1, stop_within=0.5)
    stopped = early_d[:, 0] <= 0.5
    assert stopped.mean() > 0.5, stopped.mean()
    np.testing.assert_array_equal(early_ids[~stopped], full_ids[~stopped])  # the rest: the full answer
    _ed, erows = exact_search(x, q, 1)
    exact_who, early_who = who[erows[:, 0]], who[early_ids[:, 0]]
    assert np.mean(early_who == exact_who) >= 0.99  # who it is does not change
    assert np.mean(exact_who == q_who) > 0.9  # (and exact search mostly finds the right person)
    got, _ = index.identify(q, threshold=0.8)  # stops within 0.625 x 0.8 = 0.5
    assert np.mean(np.asarray(got) == np.asarray(index.names_of(early_ids[:, 0]))) >= 0.99


@pytest.mark.parametrize("exact_max", [20_000, 0])
def test_sync_catches_a_reused_face_id(tmp_path, exact_max):
    """SQLite gives a new face the largest id again after that face was deleted: sync must treat
    the id as a new face (new vector, new name), in exact and in IVF mode."""
    from facekit.store.db import FaceStore

    rng = np.random.default_rng(3)
    x, _ = _faces(1_300, rng, people=40)
    store = FaceStore(tmp_path / "faces.sqlite3")
    store.add_faces("ada", x[:1_200], model="m")
    store.add_faces("bob", x[1_200:1_250], model="m")
    index = GalleryIndex.from_store(store, "m", exact_max=exact_max)
    assert index.kind == ("exact" if exact_max else "ivf")
    old_ids = store.embeddings("m")[2]
    store.forget("bob")
    store.add_faces("cy", x[1_250:1_300], model="m")
    reused = np.intersect1d(old_ids, store.embeddings("m")[2][-50:])
    assert len(reused) > 0, "this test needs SQLite to reuse ids"
    assert index.sync(store, "m") == (50, 50)
    names, d = index.identify(x[1_250:1_300], threshold=1e-4)
    assert names == ["cy"] * 50 and np.all(d < 1e-4)
    assert "bob" not in index.identify(x[1_200:1_250], threshold=1e-4)[0]


def test_saved_gallery_round_trip_sync_and_damage(tmp_path, monkeypatch):
    """A trained index saved by gallery_from_store is loaded without training, follows the store
    (enrol, forget), answers like a fresh build, and a damaged file is rebuilt with a warning."""
    import faiss

    from facekit.store.index_file import gallery_from_store, gallery_path, load_gallery
    from facekit.store.db import FaceStore

    rng = np.random.default_rng(4)
    x, who = _faces(3_000, rng, people=300)
    store = FaceStore(tmp_path / "faces.sqlite3")
    for p in range(250):
        store.add_faces(f"p{p}", x[who == p], model="m")
    monkeypatch.setenv("FACEKIT_HOME", str(tmp_path / "home"))  # the saved index goes to facekit's cache
    path = gallery_path(store, "m")
    assert path.is_relative_to(tmp_path / "home")
    first = gallery_from_store(store, "m", exact_max=1_000)
    assert first.kind == "ivf" and path.exists()
    q = x[:200]
    want = first.search(q, 3)

    def no_training(*a, **k):
        raise AssertionError("the saved index was trained again")

    with monkeypatch.context() as m:
        m.setattr(faiss, "index_factory", no_training)
        again = gallery_from_store(store, "m", exact_max=1_000)
        assert again.kind == "ivf" and again.description == first.description
        np.testing.assert_array_equal(again.search(q, 3)[1], want[1])
        assert load_gallery(path).ids.tolist() == first.ids.tolist()
        # the store changes between runs: the loaded index follows it
        store.forget("p0")
        for p in range(250, 300):
            store.add_faces(f"p{p}", x[who == p], model="m")
        synced = gallery_from_store(store, "m", exact_max=1_000)
    fresh = GalleryIndex.from_store(store, "m", exact_max=1_000)
    assert synced.ids.tolist() == fresh.ids.tolist() == sorted(store.embeddings("m")[2].tolist())
    late = np.flatnonzero(who >= 250)
    assert synced.identify(x[late], 1e-4)[0] == [f"p{w}" for w in who[late]]
    assert "p0" not in synced.identify(x[who == 0], 1e-4)[0]
    assert load_gallery(path).ids.tolist() == synced.ids.tolist()  # saved again after the change
    path.write_bytes(path.read_bytes()[:5_000])  # damaged (a crash cannot do this: writes are atomic)
    with pytest.warns(UserWarning, match="not a readable gallery index"):
        rebuilt = gallery_from_store(store, "m", exact_max=1_000)
    assert rebuilt.ids.tolist() == fresh.ids.tolist() and load_gallery(path).kind == "ivf"
    with pytest.raises(ValueError, match=str(path.name)):
        path.write_bytes(b"garbage")
        load_gallery(path)


def test_saved_gallery_of_another_size_is_rebuilt(tmp_path, monkeypatch):
    """A saved index that does not fit the store (another embedding size) is replaced, with a warning."""
    from facekit.store.index_file import gallery_from_store, gallery_path, load_gallery, save_gallery
    from facekit.store.db import FaceStore

    monkeypatch.setenv("FACEKIT_HOME", str(tmp_path / "home"))
    rng = np.random.default_rng(5)
    other = GalleryIndex(64, exact_max=0)
    y = rng.normal(size=(1_200, 64)).astype(np.float32)
    other.add(y / np.linalg.norm(y, axis=1, keepdims=True), np.arange(1, 1_201), "someone")
    x, who = _faces(1_200, rng, people=100)
    store = FaceStore(tmp_path / "faces.sqlite3")
    path = save_gallery(other, gallery_path(store, "m"))
    for p in range(100):
        store.add_faces(f"p{p}", x[who == p], model="m")
    with pytest.warns(UserWarning, match="does not fit the store"):
        index = gallery_from_store(store, "m", exact_max=0)
    assert index.dim == 128 and index.identify(x[:20], 1e-4)[0] == [f"p{w}" for w in who[:20]]
    assert load_gallery(path).dim == 128
