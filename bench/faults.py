"""Fault campaign (issue 13; honest scoring, issue 27): break things on purpose and count what the
user would lose.

Each fault is printed as it runs. The last line is one JSON object: ``faults_tried``, then one count
per entry of :data:`COUNTERS`:

- ``data_lost``: enrolled faces missing after a fault without an error saying so; a store that
  cannot be reopened after a crash (every committed face of it is lost); a half-written enrolment;
- ``wrong_accepts``: a wrong result accepted silently: a stranger given a name, a damaged file
  used, an import that went through, duplicate faces after re-runs;
- ``unclear_errors``: an error the check did not declare (its kind and a message pattern, see
  :class:`Expect`), a declared kind whose message names neither the file nor the fix, or any
  other exception escaping a check (a crash is never "clear");
- ``forgotten_leftovers``: files facekit wrote that still hold a forgotten person's name or one of
  their embedding vectors, found by a byte search after ``forget`` (``bench/faults_forget.py``);

and ``seconds`` and ``failures`` (which faults missed, why). Targets: faults_tried >= 60, every
counter 0 (issue 25: faults_tried >= 220). Adding a kind of damage to count = one name in :data:`COUNTERS` that checks return.

Kinds (``--only KIND`` runs one; ``--quick`` runs fewer repetitions, as tests/test_faults.py does):
kill9, concurrent, notebooks, store_file, export_file, identifier_file, names, values, frames,
bomb, caches (sdist, model, ONNX, LFW cache: each in a temporary FACEKIT_HOME, never the real one),
and issue 25's walks, large, kinds, misfit, overwrite, forget, writers (``bench/faults_forget.py``).
"""

from __future__ import annotations

import argparse
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
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

import faults_forget  # noqa: E402  (issue 25's kinds: forget, walks, large images, misfits, writers)

FP = "facenet128/faults"
HOSTILE_NAMES = ["", " ", "../x", "/abs/path", "a/b", "a\\b", ".", "..", ".hidden", "a\nb", "nul\x00byte",
                 "esc\x1b[31m", "rtl\u202eexe.jpg", "x" * 200, "unknown", "singletons", "person_01", "Person_12",
                 "CON", "a:b", "...", "in\ttab"]

#: What a check can count; each is a key of the JSON line. A check returns ``score(note, **counts)``.
COUNTERS = ("data_lost", "wrong_accepts", "unclear_errors", faults_forget.COUNTER)


def unit(rng, n, d=128):
    """``n`` random unit vectors (float32, ``d`` dims): stand-in embeddings."""
    x = rng.normal(size=(n, d)).astype(np.float32)
    return x / np.linalg.norm(x, axis=1, keepdims=True)


def score(note: str = "", **counts: int) -> dict:
    """A check's result: a note and counts of :data:`COUNTERS` (missing ones are 0)."""
    bad = set(counts) - set(COUNTERS)
    if bad:
        raise KeyError(f"unknown counters {sorted(bad)}; add them to COUNTERS")
    return {"note": note, **{k: int(counts.get(k, 0)) for k in COUNTERS}}


@dataclass(frozen=True)
class Expect:
    """The error a check declares: an exception of ``types`` whose message matches ``pattern``
    (a regular expression, searched). Only such an error counts as clear."""

    types: type | tuple[type, ...]
    pattern: str

    def judge(self, exc: BaseException) -> dict | None:
        """``score`` of ``exc`` if it is of the declared kind (clear or not), None otherwise."""
        if not isinstance(exc, self.types):
            return None
        msg = f"{type(exc).__name__}: {str(exc)[:90]}"
        if re.search(self.pattern, str(exc), re.S):
            return score(msg)
        return score(f"{msg} (message does not match {self.pattern!r})", unclear_errors=1)


def names_file_or_fix(path=None) -> str:
    """The usual message pattern: names the file (``path``) or says ``Fix:``."""
    return "Fix:" if path is None else f"Fix:|{re.escape(str(path))}"


class Campaign:
    def __init__(self, tmp: Path, quick: bool = False):
        self.tmp, self.quick = Path(tmp), quick
        self.tried = 0
        self.counts = dict.fromkeys(COUNTERS, 0)
        self.failures: list[str] = []

    # the old attribute names (tests and notebooks read them)
    lost = property(lambda self: self.counts["data_lost"])
    wrong = property(lambda self: self.counts["wrong_accepts"])
    unclear = property(lambda self: self.counts["unclear_errors"])

    def run(self, kind: str, what: str, fn, expect: Expect | None = None) -> dict:
        """Run one fault check. ``fn()`` returns :func:`score`; an exception escaping it is judged by
        ``expect`` (the error this fault should raise): of that kind with a matching message it is
        clear, of that kind otherwise unclear; any other exception is counted as an unclear error."""
        self.tried += 1
        t = time.perf_counter()
        try:
            res = fn()
        except Exception as exc:  # noqa: BLE001 - every escaped exception is judged here
            res = expect.judge(exc) if expect is not None else None
            if res is None:
                res = score(f"UNDECLARED {type(exc).__name__}: {exc}"[:300], unclear_errors=1)
        if not isinstance(res, dict) or set(res) != {"note", *COUNTERS}:
            raise TypeError(f"fault check {kind}/{what} must return score(...), got {res!r}")
        for k in COUNTERS:
            self.counts[k] += res[k]
        bad = any(res[k] for k in COUNTERS)
        if bad:
            counts = " ".join(f"{k}={res[k]}" for k in COUNTERS if res[k])
            self.failures.append(f"{kind}: {what}: {counts} ({res['note']})"[:400])
        print(f"[{self.tried:3d}] {kind:15s} {what[:60]:60s} {'FAIL' if bad else 'ok  '} "
              f"{time.perf_counter() - t:5.1f}s  {res['note'][:100]}", flush=True)
        return res

    def refuse(self, fn, expect: Expect) -> dict:
        """The fault must be refused with the declared error; going through is a wrong accept.
        (An undeclared exception escapes to :meth:`run`, which counts it.)"""
        try:
            fn()
        except Exception as exc:  # noqa: BLE001
            res = expect.judge(exc)
            if res is None:
                raise
            return res
        return score("accepted silently", wrong_accepts=1)

    def result(self, seconds: float = 0.0) -> dict:
        return {"faults_tried": self.tried, **self.counts, "seconds": round(seconds, 1), "failures": self.failures}


# --- processes --------------------------------------------------------------------------------

#: A process enrolling ``n`` people of ``shots`` faces each into the store ``argv[1]``, one
#: transaction per person; it prints the face ids of each enrolment once it is committed.
#: (tests/test_store.py uses it too.)
WRITER = """
import sys, numpy as np
from facekit.store.db import FaceStore
path, who, seed, n, model, shots = sys.argv[1:7]
s = FaceStore(path)
rng = np.random.default_rng(int(seed))
for i in range(int(n)):
    ids = s.add_faces(f"{who} {i}", rng.normal(size=(int(shots), 128)).astype(np.float32), model=model,
                      sources="camera")
    print(*ids, flush=True)
"""


def writer(path, who: str, seed: int, n: int, *, shots: int = 3, model: str = FP,
           stderr=subprocess.DEVNULL) -> subprocess.Popen:
    """Start a :data:`WRITER` process (its stdout: one line of ids per committed enrolment)."""
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")])}
    return subprocess.Popen([sys.executable, "-c", WRITER, str(path), who, str(seed), str(n), model, str(shots)],
                            stdout=subprocess.PIPE, stderr=stderr, text=True, env=env)


def committed(out: str, shots: int = 3) -> set[int]:
    """Face ids of the complete lines a :data:`WRITER` printed (a line cut by the kill is not one)."""
    ids: set[int] = set()
    for line in out.splitlines():
        parts = line.split()
        if len(parts) == shots and all(p.isdigit() for p in parts):
            ids.update(int(p) for p in parts)
    return ids


def reopen(path: Path, model: str = FP, shots: int = 3) -> tuple[set[int], int, list[str], str]:
    """Open the store after the fault: ``(stored ids, people, integrity problems, error)``; an
    error (the store cannot be opened or read) leaves the ids empty."""
    from facekit.store.db import FaceStore

    try:
        with FaceStore(path) as s:
            stored = set(s.embeddings(model)[2].tolist())
            people = {p.name: p.faces for p in s.people()}
            problems = s.check()
    except Exception as exc:  # noqa: BLE001 - whatever it is, the committed faces are out of reach
        return set(), 0, [], f"{type(exc).__name__}: {exc}"[:200]
    half = sum(1 for n in people.values() if n % shots)
    return stored, len(people), problems + [f"{half} half-written enrolment(s)"] * bool(half), ""


def crash_score(done: set[int], stored: set[int], problems: list[str], error: str, note: str) -> dict:
    """Score a store after a crash: committed faces missing (all of them, at least one, when the
    store cannot be reopened), integrity problems (each at least one face's worth of damage)."""
    if error:
        return score(f"STORE DOES NOT REOPEN: {error}; {note}", data_lost=max(1, len(done)))
    lost = len(done - stored) + len(problems)
    return score(f"{note}" + (f"; integrity: {problems[:2]}" if problems else ""), data_lost=lost)


def kill9(c: Campaign, n: int, after_kill=None) -> None:
    """kill -9 of an enrolling process at random points: mostly after its first commit (mid-
    transaction or between two), every fourth at any point (import, open, first write).
    ``after_kill(path)``: a hook run on the store file after each kill (tests plant damage there)."""
    from facekit.store.db import FaceStore

    path = c.tmp / "kill9.sqlite3"
    FaceStore(path).close()
    rng = random.Random(9)
    done: set[int] = set()
    for k in range(n):
        def one(k=k):
            p = writer(path, f"kill{k}", k, 10**6)
            first = ""
            if k % 4 == 3:
                time.sleep(rng.uniform(0.05, 1.5))  # anywhere, even before the store is open
            else:
                first = p.stdout.readline()  # the first enrolment is committed ...
                time.sleep(rng.uniform(0.0, 0.3))  # ... then a random point of the next ones
            if p.poll() is not None:  # nothing to kill: the check would pass without testing anything
                raise RuntimeError(f"the writer exited by itself (rc={p.returncode}) before the kill")
            p.send_signal(signal.SIGKILL)
            done.update(committed(first + p.communicate()[0]))
            if after_kill is not None:
                after_kill(path)
            stored, people, problems, error = reopen(path)
            return crash_score(done, stored, problems, error, f"{len(stored)} faces kept, {len(done)} committed")
        c.run("kill9", f"kill -9 of an enrolling process, point {k + 1}", one)


def concurrent(c: Campaign, rounds: int) -> None:
    for r in range(rounds):
        def one(r=r):
            path = c.tmp / f"conc{r}.sqlite3"
            procs = [writer(path, f"w{r}-{k}", 100 * r + k, 20) for k in range(4)]
            ids = set().union(*(committed(p.communicate(timeout=300)[0]) for p in procs))
            failed = [p.returncode for p in procs if p.returncode != 0]
            stored, people, problems, error = reopen(path)
            res = crash_score(ids, stored, problems, error, f"{people} people, {len(stored)} faces, "
                                                            f"writers failed: {failed}")
            res["data_lost"] += max(0, 80 - people) * 3 if not error else 0  # a writer that gave up lost its people
            res["wrong_accepts"] += len(stored - ids)  # rows nobody committed: duplicates or strays
            return res
        c.run("concurrent", f"4 processes enrolling at once, round {r + 1}", one)


def notebooks(c: Campaign, real: bool, steps: dict | None = None) -> None:
    """Re-run orders of notebooks 04 and 06, through the calls the notebooks make: 06 adds what the
    webcam enrolled (``store.add_faces(..., sources="camera")``), 04 adds its people
    (``enrol_faceset``). ``real``: also run the notebooks themselves headless in small mode.
    ``steps``: ``{"04": fn(store, call), ...}`` run in place of a notebook's ``call(store)`` (tests
    plant faults there)."""
    from facekit.data.folders import FaceSet
    from facekit.detection.detector import Face
    from facekit.store.db import FaceStore
    from facekit.store.enrol import enrol_faceset

    rng = np.random.default_rng(4)
    here = Path(tempfile.mkdtemp(prefix="notebooks-", dir=c.tmp))  # stores of this call only
    photos = here / "nb-photos"
    photos.mkdir()
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

    calls, steps = {"04": nb04, "06": nb06}, steps or {}

    def step(s, store):
        return steps[s](store, calls[s]) if s in steps else calls[s](store)

    for order in ("06 04 06", "04 06 04", "04 04", "06 06", "06 04 04 06"):
        def one(order=order):
            path = here / f"nb-{order.replace(' ', '')}.sqlite3"
            for s in order.split():
                with FaceStore(path) as store:
                    step(s, store)
            with FaceStore(path) as store:
                got = {p.name: p.faces for p in store.people()}
            want = {}
            if "04" in order:
                want.update({"ada": 3, "bob": 3})
            if "06" in order:
                want["me (webcam)"] = 5
            lost = sum(max(0, want[n] - got.get(n, 0)) for n in want)
            extra = sum(max(0, k - want.get(n, 0)) for n, k in got.items())  # duplicates, strays
            return score(f"{got}" + (f" DUPLICATES/STRAYS {extra}" if extra else ""), data_lost=lost,
                         wrong_accepts=extra)
        c.run("notebooks", f"re-run order {order}", one)
    if real:
        notebook_orders(c)


def notebook_orders(c: Campaign) -> None:
    """Notebooks 06 -> 04 -> 06 headless in small mode on one store: nobody enrolled by one run is
    removed by another (lost), and a re-run adds no faces to someone already there (duplicates)."""
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
            dup = sum(max(0, now.get(n, 0) - k) for n, k in seen.items())
            seen.update(now)
            return score(f"{now}" + (f" DUPLICATES {dup}" if dup else ""), data_lost=lost, wrong_accepts=dup)
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
    """Damaged store files: a clear StoreError, or the undamaged faces with a warning; never a
    stranger named, never faces dropped without a warning."""
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
            with warnings.catch_warnings(record=True) as w:
                warnings.simplefilter("always")
                with FaceStore(path) as s:
                    _x, _names, ids = s.embeddings(FP)
                    ident = s.identifier(FP, allow_empty=True)
            named = 0 if ident is None else int((ident.predict(stranger) != "unknown").sum())
            silent = 100 - len(ids) if not w else 0
            return score(f"opened: {len(ids)} faces, {len(w)} warning(s)", data_lost=max(0, silent),
                         wrong_accepts=named)
        c.run("store_file", f"store file {what}", one, Expect(StoreError, names_file_or_fix(path)))


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
    cases = list(damaged_copies(src, d, 2, n))
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
            with FaceStore(c.tmp / f"imp-{path.stem}-{c.tried}.sqlite3") as t:
                r = c.refuse(lambda: t.import_(path), Expect((FileFormatError, FileNotFoundError),
                                                             names_file_or_fix(path)))
                imported = len(t.people())
            if imported and not r["wrong_accepts"]:  # refused, but people were imported anyway
                r = score(r["note"] + " but people were imported", wrong_accepts=1, unclear_errors=r["unclear_errors"])
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
            got = FaceIdentifier.load(path)
            named = int((got.predict(stranger) != "unknown").sum())
            return score(f"loaded (harmless change), strangers named: {named}", wrong_accepts=named)
        c.run("identifier_file", f"FaceIdentifier.load: {what}", one,
              Expect((IdentifierFormatError, FileNotFoundError), names_file_or_fix(path)))


def names(c: Campaign) -> None:
    from facekit.data.folders import scan_identities
    from facekit.recognition.identify import FaceIdentifier
    from facekit.store.db import FaceStore

    rng = np.random.default_rng(8)
    s = FaceStore(c.tmp / "names.sqlite3")
    refused = Expect(ValueError, "Fix:")
    for name in HOSTILE_NAMES:
        c.run("names", f"store.add_faces({name!r:.30})", lambda name=name: c.refuse(
            lambda: s.add_faces(name, unit(rng, 1), model=FP), refused))
        c.run("names", f"FaceIdentifier.fit({name!r:.30})", lambda name=name: c.refuse(
            lambda: FaceIdentifier().fit(unit(rng, 2), [name, name]), refused))
    root = c.tmp / "people-hostile"
    for name in ("person_01", "singletons", "unknown", ".hidden", "a b\x1b"):
        (root / name).mkdir(parents=True, exist_ok=True)
        (root / name / "x.jpg").write_bytes(b"\xff\xd8")

    def folders():
        ids, skipped, _ = scan_identities(root)
        return score(f"enrolled {list(ids)}; refused {len(skipped)} folder(s)", wrong_accepts=len(ids))
    c.run("names", "folder names person_01/singletons/unknown/escape", folders)
    c.run("names", "nothing stored after all hostile names",
          lambda: score(f"{s.names}", wrong_accepts=int(bool(s.people()))))
    s.close()


def values(c: Campaign, extra: dict | None = None) -> None:
    """NaN / inf in a live identifier (threshold, gallery, coefficients, query) fails closed: not
    even an enrolled face is named by a broken identifier. ``extra``: more ``{what: mutate(f)}``."""
    from facekit.recognition.identify import FaceIdentifier

    rng = np.random.default_rng(10)
    x = unit(rng, 10)
    q = x[:4].copy()  # enrolled faces: a broken identifier must still not name them

    def case(mutate, query=q):
        f = FaceIdentifier().fit(x, ["Ada"] * 5 + ["Bob"] * 5)
        mutate(f)
        a = f.predict(query)
        # the live loop asks for closed-set names and applies its own threshold ("not score <= th")
        names, dist = f.predict_scores(query, reject=False)
        b = np.where(dist <= f.threshold_, names, "unknown")
        return score(f"{a.tolist()} / {b.tolist()}", wrong_accepts=int((a != "unknown").sum() + (b != "unknown").sum()))

    def nan_query(v):
        qq = q.copy()
        qq[:, 0] = v
        return lambda f: None, qq

    muts = {"threshold NaN": lambda f: setattr(f, "threshold", float("nan")),
            "gallery NaN": lambda f: f.gallery_.__setitem__((0, 0), np.nan),
            "gallery inf (all rows)": lambda f: f.gallery_.__setitem__((slice(None), 0), np.inf),
            "coefficient NaN": lambda f: f.coef_.__setitem__((0, 0), np.nan),
            "intercept inf": lambda f: f.intercept_.__setitem__(0, np.inf), **(extra or {})}
    for what, m in muts.items():
        c.run("values", what, lambda m=m: case(m))
    for what, v in (("query NaN", np.nan), ("query inf", np.inf)):
        c.run("values", what, lambda v=v: case(*nan_query(v)))


def frames(c: Campaign) -> None:
    """Garbage and oversized frames through the live path (LiveRecognizer.process_jpeg): a result
    with ``ok=False`` and a message, never an exception, never a name, no internal error caught,
    and a bomb refused before it is decoded (peak memory)."""
    import resource

    from PIL import Image

    from facekit.live import LiveRecognizer
    from facekit.recognition.identify import FaceIdentifier

    rng = np.random.default_rng(11)
    rec = LiveRecognizer(FaceIdentifier().fit(unit(rng, 4), ["Ada"] * 2 + ["Bob"] * 2))
    good = io.BytesIO()
    Image.fromarray(np.full((240, 320, 3), 128, np.uint8)).save(good, "JPEG")
    bomb = io.BytesIO()
    Image.new("L", (12000, 12000)).save(bomb, "PNG")
    tall = io.BytesIO()
    Image.new("RGB", (1, 30000)).save(tall, "PNG")
    cases = [("empty bytes", b"", False), ("garbage", os.urandom(5000), False),
             ("truncated JPEG", good.getvalue()[:300], False), ("JPEG header only", good.getvalue()[:2], False),
             ("text", b"hello " * 100, False), ("30 MB of noise", os.urandom(30 * 2**20), False),
             ("1x30000 PNG", tall.getvalue(), None), ("12000x12000 PNG bomb (140 KB)", bomb.getvalue(), False),
             ("grey 320x240 JPEG", good.getvalue(), True)]
    rec.process_jpeg(good.getvalue())  # warm-up: models loaded before memory is measured
    for what, data, ok in cases:
        def one(data=data, ok=ok):
            before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
            errors = rec.stats["errors"]
            r = rec.process_jpeg(data)
            grew = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024 - before
            named = sum(1 for f in r.faces if f.name not in ("unknown", "..."))
            note = f"ok={r.ok} message={r.message[:60]!r} peak memory +{grew:.0f} MB"
            unclear = int(ok is False and (r.ok or not r.message)) + (rec.stats["errors"] - errors)
            return score(note, wrong_accepts=named + int(grew > 200) + int(ok is True and not r.ok),
                         unclear_errors=unclear)
        c.run("frames", f"live frame: {what}", one)


def bomb(c: Campaign) -> None:
    from PIL import Image

    from facekit.core.images import ImageLoadError, decode_image_bytes, load_image

    p = c.tmp / "bomb.png"
    Image.new("L", (12000, 12000)).save(p, "PNG")
    big = c.tmp / "bomb-big.png"
    Image.new("L", (20000, 20000)).save(big, "PNG")
    c.run("bomb", "load_image of a 12000x12000 PNG of 140 KB",
          lambda: c.refuse(lambda: load_image(p), Expect(ImageLoadError, names_file_or_fix(p))))
    c.run("bomb", "load_image of a 20000x20000 PNG",
          lambda: c.refuse(lambda: load_image(big), Expect(ImageLoadError, names_file_or_fix(big))))
    c.run("bomb", "decode_image_bytes of the bomb", lambda: c.refuse(
        lambda: decode_image_bytes(p.read_bytes()), Expect(ImageLoadError, "Fix:|decompression bomb|exceeds")))


# --- caches of other modules, in a temporary FACEKIT_HOME -------------------------------------

def _home_with(c: Campaign, rel: str, damage, src: Path | None = None) -> Path:
    """A FACEKIT_HOME whose files link to the current cache, except ``rel``: a damaged copy (of
    ``src`` when given, a file made for the fault, else of the cache's own ``rel``)."""
    from facekit.core.cache import cache_dir

    real = cache_dir()
    home = Path(tempfile.mkdtemp(prefix="fk-home-", dir=c.tmp))
    for f in real.rglob("*"):
        if f.is_file() and not f.name.endswith(".lock"):
            dst = home / f.relative_to(real)
            dst.parent.mkdir(parents=True, exist_ok=True)
            if str(f.relative_to(real)) != rel:
                dst.symlink_to(f.resolve())
    dst = home / rel
    dst.parent.mkdir(parents=True, exist_ok=True)
    dst.write_bytes(damage((src or real / rel).read_bytes()))
    return home


def _child(home: Path, code: str, timeout: int) -> tuple[int, str]:
    env = {**os.environ, "FACEKIT_HOME": str(home), "PYTHONPATH": str(ROOT), "PIP_RETRIES": "0",
           "PIP_TIMEOUT": "3", "TF_CPP_MIN_LOG_LEVEL": "3"}
    try:
        p = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=timeout)
        return p.returncode, p.stdout + p.stderr
    except subprocess.TimeoutExpired:
        return -1, "timed out"


#: a child that fails must end with one of facekit's fetch errors, saying how to fix it
FETCH_FAILED = r"(FetchError|ChecksumError): .*Fix:"


def _child_failed(rc: int, out: str, pattern: str) -> dict:
    last = out.strip().splitlines()[-1][:160] if out.strip() else f"rc={rc}"
    if re.search(pattern, out, re.S):
        return score(f"clear error: {last}")
    return score(f"UNCLEAR: {last}", unclear_errors=1)


def caches(c: Campaign, onnx: bool) -> None:
    from facekit.core import cache as registry

    trunc = lambda b: b[: len(b) // 2]  # noqa: E731
    flip = lambda b: b[:1000] + bytes([b[1000] ^ 0xFF]) + b[1001:]  # noqa: E731
    registry.fetch_sdist()
    registry.model_path()
    sdist = f"downloads/{registry.SDIST_FILE}"
    for what, dmg in (("truncated", trunc), ("one byte changed", flip)):
        def one(dmg=dmg):
            home = _home_with(c, sdist, dmg)
            rc, out = _child(home, "from facekit.core.cache import fetch_sdist; print('OK', fetch_sdist())", 240)
            if rc == 0:
                ok = registry.sha256sum(home / sdist) == registry.SDIST_SHA256
                return score("re-fetched and verified" if ok else "DAMAGED FILE USED", wrong_accepts=int(not ok))
            return _child_failed(rc, out, FETCH_FAILED)
        c.run("caches", f"sdist {what}", one)
    h5 = "models/facenet_keras_128.h5"
    for what, dmg in (("truncated", trunc), ("one byte changed", flip)):
        def one(dmg=dmg):
            home = _home_with(c, h5, dmg)
            rc, out = _child(home, "from facekit.core.cache import model_path, sha256sum; p = model_path(); "
                                   "print('SHA', sha256sum(p))", 240)
            if rc == 0:
                ok = f"SHA {registry.H5_SHA256}" in out
                return score("re-extracted, verified" if ok else "DAMAGED MODEL USED", wrong_accepts=int(not ok))
            return _child_failed(rc, out, FETCH_FAILED)
        c.run("caches", f"Keras model file {what}", one)
    # an LFW embedding cache of its own (never one left by another run)
    from facekit.teach.lfw.cache import RowTable

    made = c.tmp / "lfw-made" / "embeddings-faults.npz"
    made.parent.mkdir(exist_ok=True)
    table = RowTable(made, {"kind": "faults"})
    table.rows.update({f"img{i}.jpg": unit(np.random.default_rng(i), 1)[0] for i in range(5)})
    table.save()
    rel = f"lfw/{made.name}"
    for what, dmg in (("truncated", trunc), ("garbage", lambda b: os.urandom(len(b)))):
        def one(dmg=dmg):
            home = _home_with(c, rel, dmg, src=made)
            code = (f"from facekit.teach.lfw.cache import RowTable; from pathlib import Path; "
                    f"t = RowTable(Path({str(home / rel)!r}), {{}}); print('ROWS', len(t.rows))")
            rc, out = _child(home, code, 120)
            if rc != 0:
                return _child_failed(rc, out, r"ignoring damaged LFW cache")
            if "ROWS 0" not in out:
                return score(f"DAMAGED ROWS USED: {out.strip()[-100:]}", wrong_accepts=1)
            if not re.search(rf"ignoring damaged LFW cache {re.escape(str(home / rel))}", out):
                return score(f"dropped without saying so: {out.strip()[-100:]}", unclear_errors=1)
            return score("rows dropped, reported")
        c.run("caches", f"LFW embedding cache {what}", one)
    if onnx:
        from facekit.embedding.embedder import get_embedder
        from facekit.embedding.facenet import onnx_path

        crop = np.random.default_rng(0).integers(0, 255, (1, 160, 160, 3), dtype=np.uint8)
        ref = get_embedder().embed(crop)[0]  # builds the compiled model if this cache lacks it
        rel = f"compiled/{onnx_path(build=False).name}"
        np.save(c.tmp / "crop.npy", crop)
        for what, dmg in (("truncated", trunc), ("one byte changed", flip)):
            def one(dmg=dmg):
                home = _home_with(c, rel, dmg)
                code = (f"import numpy as np; from facekit.embedding.embedder import Embedder; "
                        f"e = Embedder().embed(np.load({str(c.tmp / 'crop.npy')!r}))[0]; print('EMB', [float(v) for v in e[:8]])")
                rc, out = _child(home, code, 540)
                if rc != 0:
                    return _child_failed(rc, out, FETCH_FAILED)
                got = np.array(json.loads(out.split("EMB", 1)[1].strip().splitlines()[0]))
                ok = np.allclose(got, ref[:8], atol=1e-4)
                return score("rebuilt, same embedding" if ok else "WRONG EMBEDDING", wrong_accepts=int(not ok))
            c.run("caches", f"compiled ONNX model {what}", one)


KINDS = ("kill9", "concurrent", "notebooks", "store_file", "export_file", "identifier_file", "names", "values",
         "frames", "bomb", "caches", *faults_forget.KINDS)


def campaign(only: str | None = None, quick: bool = False, real_notebooks: bool = False,
             onnx: bool = True) -> dict:
    t0 = time.perf_counter()
    tmp = Path(tempfile.mkdtemp(prefix="fk-faults-"))
    c = Campaign(tmp, quick)
    n = 2 if quick else 6
    plan = {"kill9": lambda: kill9(c, 4 if quick else 24), "concurrent": lambda: concurrent(c, 1 if quick else 2),
            "notebooks": lambda: notebooks(c, real_notebooks), "store_file": lambda: store_file(c, n),
            "export_file": lambda: export_file(c, n), "identifier_file": lambda: identifier_file(c, n),
            "names": lambda: names(c), "values": lambda: values(c), "frames": lambda: frames(c),
            "bomb": lambda: bomb(c), "caches": lambda: caches(c, onnx and not quick)}
    plan.update(faults_forget.plan(c, sys.modules[__name__], quick))
    kinds = KINDS if only is None else only.split(",")
    unknown = set(kinds) - set(plan)
    if unknown:
        raise ValueError(f"unknown fault kinds {sorted(unknown)}; choose from {KINDS}")
    for kind in kinds:
        print(f"--- {kind}", flush=True)
        plan[kind]()
    shutil.rmtree(tmp, ignore_errors=True)
    return c.result(time.perf_counter() - t0)


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
