"""facekit.store.db.FaceStore: the SQLite face store of issue 13 (real SQLite files, real processes,
real model and photos where enrolment is tested)."""

from __future__ import annotations

import os
import random
import shutil
import signal
import sqlite3
import stat
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from conftest import BENCH
from helpers import unit as _unit

sys.path.insert(0, str(BENCH))
import faults  # noqa: E402  (bench/faults.py: the writer process, the tampered-export helper)

from facekit.core.exchange import FileFormatError  # noqa: E402
from facekit.core.constants import UNKNOWN  # noqa: E402
from facekit.core.names import InvalidNameError  # noqa: E402
from facekit.store.db import (SCHEMA_VERSION, EmptyStoreError, FaceRecord, FaceStore, PhotoSource,  # noqa: E402
    StoreError, UnknownPersonError, default_store_path)

FP = "facenet128/test"  # a fingerprint string (facenet128 thresholds): no model needed for storage tests


def test_file_is_private_wal_and_versioned(tmp_path, rng):
    path = tmp_path / "sub" / "faces.sqlite3"
    with FaceStore(path) as s:
        s.add_faces("Ada", _unit(rng, 2), model=FP)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert stat.S_IMODE(path.parent.stat().st_mode) == 0o700
    con = sqlite3.connect(path)
    assert con.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    assert con.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION
    con.close()


def test_default_path_env(monkeypatch, tmp_path):
    monkeypatch.setenv("FACEKIT_STORE", str(tmp_path / "x.sqlite3"))
    assert default_store_path() == tmp_path / "x.sqlite3"
    monkeypatch.delenv("FACEKIT_STORE")
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path))
    assert default_store_path() == tmp_path / "facekit" / "faces.sqlite3"


def test_add_people_embeddings_idempotent_and_checked(tmp_path, rng):
    s = FaceStore(tmp_path / "s.sqlite3")
    a, b = _unit(rng, 3), _unit(rng, 2)
    ids = s.add_faces("Ada", a, model=FP, sources="camera")
    assert s.add_faces("Ada", a, model=FP, sources="camera") == ids  # same faces stored once
    s.add_faces("Bob", b * 3, model=FP, sources=[PhotoSource("/p/1.jpg", "ab" * 32, (1, 2, 3, 4)), "camera"],
                consent="agreed 2024-05-01")
    x, names, fids = s.embeddings(FP)
    assert x.dtype == np.float32 and x.shape == (5, 128) and names == ["Ada"] * 3 + ["Bob"] * 2
    np.testing.assert_allclose(np.linalg.norm(x, axis=1), 1, atol=1e-6)
    np.testing.assert_allclose(x[3:], b, atol=1e-6)  # renormalised
    assert [(p.name, p.faces, p.consent) for p in s.people()] == [("Ada", 3, None), ("Bob", 2, "agreed 2024-05-01")]
    bad = a.copy()
    bad[0, 0] = np.nan
    with pytest.raises(ValueError, match="NaN"):
        s.add_faces("Cy", bad, model=FP)
    with pytest.raises(ValueError, match="128-D"):
        s.add_faces("Cy", _unit(rng, 1, 64), model=FP)
    with pytest.raises(InvalidNameError):
        s.add_faces("../Cy", a, model=FP)
    assert s.names == ["Ada", "Bob"]  # failed writes left nothing behind


def test_forget_removes_faces_cache_rows_and_bytes(tmp_path, rng):
    path = tmp_path / "s.sqlite3"
    s = FaceStore(path)
    a, b = _unit(rng, 4), _unit(rng, 4)
    s.add_faces("Ada", a, model=FP, sources="camera")
    s.add_faces("Bob", b, model=FP, sources=[PhotoSource("/p/b.jpg", "cd" * 32)] + ["camera"] * 3)
    rec = FaceRecord(np.array([1, 2, 30, 40]), np.zeros((5, 2)), 0.99, b[0], "Bob")
    s.put_photo("/p/b.jpg", 10, 20, "cd" * 32, FP, [rec])
    s.put_photo("/p/group.jpg", 11, 21, "ef" * 32, FP, [rec, FaceRecord(rec.box, rec.landmarks, 0.9, a[0], "Ada")])
    ident = s.identifier(FP)
    assert ident.names == ["Ada", "Bob"]
    assert s.forget("Bob") == 4
    assert s.names == ["Ada"] and s.cached_photo("/p/b.jpg", 10, 20, FP) is None
    assert s.cached_photo("/p/group.jpg", 11, 21, FP) is None  # a cached photo holding Bob goes too
    refit = s.identifier(FP)
    assert refit.names == ["Ada"] and refit.predict(b[:1])[0] == UNKNOWN
    with pytest.raises(UnknownPersonError, match="not enrolled"):
        s.forget("Bob")
    s.close()
    raw = b"".join(p.read_bytes() for p in tmp_path.iterdir() if p.is_file())
    assert b[1].astype("<f4").tobytes() not in raw  # zeroed, not just unlinked
    assert a[1].astype("<f4").tobytes() in raw


def test_identifier_empty_store(tmp_path):
    s = FaceStore(tmp_path / "s.sqlite3")
    with pytest.raises(EmptyStoreError, match="enrol someone"):
        s.identifier(FP)
    assert s.identifier(FP, allow_empty=True) is None


def test_photo_cache_keys(tmp_path, rng):
    s = FaceStore(tmp_path / "s.sqlite3")
    e = _unit(rng, 1)[0]
    rec = FaceRecord(np.array([1.5, 2, 30, 40]), np.arange(10).reshape(5, 2), 0.97, e)
    s.put_photo("/a.jpg", 100, 5, "11" * 32, FP, [rec])
    s.put_photo("/empty.jpg", 7, 5, "22" * 32, FP, [])
    got = s.cached_photo("/a.jpg", 100, 5, FP)
    assert len(got) == 1 and np.allclose(got[0].box, rec.box) and np.allclose(got[0].embedding, e)
    assert got[0].landmarks.shape == (5, 2) and got[0].person is None
    assert s.cached_photo("/empty.jpg", 7, 5, FP) == []
    assert s.cached_photo("/a.jpg", 100, 6, FP) is None  # touched
    assert s.cached_photo("/a.jpg", 101, 5, FP) is None  # changed size
    assert s.cached_photo("/a.jpg", 100, 5, "other/model") is None
    assert len(s.cached_content("11" * 32, FP)) == 1  # moved file: same content
    assert s.photo_index(FP) == {"/a.jpg": (100, 5, "11" * 32), "/empty.jpg": (7, 5, "22" * 32)}
    with pytest.raises(UnknownPersonError):
        s.put_photo("/b.jpg", 1, 1, "33" * 32, FP, [FaceRecord(rec.box, rec.landmarks, 0.9, e, "Nobody")])
    assert s.cached_photo("/b.jpg", 1, 1, FP) is None  # the failed write left nothing
    assert s.forget_photo("/a.jpg") == 1


def test_photo_faces_all_cached_faces_damaged_left_out(tmp_path, rng):
    path = tmp_path / "s.sqlite3"
    s = FaceStore(path)
    e = _unit(rng, 4)
    lm = np.zeros((5, 2))
    s.put_photo("/b.jpg", 1, 1, "11" * 32, FP, [FaceRecord(np.array([1, 2, 3, 4.5]), lm, 0.9, e[0]),
                                                FaceRecord(np.array([5, 6, 7, 8]), lm, 0.9, e[1])])
    s.put_photo("/a.jpg", 1, 1, "22" * 32, FP, [FaceRecord(np.array([0, 0, 9, 9]), lm, 0.9, e[2])])
    s.put_photo("/none.jpg", 1, 1, "33" * 32, FP, [])
    s.put_photo("/c.jpg", 1, 1, "44" * 32, "other/model", [FaceRecord(np.array([0, 0, 9, 9]), lm, 0.9, e[3])])
    x, paths, boxes = s.photo_faces(FP)
    assert x.dtype == np.float32 and x.shape == (3, 128) and boxes.dtype == np.float32 and boxes.shape == (3, 4)
    assert paths == ["/a.jpg", "/b.jpg", "/b.jpg"]  # by path, then face
    np.testing.assert_allclose(x, e[[2, 0, 1]], atol=1e-6)
    np.testing.assert_array_equal(boxes[1], [1, 2, 3, 4.5])
    s.close()
    con = sqlite3.connect(path)
    con.execute("UPDATE photo_faces SET embedding = ? WHERE idx = 1", (np.full(128, np.nan, "<f4").tobytes(),))
    con.commit()
    con.close()
    with pytest.warns(UserWarning, match="damaged"):
        x, paths, _ = FaceStore(path).photo_faces(FP)
    assert paths == ["/a.jpg", "/b.jpg"] and np.allclose(x, e[[2, 0]], atol=1e-6)
    assert FaceStore(path).photo_faces("no/model")[0].shape[0] == 0


def test_export_import_round_trip_private_and_never_overwrites(tmp_path, rng):
    s = FaceStore(tmp_path / "a.sqlite3")
    s.add_faces("Ada", _unit(rng, 3), model=FP, consent="ok")
    s.add_faces("Bob", _unit(rng, 2), model=FP)
    out = s.export(tmp_path / "share")
    assert out.name == "share.npz" and stat.S_IMODE(out.stat().st_mode) == 0o600
    with pytest.raises(FileExistsError, match="overwrite"):
        s.export(out)
    with pytest.raises(IsADirectoryError, match="Fix"):
        s.export(tmp_path)
    assert not [p for p in tmp_path.iterdir() if p.name.endswith(".tmp")]
    t = FaceStore(tmp_path / "b.sqlite3")
    t.add_faces("Cy", _unit(rng, 1), model=FP)
    rep = t.import_(out)
    assert rep.added == {"Ada": 3, "Bob": 2}
    assert t.import_(out).added == {}  # re-import adds nothing
    assert t.names == ["Ada", "Bob", "Cy"] and [p.consent for p in t.people()][0] == "ok"
    xt, nt, _ = t.embeddings(FP)
    keep = np.asarray(nt) != "Cy"
    np.testing.assert_array_equal(xt[keep], s.embeddings(FP)[0])
    only = s.export(tmp_path / "ada.npz", names=["Ada"])
    assert FaceStore(tmp_path / "c.sqlite3").import_(only).added == {"Ada": 3}


def test_import_checks_every_value(tmp_path, rng):
    s = FaceStore(tmp_path / "a.sqlite3")
    s.add_faces("Ada", _unit(rng, 3), model=FP)
    good = s.export(tmp_path / "good.npz")
    e = np.load(good)["emb_0"]
    nan, inf, big = e.copy(), e.copy(), e * 2
    nan[0, 0], inf[1, 1] = np.nan, np.inf
    cases = {"nan": dict(emb_0=nan), "inf": dict(emb_0=inf), "notunit": dict(emb_0=big),
             "shape": dict(emb_0=e[:, :64]), "rows": dict(emb_0=e[:2]), "flat": dict(emb_0=e.ravel()),
             "name": dict(labels_0=np.array(["../x"] * 3)), "stray": dict(labels_0=np.array(["Bob"] * 3)),
             "version": dict(meta={"version": 2}), "format": dict(meta={"format": "other"}),
             "threshold": dict(meta={"threshold": -1}), "people": dict(meta={"people": "Ada"})}
    t = FaceStore(tmp_path / "b.sqlite3")
    for tag, change in cases.items():
        bad = faults._tampered(good, tmp_path / f"bad-{tag}.npz", **dict(change))
        with pytest.raises(FileFormatError, match=f"bad-{tag}.npz") as err:
            t.import_(bad)
        assert "Fix" in str(err.value) or "refus" in str(err.value), (tag, str(err.value))
    pickled = tmp_path / "pickled.npz"
    np.savez(pickled, metadata=np.array([{"format": "x"}], dtype=object))
    with pytest.raises(FileFormatError, match="pickle"):
        t.import_(pickled)
    trunc = tmp_path / "trunc.npz"
    trunc.write_bytes(good.read_bytes()[: good.stat().st_size // 2])
    with pytest.raises(FileFormatError, match="trunc.npz"):
        t.import_(trunc)
    assert t.people() == []  # nothing half-imported


def test_unusable_store_files_give_clear_errors(tmp_path, rng):
    garbage = tmp_path / "garbage.sqlite3"
    garbage.write_bytes(os.urandom(8192))
    with pytest.raises(StoreError, match="garbage.sqlite3.*Fix"):
        FaceStore(garbage).people()
    other = tmp_path / "other.sqlite3"
    sqlite3.connect(other).execute("CREATE TABLE t (x)").connection.commit()
    with pytest.raises(StoreError, match="not a facekit store"):
        FaceStore(other)
    with pytest.raises(StoreError, match="is a folder"):
        FaceStore(tmp_path)
    newer = tmp_path / "newer.sqlite3"
    FaceStore(newer).close()
    con = sqlite3.connect(newer)
    con.execute(f"PRAGMA user_version = {SCHEMA_VERSION + 1}")
    con.close()
    with pytest.raises(StoreError, match="newer facekit"):
        FaceStore(newer)
    blocker = tmp_path / "file"
    blocker.write_text("x")
    with pytest.raises(StoreError, match="Fix"):
        FaceStore(blocker / "faces.sqlite3")


def test_damaged_embedding_rows_left_out_with_a_warning(tmp_path, rng):
    path = tmp_path / "s.sqlite3"
    s = FaceStore(path)
    s.add_faces("Ada", _unit(rng, 3), model=FP)
    s.close()
    con = sqlite3.connect(path)
    con.execute("UPDATE faces SET embedding = ? WHERE id = 2", (np.full(128, np.nan, "<f4").tobytes(),))
    con.execute("UPDATE faces SET embedding = ? WHERE id = 3", (b"short",))
    con.commit()
    con.close()
    with pytest.warns(UserWarning, match="damaged"):
        x, names, ids = FaceStore(path).embeddings(FP)
    assert ids.tolist() == [1] and names == ["Ada"]


def _writer(path, who, seed, n):
    return faults.writer(path, who, seed, n, shots=2, model=FP, stderr=None)


def test_four_processes_enrolling_at_once_all_kept(tmp_path):
    path = tmp_path / "s.sqlite3"
    FaceStore(path).close()
    procs = [_writer(path, f"p{k}", k, 25) for k in range(4)]
    outs = [p.communicate(timeout=120)[0] for p in procs]
    assert all(p.returncode == 0 for p in procs)
    ids = {int(v) for o in outs for v in o.split()}
    s = FaceStore(path)
    assert len(s.people()) == 100 and set(s.embeddings(FP)[2].tolist()) == ids and len(ids) == 200
    assert s.check() == []


def test_kill_9_mid_enrolment_loses_nothing_committed(tmp_path):
    """Each writer is killed at a random point after its first committed enrolment (waiting for it,
    not for a fixed time: on a busy machine the process may still be importing numpy after 1 s)."""
    path = tmp_path / "s.sqlite3"
    FaceStore(path).close()
    rnd = random.Random(1)
    committed: set[int] = set()
    for k in range(6):
        p = _writer(path, f"k{k}", k, 100000)
        first = p.stdout.readline()
        assert len(first.split()) == 2, f"the writer committed nothing: {first!r}"
        time.sleep(rnd.uniform(0, 0.3))
        p.send_signal(signal.SIGKILL)
        out = first + p.communicate()[0]
        committed |= faults.committed(out, shots=2)
    s = FaceStore(path)
    assert s.check() == []
    stored = set(s.embeddings(FP)[2].tolist())
    assert len(committed) >= 12 and committed <= stored  # every printed (committed) face survived
    assert len(stored) % 2 == 0  # no enrolment half-written (2 faces per transaction)
    assert all(p.faces == 2 for p in s.people())


def test_enrol_folder_reports_what_it_does_not_use(tmp_path, celeb_dir, embedder):
    root = tmp_path / "people"
    src = sorted((celeb_dir / "train" / "madonna").glob("*.jpg"))[:3]
    (root / "madonna" / "2019").mkdir(parents=True)
    for p in src[:2]:
        shutil.copy(p, root / "madonna" / p.name)
    shutil.copy(src[2], root / "madonna" / "2019" / src[2].name)  # sub-sub-folder
    shutil.copy(src[2], root / "stray.jpg")  # root photo
    (root / "README.md").write_text("my people")
    (root / "madonna" / "broken.jpg").write_bytes(b"\xff\xd8\xff garbage")
    (root / "person_01").mkdir()  # reserved name
    shutil.copy(src[0], root / "person_01" / "x.jpg")
    store = FaceStore(tmp_path / "s.sqlite3")
    rep = store.enrol_folder(root, embedder=embedder, progress=False, verbose=False)
    assert rep.added == {"madonna": 2}
    reasons = {Path(s.path.rstrip("/")).name: s.reason for s in rep.skipped}
    assert set(reasons) == {"2019", "stray.jpg", "broken.jpg", "person_01"}, reasons
    assert "recursive=True" in reasons["2019"] and "root folder" in reasons["stray.jpg"]
    assert "reserved" in reasons["person_01"]
    again = store.enrol_folder(root, embedder=embedder, progress=False, verbose=False)
    assert again.added == {} and again.already == 2  # re-runs add nothing
    assert store.people()[0].faces == 2


def test_store_identifier_names_real_faces(tmp_path, celeb_train, celeb_val, embedder):
    from facekit.store.enrol import enrol_faceset

    s = FaceStore(tmp_path / "s.sqlite3")
    m = celeb_train.labels != "madonna"
    sub = type(celeb_train)(celeb_train.crops[m], celeb_train.embeddings[m], celeb_train.labels[m],
                            [p for p, k in zip(celeb_train.paths, m) if k], [f for f, k in zip(celeb_train.faces, m) if k])
    rep = enrol_faceset(s, sub, embedder)
    assert sum(rep.added.values()) == int(m.sum())
    ident = s.identifier(embedder)
    names = ident.predict(celeb_val.embeddings)
    known = celeb_val.labels != "madonna"
    assert np.mean(names[known] == celeb_val.labels[known]) >= 0.9
    assert np.mean(names[~known] == UNKNOWN) >= 0.8
    s.forget("elton_john")
    again = s.identifier(embedder).predict(celeb_val.embeddings)
    assert "elton_john" not in set(again.tolist())


def test_load_100k_faces(tmp_path):
    """100,000 faces come back in order, with their names and ids (the speed: bench/store.py,
    load_100k_s)."""
    path = tmp_path / "big.sqlite3"
    s = FaceStore(path)
    rng = np.random.default_rng(0)
    x = _unit(rng, 100_000)
    for k in range(0, len(x), 10_000):
        s.add_faces(f"p{k}", x[k:k + 10_000], model=FP)
    got, names, ids = FaceStore(path).embeddings(FP)
    assert got.shape == (100_000, 128) and len(names) == len(ids) == 100_000
    np.testing.assert_allclose(got, x, atol=1e-6)
    assert names[:10_000] == ["p0"] * 10_000 and names[-1] == "p90000" and len(set(ids.tolist())) == 100_000
