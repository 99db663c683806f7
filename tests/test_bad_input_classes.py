"""Bad input, by class (issue 25, item 3): each class gets a clear error that names the input and the
fix, with nothing half written, or it is handled. One test per class:

1. folder walks (index, album, enrol): link loops, unreadable folders, files vanishing mid-walk;
2. very large valid images: decoded at reduced size in bounded memory; only bombs refused;
3. arguments of the wrong kind: an error naming the right call;
4. embeddings that do not fit a gallery, identifier, store or index: both sides named;
5. files facekit writes: never onto another kind of file or another store's unless asked; atomic.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest

from facekit.store.db import FaceStore

FP = "facenet128/test"


def unit(rng, n: int, d: int = 128) -> np.ndarray:
    x = rng.normal(size=(n, d)).astype(np.float32)
    return x / np.linalg.norm(x, axis=1, keepdims=True)


def test_folder_walks_report_each_bad_path_and_go_on(tmp_path, celeb_dir, embedder, monkeypatch, capsys):
    """A tree with a link looping to itself, a folder link leading back up, an unreadable folder
    and a photo that vanishes mid-walk: `facekit index`, albums and enrolment folders name each
    of them, and use every other photo."""
    from facekit.album.organise import organise_album
    from facekit.album.scan import list_photos
    from facekit.cli.main import EXIT_FAILED, main
    from facekit.data.folders import scan_identities

    root = tmp_path / "photos"
    for who in ("ben_afflek", "madonna"):
        (root / who).mkdir(parents=True)
        src = sorted((celeb_dir / "train" / who).glob("*.jpg"))[0]
        (root / who / "a.jpg").write_bytes(src.read_bytes())
    (root / "ben_afflek" / "loop.jpg").symlink_to("loop.jpg")  # points at itself: ELOOP
    (root / "ben_afflek" / "up").symlink_to(root)  # a folder link back to the top
    (root / "madonna" / "locked").mkdir()
    (root / "madonna" / "locked" / "x.jpg").write_bytes(b"x")
    (root / "madonna" / "gone.jpg").write_bytes(b"x")
    bad = {"loop.jpg", "up", "locked", "gone.jpg"}
    real_scandir, real_stat = os.scandir, os.stat

    def scandir(path="."):  # root reads every folder, so unreadable ones are simulated
        if str(path).endswith("locked"):
            raise PermissionError(13, "Permission denied", str(path))
        return real_scandir(path)

    def stat(path, *a, **k):  # deleted between the folder listing and the stat
        if str(path).endswith("gone.jpg"):
            raise FileNotFoundError(2, "No such file or directory", str(path))
        return real_stat(path, *a, **k)

    monkeypatch.setattr(os, "scandir", scandir)
    monkeypatch.setattr(os, "stat", stat)
    problems: list = []
    files = list_photos(root, problems=problems)
    assert sorted(Path(f.path).relative_to(root.resolve()).as_posix() for f in files) == \
        ["ben_afflek/a.jpg", "madonna/a.jpg"]
    assert {Path(p).name for p, _ in problems} == bad and all("Fix" in why for _, why in problems)
    ids, skipped, _ = scan_identities(root, recursive=True)  # enrolment folders
    assert {n: [p.name for p in ps] for n, ps in ids.items()} == {"ben_afflek": ["a.jpg"], "madonna": ["a.jpg"]}
    assert bad <= {Path(s.path.rstrip("/")).name for s in skipped}
    album = organise_album(root, progress=False, embedder=embedder, min_cluster_size=1)
    assert bad <= {Path(s.path).name for s in album.skipped} and len({f.path for f in album.faces}) == 2
    code = main(["index", str(root), "--store", str(tmp_path / "faces.sqlite3"), "--json", "-q"])
    doc = json.loads(capsys.readouterr().out)
    assert code == EXIT_FAILED and {Path(f["path"]).name for f in doc["failed"]} == bad
    assert doc["rows"][0]["indexed"] == 2 and doc["rows"][0]["faces"] >= 2


def test_the_ray_engine_reports_bad_paths_too(tmp_path, celeb_dir, capsys):
    """`facekit index --engine ray` on a tree with a link loop and a folder link back up: both
    named in "failed" (exit 1), every photo indexed, on a real local Ray instance."""
    from facekit.cli.main import EXIT_FAILED, main

    root = tmp_path / "photos"
    root.mkdir()
    for who in ("ben_afflek", "madonna"):
        (root / f"{who}.jpg").write_bytes(sorted((celeb_dir / "train" / who).glob("*.jpg"))[0].read_bytes())
    (root / "loop.jpg").symlink_to("loop.jpg")
    (root / "up").symlink_to(root)
    code = main(["index", str(root), "--engine", "ray", "--num-cpus", "1", "--store", str(tmp_path / "s.sqlite3"),
                 "--json", "-q"])
    doc = json.loads(capsys.readouterr().out)
    assert code == EXIT_FAILED and {Path(f["path"]).name for f in doc["failed"]} == {"loop.jpg", "up"}
    assert doc["rows"][0]["indexed"] == 2 and doc["rows"][0]["engine"] == "ray"


LARGE = textwrap.dedent("""
    import json, resource, sys
    from facekit.core.images import ImageLoadError, load_image_scaled
    out = {}
    for name in sys.argv[1:]:
        before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        try:
            img, scale = load_image_scaled(name)
            out[name] = {"shape": list(img.shape), "scale": scale}
        except ImageLoadError as exc:
            out[name] = {"error": str(exc)}
        out[name]["grew_mb"] = (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before) / 1024
    print(json.dumps(out))
""")
MAKE = textwrap.dedent("""
    import sys
    import numpy as np
    from PIL import Image
    kind, w, h, path = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), sys.argv[4]
    if kind in ("jpeg", "jpeg-rgb"):  # a smooth picture: a valid JPEG of a few MB
        row = np.linspace(40, 220, w).astype(np.uint8)
        img = np.broadcast_to(row, (h, w))
        if kind == "jpeg-rgb":
            img = np.dstack([img, img[::-1], np.full((h, w), 90, np.uint8)])
        Image.fromarray(np.ascontiguousarray(img)).save(path, "JPEG", quality=80)
    elif kind == "png":  # colour gradients: a valid PNG that compresses about 300:1
        g = np.linspace(0, 255, w).astype(np.uint8)
        v = np.linspace(0, 255, h).astype(np.uint8)
        rgb = np.dstack([np.broadcast_to(g, (h, w)), np.broadcast_to(v[:, None], (h, w)), np.full((h, w), 90, np.uint8)])
        Image.fromarray(rgb).save(path, "PNG")
    else:  # a bomb: 144 MP of one grey value in 140 KB
        Image.new("L", (w, h)).save(path, "PNG")
""")


def test_very_large_valid_images_decode_reduced_within_a_memory_bound(tmp_path):
    """A 195 MP JPEG (over Pillow's own 179 MP refusal) and a 176 MP colour one decode at half
    size straight from the file (under 50 MP: under 500 MB at the peak, where decoding them whole
    takes 1-1.6 GB); an 81 MP PNG comes back reduced; the 144 MP PNG of 140 KB, a real bomb, is
    still refused. Each in a fresh process (peak memory)."""
    from facekit.core.images import MAX_DECODED_PIXELS

    import facekit

    env = {**os.environ, "PYTHONPATH": str(Path(facekit.__file__).resolve().parents[1])}  # this facekit
    cases = {"big.jpg": ("jpeg", 15000, 13000), "pillow-warns.jpg": ("jpeg-rgb", 16000, 11000),
             "wide.png": ("png", 9000, 9000), "bomb.png": ("bomb", 12000, 12000)}
    for name, (kind, w, h) in cases.items():
        subprocess.run([sys.executable, "-c", MAKE, kind, str(w), str(h), str(tmp_path / name)], check=True, env=env,
                       timeout=300)
    got = {}
    for name in cases:
        r = subprocess.run([sys.executable, "-c", LARGE, str(tmp_path / name)], capture_output=True, text=True,
                           env=env, timeout=300)
        assert r.returncode == 0, r.stderr[-2000:]
        got[name] = json.loads(r.stdout)[str(tmp_path / name)]
    for name in ("big.jpg", "pillow-warns.jpg"):
        g = got[name]
        assert "error" not in g, g
        assert g["scale"] == 2.0 and g["shape"][0] * g["shape"][1] <= MAX_DECODED_PIXELS, g
        assert g["grew_mb"] < 500, g  # decoded at 1/2 per side (MAX_DECODED_PIXELS' bound); whole: 1-1.6 GB
    wide = got["wide.png"]  # decoded whole (not a JPEG), then reduced: 81 MP x 4 bytes at most
    assert wide["scale"] == 2.0 and wide["shape"][:2] == [4500, 4500] and wide["grew_mb"] < 700, wide
    assert "decompression bomb" in got["bomb.png"].get("error", "") and got["bomb.png"]["grew_mb"] < 100, got["bomb.png"]


def test_arguments_of_the_wrong_kind_name_the_right_call(tmp_path, sample_face, sample_face_path, rng):
    from facekit.core.images import as_rgb, load_image
    from facekit.store.enrol import enrol_faceset, enrol_folder
    from facekit.recognition.identify import FaceIdentifier
    from facekit.store.index import GalleryIndex

    cases = [
        (lambda: load_image(sample_face), "extract_faces(image)"),  # an array where a path goes
        (lambda: load_image([sample_face_path, sample_face_path]), "load_image(p) for p in paths"),
        (lambda: as_rgb(str(sample_face_path)), "load_image(path)"),  # a path where an array goes
        (lambda: as_rgb([sample_face, sample_face]), "once per image"),  # a list where one image goes
        (lambda: as_rgb(b"\xff\xd8\xff"), "decode_image_bytes"),
    ]
    s = FaceStore(tmp_path / "s.sqlite3")
    index = GalleryIndex(128)
    index.add(unit(rng, 3), [1, 2, 3], "Ada")
    cases += [
        (lambda: s.add_faces("Ada", str(sample_face_path), model=FP), "extract_faces(path)"),
        (lambda: s.add_faces("Ada", sample_face, model=FP), "extract_faces(image)"),
        (lambda: index.search(sample_face), "extract_faces(image)"),
        (lambda: index.identify([str(sample_face_path)], 0.8), "extract_faces(path)"),
        (lambda: enrol_folder(s, [sample_face_path]), "facekit enrol NAME PHOTO"),
        (lambda: enrol_faceset(s, str(sample_face_path)), "enrol_folder(store, root)"),
        (lambda: ident.predict(str(sample_face_path)), "extract_faces(photo)"),  # a path where embeddings go
        (lambda: ident.predict(sample_face), "extract_faces(photo)"),  # a photo where embeddings go
    ]
    ident = FaceIdentifier().fit(unit(rng, 3), ["Ada", "Bo", "Cy"])
    for call, fix in cases:
        with pytest.raises(TypeError) as err:
            call()
        assert fix in str(err.value), (fix, str(err.value))
    assert s.people() == []  # nothing half written


def test_embeddings_that_do_not_fit_name_both_sides(tmp_path, rng):
    from facekit.core.exchange import FileFormatError
    from facekit.recognition.identify import FaceIdentifier
    from facekit.store.index import GalleryIndex

    s = FaceStore(tmp_path / "s.sqlite3")
    s.add_faces("Ada", unit(rng, 3), model=FP)
    index = GalleryIndex.from_store(s, FP)
    for call, sides in [
        (lambda: index.search(unit(rng, 1, 512)), ("512 dimensions", "128-D", FP)),
        (lambda: index.add(unit(rng, 1, 64), [9], "Bob"), ("64 dimensions", "128-D")),
        (lambda: index.identify(unit(rng, 1), 0.8, model="facenet512"), ("facenet512", FP)),
        (lambda: s.add_faces("Bob", unit(rng, 2, 64), model=FP), ("64-D", "128-D", str(s.path))),
        (lambda: FaceIdentifier(model="facenet128").fit(unit(rng, 2), ["a", "b"]).predict(unit(rng, 1, 512)),
         ("512 dims", "128")),
    ]:
        with pytest.raises(ValueError) as err:
            call()
        assert all(side in str(err.value) for side in sides), (sides, str(err.value))
    other = FaceStore(tmp_path / "other.sqlite3")  # an export whose faces of this model are 64-D
    other.add_faces("Bob", unit(rng, 2, 64), model=FP)
    path = other.export(tmp_path / "bob.npz")
    with pytest.raises(FileFormatError) as err:
        s.import_(path)
    assert "64 dimensions" in str(err.value) and "128-D" in str(err.value) and str(s.path) in str(err.value)
    assert s.names == ["Ada"]  # nothing half imported


def test_files_are_never_written_onto_another_kind_or_store_unless_asked(tmp_path, rng, monkeypatch, capsys):
    from facekit.cli.main import EXIT_FAILED, EXIT_OK, main
    from facekit.recognition.identify import FaceIdentifier
    from facekit.store.index import GalleryIndex
    from facekit.store.index_file import save_gallery

    a = FaceIdentifier().fit(unit(rng, 4), ["Ada"] * 2 + ["Bob"] * 2)
    b = FaceIdentifier().fit(unit(rng, 2), ["Cy", "Cy"])
    path = a.save(tmp_path / "gallery.npz")
    a.save(path)  # its own file: fine
    with pytest.raises(FileExistsError, match="another"):
        b.save(path)  # another gallery's file
    assert FaceIdentifier.load(path).names == ["Ada", "Bob"]
    b.save(path, overwrite=True)
    assert FaceIdentifier.load(path).names == ["Cy"]
    s, t = FaceStore(tmp_path / "s.sqlite3"), FaceStore(tmp_path / "t.sqlite3")
    s.add_faces("Ada", unit(rng, 2), model=FP)
    t.add_faces("Bob", unit(rng, 2), model=FP)
    with pytest.raises(FileExistsError, match="another kind"):
        s.export(path, overwrite=None)  # an identifier is there
    theirs = t.export(tmp_path / "share.npz")
    with pytest.raises(FileExistsError, match="another face store"):
        s.export(theirs, overwrite=None)
    ix = GalleryIndex(128)
    ix.add(unit(rng, 2), [1, 2], "Ada")
    with pytest.raises(FileExistsError, match="another kind"):
        save_gallery(ix, path)
    args = ("--store", str(s.path), "--json", "-q")
    assert main(["export", str(theirs), *args]) == EXIT_FAILED  # the command refuses it too ...
    assert "another face store" in json.loads(capsys.readouterr().out)["error"]
    assert t.import_(theirs).people == ["Bob"]  # ... and left it whole
    assert main(["export", str(theirs), *args, "--force"]) == EXIT_OK  # asked: replaced
    capsys.readouterr()
    video = tmp_path / "keep.mp4"
    video.write_bytes(b"not yours to replace")
    assert main(["live", str(tmp_path / "none.mp4"), "--out", str(video), *args]) == EXIT_FAILED
    assert video.read_bytes() == b"not yours to replace" and "--force" in capsys.readouterr().err
    # atomic: a write that fails half-way leaves the old file whole and no temporary file behind
    before = path.read_bytes()

    def disk_full(fd):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, "fsync", disk_full)
    with pytest.raises(OSError, match="No space"):
        b.save(path)
    monkeypatch.undo()
    assert path.read_bytes() == before and sorted(p.name for p in tmp_path.iterdir() if ".tmp" in p.name) == []
