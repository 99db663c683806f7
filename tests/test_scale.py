"""The Ray Data engine on a local instance gives the same rows as the local engine (issue 15).

Real model, real photos, real Ray (a small local instance: 2 CPUs, no dashboard)."""

import os

import numpy as np
import pytest

from facekit.core.cache import celebrity_dir
from facekit.album.scan import list_photos, run_local
from facekit.store.db import FaceStore

pytestmark = pytest.mark.slow


def _same_rows(local: list[dict], ray: list[dict]) -> None:
    a = {(r["path"], r["face"]): r for r in local}
    b = {(r["path"], r["face"]): r for r in ray}
    assert set(a) == set(b), "the engines found different faces"
    for k, r in a.items():
        assert r["sha256"] == b[k]["sha256"] and r["model"] == b[k]["model"]
        if k[1] >= 0:
            np.testing.assert_allclose(r["box"], b[k]["box"], atol=1e-3, err_msg=str(k))
            np.testing.assert_allclose(r["landmarks"], b[k]["landmarks"], atol=1e-3, err_msg=str(k))
            np.testing.assert_allclose(r["embedding"], b[k]["embedding"], atol=1e-5, rtol=0, err_msg=str(k))


def _lfw_subset(lfw_pairs, tmp_path, n=200):
    paths = list(dict.fromkeys(lfw_pairs.paths.ravel().tolist()))[:n]
    d = tmp_path / "lfw"
    d.mkdir()
    for p in paths:
        os.symlink(p, d / os.path.basename(p))
    return d


@pytest.fixture(scope="module")
def ray_local():
    import ray  # a required package: a broken install fails here, it does not skip

    ray.init(num_cpus=2, include_dashboard=False, object_store_memory=128 * 2 ** 20, log_to_driver=False,
             runtime_env={"env_vars": {"TF_CPP_MIN_LOG_LEVEL": "2"}})
    yield ray
    ray.shutdown()


def test_ray_equals_local_on_samples_and_lfw(tmp_path, ray_local, lfw_pairs):
    from facekit.album.ray import index_folder_ray

    for root in (celebrity_dir(), _lfw_subset(lfw_pairs, tmp_path)):
        local_store = FaceStore(tmp_path / f"local-{root.name}.sqlite3")
        rep_l, rows_l = run_local(root, local_store, keep_rows=True, progress=False)
        ray_store = FaceStore(tmp_path / f"ray-{root.name}.sqlite3")
        shards = tmp_path / f"shards-{root.name}"
        rep_r, rows_r = index_folder_ray(root, ray_store, keep_rows=True, shards=shards)
        runs = list(shards.glob("run-*"))
        assert len(runs) == 1 and list(runs[0].glob("*.parquet")), "the shards are kept under shards/run-*"
        assert rep_r.photos == rep_l.photos == len(list_photos(root))
        assert rep_r.faces == rep_l.faces > 0 and rep_r.indexed == rep_l.indexed
        _same_rows(rows_l, rows_r)
        # the store ingested the shards: every photo cached, a second run does nothing
        again = index_folder_ray(root, ray_store)
        assert again.cached == again.photos and again.indexed == 0


def test_two_stage_layout_equals_local(tmp_path, ray_local):
    """fuse=False (DetectAlign actors, then an Embed actor pool) gives the local engine's rows too."""
    from facekit.album.ray import index_folder_ray

    rep_l, rows_l = run_local(celebrity_dir(), FaceStore(tmp_path / "local.sqlite3"), keep_rows=True, progress=False)
    rep_r, rows_r = index_folder_ray(celebrity_dir(), FaceStore(tmp_path / "ray.sqlite3"), keep_rows=True,
                                     progress=False, fuse=False)
    assert rep_r.faces == rep_l.faces > 0 and rep_r.indexed == rep_l.indexed
    _same_rows(rows_l, rows_r)


def test_embed_actor_threads_equal_its_cpus(embedder, monkeypatch):
    """The Embed actor's ONNX Runtime sessions have intra-op threads = the actor's CPUs, and it
    embeds as the Embedder does; an actor asked for another model's embeddings refuses."""
    import facekit.embedding.embedder as fe
    from facekit.album.ray import Embed

    made = []
    real = fe.ort_session

    def spy(*a, **k):  # every session the actor's embedder opens
        made.append(real(*a, **k))
        return made[-1]

    monkeypatch.setattr(fe, "ort_session", spy)
    actor = Embed(embedder.fingerprint, 1)
    crops = np.random.default_rng(0).integers(0, 256, (3, 160, 160, 3), dtype=np.uint8)
    got = actor.embed(crops)
    assert len(made) == 2, made  # the batched and the one-face session
    assert [s.get_session_options().intra_op_num_threads for s in made] == [1, 1]
    np.testing.assert_allclose(got, embedder.embed(crops), atol=1e-5, rtol=0)
    with pytest.raises(RuntimeError, match="Fix"):
        Embed("facenet128/0123456789ab/onnx-v0/fp32", 1)


def test_photos_under_a_filesystem_uri(tmp_path):
    """list_photos / the local engine read a pyarrow filesystem URI (file:// here; s3://, gs:// the same way)."""
    import shutil

    d = tmp_path / "photos"
    (d / "sub").mkdir(parents=True)
    (d / ".hidden").mkdir()
    samples = sorted(celebrity_dir().rglob("*.jpg"))[:3]
    for i, p in enumerate(samples):
        shutil.copy(p, d / ("sub" if i else "") / p.name)
    shutil.copy(samples[0], d / ".hidden" / "skip.jpg")
    uri = d.resolve().as_uri()
    files = list_photos(uri)
    assert [f.path for f in files] == sorted(uri + "/" + str(p.relative_to(d.resolve()))
                                              for p in (d.resolve() / samples[0].name, *[
                                                  d.resolve() / "sub" / s.name for s in samples[1:]]))
    assert [f.size for f in files] == [os.path.getsize(f.path[len("file://"):]) for f in files]
    rep_u, rows_u = run_local(uri, FaceStore(tmp_path / "u.sqlite3"), keep_rows=True, progress=False)
    rep_p, rows_p = run_local(d, FaceStore(tmp_path / "p.sqlite3"), keep_rows=True, progress=False)
    assert rep_u.indexed == rep_p.indexed == 3 and rep_u.faces == rep_p.faces > 0 and not rep_u.failed
    emb = lambda rows: sorted((r["sha256"], r["face"], tuple(np.round(r["embedding"] or [], 5))) for r in rows)  # noqa: E731
    assert emb(rows_u) == emb(rows_p)
    with pytest.raises(FileNotFoundError):
        list_photos(uri + "/nope")


def test_faceless_and_broken_photos_and_interrupt(tmp_path, ray_local):
    """A chunk of only face-less or unreadable photos writes a shard with the same schema as the
    others; the broken photo is reported, not cached. Ctrl-C while shards are being committed
    keeps what was committed, and the instance runs the next job."""
    import shutil

    from PIL import Image

    from facekit.album.ray import index_folder_ray, read_shards

    d = tmp_path / "photos"
    d.mkdir()
    for p in sorted(celebrity_dir().rglob("*.jpg"))[:4]:
        shutil.copy(p, d / p.name)
    Image.new("RGB", (200, 160), (120, 130, 140)).save(d / "zz_blank.jpg")
    (d / "zz_broken.jpg").write_bytes(b"not a jpeg at all")
    store = FaceStore(tmp_path / "s.sqlite3")
    rep, rows = index_folder_ray(d, store, keep_rows=True, shards=tmp_path / "sh", batch_size=2, progress=False)
    assert rep.photos == 6 and rep.indexed == 5 and rep.no_face == 1 and rep.faces >= 4
    assert [p for p, _ in rep.failed] == [str(d / "zz_broken.jpg")] and rep.failed[0][1]
    (run,) = (tmp_path / "sh").glob("run-*")
    # one shard per chunk: 6 photos in chunks of at most 2, as many as a multiple of the 2 actors
    # (even_chunks: 2, 2, 1, 1), so the blank and the broken photo each have a chunk of their own
    assert len(list(run.glob("*.parquet"))) == 4
    back = read_shards(run)  # one schema across shards, the all-null one included
    assert sorted((r["path"], r["face"]) for r in back) == sorted((r["path"], r["face"]) for r in rows)
    last = [r for r in back if r["path"].endswith("zz_blank.jpg")]
    assert last[0]["face"] == -1 and last[0]["embedding"] is None and last[0]["error"] is None

    class Interrupting(FaceStore):
        puts = 0

        def put_photo(self, *a, **k):
            if Interrupting.puts == 3:
                raise KeyboardInterrupt
            Interrupting.puts += 1
            return super().put_photo(*a, **k)

    cut = Interrupting(tmp_path / "cut.sqlite3")
    rep = index_folder_ray(d, cut, batch_size=1, progress=False)
    assert rep.interrupted and rep.indexed == 3
    assert len(FaceStore(tmp_path / "cut.sqlite3").photo_index(rows[0]["model"])) == 3  # committed, kept
    again = index_folder_ray(d, FaceStore(tmp_path / "cut.sqlite3"), batch_size=2, progress=False)
    assert again.cached == 3 and again.indexed == 2 and len(again.failed) == 1 and not again.interrupted


def test_cli_index_engine_ray(tmp_path, capsys, ray_local):
    """`facekit index DIR --engine ray --json` on real photos: JSON parses, the same counts as the
    local engine, exit 0; a broken photo exits 1 and is named; a re-run only finds cached photos."""
    import json
    import shutil

    from facekit.cli.main import EXIT_FAILED, EXIT_OK, main

    d = tmp_path / "album"
    d.mkdir()
    for p in sorted(celebrity_dir().rglob("*.jpg"))[:5]:
        shutil.copy(p, d / p.name)

    def index(engine, store, *extra):
        code = main(["index", str(d), "--engine", engine, "--store", str(store), "--json", "-q", *extra])
        return code, json.loads(capsys.readouterr().out)

    code, local = index("local", tmp_path / "l.sqlite3")
    code_r, ray = index("ray", tmp_path / "r.sqlite3", "--shards", str(tmp_path / "sh"))
    assert code == code_r == EXIT_OK
    assert ray["rows"][0]["engine"] == "ray" and ray["rows"][0]["indexed"] == local["rows"][0]["indexed"] == 5
    assert ray["rows"][0]["faces"] == local["rows"][0]["faces"] >= 5
    assert len(list((tmp_path / "sh").glob("run-*/*.parquet"))) >= 1
    (d / "broken.jpg").write_bytes(b"not a jpeg")
    code, again = index("ray", tmp_path / "r.sqlite3")
    assert code == EXIT_FAILED and again["failed"][0]["path"].endswith("broken.jpg")
    assert again["rows"][0]["cached"] == 5 and again["rows"][0]["indexed"] == 0


def test_even_chunks_share_the_photos_out_evenly():
    """The Ray engine's chunks: at most batch_size each, a multiple of the actors in number, sizes
    at most one apart, every photo once and in order."""
    from facekit.album.ray import even_chunks

    for n, size, workers in ((100, 32, 2), (2000, 32, 2), (5, 32, 2), (1, 32, 4), (64, 32, 2), (97, 10, 3)):
        files = list(range(n))
        chunks = even_chunks(files, size, workers)
        lens = [len(c) for c in chunks]
        assert sum(chunks, []) == files
        assert max(lens) <= size and max(lens) - min(lens) <= 1
        assert len(chunks) % workers == 0 or len(chunks) == n
    assert [len(c) for c in even_chunks(list(range(100)), 32, 2)] == [25, 25, 25, 25]
    assert even_chunks([], 32, 2) == []
