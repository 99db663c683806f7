"""Foundation: detection, alignment and embedding on the real sample photos with the real model."""

from __future__ import annotations

import numpy as np
import pytest

import facekit as fk
from facekit.data.folders import list_identities

# Multi-person photos checked by eye (see tests/README.md): file -> faces with confidence >= 0.9.
MULTI = {
    "train/elton_john/httpssmediacacheakpinimgcomxfcfcbaeaeddabbjpg.jpg": 2,  # Elton + a woman at left
    "train/jerry_seinfeld/httpwwweonlinecomresizewwweonlinecomeolimagesEntireSitersxjerryseinfeldjulialouisdreyfusjwjpg.jpg": 2,  # Jerry + Julia
}


def _all_images(celeb_dir):
    for split in ("train", "val"):
        for name, files in list_identities(celeb_dir / split).items():
            for p in files:
                yield split, name, p


def test_sample_set_layout(celeb_dir):
    counts = {s: sum(1 for x in _all_images(celeb_dir) if x[0] == s) for s in ("train", "val")}
    assert counts == {"train": 93, "val": 25}
    assert sorted(list_identities(celeb_dir / "val")) == [
        "ben_afflek", "elton_john", "jerry_seinfeld", "madonna", "mindy_kaling"]


def test_labelled_face_found_in_every_sample_image(celeb_train, celeb_val):
    # load_folder keeps the largest face of each photo and reports misses in `skipped`.
    assert len(celeb_train) == 93 and not celeb_train.skipped, celeb_train.summary()
    assert len(celeb_val) == 25 and not celeb_val.skipped, celeb_val.summary()
    for fs in (celeb_train, celeb_val):
        for face in fs.faces:
            x1, y1, x2, y2 = face.box
            assert x2 - x1 > 20 and y2 - y1 > 20
            tol = 0.1 * (x2 - x1)
            lm = face.landmarks
            assert (lm[:, 0] >= x1 - tol).all() and (lm[:, 0] <= x2 + tol).all(), face
            assert (lm[:, 1] >= y1 - tol).all() and (lm[:, 1] <= y2 + tol).all(), face
            # upright photos: left eye left of right eye, both eyes above both mouth corners
            # (the nose can sit level with an eye on a tilted head)
            assert lm[0, 0] < lm[1, 0] and max(lm[0, 1], lm[1, 1]) < min(lm[3, 1], lm[4, 1]), face


@pytest.mark.parametrize("rel,expected", sorted(MULTI.items()))
def test_multi_person_photos(celeb_dir, detector, rel, expected):
    img = fk.load_image(celeb_dir / rel)
    faces = [f for f in detector.detect(img) if f.confidence >= 0.9]
    assert len(faces) == expected
    a, b = faces[0].box, faces[1].box  # distinct people: boxes do not overlap
    assert a[2] < b[0] or b[2] < a[0] or a[3] < b[1] or b[3] < a[1]


def test_single_person_photos_mostly_one_confident_face(celeb_dir, detector):
    # Every photo holds its subject; a few have background people. Count photos whose faces at
    # confidence >= 0.95 number exactly one: nearly all of them.
    ones = total = 0
    for split, name, p in _all_images(celeb_dir):
        if f"{split}/{name}/{p.name}" in MULTI:
            continue
        n = sum(f.confidence >= 0.95 for f in detector.detect(fk.load_image(p)))
        total += 1
        ones += n == 1
    assert total == 116 and ones >= 105, (ones, total)


def test_align_levels_the_eyes(celeb_train):
    from facekit.detection.align import crop_transform

    img_face = celeb_train.faces[0]
    m = crop_transform(img_face)
    eyes = np.c_[img_face.landmarks[:2], np.ones(2)] @ m.T
    assert abs(eyes[0, 1] - eyes[1, 1]) < 1.0  # same row in the crop
    assert 0 < eyes[0, 0] < eyes[1, 0] < 160
    assert celeb_train.crops.shape[1:] == (160, 160, 3) and celeb_train.crops.dtype == np.uint8


def test_embeddings_shape_norm_and_determinism(celeb_train, embedder):
    e = celeb_train.embeddings
    assert e.shape == (93, 128) and e.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(e, axis=1), 1.0, atol=1e-5)
    again = embedder.embed(celeb_train.crops[:5])
    np.testing.assert_allclose(again, e[:5], atol=1e-5)
    assert embedder.embed(np.zeros((0, 160, 160, 3), np.uint8)).shape == (0, 128)
    # a non-160 crop is resized, not rejected
    assert embedder.embed([celeb_train.crops[0][:100, :120]]).shape == (1, 128)


def test_same_person_closer_than_different(celeb_train):
    e, y = celeb_train.embeddings, celeb_train.labels
    d = ((e[:, None] - e[None]) ** 2).sum(-1)
    iu = np.triu_indices(len(e), 1)
    same = (y[:, None] == y[None])[iu]
    ds, dd = d[iu][same], d[iu][~same]
    assert ds.mean() + 0.5 < dd.mean(), (ds.mean(), dd.mean())
    # for most faces the nearest other face is the same person
    np.fill_diagonal(d, np.inf)
    assert (y[d.argmin(1)] == y).mean() >= 0.95


def test_linear_svm_classifies_every_val_image(celeb_train, celeb_val):
    from sklearn.svm import SVC

    clf = SVC(kernel="linear").fit(celeb_train.embeddings, celeb_train.labels)
    pred = clf.predict(celeb_val.embeddings)
    wrong = [(p, t, path) for p, t, path in zip(pred, celeb_val.labels, celeb_val.paths) if p != t]
    assert not wrong, wrong


def test_extract_faces_one_call(celeb_dir):
    p = celeb_dir / "train" / MULTI_KEY
    out = fk.extract_faces(p)
    assert len(out) >= 2
    for fe in out:
        assert fe.crop.shape == (160, 160, 3) and fe.embedding.shape == (128,)
        assert abs(np.linalg.norm(fe.embedding) - 1) < 1e-5
    assert fk.extract_faces(np.full((120, 160, 3), 127, np.uint8)) == []


def test_extract_faces_with_detections_made_already(celeb_dir, detector):
    """faces= (detections made already, e.g. by detect_batch) skips detection and gives the same
    result; the detector's own options cannot be given with it."""
    from facekit.core.images import load_image

    img = load_image(celeb_dir / "train" / MULTI_KEY)
    want = fk.extract_faces(img)
    got = fk.extract_faces(img, faces=detector.detect_batch([img])[0])
    assert len(got) == len(want) >= 2
    for a, b in zip(got, want):
        np.testing.assert_array_equal(a.face.box, b.face.box)
        np.testing.assert_allclose(a.embedding, b.embedding, atol=1e-6)
    assert fk.extract_faces(img, faces=[]) == []
    assert len(fk.extract_faces(img, faces=[want[0].face])) == 1
    with pytest.raises(ValueError, match="faces= skips detection"):
        fk.extract_faces(img, faces=[want[0].face], min_face_size=40)


MULTI_KEY = "elton_john/httpssmediacacheakpinimgcomxfcfcbaeaeddabbjpg.jpg"
