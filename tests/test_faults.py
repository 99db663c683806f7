"""The fault campaign of bench/faults.py (issues 13 and 27).

1. One fast test per fault kind: no enrolled face lost, no stranger named, every error of the kind
   the check declares (naming the file or the fix). Real SQLite files, real processes (kill -9,
   four writers), real model for the live frames, real notebooks for the slow re-run test.
2. The campaign's scoring can fail: each kind of failure is planted into an instance of the
   campaign (a store that does not reopen after kill -9, duplicates, lost people, a wrong accept,
   an undeclared exception, a declared error with an unclear message) and must be counted.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys

import numpy as np
import pytest

from conftest import BENCH, ROOT

sys.path.insert(0, str(BENCH))

import faults  # noqa: E402

FAST = ["kill9", "concurrent", "notebooks", "store_file", "export_file", "identifier_file", "names", "values",
        "bomb"]


def _check(res: dict, at_least: int) -> None:
    assert res["faults_tried"] >= at_least
    assert {k: res[k] for k in faults.COUNTERS} == dict.fromkeys(faults.COUNTERS, 0), res["failures"]


@pytest.mark.parametrize("kind", FAST)
def test_fault_kind(kind):
    _check(faults.campaign(kind, quick=True), 1)


def test_live_frames_garbage_and_oversized(embedder, detector):
    """Frames through LiveRecognizer.process_jpeg: garbage never crashes the loop and a 140 KB PNG of
    12000x12000 px must be refused before decoding (facekit.core.images.check_image_bytes), not decoded."""
    _check(faults.campaign("frames", quick=True), 9)


def test_damaged_caches_of_other_modules():
    """sdist, Keras model and an LFW cache (made by the campaign) damaged in a temporary
    FACEKIT_HOME: re-fetched or re-extracted and verified, or a clear error; never used."""
    _check(faults.campaign("caches", quick=True), 6)


def test_emptied_store_file_is_refused_not_restarted(tmp_path):
    from facekit.store.db import FaceStore, StoreError

    path = tmp_path / "s.sqlite3"
    with FaceStore(path) as s:
        s.add_faces("Ada", np.eye(128, dtype=np.float32)[:2], model="facenet128/t")
    path.write_bytes(b"")
    with pytest.raises(StoreError, match="emptied or truncated.*Fix"):
        FaceStore(path)
    assert path.stat().st_size == 0  # the file is left as it is for the user to restore
    with pytest.raises(StoreError, match="emptied or truncated"):
        FaceStore(path)  # and it is still refused: no new empty store was made in its place


@pytest.mark.slow
@pytest.mark.notebook
def test_notebook_rerun_orders_06_04_06(tmp_path, lfw_home_dir):
    """Notebooks 06 (webcam enrolment), 04 (own people) and 06 again, headless in small mode on one
    temporary store: nobody enrolled by one is removed by another, and re-runs add no duplicates."""
    c = faults.Campaign(tmp_path)
    faults.notebook_orders(c)
    assert c.tried == 3, c.failures
    assert c.counts == dict.fromkeys(faults.COUNTERS, 0), c.failures
    from facekit.store.db import FaceStore

    with FaceStore(tmp_path / "nb-real.sqlite3") as s:
        people = {p.name: p.faces for p in s.people()}
    assert set(people) == {"madonna", "elton_john", "mindy_kaling"}, people
    assert people["madonna"] == 3 and people["elton_john"] == 3


# --- planted failures: the campaign must report each ------------------------------------------

@pytest.mark.parametrize("damage", ["garbage", "emptied"])
def test_store_that_does_not_reopen_after_kill_9_is_data_lost(tmp_path, damage):
    """Before issue 27 a store that would not open after the crash raised "... Fix: ..." inside the
    check, and the campaign scored that as a clear error: 0 lost."""
    c = faults.Campaign(tmp_path)

    def after_kill(path):
        path.write_bytes(os.urandom(8192) if damage == "garbage" else b"")

    faults.kill9(c, 1, after_kill=after_kill)
    assert c.tried == 1
    assert c.lost >= 3, c.failures  # the enrolment committed before the kill (3 faces) at least
    assert "DOES NOT REOPEN" in c.failures[0]


def test_lost_people_and_duplicates_after_reruns_are_counted(tmp_path):
    rng = np.random.default_rng(0)

    def webcam_again(store, call):  # a re-run that enrols the webcam again with new shots: duplicates
        call(store)
        store.add_faces("me (webcam)", faults.unit(rng, 5), model=faults.FP, sources="camera")

    def starts_afresh(store, call):  # notebook 04 clearing the store before it enrols its people
        for p in store.people():
            store.forget(p.name)
        call(store)

    c = faults.Campaign(tmp_path)
    faults.notebooks(c, real=False, steps={"06": webcam_again})
    assert c.tried == 5 and c.lost == 0, c.failures
    # 5 extra faces per run of 06 in "06 04 06", "04 06 04", "04 04", "06 06", "06 04 04 06"
    assert c.wrong == 10 + 5 + 0 + 10 + 10, c.failures
    assert len(c.failures) == 4 and all("DUPLICATES" in f for f in c.failures), c.failures
    c = faults.Campaign(tmp_path)
    faults.notebooks(c, real=False, steps={"04": starts_afresh})
    # only "04 06 04" ends without the webcam's 5 faces (in "06 04 06" the last 06 enrols them again)
    assert (c.lost, c.wrong) == (5, 0) and len(c.failures) == 1 and "04 06 04" in c.failures[0], c.failures


def test_wrong_accepts_are_counted(tmp_path):
    from facekit.store.db import FaceStore

    c = faults.Campaign(tmp_path)
    faults.values(c, extra={"threshold inf (fails open)": lambda f: setattr(f, "threshold", float("inf"))})
    assert c.wrong == 2 * 4, c.failures  # the 4 enrolled faces, named by predict and by the live rule
    assert len(c.failures) == 1 and "fails open" in c.failures[0]
    store = FaceStore(tmp_path / "s.sqlite3")
    res = c.run("planted", "a hostile name is accepted", lambda: c.refuse(
        lambda: store.add_faces("ok name", faults.unit(np.random.default_rng(1), 1), model=faults.FP),
        faults.Expect(ValueError, "Fix:")))
    assert res["wrong_accepts"] == 1 and c.wrong == 9


def test_only_declared_errors_are_clear(tmp_path):
    from facekit.store.db import StoreError

    c = faults.Campaign(tmp_path)
    declared = faults.Expect(StoreError, "Fix:")

    def raises(exc):
        def fn():
            raise exc
        return fn

    # an undeclared exception is a failure even when its message says "Fix:" (the old rule)
    assert c.run("planted", "crash", raises(RuntimeError("boom. Fix: none")))["unclear_errors"] == 1
    assert "UNDECLARED RuntimeError" in c.failures[-1]
    assert c.run("planted", "other kind", raises(KeyError("x")), declared)["unclear_errors"] == 1
    assert c.run("planted", "kind, no fix", raises(StoreError("broken")), declared)["unclear_errors"] == 1
    assert c.run("planted", "declared", raises(StoreError("s.db: broken. Fix: restore it")), declared) == \
        faults.score("StoreError: s.db: broken. Fix: restore it")
    assert (c.tried, c.unclear, c.lost, c.wrong) == (4, 3, 0, 0)
    with pytest.raises(TypeError, match="score"):
        c.run("planted", "old tuple", lambda: (0, 0, 0, "note"))
    with pytest.raises(KeyError, match="COUNTERS"):
        faults.score(leftovers_of_some_kind=1)


def test_last_line_is_one_json_object_with_every_counter():
    out = subprocess.run([sys.executable, str(BENCH / "faults.py"), "--quick", "--only", "values"],
                         capture_output=True, text=True, timeout=300, cwd=ROOT)
    assert out.returncode == 0, out.stderr[-2000:]
    res = json.loads(out.stdout.strip().splitlines()[-1])
    assert {"faults_tried", "data_lost", "wrong_accepts", "unclear_errors", "forgotten_leftovers", "seconds",
            "failures"} <= set(res)
    assert res["faults_tried"] == 7 and res["failures"] == []
