"""The facekit command: every subcommand on real sample photos, --json, exit codes, bad input (issue 15)."""

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from facekit.cli.main import EXIT_FAILED, EXIT_NOT_FOUND, EXIT_OK, EXIT_USAGE, main
from facekit.core.cache import celebrity_dir


def run(capsys, *argv):
    code = main([*argv])
    out = capsys.readouterr()
    return code, out.out, out.err


def js(capsys, *argv):
    code, out, err = run(capsys, *argv, "--json", "-q")
    return code, json.loads(out)


@pytest.fixture(scope="module")
def photos():
    root = celebrity_dir() / "train"
    return {p.name: sorted(p.glob("*.jpg")) for p in sorted(root.iterdir()) if p.is_dir()}


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
    assert code == EXIT_NOT_FOUND
    code, doc = js(capsys, "detect", a, "/no/such/photo.jpg")
    assert code == EXIT_FAILED and doc["failed"][0]["path"] == "/no/such/photo.jpg"
    code, doc = js(capsys, "verify", a, b)
    assert code == EXIT_OK and doc["rows"][0]["same"] is True and 0 <= doc["rows"][0]["distance"] <= 4
    code, doc = js(capsys, "verify", a, str(photos["madonna"][0]))
    assert code == EXIT_OK and doc["rows"][0]["same"] is False
    assert js(capsys, "verify", a, no_face)[0] == EXIT_NOT_FOUND


def test_enrol_people_identify_forget(capsys, photos, store, no_face, tmp_path):
    ben, madonna = photos["ben_afflek"], photos["madonna"]
    code, doc = js(capsys, "enrol", "ben", *map(str, ben[:6]), "--store", store)
    assert code == EXIT_OK and len(doc["rows"]) == 6
    code, doc = js(capsys, "enrol", "madonna", *map(str, madonna[:6]), "--store", store)
    assert code == EXIT_OK
    code, doc = js(capsys, "people", "--store", store)
    assert code == EXIT_OK and {r["name"]: r["faces"] for r in doc["rows"]} == {"ben": 6, "madonna": 6}
    code, doc = js(capsys, "identify", str(madonna[8]), str(photos["elton_john"][0]), "--store", store)
    assert code == EXIT_OK
    by_photo = {r["photo"]: r for r in doc["rows"] if r["face"] == 0}
    assert by_photo[str(madonna[8])]["name"] in ("madonna", "unknown")
    assert by_photo[str(photos["elton_john"][0])]["name"] == "unknown"
    assert all(0 <= r["distance"] <= 4 for r in doc["rows"])
    code, out, _ = run(capsys, "identify", str(madonna[8]), "--store", store, "-q")
    assert code == EXIT_OK and "distance" in out.splitlines()[0]  # readable table by default
    assert js(capsys, "identify", no_face, "--store", store)[0] == EXIT_NOT_FOUND
    assert js(capsys, "enrol", "../evil", str(ben[0]), "--store", store)[0] == EXIT_USAGE
    code, doc = js(capsys, "forget", "ben", "--store", store)
    assert code == EXIT_OK and doc["rows"][0]["faces_removed"] == 6
    assert js(capsys, "forget", "ben", "--store", store)[0] == EXIT_NOT_FOUND  # unknown name
    assert js(capsys, "identify", str(ben[0]), "--store", str(tmp_path / "empty.sqlite3"))[0] == EXIT_NOT_FOUND


def test_identify_known_unknown(capsys, photos, tmp_path):
    known, unknown = tmp_path / "known", tmp_path / "unknown"
    known.mkdir()
    unknown.mkdir()
    for name in ("ben_afflek", "madonna"):
        os.symlink(photos[name][0], known / f"{name}.jpg")
        os.symlink(photos[name][9], unknown / f"{name}_test.jpg")
    code, doc = js(capsys, "identify", "--known", str(known), "--unknown", str(unknown))
    assert code == EXIT_OK and len(doc["rows"]) >= 2
    assert {r["name"] for r in doc["rows"]} <= {"ben_afflek", "madonna", "unknown"}


def test_index_album_and_bad_folders(capsys, photos, store, tmp_path):
    folder = tmp_path / "album"
    folder.mkdir()
    for name in ("ben_afflek", "madonna"):
        for p in photos[name][:4]:
            os.symlink(p, folder / f"{name}_{p.name}")
    code, doc = js(capsys, "index", str(folder), "--store", store)
    assert code == EXIT_OK and doc["rows"][0]["indexed"] == 8 and doc["rows"][0]["faces"] >= 8
    code, doc = js(capsys, "index", str(folder), "--store", store)  # incremental: nothing new
    assert code == EXIT_OK and doc["rows"][0]["cached"] == 8 and doc["rows"][0]["indexed"] == 0
    code, doc = js(capsys, "album", str(folder), "--out", str(tmp_path / "out"))
    assert code == EXIT_OK and sum(r["photos"] for r in doc["rows"]) >= 8
    assert all(Path(r["folder"]).is_dir() for r in doc["rows"])
    assert js(capsys, "index", str(tmp_path / "missing"), "--store", store)[0] == EXIT_FAILED
    if os.geteuid() != 0:  # root reads any folder
        locked = tmp_path / "locked"
        (locked / "sub").mkdir(parents=True)
        os.chmod(locked / "sub", 0)
        try:
            assert js(capsys, "index", str(locked), "--store", store)[0] == EXIT_FAILED
        finally:
            os.chmod(locked / "sub", 0o700)
    broken = tmp_path / "broken"
    broken.mkdir()
    (broken / "bad.jpg").write_bytes(b"not a jpeg")
    code, doc = js(capsys, "index", str(broken), "--store", store)
    assert code == EXIT_FAILED and doc["failed"][0]["path"].endswith("bad.jpg")


def test_usage_errors(capsys):
    with pytest.raises(SystemExit) as e:
        main(["nonsense"])
    assert e.value.code == EXIT_USAGE
    assert main(["identify", "--known", "/tmp"]) == EXIT_USAGE


def test_live_on_a_video(capsys, photos, store, tmp_path):
    import cv2

    from facekit.core.images import load_image

    frame = cv2.resize(load_image(photos["madonna"][0]), (320, 240))
    video = str(tmp_path / "clip.mp4")
    w = cv2.VideoWriter(video, cv2.VideoWriter_fourcc(*"mp4v"), 10, (320, 240))
    for _ in range(6):
        w.write(cv2.cvtColor(frame, cv2.COLOR_RGB2BGR))
    w.release()
    out_video = str(tmp_path / "annotated.mp4")
    code, doc = js(capsys, "live", video, "--store", store, "--out", out_video)
    assert code == EXIT_OK and len(doc["rows"]) == 6 and os.path.getsize(out_video) > 0
    assert js(capsys, "live", str(tmp_path / "none.mp4"), "--store", store)[0] == EXIT_FAILED


@pytest.mark.slow
def test_fetch_and_lfw(capsys):
    assert js(capsys, "fetch")[0] == EXIT_OK
    code, doc = js(capsys, "lfw", "--per-fold", "4")
    assert code == EXIT_OK and doc["rows"][0]["pairs"] == 40 and doc["rows"][0]["accuracy"] > 0.8
