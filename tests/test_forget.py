"""Nothing outlives forget; consent on every way in; the first identify on a large store does not
train (issues 25 and 24, item 5).

The end-to-end test runs the real commands on the sample photos: enrol, index, identify (which
saves the trained gallery index: ``FACEKIT_EXACT_MAX=0`` and 1,000 stand-in faces make the store
"large"), export, an identifier saved from the store, then forget. Afterwards no byte of any file
under ``$FACEKIT_HOME``, the store's folder or the outputs holds the person's name (UTF-8) or any
of their embedding vectors (float32 bytes).
"""

from __future__ import annotations

import contextlib
import io
import json
import sqlite3
import time
from pathlib import Path

import numpy as np
import pytest

from facekit.cli.main import EXIT_OK, main
from facekit.core.origin import StaleFileError
from facekit.store.db import FaceStore

PERSON, OTHER = "ben_afflek", "madonna"
FP = "facenet128/test"


def run(*argv: str) -> tuple[int, dict, str]:
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = main([*argv, "--json"])
    return code, json.loads(out.getvalue()), err.getvalue()


def unit(rng, n: int, d: int = 128) -> np.ndarray:
    x = rng.normal(size=(n, d)).astype(np.float32)
    return x / np.linalg.norm(x, axis=1, keepdims=True)


def leftovers(folders, name: str, vectors: np.ndarray) -> list[str]:
    """Files under ``folders`` whose raw bytes hold ``name`` (UTF-8) or one of ``vectors`` (float32)."""
    needles = [name.encode()] + [np.asarray(v, "<f4").tobytes() for v in vectors]
    found = []
    for folder in folders:
        for f in Path(folder).rglob("*"):
            if f.is_file() and not f.is_symlink():
                raw = f.read_bytes()
                found += [f"{f}: {'name' if i == 0 else f'vector {i - 1}'}" for i, n in enumerate(needles) if n in raw]
    return found


@pytest.fixture()
def home(tmp_path, monkeypatch, embedder, detector):
    """A FACEKIT_HOME of the test's own (the models are loaded already), the trained index used
    from 1,000 faces on (the documented FACEKIT_EXACT_MAX)."""
    h = tmp_path / "home"
    monkeypatch.setenv("FACEKIT_HOME", str(h))
    monkeypatch.setenv("FACEKIT_EXACT_MAX", "0")
    return h


def test_forget_leaves_no_byte_of_the_person_anywhere(tmp_path, home, celeb_dir, embedder):
    store_path, outs = tmp_path / "store" / "faces.sqlite3", tmp_path / "outputs"
    outs.mkdir()
    train, val = celeb_dir / "train", celeb_dir / "val"
    with FaceStore(store_path) as s:  # stand-ins make the gallery large enough for the trained index
        for i, x in enumerate(np.array_split(unit(np.random.default_rng(0), 1_000), 100)):
            s.add_faces(f"filler_{i:03d}", x, model=embedder)
    common = ("--store", str(store_path), "-q")
    for who in (PERSON, OTHER):
        code, _, err = run("enrol", who, *map(str, sorted((train / who).glob("*.jpg"))[:6]), *common,
                           "--consent", "agreed in person, 2024-05-01")
        assert code == EXIT_OK, err
    code, doc, err = run("index", str(val), *common)
    assert code == EXIT_OK and doc["rows"][0]["faces"] >= 20, err
    code, doc, err = run("identify", str(sorted((val / PERSON).glob("*.jpg"))[0]), *common)
    assert code == EXIT_OK and PERSON in {r["name"] for r in doc["rows"]}, err
    assert list((home / "galleries").glob("*.npz")), "identify saved no trained index"
    assert run("export", str(outs / "share.npz"), *common)[0] == EXIT_OK
    with FaceStore(store_path) as s:
        s.identifier(embedder).save(outs / "identifier.npz")
        x, names, _ = s.embeddings(embedder)
        mine = x[np.asarray(names) == PERSON]
        cached = [r.embedding for p in sorted((val / PERSON).glob("*.jpg"))
                  for r in (s.cached_photo(str(p.resolve()), p.stat().st_size, p.stat().st_mtime_ns, embedder) or [])]
        assert len(s.derived_files()) == 3  # the saved index, the export, the identifier
    vectors = np.vstack([mine, *cached])
    assert len(mine) >= 5 and len(cached) >= 2
    before = leftovers([home, store_path.parent, outs], PERSON, vectors)
    assert before, "the byte search finds nothing even before forget: it proves nothing"
    code, doc, err = run("forget", PERSON, *common)
    assert code == EXIT_OK and doc["rows"][0]["derived_files"] == 3, err
    assert leftovers([home, store_path.parent, outs], PERSON, vectors) == []
    # an index run after (or during) the forget does not cache their photos again: it says so
    code, doc, err = run("index", str(val), *common)
    assert {Path(f["path"]).parent.name for f in doc["failed"]} == {PERSON} and "forgotten" in err, err
    assert leftovers([home, store_path.parent, outs], PERSON, vectors) == []
    # the derived files were rebuilt (not only deleted) and still serve everyone else
    code, doc, err = run("identify", str(sorted((val / OTHER).glob("*.jpg"))[0]), *common)
    assert code == EXIT_OK and OTHER in {r["name"] for r in doc["rows"]}, err
    from facekit.recognition.identify import FaceIdentifier

    assert PERSON not in FaceIdentifier.load(outs / "identifier.npz").names
    with FaceStore(tmp_path / "other.sqlite3") as t:
        assert PERSON not in t.import_(outs / "share.npz").people


def test_enrol_and_index_train_the_index_so_identify_does_not(tmp_path, home, celeb_dir, monkeypatch, embedder):
    """#24 item 5: `facekit enrol` trains the saved index (progress on stderr); the next identify
    loads it without training; an identify that must train says so."""
    import faiss

    from facekit.store.index_file import gallery_path

    store_path = tmp_path / "faces.sqlite3"
    emb = embedder
    with FaceStore(store_path) as s:
        s.add_faces("filler", unit(np.random.default_rng(1), 1_100), model=emb)
    photo = str(sorted((celeb_dir / "train" / PERSON).glob("*.jpg"))[0])
    code, doc, err = run("enrol", PERSON, photo, "--store", str(store_path))
    assert code == EXIT_OK and doc["gallery_index"] == "trained" and "training the gallery index" in err, err
    with FaceStore(store_path) as s:
        path = gallery_path(s, emb)
    assert path.is_file()

    def no_training(*a, **k):
        raise AssertionError("identify trained the index again")

    with monkeypatch.context() as m:
        m.setattr(faiss, "index_factory", no_training)
        code, doc, err = run("identify", photo, "--store", str(store_path))
        assert code == EXIT_OK and doc["rows"][0]["name"] == PERSON and "training" not in err, err
    path.unlink()  # lost (or never made by an older facekit): identify has to train, and says so
    code, doc, err = run("identify", photo, "--store", str(store_path))
    assert code == EXIT_OK and "facekit: training the gallery index of 1,101 faces" in err, err


def test_a_forget_interrupted_before_the_derived_files_finishes_at_next_open(tmp_path, monkeypatch, rng):
    monkeypatch.setenv("FACEKIT_HOME", str(tmp_path / "home"))
    s = FaceStore(tmp_path / "s.sqlite3")
    a = unit(rng, 3)
    s.add_faces("Ada", a, model=FP)
    s.add_faces("Bob", unit(rng, 3), model=FP)
    out = s.export(tmp_path / "all.npz")
    import facekit.store.forget as fg

    def crash(*a, **k):
        raise KeyboardInterrupt  # the process stops after the store forgot, before its files were reached

    monkeypatch.setattr(fg, "reach_derived", crash)
    with pytest.raises(KeyboardInterrupt):
        s.forget("Ada")
    s.close()
    assert out.exists()
    monkeypatch.undo()
    FaceStore(tmp_path / "s.sqlite3").close()  # opening it completes the forget: stale files go
    assert not out.exists() and leftovers([tmp_path], "Ada", a) == []


def test_gc_removes_indexes_of_stores_that_are_gone_or_replaced(tmp_path, monkeypatch, rng, capsys):
    from facekit.store.derived import gc_cache
    from facekit.store.index_file import gallery_path, refresh_gallery

    monkeypatch.setenv("FACEKIT_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("FACEKIT_EXACT_MAX", "0")
    paths = {}
    for tag in ("kept", "deleted", "replaced"):
        with FaceStore(tmp_path / f"{tag}.sqlite3") as s:
            s.add_faces("x", unit(rng, 1_000), model=FP)
            assert refresh_gallery(s, FP, progress=False) == "trained"
            paths[tag] = gallery_path(s, FP)
    (tmp_path / "deleted.sqlite3").unlink()
    (tmp_path / "replaced.sqlite3").unlink()
    FaceStore(tmp_path / "replaced.sqlite3").close()  # another store at the same path: another id
    removed = dict(gc_cache())
    assert set(removed) == {str(paths["deleted"]), str(paths["replaced"])}
    assert "no longer exists" in removed[str(paths["deleted"])] and "replaced" in removed[str(paths["replaced"])]
    assert paths["kept"].exists()
    # the start of any command that uses the cache does the same
    (tmp_path / "kept.sqlite3").unlink()
    code, doc, err = run("forget", "nobody", "--store", str(tmp_path / "new.sqlite3"))
    assert not paths["kept"].exists() and "no longer exist" in err


def test_a_derived_file_is_never_written_from_an_older_generation(tmp_path, monkeypatch, rng):
    """Index with forget at the same time: contents read before a forget committed are dropped,
    not saved over the forget's work; and a stale derived file is never read."""
    from facekit.recognition.identify import FaceIdentifier
    from facekit.store.derived import derived_write

    monkeypatch.setenv("FACEKIT_HOME", str(tmp_path / "home"))
    s = FaceStore(tmp_path / "s.sqlite3")
    s.add_faces("Ada", unit(rng, 2), model=FP)
    s.add_faces("Bob", unit(rng, 2), model=FP)
    ident, gen = s.identifier(FP), s.generation
    s.forget("Ada")  # commits between the read and the write
    target = tmp_path / "late.npz"
    with pytest.raises(StaleFileError, match="changed"):
        with derived_write(s, target, "gallery", gen):
            target.write_bytes(b"stale contents")
    with pytest.raises(StaleFileError, match="late-id.npz"):
        ident.save(tmp_path / "late-id.npz")
    assert not target.exists() and not (tmp_path / "late-id.npz").exists()
    saved = s.identifier(FP).save(tmp_path / "id.npz")
    s.add_faces("Cy", unit(rng, 2), model=FP)
    with pytest.raises(StaleFileError, match="changed since"):
        FaceIdentifier.load(saved)
    assert FaceIdentifier.load(saved, store=s).names == ["Bob", "Cy"]  # rebuilt from the store instead


def test_consent_on_every_way_in_and_retention(tmp_path, celeb_dir, embedder):
    from facekit.store.enrol import enrol_folder

    root = tmp_path / "people"
    for who in (PERSON, OTHER):
        (root / who).mkdir(parents=True)
        for p in sorted((celeb_dir / "train" / who).glob("*.jpg"))[:2]:
            (root / who / p.name).symlink_to(p)
    store = tmp_path / "faces.sqlite3"
    with FaceStore(store) as s:
        enrol_folder(s, root, model=embedder, verbose=False, progress=False,
                     consent={PERSON: "agreed in person, 2024-05-01", OTHER: "email of 2024-06-02"})
        assert {p.name: p.consent for p in s.people()} == {PERSON: "agreed in person, 2024-05-01",
                                                           OTHER: "email of 2024-06-02"}
        assert all(time.time() - p.consent_at < 600 for p in s.people())
    photo = str(sorted((celeb_dir / "train" / "elton_john").glob("*.jpg"))[0])
    code, _, err = run("enrol", "elton_john", photo, "--store", str(store), "-q")
    assert code == EXIT_OK and err.count("no consent note is recorded for elton_john") == 1, err
    code, doc, err = run("enrol", "elton_john", photo, "--store", str(store), "-q", "--consent", "agreed, 2024-07-01")
    assert code == EXIT_OK and "no consent" not in err
    code, doc, _ = run("people", "--store", str(store))
    rows = {r["name"]: r for r in doc["rows"]}
    assert rows["elton_john"]["consent"] == "agreed, 2024-07-01" and rows["elton_john"]["consent_date"]
    assert rows[PERSON]["consent"] == "agreed in person, 2024-05-01" and rows[PERSON]["last_match"] is None
    # retention: PERSON was enrolled 40 days ago and never matched since; OTHER was matched today
    con = sqlite3.connect(store)
    old = time.time() - 40 * 86400
    con.execute("UPDATE people SET added = ?", (old,))
    con.execute("UPDATE faces SET added = ?", (old,))
    con.commit()
    con.close()
    code, doc, _ = run("identify", str(sorted((celeb_dir / "val" / OTHER).glob("*.jpg"))[0]), "--store", str(store), "-q")
    assert OTHER in {r["name"] for r in doc["rows"]}
    code, doc, _ = run("people", "--store", str(store), "--older-than", "30")
    assert sorted(r["name"] for r in doc["rows"]) == sorted(["elton_john", PERSON])
    assert run("people", "--store", str(store), "--older-than", "50")[1]["rows"] == []


def test_forgotten_photos_are_not_cached_again_until_the_person_is_enrolled_again(tmp_path, rng):
    """Tombstones: after forget, a photo of the person (same content, or under a folder named
    after them) is not cached by a later or concurrent index run; enrolling them again lifts it.
    The store keeps no byte of the name (only a keyed hash)."""
    from facekit.store.records import FaceRecord, PhotoSource

    s = FaceStore(tmp_path / "s.sqlite3")
    a = unit(rng, 2)
    s.add_faces("Ada", a, model=FP, sources=[PhotoSource("/p/x1.jpg", "11" * 32), PhotoSource("/p/x2.jpg", "22" * 32)])
    rec = [FaceRecord(np.zeros(4), np.zeros((5, 2)), 0.9, a[0])]
    assert s.put_photo("/album/Ada/beach.jpg", 1, 1, "33" * 32, FP, rec)
    s.forget("Ada")
    assert not s.put_photo("/elsewhere/copy.jpg", 1, 1, "11" * 32, FP, rec)  # the content she was enrolled from
    assert not s.put_photo("/album/Ada/beach.jpg", 1, 1, "33" * 32, FP, rec)  # her folder, a photo forget removed
    assert not s.put_photo("/album/Ada/new.jpg", 1, 1, "44" * 32, FP, rec)  # her folder, a new photo
    assert s.put_photo("/album/Bob/new.jpg", 1, 1, "55" * 32, FP, rec)
    assert s.photo_index(FP).keys() == {"/album/Bob/new.jpg"}
    s.close()
    assert leftovers([tmp_path], "Ada", a[1:]) == []
    s = FaceStore(tmp_path / "s.sqlite3")
    s.add_faces("Ada", a, model=FP, consent="agreed again")
    assert s.put_photo("/album/Ada/new.jpg", 1, 1, "44" * 32, FP, rec)


def test_a_store_of_the_first_format_gets_an_id_and_keeps_everyone(tmp_path, rng):
    from facekit.store.schema import _V1

    path = tmp_path / "old.sqlite3"
    con = sqlite3.connect(path)
    con.executescript(_V1 + "PRAGMA application_id = 1179341652; PRAGMA user_version = 1;")
    con.execute("INSERT INTO people (name, added, consent) VALUES ('Ada', 1.0, 'ok')")
    x = unit(rng, 1)
    con.execute("INSERT INTO faces (person_id, model, dim, embedding, digest, source, added) VALUES "
                "(1, ?, 128, ?, x'00', 'api', 1.0)", (FP, x.astype("<f4").tobytes()))
    con.commit()
    con.close()
    with FaceStore(path) as s:
        assert len(s.store_id) == 32 and s.generation == 0
        assert [(p.name, p.consent, p.consent_at, p.faces) for p in s.people()] == [("Ada", "ok", 1.0, 1)]
        np.testing.assert_allclose(s.embeddings(FP)[0], x, atol=1e-6)
        sid = s.store_id
    with FaceStore(path) as s:
        assert s.store_id == sid  # given once
