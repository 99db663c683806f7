"""A store switched to another model (issue #23): real sample photos, the real networks, a real
SQLite store.

Enrolled faces are re-embedded from their photos and equal what extract_faces gives with the new
model; cached photos are re-embedded from their recorded landmarks and keep who they were
attributed to; what cannot be re-embedded (a webcam face, a photo deleted, a photo changed) is
reported with its reason and never guessed; a second switch does nothing; ``facekit identify
--model dlib128`` switches on its own and names people with the new model.
"""

from __future__ import annotations

import hashlib
import json
import shutil

import numpy as np
import pytest

from facekit.album.scan import run_local
from facekit.cli.main import main as cli
from facekit.core.cache import celebrity_dir
from facekit.embedding.embedder import Embedder
from facekit.faces import extract_faces
from facekit.store.db import FaceStore, PhotoSource

PEOPLE = ("ben_afflek", "madonna", "elton_john")


def _largest(path, model):
    return max(extract_faces(path, model=model), key=lambda f: f.face.area)


@pytest.fixture()
def enrolled(tmp_path):
    """A store with 2 photo-enrolled faces each of 3 people (facenet128), one webcam-only person,
    and the photo cache of 4 other photos; the photos are private copies the test may damage."""
    photos = {}
    store = FaceStore(tmp_path / "faces.sqlite3")
    for person in PEOPLE:
        for src in sorted((celebrity_dir() / "train" / person).glob("*.jpg"))[:2]:
            dst = tmp_path / "photos" / person / src.name
            dst.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy(src, dst)
            f = _largest(dst, "facenet128")
            sha = hashlib.sha256(dst.read_bytes()).hexdigest()
            store.add_faces(person, f.embedding[None], model="facenet128",
                            sources=[PhotoSource(str(dst), sha, tuple(float(v) for v in f.face.box))])
            photos.setdefault(person, []).append(dst)
    store.add_faces("Webcam Only", _largest(photos["madonna"][0], "facenet128").embedding[None],
                    model="facenet128", sources="camera")
    archive = tmp_path / "archive"
    archive.mkdir()
    for person in PEOPLE[:2] + ("jerry_seinfeld",):
        for src in sorted((celebrity_dir() / "val" / person).glob("*.jpg"))[:1 + (person == "ben_afflek")]:
            shutil.copy(src, archive / f"{person}-{src.name}")
    report, _ = run_local(archive, store, progress=False)
    assert report.indexed == 4 and not report.failed
    return store, photos, archive


def test_switch_re_embeds_from_the_photos_and_reports_what_is_missing(enrolled):
    store, photos, archive = enrolled
    gone, changed = photos["elton_john"]
    gone.unlink()
    changed.write_bytes(changed.read_bytes() + b"edited")
    rep = store.switch_model("dlib128", progress=False)
    dlib = Embedder("dlib128").fingerprint
    assert rep.model == dlib and rep.faces == 4 and rep.photos == 4
    why = {(who, where): reason for who, where, reason in rep.missing}
    assert set(why) == {("Webcam Only", "camera"), ("elton_john", str(gone)), ("elton_john", str(changed))}
    assert "no photo is kept" in why["Webcam Only", "camera"]
    assert "not found" in why["elton_john", str(gone)] and "changed" in why["elton_john", str(changed)]
    # each re-embedded face is what extract_faces gives with dlib128 on that photo
    x, names, _ = store.embeddings("dlib128")
    assert sorted(names) == sorted(p for p in PEOPLE[:2] for _ in range(2))
    for person in PEOPLE[:2]:
        want = np.stack([_largest(p, "dlib128").embedding for p in photos[person]])
        got = x[[i for i, n in enumerate(names) if n == person]]
        assert np.abs(got - want).max() < 1e-4
    # the photo cache: every face again, same boxes, new embeddings equal to extract_faces'
    xf, paths_f, boxes_f = store.photo_faces("facenet128")
    xd, paths_d, boxes_d = store.photo_faces("dlib128")
    assert paths_d == paths_f and np.array_equal(boxes_d, boxes_f) and xd.shape == (len(xf), 128)
    # (the index engine detects in batches, so boxes may differ from extract_faces' by a fraction of a pixel)
    for p in sorted(set(paths_d)):
        fresh = extract_faces(p, model="dlib128")
        for e, b in zip(xd[np.array(paths_d) == p], boxes_d[np.array(paths_d) == p]):
            f = min(fresh, key=lambda f: np.abs(f.face.box - b).max())
            assert np.abs(f.face.box - b).max() < 2 and float(((e - f.embedding) ** 2).sum()) < 0.01
    # the old model's faces stay; a second switch has nothing left to do
    assert store.models()[Embedder("facenet128").fingerprint] == 7
    again = store.switch_model("dlib128", progress=False)
    assert (again.faces, again.photos) == (0, 0) and len(again.missing) == 3
    # the new model's identifier names a held-out photo of each re-embedded person
    ident = store.identifier("dlib128")
    for person in PEOPLE[:2]:
        val = sorted((celebrity_dir() / "val" / person).glob("*.jpg"))[-1]
        assert ident.predict(_largest(val, "dlib128").embedding[None])[0] == person


def test_identify_with_another_model_switches_the_store(enrolled, capsys):
    store, photos, _ = enrolled
    path = str(store.path)
    store.close()
    query = sorted((celebrity_dir() / "val" / "madonna").glob("*.jpg"))[-1]
    code = cli(["identify", str(query), "--store", path, "--model", "dlib128", "--json", "-q"])
    cap = capsys.readouterr()
    doc = json.loads(cap.out)
    assert code == 0, cap.err
    assert [r["name"] for r in doc["rows"]] == ["madonna"]
    assert doc["switched"]["faces"] == 6 and doc["switched"]["photos"] == 0
    assert doc["switched"]["missing"] == [["Webcam Only", "camera", "no photo is kept for faces added this way"]]
    assert "re-embedding" in cap.err and "Webcam Only: camera" in cap.err
    with FaceStore(path) as s:
        assert s.models()[Embedder("dlib128").fingerprint] == 6
