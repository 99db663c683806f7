"""Fault campaign (issue 13): break things on purpose and count what the user would lose.

Each fault is printed as it runs. The last line is one JSON object: ``faults_tried``,
``data_lost`` (enrolled faces missing after a fault, without an error saying so),
``wrong_accepts`` (strangers given a name because of a fault), ``unclear_errors`` (errors that
name neither the file nor the fix), ``seconds``, and ``failures`` (which faults missed, why).
Targets: faults_tried >= 60, data_lost == 0, wrong_accepts == 0, unclear_errors == 0.

Kinds (``--only KIND`` runs one; ``--quick`` runs fewer repetitions, as tests/test_faults.py does):
kill9, concurrent, notebooks, store_file, export_file, identifier_file, names, values, frames,
bomb, caches (sdist, model, ONNX, LFW cache: each in a temporary FACEKIT_HOME, never the real one).
"""

from __future__ import annotations

import argparse
import io
import json
import os
import random
import shutil
import signal
import sqlite3
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

FP = "facenet128/faults"
HOSTILE_NAMES = ["", " ", "../x", "/abs/path", "a/b", "a\\b", ".", "..", ".hidden", "a\nb", "nul\x00byte",
                 "esc\x1b[31m", "rtl\u202eexe.jpg", "x" * 200, "unknown", "singletons", "person_01", "Person_12",
                 "CON", "a:b", "...", "in\ttab"]


def unit(rng, n, d=128):
    x = rng.normal(size=(n, d)).astype(np.float32)
    return x / np.linalg.norm(x, axis=1, keepdims=True)


def clear(msg: str, path=None) -> bool:
    """An error is clear when it names the file or says how to fix it."""
    return "Fix" in msg or "fix" in msg.split(":")[-1] or (path is not None and str(path) in msg)


class Campaign:
    def __init__(self, tmp: Path, quick: bool = False):
        self.tmp, self.quick = tmp, quick
        self.tried = self.lost = self.wrong = self.unclear = 0
        self.failures: list[str] = []

    def run(self, kind: str, what: str, fn) -> None:
        """``fn()`` returns ``(lost, wrong, unclear, note)``; an exception escaping it is a failure."""
        self.tried += 1
        t = time.perf_counter()
        try:
            lost, wrong, unclear, note = fn()
        except Exception as exc:  # noqa: BLE001 - an escaped exception is what we count
            lost, wrong, unclear, note = 0, 0, int(not clear(str(exc))), f"raised {type(exc).__name__}: {exc}"[:300]
        self.lost += lost
        self.wrong += wrong
        self.unclear += unclear
        bad = lost or wrong or unclear
        if bad:
            self.failures.append(f"{kind}: {what}: lost={lost} wrong={wrong} unclear={unclear} ({note})"[:400])
        print(f"[{self.tried:3d}] {kind:15s} {what[:60]:60s} {'FAIL' if bad else 'ok  '} "
              f"{time.perf_counter() - t:5.1f}s  {note[:100]}", flush=True)

    def expect_error(self, fn, types, path=None) -> tuple[int, int, int, str]:
        """The fault must raise one of ``types`` with a clear message."""
        try:
            fn()
        except types as exc:
            return 0, 0, int(not clear(str(exc), path)), f"{type(exc).__name__}: {str(exc)[:90]}"
        return 0, 1, 0, "accepted silently"


# --- processes --------------------------------------------------------------------------------

WRITER = """
import sys, numpy as np
from facekit.store.db import FaceStore
s = FaceStore(sys.argv[1])
rng = np.random.default_rng(int(sys.argv[3]))
for i in range(int(sys.argv[4])):
    ids = s.add_faces(f"{sys.argv[2]} {i}", rng.normal(size=(3, 128)).astype(np.float32), model=sys.argv[5],
                      sources="camera")
    print(*ids, flush=True)
"""


def writer(path, who, seed, n):
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    return subprocess.Popen([sys.executable, "-c", WRITER, str(path), who, str(seed), str(n), FP],
                            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True, env=env)


def committed(out: str) -> set[int]:
    return {int(v) for line in out.splitlines() if len(line.split()) == 3 for v in line.split()}


def kill9(c: Campaign, n: int) -> None:
    from facekit.store.db import FaceStore

    path = c.tmp / "kill9.sqlite3"
    FaceStore(path).close()
    rng = random.Random(9)
    done: set[int] = set()
    for k in range(n):
        def one(k=k):
            p = writer(path, f"kill{k}", k, 10**6)
            time.sleep(rng.uniform(0.3, 1.5))  # a random point: import, open, mid-transaction, between
            p.send_signal(signal.SIGKILL)
            done.update(committed(p.communicate()[0]))
            s = FaceStore(path)
            stored = set(s.embeddings(FP)[2].tolist())
            problems = s.check()
            s.close()
            partial = len(stored) % 3  # 3 shots per transaction: never a half enrolment
            return len(done - stored), 0, int(bool(problems)), f"{len(stored)} faces kept, {len(done)} committed, " \
                                                               f"half={partial}, integrity={'ok' if not problems else problems[:1]}"
        c.run("kill9", f"kill -9 of an enrolling process, point {k + 1}", one)


def concurrent(c: Campaign, rounds: int) -> None:
    from facekit.store.db import FaceStore

    for r in range(rounds):
        def one(r=r):
            path = c.tmp / f"conc{r}.sqlite3"
            procs = [writer(path, f"w{r}-{k}", 100 * r + k, 20) for k in range(4)]
            ids = set().union(*(committed(p.communicate(timeout=300)[0]) for p in procs))
            with FaceStore(path) as s:
                stored = set(s.embeddings(FP)[2].tolist())
                people = len(s.people())
            return len(ids - stored) + max(0, 80 - people) * 3, 0, 0, f"{people} people, {len(stored)} faces"
        c.run("concurrent", f"4 processes enrolling at once, round {r + 1}", one)


def notebooks(c: Campaign, real: bool) -> None:
    """Re-run orders of notebooks 04 and 06, through the calls the notebooks make: 06 adds what the
    webcam enrolled (``store.add_faces(..., sources="camera")``), 04 adds its people
    (``enrol_faceset``). ``real``: also run the notebooks themselves headless in small mode."""
    from facekit.data.folders import FaceSet
    from facekit.detection.detector import Face
    from facekit.store.enrol import enrol_faceset
    from facekit.store.db import FaceStore

    rng = np.random.default_rng(4)
    photos = c.tmp / "nb-photos"
    photos.mkdir(exist_ok=True)
    people = {}
    for name in ("ada", "bob"):
        paths = []
        for i in range(3):
            p = photos / f"{name}{i}.jpg"
            p.write_bytes(os.urandom(64))
            paths.append(str(p))
        people[name] = paths
    labels = [n for n, ps in people.items() for _ in ps]
    box = Face(np.array([1.0, 2, 40, 50]), np.zeros((5, 2)), 0.99)
    fs = FaceSet(np.zeros((6, 160, 160, 3), np.uint8), unit(rng, 6), np.asarray(labels),
                 [p for ps in people.values() for p in ps], [box] * 6)
    webcam = {"me (webcam)": unit(rng, 5)}

    def nb04(store):
        enrol_faceset(store, fs, FP)

    def nb06(store):
        for name, e in webcam.items():
            store.add_faces(name, e, model=FP, sources="camera")

    for order in ("06 04 06", "04 06 04", "04 04", "06 06", "06 04 04 06"):
        def one(order=order):
            path = c.tmp / f"nb-{order.replace(' ', '')}.sqlite3"
            expect = 0
            for step in order.split():
                with FaceStore(path) as s:
                    (nb04 if step == "04" else nb06)(s)
            with FaceStore(path) as s:
                got = {p.name: p.faces for p in s.people()}
            want = {}
            if "04" in order:
                want.update({"ada": 3, "bob": 3})
            if "06" in order:
                want["me (webcam)"] = 5
            expect = sum(want.values())
            lost = sum(max(0, want[n] - got.get(n, 0)) for n in want)
            dup = sum(got.values()) - expect
            return lost, 0, 0, f"{got}" + (f" DUPLICATES {dup}" if dup else "")
        c.run("notebooks", f"re-run order {order}", one)
    if real:
        notebook_orders(c)


def notebook_orders(c: Campaign) -> None:
    sys.path.insert(0, str(ROOT / "tests"))
    from notebook_runner import NOTEBOOKS, run_notebook

    from facekit.core.cache import celebrity_dir
    from facekit.store.db import FaceStore

    store = c.tmp / "nb-real.sqlite3"
    own = c.tmp / "own-people"
    for name in ("madonna", "elton_john"):
        (own / name).mkdir(parents=True, exist_ok=True)
        for p in sorted((celebrity_dir() / "train" / name).glob("*.jpg"))[:3]:
            shutil.copy(p, own / name / p.name)
    nb04 = next(NOTEBOOKS.glob("04_*.ipynb"))
    nb06 = next(NOTEBOOKS.glob("06_*.ipynb"))
    seen: dict[str, int] = {}
    for i, (nb, params) in enumerate(((nb06, {"SMALL": True}), (nb04, {"SMALL": True, "PEOPLE_DIR": str(own)}),
                                      (nb06, {"SMALL": True}))):
        def one(nb=nb, params=params):
            run_notebook(nb, params, timeout=900, env={"FACEKIT_STORE": str(store)})
            with FaceStore(store) as s:
                now = {p.name: p.faces for p in s.people()}
            lost = sum(max(0, k - now.get(n, 0)) for n, k in seen.items())
            seen.update(now)
            return lost, 0, 0, f"{now}"
        c.run("notebooks", f"real notebook run {i + 1} of 06 -> 04 -> 06: {nb.stem[:2]}", one)


# --- files ------------------------------------------------------------------------------------

def damaged_copies(src: Path, dst_dir: Path, seed: int, n: int) -> list[tuple[str, Path]]:
    """Truncated, byte-flipped, zeroed and garbage versions of ``src``."""
    data = src.read_bytes()
    rng = random.Random(seed)
    out = []
    cuts = [0, 1, 100, len(data) // 2, len(data) - 1][: max(2, n)]
    for cut in cuts:
        out.append((f"truncated to {cut} bytes", data[:cut]))
    for k in range(n):
        b = bytearray(data)
        for _ in range(8):
            i = rng.randrange(len(b))
            b[i] ^= 1 << rng.randrange(8)
        out.append((f"8 random bits flipped (seed {k})", bytes(b)))
    out.append(("all garbage", os.urandom(len(data))))
    paths = []
    for i, (what, b) in enumerate(out):
        p = dst_dir / f"{src.stem}-damaged{i}{src.suffix}"
        p.write_bytes(b)
        paths.append((what, p))
    return paths


def store_file(c: Campaign, n: int) -> None:
    """Damaged store files: a clear error, or the undamaged faces with a warning; never a stranger named."""
    import warnings

    from facekit.store.db import FaceStore, StoreError

    rng = np.random.default_rng(5)
    src = c.tmp / "store-src.sqlite3"
    with FaceStore(src) as s:
        for k in range(20):
            s.add_faces(f"p{k}", unit(rng, 5), model=FP)
    con = sqlite3.connect(src)
    con.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    con.close()
    d = c.tmp / "damaged-store"
    d.mkdir(exist_ok=True)
    stranger = unit(np.random.default_rng(99), 20)
    for what, path in damaged_copies(src, d, 1, n):
        def one(path=path):
            try:
                with warnings.catch_warnings(record=True) as w:
                    warnings.simplefilter("always")
                    with FaceStore(path) as s:
                        x, names, ids = s.embeddings(FP)
                        ident = s.identifier(FP, allow_empty=True)
                named = 0 if ident is None else int((ident.predict(stranger) != "unknown").sum())
                silent = 100 - len(ids) if not w else 0
                return max(0, silent), named, 0, f"opened: {len(ids)} faces, {len(w)} warning(s)"
            except StoreError as exc:
                return 0, 0, int(not clear(str(exc), path)), f"StoreError: {str(exc)[:80]}"
        c.run("store_file", f"store file {what}", one)


def _tampered(src: Path, dst: Path, **change) -> Path:
    with np.load(src, allow_pickle=False) as z:
        arrays = {k: z[k] for k in z.files}
    meta = json.loads(str(arrays["metadata"]))
    meta.update(change.pop("meta", {}))
    arrays.update(change)
    arrays["metadata"] = np.asarray(json.dumps(meta))
    np.savez(dst, **arrays)
    return dst


def tampered_values(key: str, x: np.ndarray) -> list[tuple[str, dict]]:
    nan, inf, ninf = x.copy(), x.copy(), x.copy()
    nan[0, 0], inf[-1, 3], ninf[1, 1] = np.nan, np.inf, -np.inf
    return [("NaN in embeddings", {key: nan}), ("inf in embeddings", {key: inf}), ("-inf", {key: ninf}),
            ("not unit length", {key: x * 1.5}), ("all zeros", {key: np.zeros_like(x)}),
            ("wrong width", {key: x[:, :100]}), ("1-D", {key: x.ravel()}), ("3-D", {key: x[None]}),
            ("fewer rows than labels", {key: x[:-1]}), ("int8", {key: (x * 100).astype(np.int8)}),
            ("strings", {key: np.asarray(["a"] * len(x))})]


def export_file(c: Campaign, n: int) -> None:
    from facekit.core.exchange import FileFormatError
    from facekit.store.db import FaceStore

    rng = np.random.default_rng(6)
    with FaceStore(c.tmp / "exp-src.sqlite3") as s:
        s.add_faces("Ada", unit(rng, 4), model=FP)
        s.add_faces("Bob", unit(rng, 3), model=FP)
        src = s.export(c.tmp / "share.npz", overwrite=True)
    d = c.tmp / "damaged-export"
    d.mkdir(exist_ok=True)
    x = np.load(src)["emb_0"]
    cases = [(w, p) for w, p in damaged_copies(src, d, 2, n)]
    bad = tampered_values("emb_0", x) + [
        ("hostile label ../x", {"labels_0": np.asarray(["../x"] * len(x))}),
        ("labels of someone not listed", {"labels_0": np.asarray(["Eve"] * len(x))}),
        ("threshold NaN", {"meta": {"threshold": "NaN"}}), ("threshold -1", {"meta": {"threshold": -1}}),
        ("threshold 9", {"meta": {"threshold": 9}}), ("version 99", {"meta": {"version": 99}}),
        ("people not a list", {"meta": {"people": "Ada"}}), ("models missing", {"meta": {"models": None}}),
        ("object array", {"labels_0": np.asarray(["Ada"] * len(x), dtype=object)})]
    for i, (what, change) in enumerate(bad):
        p = d / f"tampered{i}.npz"
        try:
            _tampered(src, p, **change)
        except Exception:  # noqa: BLE001 - np.savez of an object array is itself the fault we want on disk
            np.savez(p, metadata=np.asarray(["x"], dtype=object))
        cases.append((what, p))
    for what, path in cases:
        def one(path=path):
            t = FaceStore(c.tmp / f"imp-{path.stem}.sqlite3")
            r = c.expect_error(lambda: t.import_(path), (FileFormatError, FileNotFoundError), path)
            if r[1] == 0 and t.people():
                r = (0, 1, r[2], r[3] + " but people were imported")
            t.close()
            return r
        c.run("export_file", f"import of an export: {what}", one)


def identifier_file(c: Campaign, n: int) -> None:
    from facekit.recognition.identify import FaceIdentifier, IdentifierFormatError

    rng = np.random.default_rng(7)
    ident = FaceIdentifier().fit(unit(rng, 6), ["Ada"] * 3 + ["Bob"] * 3)
    src = ident.save(c.tmp / "gallery.npz")
    d = c.tmp / "damaged-gallery"
    d.mkdir(exist_ok=True)
    x = np.load(src)["gallery"]
    cases = damaged_copies(src, d, 3, n)
    coef = np.load(src)["coef"].copy()
    coef[0, 0] = np.nan
    for i, (what, change) in enumerate(tampered_values("gallery", x) + [
            ("NaN coefficient", {"coef": coef}), ("threshold NaN", {"meta": {"threshold": "NaN"}}),
            ("threshold -0.5", {"meta": {"threshold": -0.5}}), ("hostile class name", {
                "classes": np.asarray(["../Ada", "Bob"]), "gallery_labels": np.asarray(["../Ada"] * 3 + ["Bob"] * 3)})]):
        cases.append((what, _tampered(src, d / f"tampered{i}.npz", **change)))
    stranger = unit(np.random.default_rng(98), 10)
    for what, path in cases:
        def one(path=path):
            try:
                got = FaceIdentifier.load(path)
            except (IdentifierFormatError, FileNotFoundError) as exc:
                return 0, 0, int(not clear(str(exc), path)), f"{type(exc).__name__}: {str(exc)[:80]}"
            named = int((got.predict(stranger) != "unknown").sum())
            return 0, named, 0, f"loaded (harmless change), strangers named: {named}"
        c.run("identifier_file", f"FaceIdentifier.load: {what}", one)


def names(c: Campaign) -> None:
    from facekit.data.folders import scan_identities
    from facekit.recognition.identify import FaceIdentifier
    from facekit.store.db import FaceStore

    rng = np.random.default_rng(8)
    s = FaceStore(c.tmp / "names.sqlite3")
    for name in HOSTILE_NAMES:
        c.run("names", f"store.add_faces({name!r:.30})", lambda name=name: c.expect_error(
            lambda: s.add_faces(name, unit(rng, 1), model=FP), ValueError))
        c.run("names", f"FaceIdentifier.fit({name!r:.30})", lambda name=name: c.expect_error(
            lambda: FaceIdentifier().fit(unit(rng, 2), [name, name]), ValueError))
    root = c.tmp / "people-hostile"
    for name in ("person_01", "singletons", "unknown", ".hidden", "a b\x1b"):
        (root / name).mkdir(parents=True, exist_ok=True)
        (root / name / "x.jpg").write_bytes(b"\xff\xd8")

    def folders():
        ids, skipped, _ = scan_identities(root)
        named = [n for n in ids]
        return 0, len(named), 0, f"enrolled {named}; refused {len(skipped)} folder(s)"
    c.run("names", "folder names person_01/singletons/unknown/escape", folders)
    wrong = int(bool(s.people()))
    c.run("names", "nothing stored after all hostile names", lambda: (0, wrong, 0, f"{s.names}"))


def values(c: Campaign) -> None:
    """NaN / inf in a live identifier (threshold, gallery, coefficients, query) fails closed."""
    from facekit.recognition.identify import FaceIdentifier

    rng = np.random.default_rng(10)
    x = unit(rng, 10)
    base = FaceIdentifier().fit(x, ["Ada"] * 5 + ["Bob"] * 5)
    q = x[:4].copy()  # enrolled faces: a broken identifier must still not name them

    def case(mutate, query=q):
        f = FaceIdentifier().fit(x, ["Ada"] * 5 + ["Bob"] * 5)
        mutate(f)
        a = f.predict(query)
        # the live loop asks for closed-set names and applies its own threshold ("not score <= th")
        names, score = f.predict_scores(query, reject=False)
        b = np.where(score <= f.threshold_, names, "unknown")
        return 0, int((a != "unknown").sum() + (b != "unknown").sum()), 0, f"{a.tolist()} / {b.tolist()}"
    muts = {"threshold NaN": lambda f: setattr(f, "threshold", float("nan")),
            "gallery NaN": lambda f: f.gallery_.__setitem__((0, 0), np.nan),
            "gallery inf (all rows)": lambda f: f.gallery_.__setitem__((slice(None), 0), np.inf),
            "coefficient NaN": lambda f: f.coef_.__setitem__((0, 0), np.nan),
            "intercept inf": lambda f: f.intercept_.__setitem__(0, np.inf)}
    for what, m in muts.items():
        c.run("values", what, lambda m=m: case(m) if "threshold" not in str(m) else case(m))
    for what, v in (("query NaN", np.nan), ("query inf", np.inf)):
        qq = q.copy()
        qq[:, 0] = v
        c.run("values", what, lambda qq=qq: (0, int((base.predict(qq) != "unknown").sum()), 0, "")
              if True else None)


def frames(c: Campaign) -> None:
    """Garbage and oversized frames through the live path (LiveRecognizer.process_jpeg)."""
    import resource

    from PIL import Image

    from facekit.recognition.identify import FaceIdentifier
    from facekit.live import LiveRecognizer

    rng = np.random.default_rng(11)
    rec = LiveRecognizer(FaceIdentifier().fit(unit(rng, 4), ["Ada"] * 2 + ["Bob"] * 2))
    good = io.BytesIO()
    Image.fromarray(np.full((240, 320, 3), 128, np.uint8)).save(good, "JPEG")
    bomb = io.BytesIO()
    Image.new("L", (12000, 12000)).save(bomb, "PNG")
    tall = io.BytesIO()
    Image.new("RGB", (1, 30000)).save(tall, "PNG")
    cases = [("empty bytes", b""), ("garbage", os.urandom(5000)), ("truncated JPEG", good.getvalue()[:300]),
             ("JPEG header only", good.getvalue()[:2]), ("text", b"hello " * 100),
             ("30 MB of noise", os.urandom(30 * 2**20)), ("1x30000 PNG", tall.getvalue()),
             ("12000x12000 PNG bomb (140 KB)", bomb.getvalue()), ("grey 320x240 JPEG", good.getvalue())]
    rec.process_jpeg(good.getvalue())  # warm-up: models loaded before memory is measured
    for what, data in cases:
        def one(data=data):
            before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
            r = rec.process_jpeg(data)
            grew = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024 - before
            named = sum(1 for f in getattr(r, "faces", []) if getattr(f, "name", "unknown") not in ("unknown", "..."))
            msg = str(getattr(r, "message", ""))
            unclear = int(bool(msg) and grew > 200)  # decoded a bomb instead of refusing it
            return 0, named, unclear, f"message={msg[:60]!r} peak memory +{grew:.0f} MB"
        c.run("frames", f"live frame: {what}", one)


def bomb(c: Campaign) -> None:
    from PIL import Image

    from facekit.core.images import ImageLoadError, decode_image_bytes, load_image

    p = c.tmp / "bomb.png"
    Image.new("L", (12000, 12000)).save(p, "PNG")
    big = c.tmp / "bomb-big.png"
    Image.new("L", (20000, 20000)).save(big, "PNG")
    c.run("bomb", "load_image of a 12000x12000 PNG of 140 KB", lambda: c.expect_error(lambda: load_image(p), ImageLoadError, p))
    c.run("bomb", "load_image of a 20000x20000 PNG", lambda: c.expect_error(lambda: load_image(big), ImageLoadError, big))
    c.run("bomb", "decode_image_bytes of the bomb", lambda: c.expect_error(
        lambda: decode_image_bytes(p.read_bytes()), ImageLoadError))


# --- caches of other modules, in a temporary FACEKIT_HOME -------------------------------------

def _home_with(c: Campaign, rel: str, damage) -> Path:
    """A FACEKIT_HOME whose files link to the real cache, except ``rel``: a damaged copy."""
    from facekit.core.cache import cache_dir

    real = cache_dir()
    home = Path(tempfile.mkdtemp(prefix="fk-home-", dir=c.tmp))
    for f in real.rglob("*"):
        if f.is_file() and not f.name.endswith(".lock"):
            dst = home / f.relative_to(real)
            dst.parent.mkdir(parents=True, exist_ok=True)
            if str(f.relative_to(real)) == rel:
                dst.write_bytes(damage(f.read_bytes()))
            else:
                dst.symlink_to(f)
    return home


def _child(home: Path, code: str, timeout: int) -> tuple[int, str]:
    env = {**os.environ, "FACEKIT_HOME": str(home), "PYTHONPATH": str(ROOT), "PIP_RETRIES": "0",
           "PIP_TIMEOUT": "3", "TF_CPP_MIN_LOG_LEVEL": "3"}
    try:
        p = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=timeout)
        return p.returncode, p.stdout + p.stderr
    except subprocess.TimeoutExpired:
        return -1, "timed out"


def caches(c: Campaign, onnx: bool) -> None:
    from facekit.core import cache as registry

    trunc = lambda b: b[: len(b) // 2]  # noqa: E731
    flip = lambda b: b[:1000] + bytes([b[1000] ^ 0xFF]) + b[1001:]  # noqa: E731
    sdist = f"downloads/{registry.SDIST_FILE}"
    for what, dmg in (("truncated", trunc), ("one byte changed", flip)):
        def one(dmg=dmg):
            home = _home_with(c, sdist, dmg)
            rc, out = _child(home, "from facekit.core.cache import fetch_sdist; print('OK', fetch_sdist())", 240)
            if rc == 0:
                ok = registry.sha256sum(home / sdist) == registry.SDIST_SHA256
                return 0, int(not ok), 0, "re-fetched and verified" if ok else "DAMAGED FILE USED"
            return 0, 0, int(not clear(out)), out.strip().splitlines()[-1][:100] if out.strip() else f"rc={rc}"
        c.run("caches", f"sdist {what}", one)
    h5 = "models/facenet_keras_128.h5"
    for what, dmg in (("truncated", trunc), ("one byte changed", flip)):
        def one(dmg=dmg):
            home = _home_with(c, h5, dmg)
            rc, out = _child(home, "from facekit.core.cache import model_path, sha256sum; p = model_path(); "
                                   "print('SHA', sha256sum(p))", 240)
            ok = rc == 0 and f"SHA {registry.H5_SHA256}" in out
            return 0, int(rc == 0 and not ok), int(rc != 0 and not clear(out)), "re-extracted, verified" if ok else out[-120:]
        c.run("caches", f"Keras model file {what}", one)
    lfw = sorted((registry.cache_dir() / "lfw").glob("embeddings-*.npz"))
    if lfw:
        rel = f"lfw/{lfw[0].name}"
        for what, dmg in (("truncated", trunc), ("garbage", lambda b: os.urandom(len(b)))):
            def one(dmg=dmg):
                home = _home_with(c, rel, dmg)
                code = (f"from facekit.teach.lfw.cache import RowTable; from pathlib import Path; "
                        f"t = RowTable(Path({str(home / rel)!r}), {{}}); print('ROWS', len(t.rows))")
                rc, out = _child(home, code, 120)
                ok = rc == 0 and "ROWS 0" in out and "ignoring damaged" in out
                return 0, int(rc == 0 and "ROWS 0" not in out), int(not ok and not clear(out)), out.strip()[-100:]
            c.run("caches", f"LFW embedding cache {what}", one)
    if onnx:
        comp = sorted((registry.cache_dir() / "compiled").glob("facenet128-*-*-*.onnx"))
        if comp:
            rel = f"compiled/{comp[-1].name}"
            from facekit.embedding.embedder import get_embedder

            crop = np.random.default_rng(0).integers(0, 255, (1, 160, 160, 3), dtype=np.uint8)
            ref = get_embedder().embed(crop)[0]
            np.save(c.tmp / "crop.npy", crop)
            for what, dmg in (("truncated", trunc), ("one byte changed", flip)):
                def one(dmg=dmg):
                    home = _home_with(c, rel, dmg)
                    code = (f"import numpy as np; from facekit.embedding.embedder import Embedder; "
                            f"e = Embedder().embed(np.load({str(c.tmp / 'crop.npy')!r}))[0]; print('EMB', [float(v) for v in e[:8]])")
                    rc, out = _child(home, code, 540)
                    if rc != 0:
                        return 0, 0, int(not clear(out)), out.strip()[-100:]
                    got = np.array(json.loads(out.split("EMB", 1)[1].strip().splitlines()[0]))
                    ok = np.allclose(got, ref[:8], atol=1e-4)
                    return 0, int(not ok), 0, "rebuilt, same embedding" if ok else "WRONG EMBEDDING"
                c.run("caches", f"compiled ONNX model {what}", one)


KINDS = ("kill9", "concurrent", "notebooks", "store_file", "export_file", "identifier_file", "names", "values",
         "frames", "bomb", "caches")


def campaign(only: str | None = None, quick: bool = False, real_notebooks: bool = False,
             onnx: bool = True) -> dict:
    t0 = time.perf_counter()
    tmp = Path(tempfile.mkdtemp(prefix="fk-faults-"))
    c = Campaign(tmp, quick)
    n = 2 if quick else 6
    plan = {"kill9": lambda: kill9(c, 3 if quick else 22), "concurrent": lambda: concurrent(c, 1 if quick else 2),
            "notebooks": lambda: notebooks(c, real_notebooks), "store_file": lambda: store_file(c, n),
            "export_file": lambda: export_file(c, n), "identifier_file": lambda: identifier_file(c, n),
            "names": lambda: names(c), "values": lambda: values(c), "frames": lambda: frames(c),
            "bomb": lambda: bomb(c), "caches": lambda: caches(c, onnx and not quick)}
    for kind in (KINDS if only is None else only.split(",")):
        print(f"--- {kind}", flush=True)
        plan[kind]()
    shutil.rmtree(tmp, ignore_errors=True)
    return {"faults_tried": c.tried, "data_lost": c.lost, "wrong_accepts": c.wrong,
            "unclear_errors": c.unclear, "seconds": round(time.perf_counter() - t0, 1), "failures": c.failures}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--only", help=f"comma-separated kinds of {KINDS}")
    ap.add_argument("--quick", action="store_true", help="fewer repetitions (the tests' mode)")
    ap.add_argument("--notebooks", action="store_true", help="also run notebooks 06 -> 04 -> 06 headless")
    ap.add_argument("--no-onnx", action="store_true", help="skip the compiled-ONNX faults (they rebuild the model)")
    a = ap.parse_args()
    res = campaign(a.only, a.quick, a.notebooks, not a.no_onnx)
    print(json.dumps(res))


if __name__ == "__main__":
    main()
