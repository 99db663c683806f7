"""facekit.recognition.identify: SVM identification, "unknown" for strangers, save/load without pickle (issue 5)."""

from __future__ import annotations

import json

import numpy as np
import pytest

from facekit.recognition.identify import FaceIdentifier, IdentifierFormatError, choose_threshold, evaluate_open_set, identify_photo, open_set_scores, open_set_split, rejection_roc
from facekit.models.registry import thresholds
DEFAULT_THRESHOLD = thresholds("facenet128").unknown  # the model's own cut (facekit.models.registry)
from facekit.core.constants import UNKNOWN
from facekit.teach.baselines import cross_val_names


def _without(fs, name):
    m = fs.labels != name
    return fs.embeddings[m], fs.labels[m]


@pytest.mark.parametrize("stranger", ["ben_afflek", "madonna"])
def test_known_people_named_and_stranger_unknown(celeb_train, celeb_val, stranger):
    x, y = _without(celeb_train, stranger)
    ident = FaceIdentifier().fit(x, y)
    assert ident.names == sorted(set(y.tolist())) and stranger not in ident.names
    names, scores = ident.predict_scores(celeb_val.embeddings)
    known = celeb_val.labels != stranger
    assert np.mean(names[known] == celeb_val.labels[known]) >= 0.9
    # the SVM alone names the stranger as someone it knows; the distance rule says "unknown"
    assert not np.any(ident.predict_closed(celeb_val.embeddings[~known]) == UNKNOWN)
    assert np.mean(names[~known] == UNKNOWN) >= 0.8
    assert np.all((scores >= 0) & (scores <= 4))
    assert np.array_equal(ident.predict(celeb_val.embeddings), names)
    assert np.median(scores[known]) < DEFAULT_THRESHOLD < np.median(scores[~known])


def test_threshold_inf_is_closed_set_and_zero_rejects_all(celeb_train, celeb_val):
    closed = FaceIdentifier(threshold=float("inf")).fit(celeb_train.embeddings, celeb_train.labels)
    assert UNKNOWN not in closed.predict(celeb_val.embeddings)
    assert np.mean(closed.predict(celeb_val.embeddings) == celeb_val.labels) >= 0.9
    strict = FaceIdentifier(threshold=0.0).fit(celeb_train.embeddings, celeb_train.labels)
    assert set(strict.predict(celeb_val.embeddings).tolist()) == {UNKNOWN}


def test_single_person_gallery(celeb_train, celeb_val):
    m = celeb_train.labels == "elton_john"
    ident = FaceIdentifier().fit(celeb_train.embeddings[m], celeb_train.labels[m])
    assert ident.names == ["elton_john"]
    names = ident.predict(celeb_val.embeddings)
    assert set(names.tolist()) <= {"elton_john", UNKNOWN}
    is_elton = celeb_val.labels == "elton_john"
    assert np.mean(names[is_elton] == "elton_john") >= 0.8
    assert np.mean(names[~is_elton] == UNKNOWN) >= 0.8


def test_enroll_adds_a_person(celeb_train, celeb_val):
    x, y = celeb_train.embeddings, celeb_train.labels
    ident = FaceIdentifier().enroll(x[y == "madonna"], "madonna")
    assert ident.names == ["madonna"]
    ident.enroll(x[y == "mindy_kaling"], "mindy_kaling")
    assert ident.names == ["madonna", "mindy_kaling"]
    m = np.isin(celeb_val.labels, ["madonna", "mindy_kaling"])
    assert np.mean(ident.predict(celeb_val.embeddings[m]) == celeb_val.labels[m]) >= 0.9
    with pytest.raises(ValueError, match="reserved"):
        FaceIdentifier().fit(x[:3], [UNKNOWN] * 3)


def test_save_load_round_trip_predicts_identically(celeb_train, celeb_val, tmp_path):
    x, y = _without(celeb_train, "jerry_seinfeld")
    ident = FaceIdentifier(threshold=0.8, C=0.5).fit(x, y)
    path = ident.save(tmp_path / "gallery")
    assert path.suffix == ".npz" and path.is_file()
    with np.load(path, allow_pickle=False) as z:  # plain arrays only
        meta = json.loads(str(z["metadata"]))
        assert all(z[k].dtype != object for k in z.files)
    assert meta["format"] == "facekit.FaceIdentifier" and meta["version"] == 1
    back = FaceIdentifier.load(path)
    assert back.names == ident.names and back.threshold == 0.8 and back.C == 0.5
    np.testing.assert_array_equal(back.coef_, ident.coef_)
    n1, s1 = ident.predict_scores(celeb_val.embeddings)
    n2, s2 = back.predict_scores(celeb_val.embeddings)
    np.testing.assert_array_equal(n1, n2)
    np.testing.assert_array_equal(s1, s2)
    np.testing.assert_array_equal(ident.decision_function(celeb_val.embeddings),
                                  back.decision_function(celeb_val.embeddings))
    # default / infinite thresholds and one-person galleries survive too
    for th, keep in ((None, None), (float("inf"), None), (None, "madonna")):
        m = slice(None) if keep is None else celeb_train.labels == keep
        a = FaceIdentifier(threshold=th).fit(celeb_train.embeddings[m], celeb_train.labels[m])
        b = FaceIdentifier.load(a.save(tmp_path / f"g-{th}-{keep}.npz"))
        assert b.threshold == th
        np.testing.assert_array_equal(a.predict(celeb_val.embeddings), b.predict(celeb_val.embeddings))


def test_load_refuses_files_not_in_its_format(tmp_path, celeb_train):
    txt = tmp_path / "notes.npz"
    txt.write_text("hello")
    with pytest.raises(IdentifierFormatError, match="notes.npz.*not an .npz"):
        FaceIdentifier.load(txt)
    other = tmp_path / "other.npz"
    np.savez(other, a=np.arange(3))
    with pytest.raises(IdentifierFormatError, match="other.npz.*no 'metadata'"):
        FaceIdentifier.load(other)
    pickled = tmp_path / "pickled.npz"
    np.savez(pickled, metadata=np.array([{"format": "facekit.FaceIdentifier"}], dtype=object))
    with pytest.raises(IdentifierFormatError, match="pickled.npz.*pickle"):
        FaceIdentifier.load(pickled)
    good = FaceIdentifier().fit(celeb_train.embeddings, celeb_train.labels).save(tmp_path / "good.npz")
    with np.load(good, allow_pickle=False) as z:
        arrays = {k: z[k] for k in z.files}
    meta = json.loads(str(arrays["metadata"]))
    for field, value, msg in (("format", "something.else", "format"), ("version", 99, "version 99")):
        bad = tmp_path / f"bad-{field}.npz"
        np.savez(bad, **{**arrays, "metadata": np.asarray(json.dumps({**meta, field: value}))})
        with pytest.raises(IdentifierFormatError, match=f"bad-{field}.npz.*{msg}"):
            FaceIdentifier.load(bad)
    short = tmp_path / "short.npz"
    np.savez(short, **{**arrays, "coef": arrays["coef"][:2]})
    with pytest.raises(IdentifierFormatError, match="short.npz.*inconsistent"):
        FaceIdentifier.load(short)
    with pytest.raises(FileNotFoundError, match="missing.npz"):
        FaceIdentifier.load(tmp_path / "missing.npz")


def test_cross_val_names_on_sample(celeb_train):
    names, k = cross_val_names(celeb_train.embeddings, celeb_train.labels, folds=5)
    assert k == 5 and names.shape == celeb_train.labels.shape
    assert np.mean(names == celeb_train.labels) >= 0.95
    with pytest.raises(ValueError, match="at least 2"):
        cross_val_names(celeb_train.embeddings[:3], ["a", "b", "b"])


def test_open_set_helpers_on_synthetic_scores():
    known = np.array([0.2, 0.3, 0.4, 0.5, 1.4])
    correct = np.array([True, True, True, False, True])
    strangers = np.array([0.9, 1.1, 1.2, 1.5])
    roc = rejection_roc(known, strangers)
    assert 0.8 < roc["auc"] < 1.0 and roc["fpr"][-1] == 1.0
    th = choose_threshold(known, correct, strangers)
    assert 0.5 <= th < 0.9
    r = evaluate_open_set(known, correct, strangers, th)
    assert r.known_accuracy == pytest.approx(3 / 5) and r.stranger_accept_rate == 0.0
    assert r.known_reject_rate == pytest.approx(1 / 5)
    strict = choose_threshold(known, correct, strangers, max_stranger_accept=0.25)
    assert 0.9 <= strict < 1.1
    assert evaluate_open_set(known, correct, strangers, strict).stranger_accept_rate == 0.25


def test_open_set_split_keeps_strangers_apart():
    labels = np.repeat([f"p{i}" for i in range(10)], 8)
    sp = open_set_split(labels, n_known=4, calib_frac=0.5, random_state=1)
    known = set(labels[sp["gallery"]].tolist())
    assert len(known) == 4
    for part in ("known_calib", "known_test"):
        assert set(labels[sp[part]].tolist()) == known
    sc, st = set(labels[sp["stranger_calib"]].tolist()), set(labels[sp["stranger_test"]].tolist())
    assert sc and st and not (sc & st) and not ((sc | st) & known)
    allidx = np.concatenate(list(sp.values()))
    assert len(allidx) == len(set(allidx.tolist())) == len(labels)


def test_rejection_rules_on_sample(celeb_train, celeb_val):
    x, y = _without(celeb_train, "mindy_kaling")
    ident = FaceIdentifier().fit(x, y)
    known = celeb_val.labels != "mindy_kaling"
    for rule in ("nearest", "nearest_any", "centre", "svm"):
        _, ks = open_set_scores(ident, celeb_val.embeddings[known], rule)
        _, ss = open_set_scores(ident, celeb_val.embeddings[~known], rule)
        assert rejection_roc(ks, ss)["auc"] > 0.9, rule


def test_identify_photo_names_every_face(celeb_train, celeb_dir, tmp_path):
    from facekit.album.organise import make_group_photo
    from facekit.core.images import load_image

    a = load_image(sorted((celeb_dir / "val" / "madonna").iterdir())[0])
    b = load_image(sorted((celeb_dir / "val" / "elton_john").iterdir())[0])
    ident = FaceIdentifier().fit(celeb_train.embeddings, celeb_train.labels)
    faces, names, scores = identify_photo(make_group_photo([a, b]), ident)
    assert len(faces) >= 2 and len(names) == len(scores) == len(faces)
    order = np.argsort([f.box[0] for f in faces])
    assert names[order[0]] == "madonna" and names[order[-1]] == "elton_john"
    blank = np.full((200, 200, 3), 128, np.uint8)
    f0, n0, s0 = identify_photo(blank, ident)
    assert f0 == [] and n0.shape == (0,) and s0.shape == (0,)


@pytest.mark.slow
def test_lfw_people_faces_small(lfw_home_dir):
    from facekit.teach.lfw import lfw_people_faces

    lfw = lfw_people_faces(20, max_faces_per_person=6, max_people=4, progress=False)
    assert len(lfw) == 24 and len(lfw.names) == 4
    assert lfw.embeddings.shape == (24, 128) and lfw.thumbs.shape == (24, 48, 48, 3)
    assert lfw.pixels.shape == (24, 50, 37) and lfw.pixels.std() > 10
    np.testing.assert_allclose(np.linalg.norm(lfw.embeddings, axis=1), 1, atol=1e-4)
    names, _ = cross_val_names(lfw.embeddings, lfw.labels, folds=3)
    assert np.mean(names == lfw.labels) >= 0.9


# --- issue 13: fail closed, checked names, safe files -----------------------------------------

def _toy():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(8, 128)).astype(np.float32)
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    return x, ["ada"] * 4 + ["bob"] * 4


@pytest.mark.parametrize("where", ["threshold", "gallery", "coef", "intercept", "query"])
def test_nan_anywhere_means_unknown_in_predict_and_live_path(where):
    x, y = _toy()
    f = FaceIdentifier().fit(x, y)
    q = x[:4].copy()  # enrolled faces: named when nothing is broken
    assert (f.predict(q) == "ada").all()
    if where == "threshold":
        f.threshold = float("nan")
    elif where == "gallery":
        f.gallery_[:, 0] = np.nan
    elif where == "coef":
        f.coef_[:, 0] = np.nan
    elif where == "intercept":
        f.intercept_[0] = np.inf
    else:
        q[:, 0] = np.nan
    assert set(f.predict(q).tolist()) == {UNKNOWN}
    names, score = f.predict_scores(q, reject=False)  # the live loop's call, which applies its own threshold
    assert not np.any((score <= f.threshold_) & (names != UNKNOWN))


def test_names_checked_in_fit_enrol_and_load(tmp_path):
    x, y = _toy()
    for bad in ("../x", "", "a/b", ".", "person_01", "singletons"):
        with pytest.raises(ValueError, match="Fix"):
            FaceIdentifier().fit(x[:2], [bad, bad])
        with pytest.raises(ValueError, match="Fix"):
            FaceIdentifier().fit(x, y).enrol(x[:1], bad)
    assert FaceIdentifier().enroll(x[:2], " Zoe\u0308 ").names == ["Zoë"]  # alias, canonical form
    path = FaceIdentifier().fit(x, y).save(tmp_path / "g.npz")
    with np.load(path, allow_pickle=False) as z:
        arrays = {k: z[k] for k in z.files}
    np.savez(tmp_path / "evil.npz", **{**arrays, "gallery_labels": np.asarray(["../ada"] * 4 + ["bob"] * 4),
                                      "classes": np.asarray(["../ada", "bob"])})
    with pytest.raises(IdentifierFormatError, match="evil.npz"):
        FaceIdentifier.load(tmp_path / "evil.npz")
    for k, v in (("gallery", arrays["gallery"] * 2), ("coef", arrays["coef"] * np.nan)):
        np.savez(tmp_path / f"bad-{k}.npz", **{**arrays, k: v})
        with pytest.raises(IdentifierFormatError, match=f"bad-{k}.npz"):
            FaceIdentifier.load(tmp_path / f"bad-{k}.npz")


def test_save_and_load_agree_private_no_temp_left(tmp_path):
    import stat

    x, y = _toy()
    f = FaceIdentifier().fit(x, y)
    p = f.save(tmp_path / "g")
    assert p.name == "g.npz" and FaceIdentifier.load(tmp_path / "g").names == ["ada", "bob"]
    assert stat.S_IMODE(p.stat().st_mode) == 0o600
    (tmp_path / "folder").mkdir()
    with pytest.raises(IsADirectoryError, match="Fix"):
        f.save(tmp_path / "folder")
    with pytest.raises(FileExistsError, match="overwrite"):
        f.save(p, overwrite=False)
    assert not [q for q in tmp_path.rglob("*") if q.name.endswith(".tmp")]


def test_two_processes_saving_one_gallery_never_mix(tmp_path):
    import subprocess
    import sys

    code = ("import sys, numpy as np; from facekit.recognition.identify import FaceIdentifier\n"
            "r = np.random.default_rng(int(sys.argv[2])); x = r.normal(size=(6, 128))\n"
            "f = FaceIdentifier().fit(x, [sys.argv[3]] * 3 + ['z' + sys.argv[3]] * 3)\n"
            "for _ in range(30): f.save(sys.argv[1], overwrite=True)\n")
    target = tmp_path / "shared.npz"
    procs = [subprocess.Popen([sys.executable, "-c", code, str(target), str(k), f"p{k}"]) for k in range(2)]
    assert all(p.wait(timeout=300) == 0 for p in procs)
    back = FaceIdentifier.load(target)  # always one writer's complete file
    assert back.names in (["p0", "zp0"], ["p1", "zp1"])
    assert not [q for q in tmp_path.iterdir() if q.name.endswith(".tmp")]
