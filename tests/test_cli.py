"""The facekit command: every subcommand on real sample photos, --json, exit codes, bad input (issue 15),
each checked for the right answer, not only for an answer (issue 27).

The enrolled people are three of the five sample people, from their training photos; the photos
to name are the validation photos (never enrolled) of all five: the other two are strangers.
"""

import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from facekit.cli.main import EXIT_FAILED, EXIT_NOT_FOUND, EXIT_OK, EXIT_USAGE, main
from facekit.models.registry import thresholds
from facekit.store.db import FaceStore

PEOPLE = ["ben_afflek", "madonna", "elton_john"]  # enrolled
STRANGERS = ["jerry_seinfeld", "mindy_kaling"]


def run(capsys, *argv):
    code = main([*argv])
    out = capsys.readouterr()
    return code, out.out, out.err


def js(capsys, *argv):
    code, out, err = run(capsys, *argv, "--json", "-q")
    return code, json.loads(out)


def photos_of(celeb_dir, split):
    return {p.name: sorted(p.glob("*.jpg")) for p in sorted((celeb_dir / split).iterdir()) if p.is_dir()}


@pytest.fixture(scope="module")
def photos(celeb_dir):
    return photos_of(celeb_dir, "train")


@pytest.fixture(scope="module")
def val(celeb_dir):
    return photos_of(celeb_dir, "val")


def largest_rows(rows):
    """The row of each photo's largest face (the person the photo is of)."""
    best = {}
    for r in rows:
        if r["face"] is None:
            continue
        area = (r["box"][2] - r["box"][0]) * (r["box"][3] - r["box"][1])
        if r["photo"] not in best or area > best[r["photo"]][0]:
            best[r["photo"]] = (area, r)
    return {p: r for p, (_, r) in best.items()}


def assert_named(rows, val, people, strangers):
    """Every validation photo of an enrolled person names that person, every stranger's is unknown."""
    got = {Path(p).parent.name + "/" + Path(p).name: r["name"] for p, r in largest_rows(rows).items()}
    want = {f"{n}/{p.name}": (n if n in people else "unknown") for n in (*people, *strangers) for p in val[n]}
    assert got == want


@pytest.fixture(scope="module")
def enrolled(tmp_path_factory, photos):
    """A store with the three people enrolled from all their training photos, by `facekit enrol`.
    Tests that change it work on a copy (:func:`store_copy`)."""
    import contextlib
    import io

    store = tmp_path_factory.mktemp("cli-store") / "faces.sqlite3"
    for name in PEOPLE:
        buf = io.StringIO()
        with contextlib.redirect_stdout(buf):
            code = main(["enrol", name, *map(str, photos[name]), "--store", str(store), "--json", "-q"])
        rows = json.loads(buf.getvalue())["rows"]
        assert code in (EXIT_OK, EXIT_NOT_FOUND) and len(rows) >= len(photos[name]) - 1, (name, code)
    return store


@pytest.fixture()
def store_copy(enrolled, tmp_path):
    """A copy of :func:`enrolled` made with SQLite's backup API: a plain file copy would miss what
    is still in the write-ahead log (the enrolments, when no checkpoint ran yet)."""
    import sqlite3

    dst = tmp_path / "faces.sqlite3"
    src, out = sqlite3.connect(enrolled), sqlite3.connect(dst)
    try:
        src.backup(out)
    finally:
        src.close()
        out.close()
    return str(dst)


@pytest.fixture()
def store(tmp_path):
    return str(tmp_path / "faces.sqlite3")


@pytest.fixture()
def no_face(tmp_path):
    from PIL import Image

    p = tmp_path / "grey.jpg"
    Image.fromarray(np.full((200, 200, 3), 128, np.uint8)).save(p)
    return str(p)


def test_help_documents_exit_codes():
    out = subprocess.run([sys.executable, "-m", "facekit", "--help"], capture_output=True, text=True)
    assert out.returncode == 0 and "130 interrupted" in out.stdout and "identify" in out.stdout


def test_detect_verify(capsys, photos, no_face):
    a, b = (str(p) for p in photos["ben_afflek"][:2])
    code, doc = js(capsys, "detect", a, b)
    assert code == EXIT_OK and {r["photo"] for r in doc["rows"]} == {a, b}
    assert all(len(r["box"]) == 4 and r["confidence"] > 0.9 for r in doc["rows"])
    code, doc = js(capsys, "detect", no_face)
    assert code == EXIT_NOT_FOUND and doc["rows"] == [{"photo": no_face, "face": None, "box": None, "confidence": None}]
    code, doc = js(capsys, "detect", a, "/no/such/photo.jpg")
    assert code == EXIT_FAILED and doc["failed"][0]["path"] == "/no/such/photo.jpg"
    code, doc = js(capsys, "verify", a, b)
    row = doc["rows"][0]
    assert code == EXIT_OK and row["same"] is True and 0 <= row["distance"] < row["threshold"]
    assert row["threshold"] == thresholds("facenet128").verify
    code, doc = js(capsys, "verify", a, str(photos["madonna"][0]))
    assert code == EXIT_OK and doc["rows"][0]["same"] is False and doc["rows"][0]["distance"] > 1.22
    assert js(capsys, "verify", a, no_face)[0] == EXIT_NOT_FOUND


def test_verify_threshold(capsys, photos):
    """--threshold is the cut: the same pair is "different" below its distance, "same" above."""
    a, b = (str(p) for p in photos["ben_afflek"][:2])
    d = js(capsys, "verify", a, b)[1]["rows"][0]["distance"]
    strict = js(capsys, "verify", a, b, "--threshold", str(d * 0.9))[1]["rows"][0]
    assert strict["same"] is False and strict["threshold"] == pytest.approx(d * 0.9)
    c = str(photos["madonna"][0])
    d2 = js(capsys, "verify", a, c)[1]["rows"][0]["distance"]
    loose = js(capsys, "verify", a, c, "--threshold", str(d2 * 1.1))[1]["rows"][0]
    assert loose["same"] is True and loose["distance"] == pytest.approx(d2, abs=1e-4)


def test_identify_with_the_store(capsys, enrolled, val, no_face, tmp_path):
    code, doc = js(capsys, "people", "--store", str(enrolled))
    assert code == EXIT_OK and sorted(r["name"] for r in doc["rows"]) == sorted(PEOPLE)
    targets = [str(p) for n in (*PEOPLE, *STRANGERS) for p in val[n]]
    code, doc = js(capsys, "identify", *targets, "--store", str(enrolled))
    assert code == EXIT_OK and doc["threshold"] == thresholds("facenet128").unknown
    assert_named(doc["rows"], val, PEOPLE, STRANGERS)
    assert all(0 <= r["distance"] <= 4 for r in doc["rows"])
    code, out, _ = run(capsys, "identify", str(val["madonna"][0]), "--store", str(enrolled), "-q")
    lines = out.splitlines()
    assert code == EXIT_OK and "distance" in lines[0] and "madonna" in lines[1]  # readable table by default
    assert js(capsys, "identify", no_face, "--store", str(enrolled))[0] == EXIT_NOT_FOUND
    assert js(capsys, "identify", targets[0], "--store", str(tmp_path / "empty.sqlite3"))[0] == EXIT_NOT_FOUND


def test_identify_many_photos_equals_one_at_a_time(capsys, enrolled, val, tmp_path):
    """The photo loop detects same-size photos in batches and a photo over the detector's max_side
    alone: each photo's rows are what identify gives for that photo on its own, in order, with
    an unreadable file in between reported and skipped."""
    import cv2

    big = tmp_path / "big.jpg"  # 2,000+ px: detected alone, on a downscaled copy
    im = cv2.imread(str(val["madonna"][0]))
    cv2.imwrite(str(big), cv2.resize(im, None, fx=2600 / max(im.shape[:2]), fy=2600 / max(im.shape[:2])))
    broken = tmp_path / "broken.jpg"
    broken.write_bytes(b"not a jpeg")
    targets = [str(p) for n in PEOPLE for p in val[n][:2]]
    targets = targets[:3] + [str(big), str(broken)] + targets[3:]
    code, doc = js(capsys, "identify", *targets, "--store", str(enrolled))
    assert code == EXIT_FAILED and [f["path"] for f in doc["failed"]] == [str(broken)]
    got = doc["rows"]
    want = [r for t in targets if t != str(broken) for r in js(capsys, "identify", t, "--store", str(enrolled))[1]["rows"]]
    assert [r["photo"] for r in got] == [r["photo"] for r in want] and str(big) in {r["photo"] for r in got}
    for a, b in zip(got, want):
        assert a["name"] == b["name"] and np.allclose(a["box"], b["box"], atol=0.11), (a, b)


def test_identify_tolerance(capsys, enrolled, val):
    """--tolerance is the cut for "unknown": 0 names nobody, 4 (the largest squared distance) names
    everyone, strangers too, as their nearest enrolled person."""
    targets = [str(val[n][0]) for n in (*PEOPLE, *STRANGERS)]
    code, doc = js(capsys, "identify", *targets, "--store", str(enrolled), "--tolerance", "0")
    assert code == EXIT_OK and doc["threshold"] == 0 and {r["name"] for r in doc["rows"]} == {"unknown"}
    code, doc = js(capsys, "identify", *targets, "--store", str(enrolled), "--tolerance", "4")
    names = {Path(p).parent.name: r["name"] for p, r in largest_rows(doc["rows"]).items()}
    assert {n: names[n] for n in PEOPLE} == {n: n for n in PEOPLE}
    assert all(names[n] in PEOPLE for n in STRANGERS), names


def test_identify_known_unknown_folders(capsys, photos, val, tmp_path):
    """face_recognition's layout: known/NAME.jpg (a photo named after the person) and
    known/NAME/*.jpg (several photos of the person)."""
    known, unknown = tmp_path / "known", tmp_path / "unknown"
    unknown.mkdir()
    for name in PEOPLE:
        (known / name).mkdir(parents=True)
        for p in photos[name]:
            os.symlink(p, known / name / p.name)
    os.symlink(photos["jerry_seinfeld"][0], known / "jerry_seinfeld.jpg")
    for n in (*PEOPLE, *STRANGERS):
        for p in val[n]:
            os.symlink(p, unknown / f"{n}__{p.name}")
    code, doc = js(capsys, "identify", "--known", str(known), "--unknown", str(unknown))
    assert code == EXIT_OK
    rows = [{**r, "photo": r["photo"].replace("__", "/")} for r in doc["rows"]]
    assert_named(rows, val, [*PEOPLE, "jerry_seinfeld"], ["mindy_kaling"])


def test_enrol_forget_and_bad_names(capsys, store_copy, val, photos):
    ben = str(val["ben_afflek"][0])
    code, doc = js(capsys, "identify", ben, "--store", store_copy)
    assert code == EXIT_OK and largest_rows(doc["rows"])[ben]["name"] == "ben_afflek"
    n = len(photos["ben_afflek"])
    code, doc = js(capsys, "forget", "ben_afflek", "--store", store_copy)
    assert code == EXIT_OK and doc["rows"][0]["faces_removed"] == n
    code, doc = js(capsys, "people", "--store", store_copy)
    assert sorted(r["name"] for r in doc["rows"]) == ["elton_john", "madonna"]
    code, doc = js(capsys, "identify", ben, "--store", store_copy)  # forgotten: a stranger now
    assert code == EXIT_OK and largest_rows(doc["rows"])[ben]["name"] == "unknown"
    assert js(capsys, "forget", "ben_afflek", "--store", store_copy)[0] == EXIT_NOT_FOUND  # unknown name
    assert js(capsys, "enrol", "../evil", ben, "--store", store_copy)[0] == EXIT_USAGE
    assert "../evil" not in {r["name"] for r in js(capsys, "people", "--store", store_copy)[1]["rows"]}


def test_a_plain_copy_after_a_command_holds_everything(capsys, photos, tmp_path):
    """A command closes its store, so SQLite folds the write-ahead log into the file: copying
    faces.sqlite3 alone (the README's backup) right after `facekit enrol` keeps the enrolment."""
    store = tmp_path / "faces.sqlite3"
    assert js(capsys, "enrol", "madonna", *map(str, photos["madonna"][:2]), "--store", str(store))[0] == EXIT_OK
    assert not Path(f"{store}-wal").exists() or Path(f"{store}-wal").stat().st_size == 0
    shutil.copy(store, tmp_path / "copy.sqlite3")
    with FaceStore(tmp_path / "copy.sqlite3") as s:
        assert [(p.name, p.faces) for p in s.people()] == [("madonna", 2)]


def test_precision_int8(capsys, photos, val, store):
    """One --precision int8 run end to end: enrol and identify with the int8 model, at int8's own
    calibrated threshold."""
    for name in ("madonna", "elton_john"):
        assert js(capsys, "enrol", name, *map(str, photos[name][:8]), "--store", store, "--precision", "int8")[0] \
            in (EXIT_OK, EXIT_NOT_FOUND)
    targets = [str(p) for n in ("madonna", "elton_john", "mindy_kaling") for p in val[n]]
    code, doc = js(capsys, "identify", *targets, "--store", store, "--precision", "int8")
    assert code == EXIT_OK and doc["threshold"] == thresholds("facenet128-int8").unknown
    assert_named(doc["rows"], val, ["madonna", "elton_john"], ["mindy_kaling"])
    # fp32's embeddings are another model's: identify with fp32 first re-embeds the enrolled photos
    n_int8 = sum(js(capsys, "people", "--store", store)[1]["rows"][i]["faces"] for i in range(2))
    code, doc = js(capsys, "identify", targets[0], "--store", store)
    assert code == EXIT_OK and doc["switched"]["faces"] == n_int8 and doc["switched"]["missing"] == []
    assert doc["switched"]["model"].endswith("/fp32") and largest_rows(doc["rows"])[targets[0]]["name"] == "madonna"


@pytest.fixture(scope="module")
def album_photos(tmp_path_factory, celeb_train, detector):
    """Four single-face photos per person (their most typical), copied as PERSON__FILE."""
    from facekit.core.images import load_image

    folder = tmp_path_factory.mktemp("album-in")
    for person in PEOPLE:
        idx = np.flatnonzero(celeb_train.labels == person)
        centre = celeb_train.embeddings[idx].mean(0)
        chosen = 0
        for i in idx[np.argsort(((celeb_train.embeddings[idx] - centre) ** 2).sum(1))]:
            p = Path(celeb_train.paths[i])
            if len(detector.detect(load_image(p))) == 1:
                shutil.copy(p, folder / f"{person}__{p.name}")
                chosen += 1
            if chosen == 4:
                break
        assert chosen == 4, person
    return folder


def _album_folders(out: Path) -> dict[str, set[str]]:
    return {d.name: {f.name.split("__")[0] for f in d.iterdir()} for d in out.iterdir() if not d.name.startswith(".")}


@pytest.mark.parametrize("mode", ["copy", "symlink", "hardlink"])
def test_album_one_folder_per_person(capsys, album_photos, tmp_path, mode):
    out = tmp_path / "out"
    code, doc = js(capsys, "album", str(album_photos), "--out", str(out), "--mode", mode)
    assert code == EXIT_OK
    folders = _album_folders(out)
    # one folder per person, each holding only that person's 4 photos
    assert len(folders) == 3 and set(map(frozenset, folders.values())) == {frozenset({p}) for p in PEOPLE}, folders
    assert all(len(list((out / d).iterdir())) == 4 for d in folders)
    assert sorted((r["person"], r["photos"], r["folder"]) for r in doc["rows"]) == \
        sorted((d, 4, str(out / d)) for d in folders)
    files = [f for d in folders for f in (out / d).iterdir()]
    if mode == "symlink":
        assert all(f.is_symlink() for f in files)
    elif mode == "hardlink":
        assert all(f.stat().st_nlink >= 2 and not f.is_symlink() for f in files)
    else:
        assert not any(f.is_symlink() or f.stat().st_nlink > 1 for f in files)
    originals = {p.name: p.read_bytes() for p in album_photos.iterdir()}
    assert all(f.read_bytes() == originals[f.name] for f in files)


def test_album_merge(capsys, album_photos, tmp_path):
    out = tmp_path / "out"
    assert js(capsys, "album", str(album_photos), "--out", str(out))[0] == EXIT_OK
    before = sorted(str(p.relative_to(out)) for p in out.rglob("*"))
    code, doc = js(capsys, "album", str(album_photos), "--out", str(out))  # not empty, no --merge: refused
    assert code == EXIT_FAILED and "not empty" in doc["error"]
    assert sorted(str(p.relative_to(out)) for p in out.rglob("*")) == before
    code, doc = js(capsys, "album", str(album_photos), "--out", str(out), "--merge")  # same photos: nothing added
    assert code == EXIT_OK and sorted(str(p.relative_to(out)) for p in out.rglob("*")) == before
    for f in out.rglob("*"):
        if f.is_file():
            assert f.read_bytes() == (album_photos / f.name).read_bytes()  # nothing overwritten


def test_index_and_bad_folders(capsys, photos, store, tmp_path):
    folder = tmp_path / "album"
    folder.mkdir()
    for name in ("ben_afflek", "madonna"):
        for p in photos[name][:4]:
            os.symlink(p, folder / f"{name}_{p.name}")
    code, doc = js(capsys, "index", str(folder), "--store", store)
    assert code == EXIT_OK and doc["rows"][0]["indexed"] == 8 and doc["rows"][0]["faces"] >= 8
    code, doc = js(capsys, "index", str(folder), "--store", store)  # incremental: nothing new
    assert code == EXIT_OK and doc["rows"][0]["cached"] == 8 and doc["rows"][0]["indexed"] == 0
    assert js(capsys, "index", str(tmp_path / "missing"), "--store", store)[0] == EXIT_FAILED
    broken = tmp_path / "broken"
    broken.mkdir()
    (broken / "bad.jpg").write_bytes(b"not a jpeg")
    code, doc = js(capsys, "index", str(broken), "--store", store)
    assert code == EXIT_FAILED and doc["failed"][0]["path"].endswith("bad.jpg")


def test_index_unreadable_folder(tmp_path):
    """A sub-folder that cannot be read fails the run (exit 1) and is named. Root reads any folder,
    so as root the command runs without the capabilities that let it (setpriv, util-linux)."""
    locked = tmp_path / "locked"
    (locked / "sub").mkdir(parents=True)
    os.chmod(locked / "sub", 0)
    cmd = [sys.executable, "-m", "facekit", "index", str(locked), "--store", str(tmp_path / "s.sqlite3"),
           "--json", "-q"]
    if os.geteuid() == 0:
        setpriv = shutil.which("setpriv")
        assert setpriv, "running as root: setpriv (util-linux) is needed to drop CAP_DAC_OVERRIDE"
        cmd = [setpriv, "--inh-caps=-all", "--bounding-set=-dac_override,-dac_read_search", *cmd]
    try:
        out = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    finally:
        os.chmod(locked / "sub", 0o700)
    assert out.returncode == EXIT_FAILED, out.stderr[-2000:]
    doc = json.loads(out.stdout)  # the folder is named: as the error, or as one of the inputs that failed
    assert str(locked / "sub") in doc.get("error", "") + " ".join(f["path"] for f in doc["failed"]), doc


def test_usage_errors(capsys):
    with pytest.raises(SystemExit) as e:
        main(["nonsense"])
    assert e.value.code == EXIT_USAGE
    assert main(["identify", "--known", "/tmp"]) == EXIT_USAGE


def _scene_video(path, person, detector, n_frames):
    """A video of one sample person's validation photo (never enrolled) moving and zooming in the
    frame (facekit.live's demo scene; the person is in every frame)."""
    from facekit.live import make_demo_scene
    from facekit.live.camera import write_video

    scene = make_demo_scene([person], n_frames=n_frames, enter_exit=False, seed=1, detector=detector)
    return str(write_video(path, (scene.frame(i) for i in range(n_frames)), fps=15))


def test_live_names_the_enrolled_person(capsys, enrolled, detector, tmp_path):
    """`facekit live` on an enrolled store names madonna in most frames of her video and nobody
    else; in a stranger's video nobody is named."""
    video = _scene_video(tmp_path / "madonna.mp4", "madonna", detector, 20)
    out_video = str(tmp_path / "annotated.mp4")
    t0 = time.time()
    code, doc = js(capsys, "live", video, "--store", str(enrolled), "--out", out_video)
    with FaceStore(enrolled) as s:  # retention: whom live named is noted (`facekit people --older-than`)
        seen = {p.name: p.last_seen for p in s.people()}
    assert seen["madonna"] >= t0 and all(v is None or v < t0 for n, v in seen.items() if n != "madonna"), seen
    assert code == EXIT_OK and len(doc["rows"]) == 20 and os.path.getsize(out_video) > 0
    named = [r["names"] for r in doc["rows"]]
    assert sum(n == ["madonna"] for n in named) >= 18, named
    assert not {x for n in named for x in n} - {"madonna", "..."}, named
    stranger = _scene_video(tmp_path / "mindy.mp4", "mindy_kaling", detector, 12)
    code, doc = js(capsys, "live", stranger, "--store", str(enrolled), "--max-frames", "10")
    named = [r["names"] for r in doc["rows"]]
    assert code == EXIT_OK and len(named) == 10 and sum(n == ["unknown"] for n in named) >= 9, named
    assert not {x for n in named for x in n} - {"unknown", "..."}, named
    assert js(capsys, "live", str(tmp_path / "none.mp4"), "--store", str(enrolled))[0] == EXIT_FAILED


@pytest.mark.slow
def test_fetch_and_lfw(capsys, lfw_home_dir):
    code, doc = js(capsys, "fetch")
    assert code == EXIT_OK and doc["rows"][0]["cache"] == os.environ["FACEKIT_HOME"]
    code, doc = js(capsys, "lfw", "--per-fold", "10")
    row = doc["rows"][0]
    assert code == EXIT_OK and row["pairs"] == 100 and row["accuracy"] >= 0.97, row
