"""Fault checks of issue 25 for ``bench/faults.py``: nothing outlives forget, bad input by class,
concurrent writers. Each kind is a function ``kind(c, F, quick)``: ``c`` the campaign, ``F`` the
faults module (its ``score``, ``Expect``, ``unit``); every check goes through ``c.run``.

- ``walks``: folder walks (index, album, enrol) over link loops, links above the walk, dangling
  links, pipes, unreadable folders, files and folders vanishing mid-walk: each bad path reported,
  every good photo used (a good photo dropped is ``data_lost``, a bad path passed over in silence
  a ``wrong_accepts``); and ``facekit index`` on a tree with all of them;
- ``large``: very large valid images decode at reduced size under the documented memory bound
  (a fresh process each, peak memory measured); real bombs are refused before decoding;
- ``kinds``: arguments of the wrong kind get a TypeError naming the right call;
- ``misfit``: embeddings of another dimension or model: an error naming both sides, nothing half
  written;
- ``overwrite``: files facekit writes never replace another kind of file, another store's or
  another gallery's, unless asked; a write that fails or is killed leaves the old file whole;
- ``forget``: after a forget (the API, the command, interrupted, killed, with a reader holding the
  write-ahead log, with files moved or replaced by the user, two models, forgotten photos indexed
  again), a byte search of every file facekit wrote finds neither the name (UTF-8) nor a vector
  (float32): ``forgotten_leftovers`` counts the files that do; nobody else is lost;
- ``writers``: two ``facekit index`` runs on one store; index with forget at the same time;
  identify saving its trained index while forget runs; two enrolments refreshing the index.

Run alone: ``python bench/faults_forget.py [--quick] [--only walks,forget]`` (last line JSON).
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import random
import re
import shutil
import signal
import sqlite3
import subprocess
import sys
import tempfile
import textwrap
import threading
import time
from pathlib import Path
from unittest import mock

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

COUNTER = "forgotten_leftovers"
KINDS = ("walks", "large", "kinds", "misfit", "overwrite", "forget", "writers")
FP = "facenet128/faults"
PERSON, KEEPER = "Visitor 7", "Keeper"


# --- helpers ------------------------------------------------------------------------------------
def leftovers(folders, name: str, vectors) -> list[str]:
    """Files under ``folders`` (links not followed) whose bytes hold ``name`` or one of ``vectors``."""
    needles = [name.encode()] + [np.asarray(v, "<f4").tobytes() for v in vectors]
    found = []
    for folder in folders:
        for f in Path(folder).rglob("*"):
            if f.is_file() and not f.is_symlink():
                raw = f.read_bytes()
                if any(n in raw for n in needles):
                    found.append(str(f))
    return found


def linked_home(c) -> Path:
    """A FACEKIT_HOME of its own whose models and sample data link to the real cache (never its
    saved galleries): what a command run by a check writes there is the check's alone."""
    from facekit.core.cache import cache_dir

    real = cache_dir()
    home = Path(tempfile.mkdtemp(prefix="fk-home-", dir=c.tmp))
    for entry in real.iterdir():
        if entry.name not in ("galleries", "bench") and not entry.name.endswith(".lock"):
            (home / entry.name).symlink_to(entry.resolve())
    return home


@contextlib.contextmanager
def env(**values):
    """Set environment variables for the block (this process: cache_dir, FACEKIT_EXACT_MAX)."""
    old = {k: os.environ.get(k) for k in values}
    os.environ.update({k: str(v) for k, v in values.items()})
    try:
        yield
    finally:
        for k, v in old.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


def cli(*argv, home: Path, timeout: int = 600, **extra) -> tuple[int, dict | None, str]:
    """``facekit ARGV --json -q`` in a new process with FACEKIT_HOME=home: (rc, JSON, stderr)."""
    e = {**os.environ, "FACEKIT_HOME": str(home), "PYTHONPATH": str(ROOT), "TF_CPP_MIN_LOG_LEVEL": "3",
         **{k: str(v) for k, v in extra.items()}}
    p = subprocess.run([sys.executable, "-m", "facekit", *map(str, argv), "--json", "-q"], capture_output=True,
                       text=True, env=e, timeout=timeout)
    try:
        doc = json.loads(p.stdout.strip().splitlines()[-1])
    except (ValueError, IndexError):
        doc = None
    return p.returncode, doc, p.stderr


def photo(path: Path, side: int = 64) -> Path:
    from PIL import Image

    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", (side, side), (120, 130, 140)).save(path, "JPEG")
    return path


# --- walks --------------------------------------------------------------------------------------
def _bad_entries(d: Path) -> dict:
    """``{what: (make(root), name of the bad entry, patches)}``; the good photo is root/p/good.jpg."""
    def scandir_raising(exc, end):
        real = os.scandir

        def fn(path="."):
            if str(path).endswith(end):
                raise exc
            return real(path)
        return mock.patch("os.scandir", fn)

    def stat_raising(end):
        real = os.stat

        def fn(path, *a, **k):
            if str(path).endswith(end):
                raise FileNotFoundError(2, "No such file or directory", str(path))
            return real(path, *a, **k)
        return mock.patch("os.stat", fn)

    def mk(sub):
        return lambda r: (r / "p" / sub).mkdir()

    return {
        "a link to itself": (lambda r: (r / "p" / "loop.jpg").symlink_to("loop.jpg"), "loop.jpg", None),
        "a folder link back to the top": (lambda r: (r / "p" / "up").symlink_to(r), "up", None),
        "a folder link above the walk": (lambda r: (r / "p" / "above").symlink_to(r.parent), "above", None),
        "two folder links in a cycle": (lambda r: ((r / "q").mkdir(), (r / "q" / "back").symlink_to(r / "p"),
                                                   (r / "p" / "zz").symlink_to(r / "q")), "back", None),
        "a dangling link named like a photo": (lambda r: (r / "p" / "gone.jpg").symlink_to(d / "nowhere.jpg"),
                                               "gone.jpg", None),
        "a pipe named like a photo": (lambda r: os.mkfifo(r / "p" / "pipe.jpg"), "pipe.jpg", None),
        "an unreadable folder": (mk("locked"), "locked", lambda: scandir_raising(
            PermissionError(13, "Permission denied"), "locked")),
        "a folder vanishing mid-walk": (mk("going"), "going", lambda: scandir_raising(
            FileNotFoundError(2, "No such file or directory"), "going")),
        "a folder replaced by a file mid-walk": (mk("swapped"), "swapped", lambda: scandir_raising(
            NotADirectoryError(20, "Not a directory"), "swapped")),
        "a photo vanishing mid-walk": (lambda r: photo(r / "p" / "vanish.jpg"), "vanish.jpg",
                                       lambda: stat_raising("vanish.jpg")),
    }


def walks(c, F, quick: bool) -> None:
    from facekit.album.organise import _image_files
    from facekit.album.scan import list_photos
    from facekit.data.folders import scan_identities

    def index(r):
        problems: list = []
        return [p.path for p in list_photos(r, problems=problems)], [p for p, _ in problems]

    def album(r):
        skipped: list = []
        return [str(p) for p in _image_files(r, True, set(), skipped)], [s.path for s in skipped]

    def enrol(r):
        ids, skipped, _ = scan_identities(r, recursive=True)
        return [str(p) for ps in ids.values() for p in ps], [s.path for s in skipped]

    walkers = {"index": index, "album": album, "enrol": enrol}
    for what, (make, bad, patch) in _bad_entries(c.tmp).items():
        for walker, walk in walkers.items():
            def one(make=make, bad=bad, patch=patch, walk=walk):
                root = Path(tempfile.mkdtemp(prefix="walk-", dir=c.tmp)) / "photos"
                photo(root / "p" / "good.jpg")
                make(root)
                with (patch() if patch else contextlib.nullcontext()):
                    files, problems = walk(root)
                used = any(Path(f).name == "good.jpg" for f in files)
                named = any(Path(p.rstrip("/")).name == bad for p in problems)
                return F.score(f"good photo used: {used}; bad path reported: {named} ({len(problems)} reported)",
                               data_lost=int(not used), wrong_accepts=int(not named))
            c.run("walks", f"{walker}: {what}", one)

    def whole_tree():
        root = Path(tempfile.mkdtemp(prefix="walk-cli-", dir=c.tmp)) / "photos"
        photo(root / "p" / "good.jpg")
        photo(root / "q" / "good2.jpg")
        entries = _bad_entries(c.tmp)
        for what in ("a link to itself", "a folder link back to the top", "a dangling link named like a photo",
                     "a pipe named like a photo"):
            entries[what][0](root)
        (root / "p" / "locked").mkdir()
        photo(root / "p" / "locked" / "hidden.jpg")
        os.chmod(root / "p" / "locked", 0)
        pre = []
        if os.geteuid() == 0 and shutil.which("setpriv"):  # root reads any folder: drop that power
            pre = [shutil.which("setpriv"), "--inh-caps=-all", "--bounding-set=-dac_override,-dac_read_search"]
        e = {**os.environ, "FACEKIT_HOME": str(linked_home(c)), "PYTHONPATH": str(ROOT), "TF_CPP_MIN_LOG_LEVEL": "3"}
        try:
            p = subprocess.run([*pre, sys.executable, "-m", "facekit", "index", str(root), "--store",
                                str(root.parent / "s.sqlite3"), "--json", "-q"], capture_output=True, text=True,
                               env=e, timeout=600)
        finally:
            os.chmod(root / "p" / "locked", 0o700)
        doc = json.loads(p.stdout.strip().splitlines()[-1])
        failed = {Path(f["path"]).name for f in doc["failed"]}
        want = {"loop.jpg", "up", "gone.jpg", "pipe.jpg", "locked"}
        indexed = doc["rows"][0]["indexed"] if doc.get("rows") else 0
        return F.score(f"rc={p.returncode}, reported {sorted(failed)}, indexed {indexed}",
                       wrong_accepts=len(want - failed) + int(p.returncode != 1), data_lost=max(0, 2 - indexed))
    c.run("walks", "facekit index: a tree with every kind of bad entry", whole_tree)


# --- large images -------------------------------------------------------------------------------
MAKE = textwrap.dedent("""
    import sys
    import numpy as np
    from PIL import Image
    kind, w, h, path = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), sys.argv[4]
    row = np.linspace(40, 220, w).astype(np.uint8)
    grey = np.ascontiguousarray(np.broadcast_to(row, (h, w)))
    colour = lambda: np.dstack([grey, grey[::-1], np.full((h, w), 90, np.uint8)])
    if kind == "bomb":
        Image.new("L", (w, h)).save(path, "PNG")
    elif kind == "jpeg":
        Image.fromarray(grey).save(path, "JPEG", quality=80)
    elif kind == "jpeg-rgb":
        Image.fromarray(colour()).save(path, "JPEG", quality=80)
    elif kind == "jpeg-prog":
        Image.fromarray(colour()).save(path, "JPEG", quality=80, progressive=True)
    elif kind == "jpeg-exif":
        exif = Image.Exif()
        exif[0x0112] = 6
        Image.fromarray(grey).save(path, "JPEG", quality=80, exif=exif)
    elif kind == "png":
        Image.fromarray(colour()).save(path, "PNG")
    elif kind == "tiff":
        Image.fromarray(colour()).save(path, "TIFF", compression="tiff_deflate")
""")
LOAD = textwrap.dedent("""
    import json, resource, sys
    from facekit.core.images import ImageLoadError, load_image_scaled
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    try:
        img, scale = load_image_scaled(sys.argv[1])
        out = {"shape": list(img.shape), "scale": scale}
    except ImageLoadError as exc:
        out = {"error": str(exc)}
    out["grew_mb"] = (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before) / 1024
    print(json.dumps(out))
""")


def large(c, F, quick: bool) -> None:
    from facekit.core.images import MAX_DECODED_PIXELS

    cases = [("60 MP JPEG", "jpeg", 9000, 6700, "ok"), ("120 MP JPEG", "jpeg", 13000, 9230, "ok"),
             ("176 MP colour JPEG (over Pillow's warning)", "jpeg-rgb", 16000, 11000, "ok"),
             ("195 MP JPEG (over Pillow's own refusal)", "jpeg", 15000, 13000, "ok"),
             ("150 MP progressive colour JPEG", "jpeg-prog", 15000, 10000, "ok"),
             ("100 MP JPEG turned by EXIF", "jpeg-exif", 12000, 8400, "ok"),
             ("64 MP colour PNG", "png", 8000, 8000, "ok"), ("70 MP colour TIFF", "tiff", 8400, 8400, "ok"),
             ("250 MP JPEG (over the 200 MP limit)", "jpeg", 20000, 12500, "refuse"),
             ("144 MP PNG of one grey (bomb)", "bomb", 12000, 12000, "refuse"),
             ("400 MP PNG of one grey (bomb)", "bomb", 20000, 20000, "refuse")]
    if quick:
        cases = [cases[3], cases[6], cases[9]]
    e = {**os.environ, "PYTHONPATH": str(ROOT)}
    for what, kind, w, h, want in cases:
        def one(kind=kind, w=w, h=h, want=want):
            path = c.tmp / f"large-{kind}-{w}x{h}.{'png' if kind in ('bomb', 'png') else 'tif' if kind == 'tiff' else 'jpg'}"
            subprocess.run([sys.executable, "-c", MAKE, kind, str(w), str(h), str(path)], check=True, env=e,
                           timeout=600)
            p = subprocess.run([sys.executable, "-c", LOAD, str(path)], capture_output=True, text=True, env=e,
                               timeout=600)
            path.unlink()
            if p.returncode != 0:
                return F.score(f"CRASHED: {p.stderr.strip()[-200:]}", unclear_errors=1)
            got = json.loads(p.stdout)
            note = json.dumps(got)[:160]
            if want == "refuse":
                clear = "Fix" in got.get("error", "")
                return F.score(note, wrong_accepts=int("error" not in got or got["grew_mb"] > 100),
                               unclear_errors=int("error" in got and not clear))
            if "error" in got:
                return F.score(f"a valid photo refused: {note}", unclear_errors=1)
            pixels = got["shape"][0] * got["shape"][1]
            bound = 500 + (3 * w * h / 2**20 if kind == "jpeg-prog" else 0) if kind.startswith("jpeg") \
                else 9 * w * h / 2**20
            bad = pixels > MAX_DECODED_PIXELS or got["scale"] < 2 or got["grew_mb"] > bound
            if kind == "jpeg-exif":
                bad |= got["shape"][0] < got["shape"][1]  # turned upright: taller than wide
            return F.score(f"{note} (bound {bound:.0f} MB)", wrong_accepts=int(bad))
        c.run("large", what, one)


# --- arguments of the wrong kind, embeddings that do not fit --------------------------------------
def kinds(c, F, quick: bool) -> None:
    from facekit.core.images import as_rgb, decode_image_bytes, load_image
    from facekit.embedding.embedder import Embedder
    from facekit.faces import FaceEmbedding, extract_faces
    from facekit.recognition.identify import FaceIdentifier
    from facekit.store.db import FaceStore
    from facekit.store.enrol import enrol_faceset, enrol_folder
    from facekit.store.index import GalleryIndex

    rng = np.random.default_rng(25)
    img = np.full((120, 100, 3), 128, np.uint8)
    path = photo(c.tmp / "kinds" / "a.jpg")
    s = FaceStore(c.tmp / "kinds.sqlite3")
    ix = GalleryIndex(128)
    ix.add(F.unit(rng, 3), [1, 2, 3], "Ada")
    fe = FaceEmbedding(None, img, F.unit(rng, 1)[0])
    cases = [
        ("load_image(an array)", lambda: load_image(img), "extract_faces"),
        ("load_image(a list of paths)", lambda: load_image([path, path]), "for p in paths"),
        ("load_image(bytes)", lambda: load_image(path.read_bytes()), "decode_image_bytes"),
        ("as_rgb(a path)", lambda: as_rgb(str(path)), "load_image"),
        ("as_rgb(a Path)", lambda: as_rgb(path), "load_image"),
        ("as_rgb(a list of images)", lambda: as_rgb([img, img]), "once per image"),
        ("as_rgb(bytes)", lambda: as_rgb(path.read_bytes()), "decode_image_bytes"),
        ("decode_image_bytes(a path)", lambda: decode_image_bytes(str(path)), "load_image|bytes"),
        ("extract_faces(a list of images)", lambda: extract_faces([img, img]), "once per image"),
        ("Embedder.embed(a path)", lambda: Embedder().embed(str(path)), "extract_faces"),
        ("add_faces(a path)", lambda: s.add_faces("Ada", str(path), model=FP), "extract_faces"),
        ("add_faces(an image)", lambda: s.add_faces("Ada", img, model=FP), "extract_faces"),
        ("add_faces(FaceEmbedding objects)", lambda: s.add_faces("Ada", [fe, fe], model=FP), "np.stack"),
        ("GalleryIndex.search(an image)", lambda: ix.search(img), "extract_faces"),
        ("GalleryIndex.identify(paths)", lambda: ix.identify([str(path)], 0.8), "extract_faces"),
        ("GalleryIndex.add(FaceEmbedding objects)", lambda: ix.add([fe], [9], "Bob"), "np.stack"),
        ("enrol_folder(a list of photos)", lambda: enrol_folder(s, [path]), "facekit enrol"),
        ("enrol_faceset(a folder path)", lambda: enrol_faceset(s, str(path.parent)), "enrol_folder"),
        ("FaceIdentifier.save(an array)", lambda: FaceIdentifier().fit(F.unit(rng, 2), ["a", "a"]).save(img),
         "identifier.save"),
    ]
    for what, fn, pattern in cases:
        def one(fn=fn, pattern=pattern):
            res = c.refuse(fn, F.Expect(TypeError, pattern))
            if s.people():
                res["wrong_accepts"] += 1  # something was half written
            return res
        c.run("kinds", what, one)
    s.close()


def misfit(c, F, quick: bool) -> None:
    from facekit.core.exchange import FileFormatError
    from facekit.recognition.identify import FaceIdentifier
    from facekit.store.db import FaceStore
    from facekit.store.index import GalleryIndex

    rng = np.random.default_rng(26)
    s = FaceStore(c.tmp / "misfit.sqlite3")
    s.add_faces("Ada", F.unit(rng, 3), model=FP)
    ix = GalleryIndex.from_store(s, FP)
    other = FaceStore(c.tmp / "misfit-other.sqlite3")
    other.add_faces("Bob", F.unit(rng, 2, 64), model=FP)
    export64 = other.export(c.tmp / "misfit-64.npz")
    ident = FaceIdentifier(model="facenet128").fit(F.unit(rng, 4), ["a", "a", "b", "b"])
    cases = [
        ("GalleryIndex.search: 512-D queries, 128-D gallery", lambda: ix.search(F.unit(rng, 1, 512)), r"512.*128"),
        ("GalleryIndex.add: 64-D faces", lambda: ix.add(F.unit(rng, 1, 64), [99], "Bob"), r"64.*128"),
        ("GalleryIndex.identify: queries of another model", lambda: ix.identify(F.unit(rng, 1), 0.8,
                                                                                 model="facenet512"),
         rf"facenet512.*{re.escape(FP)}"),
        ("FaceStore.add_faces: 64-D faces of a 128-D model", lambda: s.add_faces("Bob", F.unit(rng, 2, 64), model=FP),
         r"64-D.*128-D"),
        ("FaceIdentifier.predict: 512-D queries", lambda: ident.predict(F.unit(rng, 1, 512)), r"512.*128"),
        ("FaceIdentifier.nearest_distance: 64-D", lambda: ident.nearest_distance(F.unit(rng, 2, 64)), r"64.*128"),
        ("FaceIdentifier.fit: 512-D for facenet128", lambda: FaceIdentifier(model="facenet128").fit(
            F.unit(rng, 2, 512), ["a", "b"]), r"512.*facenet128.*128|512 dims"),
        ("import: an export of 64-D faces into a 128-D store", lambda: s.import_(export64), r"64.*128-D"),
    ]
    for what, fn, pattern in cases:
        def one(fn=fn, pattern=pattern):
            res = c.refuse(fn, F.Expect((ValueError, FileFormatError), pattern))
            if s.names != ["Ada"] or len(s.embeddings(FP)[0]) != 3:
                res["wrong_accepts"] += 1  # half written
            return res
        c.run("misfit", what, one)

    def saved_index_of_another_size():
        import warnings

        from facekit.store.index_file import gallery_from_store, gallery_path, save_gallery

        with env(FACEKIT_HOME=c.tmp / "misfit-home"):
            t = FaceStore(c.tmp / "misfit-big.sqlite3")
            t.add_faces("Cy", F.unit(rng, 1_100), model=FP)
            small = GalleryIndex(64, exact_max=0)
            small.add(F.unit(rng, 1_100, 64), np.arange(1, 1_101), "Someone")
            save_gallery(small, gallery_path(t, FP), overwrite=True)
            with warnings.catch_warnings(record=True) as w:
                warnings.simplefilter("always")
                index = gallery_from_store(t, FP, exact_max=0, progress=False)
            ok = index.dim == 128 and any("does not fit" in str(x.message) for x in w)
            return F.score(f"rebuilt: {ok}", wrong_accepts=int(not ok))
    c.run("misfit", "a saved gallery index of 64-D faces for a 128-D store", saved_index_of_another_size)


# --- files facekit writes -----------------------------------------------------------------------
def overwrite(c, F, quick: bool) -> None:
    from facekit.cli.main import main
    from facekit.recognition.identify import FaceIdentifier
    from facekit.store.db import FaceStore
    from facekit.store.index import GalleryIndex
    from facekit.store.index_file import save_gallery

    rng = np.random.default_rng(27)
    d = c.tmp / "overwrite"
    d.mkdir()
    s, t = FaceStore(d / "s.sqlite3"), FaceStore(d / "t.sqlite3")
    s.add_faces("Ada", F.unit(rng, 2), model=FP)
    t.add_faces("Bob", F.unit(rng, 2), model=FP)
    ident = FaceIdentifier().fit(F.unit(rng, 2), ["Cy", "Cy"])
    ix = GalleryIndex(128)
    ix.add(F.unit(rng, 2), [1, 2], "Ada")
    user_file = d / "notes.txt"
    user_file.write_text("the user's own notes")

    def cli_export(target):
        out = io.StringIO()
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(io.StringIO()):
            code = main(["export", str(target), "--store", str(s.path), "--json", "-q"])
        if code != 0:
            raise FileExistsError(json.loads(out.getvalue().strip().splitlines()[-1]).get("error", ""))
    writers = {"FaceIdentifier.save": lambda p: ident.save(p), "FaceStore.export": lambda p: s.export(p),
               "FaceStore.export(overwrite=None)": lambda p: s.export(p, overwrite=None),
               "save_gallery": lambda p: save_gallery(ix, p), "facekit export": cli_export}
    targets = {"another gallery's identifier": lambda p: FaceIdentifier().fit(F.unit(rng, 2), ["Dee", "Dee"]).save(p),
               "another store's export": lambda p: t.export(p, overwrite=True),
               "a file of the user's": lambda p: p.write_text("the user's own file"),
               "a face store": lambda p: FaceStore(p).close(),
               "a link to the user's notes": lambda p: p.symlink_to(user_file)}
    for wname, write in writers.items():
        for tname, make in targets.items():
            def one(write=write, make=make, tname=tname):
                target = Path(tempfile.mkdtemp(dir=d)) / "file.npz"
                make(target)
                before, notes = target.read_bytes(), user_file.read_bytes()
                res = c.refuse(lambda: write(target), F.Expect(FileExistsError, "Fix:|--force"))
                changed = target.read_bytes() != before or user_file.read_bytes() != notes or (
                    tname.startswith("a link") and not target.is_symlink())
                res["data_lost"] += int(changed)
                return res
            c.run("overwrite", f"{wname} onto {tname}", one)

    def asked():
        target = d / "asked.npz"
        FaceIdentifier().fit(F.unit(rng, 2), ["Dee", "Dee"]).save(target)
        ident.save(target, overwrite=True)
        s.export(d / "asked-export.npz")
        t.export(d / "asked-export.npz", overwrite=True)
        ok = FaceIdentifier.load(target).names == ["Cy"] and FaceStore(d / "u.sqlite3").import_(
            d / "asked-export.npz").people == ["Bob"]
        return F.score(f"replaced when asked: {ok}", unclear_errors=int(not ok))
    c.run("overwrite", "overwrite=True replaces (identifier, export)", asked)

    def failed_write(what, fn, target):
        def one():
            before = target.read_bytes()
            with mock.patch("os.fsync", side_effect=OSError(28, "No space left on device")):
                res = c.refuse(fn, F.Expect(OSError, "No space"))
            temps = [p.name for p in target.parent.iterdir() if p.name.startswith(f".{target.name}.")
                     and p.suffix == ".tmp"]
            res["data_lost"] += int(target.read_bytes() != before)
            res["wrong_accepts"] += len(temps)
            return res
        c.run("overwrite", f"{what}: the disk fills up mid-write", one)
    own = ident.save(d / "own.npz")
    failed_write("FaceIdentifier.save", lambda: ident.save(own), own)
    mine = s.export(d / "mine.npz")
    failed_write("FaceStore.export", lambda: s.export(mine, overwrite=True), mine)

    big = FaceStore(d / "big.sqlite3")
    big.add_faces("Eve", F.unit(rng, 60_000), model=FP)
    big.close()
    killer = ("import sys; from facekit.store.db import FaceStore; "
              "FaceStore(sys.argv[1]).export(sys.argv[2], overwrite=True)")
    for k in range(1 if quick else 3):
        def killed(k=k):
            target = d / f"killed-{k}.npz"
            t.export(target)  # the old file (Bob), from another store
            with FaceStore(d / "big.sqlite3") as b:
                b.export(target.with_name("x.npz"), overwrite=True)
            before = target.read_bytes()
            p = subprocess.Popen([sys.executable, "-c", killer, str(d / "big.sqlite3"), str(target)],
                                 env={**os.environ, "PYTHONPATH": str(ROOT)})
            time.sleep(random.Random(k).uniform(0.3, 1.5))
            p.send_signal(signal.SIGKILL)
            p.wait()
            after = target.read_bytes()
            whole = after == before or FaceStore(d / f"v{k}.sqlite3").import_(target).people == ["Eve"]
            return F.score(f"old file kept: {after == before}; whole: {whole}", data_lost=int(not whole))
        c.run("overwrite", f"kill -9 of a process exporting over a file, point {k + 1}", killed)


# --- forget ---------------------------------------------------------------------------------------
def _stage(c, F, tag: str, rng, models=(FP,)):
    """A store with 1,000 stand-ins, PERSON and KEEPER; for each model a trained saved index, an
    identifier and an export; returns (store path, outputs folder, PERSON's vectors)."""
    from facekit.store.db import FaceStore
    from facekit.store.index_file import refresh_gallery

    base = Path(tempfile.mkdtemp(prefix=f"forget-{tag}-", dir=c.tmp))
    store, outs = base / "store" / "faces.sqlite3", base / "outputs"
    outs.mkdir()
    vecs = []
    with FaceStore(store) as s:
        for m in models:
            dim = 512 if "512" in m else 128
            s.add_faces("Stand-ins", F.unit(rng, 1_000, dim), model=m)
            v = F.unit(rng, 5, dim)
            v[0] = -v[0]  # one face of them far from the rest
            s.add_faces(PERSON, v, model=m, consent="demo")
            s.add_faces(KEEPER, F.unit(rng, 5, dim), model=m)
            vecs += list(v)
            refresh_gallery(s, m, progress=False)
            s.identifier(m, threshold=0.8).save(outs / f"identifier-{m.replace('/', '_')}.npz")
        s.export(outs / "everyone.npz")
        s.export(outs / "person.npz", names=[PERSON])
    return store, outs, vecs


def _after_forget(F, store, outs, home, vecs, models=(FP,), note="") -> dict:
    """Score: files holding PERSON's name or vectors; KEEPER missing anywhere facekit keeps them."""
    from facekit.recognition.identify import FaceIdentifier
    from facekit.store.db import FaceStore
    from facekit.store.index_file import gallery_from_store

    left = leftovers([home, store.parent, outs], PERSON, vecs)
    lost = 0
    with FaceStore(store) as s:
        for m in models:
            x, names, _ = s.embeddings(m)
            keep = x[np.asarray(names) == KEEPER]
            lost += int(len(keep) != 5)
            if len(keep):
                lost += int(gallery_from_store(s, m, progress=False).identify(keep[:1], 0.01)[0] != [KEEPER])
        for f in outs.glob("identifier-*.npz"):
            lost += int(KEEPER not in FaceIdentifier.load(f, store=s).names)
    return F.score(f"{note}{len(left)} file(s) hold them" + (f": {left[:3]}" if left else ""),
                   **{COUNTER: len(left)}, data_lost=lost)


FORGET_CLI = "import sys; from facekit.store.db import FaceStore; FaceStore(sys.argv[1]).forget(sys.argv[2])"


def forget(c, F, quick: bool) -> None:
    from facekit.store.db import FaceStore

    rng = np.random.default_rng(28)

    def scenario(tag, act, models=(FP,)):
        def one():
            home = c.tmp / f"home-{tag}"
            with env(FACEKIT_HOME=home, FACEKIT_EXACT_MAX=0):
                store, outs, vecs = _stage(c, F, tag, rng, models)
                note = act(store, outs, home) or ""
                return _after_forget(F, store, outs, home, vecs, models, note)
        return one

    def api(store, outs, home):
        with FaceStore(store) as s:
            s.forget(PERSON)

    def command(store, outs, home):
        rc, doc, err = cli("forget", PERSON, "--store", store, home=home, FACEKIT_EXACT_MAX=0)
        return f"rc={rc}; "

    def interrupted(store, outs, home):
        import facekit.store.forget as fg

        with mock.patch.object(fg, "reach_derived", side_effect=KeyboardInterrupt), FaceStore(store) as s:
            with contextlib.suppress(KeyboardInterrupt):
                s.forget(PERSON)
        FaceStore(store).close()  # the next open completes it
        return "interrupted, reopened; "

    def killed(k):
        def act(store, outs, home):
            e = {**os.environ, "PYTHONPATH": str(ROOT)}
            p = subprocess.Popen([sys.executable, "-c", FORGET_CLI, str(store), PERSON], env=e,
                                 stderr=subprocess.DEVNULL)
            time.sleep(random.Random(k).uniform(0.2, 2.0))
            p.send_signal(signal.SIGKILL)
            p.wait()
            with FaceStore(store) as s:  # reopening completes an interrupted forget
                if PERSON in s.names:  # killed before it committed: the user asks again
                    s.forget(PERSON)
                    return "killed before the commit, asked again; "
            return "killed after the commit, reopened; "
        return act

    def reader(store, outs, home):
        import warnings

        con = sqlite3.connect(store)
        con.execute("BEGIN")
        con.execute("SELECT count(*) FROM faces").fetchone()  # holds a read snapshot: no checkpoint
        with warnings.catch_warnings(record=True) as w, FaceStore(store) as s:
            warnings.simplefilter("always")
            s.forget(PERSON)
        con.close()
        with contextlib.redirect_stdout(io.StringIO()):
            from facekit.cli.main import main

            main(["gc", "--store", str(store), "--json", "-q"])
        return f"warned: {any('write-ahead log' in str(x.message) for x in w)}; after `facekit gc`: "

    def deleted(store, outs, home):
        (outs / "everyone.npz").unlink()
        shutil.rmtree(home / "galleries")
        with FaceStore(store) as s:
            s.forget(PERSON)

    def replaced(store, outs, home):
        (outs / "everyone.npz").unlink()
        (outs / "everyone.npz").write_bytes(b"the user's own file now")
        with FaceStore(store) as s:
            s.forget(PERSON)
        kept = (outs / "everyone.npz").read_bytes() == b"the user's own file now"
        return "" if kept else "THE USER'S FILE WAS CHANGED; "

    def reindexed(store, outs, home):
        from facekit.store.records import FaceRecord, PhotoSource

        with FaceStore(store) as s:
            v = F.unit(rng, 1)
            s.add_faces(PERSON, v, model=FP, sources=[PhotoSource(f"/album/{PERSON}/a.jpg", "ab" * 32)])
            s.put_photo(f"/album/{PERSON}/b.jpg", 1, 1, "cd" * 32, FP, [FaceRecord(np.zeros(4), np.zeros((5, 2)),
                                                                                 0.9, F.unit(rng, 1)[0])])
            s.forget(PERSON)
            again = [s.put_photo(f"/album/{PERSON}/b.jpg", 1, 1, "cd" * 32, FP, []),
                     s.put_photo("/copy/a.jpg", 1, 1, "ab" * 32, FP, []),
                     s.put_photo(f"/album/{PERSON}/new.jpg", 1, 1, "ef" * 32, FP, [])]
        return f"cached again: {sum(again)} of 3; "

    plan = [("FaceStore.forget", api), ("facekit forget (a new process)", command),
            ("a forget interrupted before it reached the files", interrupted),
            ("the user deleted an export and the cache first", deleted),
            ("the user replaced an export by a file of their own", replaced),
            ("a reader holds the store open during forget", reader),
            ("their photos indexed again after forget", reindexed)]
    plan += [(f"kill -9 of a forgetting process, point {k + 1}", killed(k)) for k in range(1 if quick else 4)]
    for what, act in plan:
        c.run("forget", what, scenario(re.sub(r"\W+", "-", what)[:20], act))
    c.run("forget", "two models (128-D and 512-D), each with its index and identifier",
          scenario("two-models", api, models=(FP, "facenet512/faults")))


# --- concurrent writers ---------------------------------------------------------------------------
def _celeb_tree(c, split: str, people=None, n: int | None = 6) -> Path:
    from facekit.core.cache import celebrity_dir

    root = Path(tempfile.mkdtemp(prefix="celeb-", dir=c.tmp)) / split
    for who in people or sorted(p.name for p in (celebrity_dir() / split).iterdir() if p.is_dir()):
        (root / who).mkdir(parents=True)
        for p in sorted((celebrity_dir() / split / who).glob("*.jpg"))[:n]:
            (root / who / p.name).symlink_to(p)
    return root


def writers(c, F, quick: bool) -> None:
    from facekit.embedding.embedder import get_embedder
    from facekit.store.db import FaceStore
    from facekit.store.index_file import gallery_from_store, refresh_gallery

    rng = np.random.default_rng(29)
    people = ("ben_afflek", "madonna", "elton_john")
    val = _celeb_tree(c, "val", people)
    train = _celeb_tree(c, "train", people)
    album = _celeb_tree(c, "train", n=None)  # all 93 sample photos: an index run of several seconds
    for r in range(1 if quick else 2):
        def two_index(r=r):
            home = linked_home(c)
            store = Path(tempfile.mkdtemp(prefix="two-index-", dir=c.tmp)) / "faces.sqlite3"
            e = {**os.environ, "FACEKIT_HOME": str(home), "PYTHONPATH": str(ROOT), "TF_CPP_MIN_LOG_LEVEL": "3"}
            cmd = [sys.executable, "-m", "facekit", "index", str(val), "--store", str(store), "--json", "-q"]
            procs = [subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=e)
                     for _ in range(2)]
            errs = [p.communicate(timeout=900)[1] for p in procs]
            rcs = [p.returncode for p in procs]
            with FaceStore(store) as s:
                cached = s.photo_index(get_embedder())
                problems = s.check()
            n = sum(1 for _ in val.rglob("*.jpg"))
            return F.score(f"rcs {rcs}, {len(cached)} of {n} photos cached, integrity {problems or 'ok'}"
                           + "".join(f"; {e.strip()[-120:]}" for e, rc in zip(errs, rcs) if rc != 0),
                           data_lost=n - len(cached) + len(problems),
                           unclear_errors=sum(rc != 0 for rc in rcs))
        c.run("writers", f"two facekit index runs on one store, round {r + 1}", two_index)

        def index_and_forget(r=r):
            home = linked_home(c)
            store = Path(tempfile.mkdtemp(prefix="index-forget-", dir=c.tmp)) / "faces.sqlite3"  # searched whole
            base = ("--store", store)
            for who in ("ben_afflek", "madonna"):
                rc, _, err = cli("enrol", who, *sorted((train / who).glob("*.jpg")), *base, home=home)
                if rc != 0:
                    return F.score(f"enrol failed: {err[-200:]}", unclear_errors=1)
            with FaceStore(store) as s:
                x, names, _ = s.embeddings(get_embedder())
                vecs = x[np.asarray(names) == "ben_afflek"]
            e = {**os.environ, "FACEKIT_HOME": str(home), "PYTHONPATH": str(ROOT), "TF_CPP_MIN_LOG_LEVEL": "3"}
            idx = subprocess.Popen([sys.executable, "-m", "facekit", "index", str(album), *map(str, base), "-q"],
                                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=e)
            time.sleep(random.Random(r).uniform(0.5, 4.0))  # the index run is loading or indexing
            during = idx.poll() is None
            rc_f, doc, err = cli("forget", "ben_afflek", *base, home=home)
            during &= idx.poll() is None
            idx.wait(timeout=900)
            left = leftovers([home, store.parent], "ben_afflek", vecs) if rc_f == 0 else ["forget failed: " + err[-200:]]
            with FaceStore(store) as s:
                kept = "madonna" in s.names and not s.check()
            return F.score(f"overlapped: {during}; forget rc={rc_f}, index rc={idx.returncode}; {len(left)} file(s) "
                           f"hold them {left[:2]}",
                           **{COUNTER: len(left)}, data_lost=int(not kept))
        c.run("writers", f"facekit index with facekit forget at the same time, round {r + 1}", index_and_forget)

    for r in range(2 if quick else 4):
        def identify_and_forget(r=r):
            home = c.tmp / f"home-ident-{r}"
            with env(FACEKIT_HOME=home, FACEKIT_EXACT_MAX=0):
                store, outs, vecs = _stage(c, F, f"ident-{r}", rng)
                for f in (home / "galleries").glob("*.npz"):  # no saved index: identify trains (~1 s) ...
                    f.unlink()
                a, b = FaceStore(store), FaceStore(store)
                t = threading.Thread(target=lambda: gallery_from_store(a, FP, progress=False))
                t.start()
                time.sleep(random.Random(r).uniform(0.0, 0.3))
                b.forget(PERSON)  # ... and this forget commits and finishes meanwhile: identify must not save
                t.join()
                a.close(), b.close()
                return _after_forget(F, store, outs, home, vecs)
        c.run("writers", f"identify saving its index while forget runs, round {r + 1}", identify_and_forget)

    def two_enrolments():
        home = c.tmp / "home-two-enrol"
        with env(FACEKIT_HOME=home, FACEKIT_EXACT_MAX=0):
            store = c.tmp / "two-enrol.sqlite3"
            with FaceStore(store) as s:
                s.add_faces("Stand-ins", F.unit(rng, 1_000), model=FP)
            x = {n: F.unit(rng, 3) for n in ("Ann", "Bea")}

            def enrol(n):
                with FaceStore(store) as s:
                    s.add_faces(n, x[n], model=FP)
                    refresh_gallery(s, FP, progress=False)
            ts = [threading.Thread(target=enrol, args=(n,)) for n in x]
            [t.start() for t in ts]
            [t.join() for t in ts]
            with FaceStore(store) as s:
                got = {n: gallery_from_store(s, FP, progress=False).identify(v[:1], 0.01)[0][0] for n, v in x.items()}
            return F.score(f"named {got}", data_lost=sum(got[n] != n for n in x))
    c.run("writers", "two enrolments refreshing the saved index at once", two_enrolments)


# --- running --------------------------------------------------------------------------------------
def plan(c, F, quick: bool) -> dict:
    """``{kind: a callable running it}`` for ``faults.campaign``'s plan."""
    fns = {"walks": walks, "large": large, "kinds": kinds, "misfit": misfit, "overwrite": overwrite,
           "forget": forget, "writers": writers}
    return {k: (lambda fn=fn: fn(c, F, quick)) for k, fn in fns.items()}


def main() -> None:
    import argparse

    sys.path.insert(0, str(Path(__file__).resolve().parent))
    import faults as F

    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--only", help=f"comma-separated kinds of {KINDS}")
    ap.add_argument("--quick", action="store_true")
    a = ap.parse_args()
    t0 = time.perf_counter()
    tmp = Path(tempfile.mkdtemp(prefix="fk-faults25-"))
    c = F.Campaign(tmp, a.quick)
    todo = plan(c, F, a.quick)
    for kind in (a.only.split(",") if a.only else KINDS):
        print(f"--- {kind}", flush=True)
        todo[kind]()
    shutil.rmtree(tmp, ignore_errors=True)
    print(json.dumps(c.result(time.perf_counter() - t0)))


if __name__ == "__main__":
    main()
