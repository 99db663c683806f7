"""Live recognition (notebook 06): the tracked loop, bad frames, enrolment, the camera widget's
back-pressure, server-side sources, and a soak of >= 5,000 frames.

Real model and real sample photos. The synthetic video shows validation photos (never enrolled)
of two enrolled people and one stranger, moving and zooming, each entering at its own time.
"""

from __future__ import annotations

import threading
import time

import numpy as np
import pytest

from helpers import ENROLLED, STRANGER

SCENE_PEOPLE = ["ben_afflek", "elton_john", STRANGER]


@pytest.fixture(scope="module")
def identifier(live_identifier):
    """This module's copy of the sample people's gallery (conftest.live_identifier); a test that
    enrols into it works on a copy of its own."""
    import copy

    return copy.deepcopy(live_identifier)


@pytest.fixture(scope="module")
def scene(detector):
    from facekit.live import make_demo_scene

    return make_demo_scene(SCENE_PEOPLE, n_frames=90, seed=0, detector=detector)


@pytest.fixture(scope="module")
def frames(scene):
    return [scene.frame(i) for i in range(len(scene))]


class SpyDetector:
    """The real detector, recording the size of every image it scans (refines pass through)."""

    def __init__(self, det):
        self.det = det
        self.sizes = []
        self.refines = 0

    def detect(self, image, **kw):
        self.sizes.append(image.shape[:2])
        return self.det.detect(image, **kw)

    def refine(self, image, boxes):
        self.refines += 1
        return self.det.refine(image, boxes)


@pytest.fixture(scope="module")
def run(identifier, frames, detector, embedder):
    """The loop over the whole video once; shared by the tests that read its results."""
    from facekit.live import LiveRecognizer

    spy = SpyDetector(detector)
    rec = LiveRecognizer(identifier, detector=spy, embedder=embedder)
    results = [rec.process(f) for f in frames]
    return rec, spy, results


def test_loop_names_enrolled_people_and_calls_the_stranger_unknown(run, scene):
    rec, _, results = run
    score = scene.score(results, ENROLLED)
    print("score:", score, "stats:", rec.stats)
    assert score["frames_with_enrolled"] > 60
    # frames right after a person pops in are not named until the next scan (<= scan_every)
    assert score["face_correct_rate"] >= 0.85, score
    assert score["unknown_rate"] >= 0.8, score
    # a named stranger would be a false accept: never allowed
    from facekit.live import iou

    for i, r in enumerate(results):
        for name, box in scene.truth(i):
            for f in r.faces:
                if name == STRANGER and iou(f.box, box) > 0.3:
                    assert f.name in ("unknown", "..."), (i, f)


def test_loop_tracks_instead_of_embedding_every_frame(run, scene):
    rec, spy, results = run
    appearances = sum(len(scene.truth(i)) for i in range(len(results)))
    # 3 people: a few embeddings each (new track + a re-embedding every 30 frames)
    assert rec.stats["embedded"] <= 0.15 * appearances, (rec.stats, appearances)
    assert rec.stats["scans"] <= len(results) / 5
    # the same face keeps its track id across frames
    ids = {f.track_id for r in results for f in r.faces}
    assert len(ids) <= 6, ids
    # scans run on a downscaled frame (faces >= 40 px need no more than 320x240)
    assert spy.sizes and max(max(s) for s in spy.sizes) <= 320, spy.sizes
    # between scans the tracked faces are refined through the detector's public refine()
    assert rec.stats["refines"] > 0 and spy.refines == rec.stats["refines"], (spy.refines, rec.stats)


def test_results_are_small_json(run):
    import json

    _, _, results = run
    r = max(results, key=lambda r: len(r.faces))
    text = json.dumps(r.to_json())
    assert len(text) < 1500
    d = json.loads(text)
    assert d["width"] == 640 and d["height"] == 480 and len(d["faces"]) == 3
    assert {"box", "name", "distance", "id"} <= set(d["faces"][0])


def test_bad_frames_never_stop_the_loop(identifier, frames, detector, embedder):
    from facekit.live import LiveRecognizer, encode_jpeg, make_demo_scene

    rec = LiveRecognizer(identifier, detector=detector, embedder=embedder)
    for f in frames[30:36]:
        rec.process(f)
    assert {"ben_afflek", "elton_john"} <= set(rec.process(frames[36]).names)

    small = make_demo_scene(["elton_john"], n_frames=4, size=(320, 240), face_px=70, detector=detector)
    jpeg = encode_jpeg(frames[40])
    bad = [
        ("none", lambda: rec.process(None)),
        ("empty", lambda: rec.process(np.zeros((0, 0, 3), np.uint8))),
        ("batch", lambda: rec.process(np.zeros((2, 48, 48, 3), np.uint8))),
        ("corrupt jpeg", lambda: rec.process_jpeg(jpeg[: len(jpeg) // 3] + b"garbage")),
        ("not a jpeg", lambda: rec.process_jpeg(b"hello")),
        ("empty bytes", lambda: rec.process_jpeg(b"")),
    ]
    for what, call in bad:
        r = call()
        assert not r.ok and r.message, what
        assert r.faces == [], what

    for _ in range(6):  # the tracks die out on black frames
        black = rec.process(np.zeros((480, 640, 3), np.uint8))
        assert black.ok
    assert black.faces == []
    noface = rec.process(np.full((480, 640, 3), 120, np.uint8))
    assert noface.ok and noface.faces == []

    other = rec.process(small.frame(2))  # another size: tracking restarts, faces found again
    assert other.ok and "size" in other.message and other.width == 320
    other = [rec.process(small.frame(i)) for i in range(4)][-1]
    assert "elton_john" in other.names
    gray = rec.process(small.frame(3).mean(axis=2).astype(np.uint8))
    assert gray.ok
    rgba = rec.process(np.dstack([frames[50], np.full(frames[50].shape[:2], 255, np.uint8)]))
    assert rgba.ok and "size" in rgba.message
    for f in frames[50:56]:
        r = rec.process(f)
    assert {"ben_afflek", "elton_john"} <= set(r.names), r.names
    assert rec.stats["bad_frames"] == len(bad) and rec.stats["errors"] == 0


def test_threshold_moves_live_without_reembedding(identifier, frames, detector, embedder):
    from facekit.live import LiveRecognizer

    rec = LiveRecognizer(identifier, detector=detector, embedder=embedder)
    for f in frames[40:45]:
        r = rec.process(f)
    assert {"ben_afflek", "elton_john"} <= set(r.names)
    n = rec.stats["embedded"]
    rec.threshold = 0.01
    r = rec.process(frames[45])
    assert set(r.names) == {"unknown"}
    rec.threshold = None  # back to the identifier's own
    r = rec.process(frames[46])
    assert {"ben_afflek", "elton_john"} <= set(r.names)
    assert rec.stats["embedded"] == n  # names changed from the stored embeddings


def test_enrol_from_the_camera_then_recognised_and_saved(identifier, detector, embedder, tmp_path):
    import copy

    from facekit.recognition.identify import FaceIdentifier
    from facekit.live import LiveRecognizer, make_demo_scene

    stranger = make_demo_scene([STRANGER], n_frames=30, seed=3, detector=detector)
    path = tmp_path / "gallery.npz"
    rec = LiveRecognizer(copy.deepcopy(identifier), detector=detector, embedder=embedder, gallery_path=path)
    for i in range(6):
        r = rec.process(stranger.frame(i))
    assert r.names == ["unknown"]
    rec.start_enrollment("newcomer", shots=3, every=2)
    messages = []
    for i in range(6, 25):
        r = rec.process(stranger.frame(i))
        messages.append(r.message)
        if "enrolled" in r.message:
            break
    assert any("1/3" in m for m in messages) and "enrolled newcomer" in r.message, messages
    assert rec.enrolling is None
    r = rec.process(stranger.frame(i + 1))  # the very next frame
    assert r.names == ["newcomer"]
    loaded = FaceIdentifier.load(path)
    assert "newcomer" in loaded.names and set(identifier.names) <= set(loaded.names)
    with pytest.raises(ValueError):
        rec.start_enrollment("  ")
    with pytest.raises(ValueError):
        rec.start_enrollment("unknown")


def test_empty_gallery_everyone_unknown_until_enrolled(frames, detector, embedder):
    from facekit.live import LiveRecognizer

    rec = LiveRecognizer(None, detector=detector, embedder=embedder)
    r = [rec.process(f) for f in frames[40:43]][-1]
    assert r.names and set(r.names) == {"unknown"}
    n = rec.enroll_frames(frames[40:43], "whoever")  # the largest face of each frame
    assert n == 3 and rec.names == ["whoever"]


# --- the camera widget (Python side of the browser protocol) -------------------------------

class SlowRecognizer:
    """Stands in for LiveRecognizer: takes ``delay`` s per frame, decodes the JPEG for real."""

    def __init__(self, delay=0.05):
        self.delay = delay
        self.threshold = 0.9
        self.names = ["a", "b"]
        self.enrolled = []
        self.gate = threading.Event()  # cleared: every frame waits until the test sets it
        self.gate.set()

    def process_jpeg(self, data):
        from facekit.live import FrameResult, decode_jpeg

        assert self.gate.wait(120), "the test never opened the gate"
        time.sleep(self.delay)
        try:
            img = decode_jpeg(data)
        except ValueError as exc:
            return FrameResult(0, 0, 0, [], 0.0, ok=False, message=str(exc))
        return FrameResult(0, img.shape[1], img.shape[0], [], self.delay * 1000)

    def start_enrolment(self, name, shots, consent=None):
        if not name.strip():
            raise ValueError("empty name")
        self.enrolled.append((name, shots, consent))


def _widget(rec, **kw):
    from facekit.live.camera import CameraWidget

    w = CameraWidget(rec, **kw)
    sent = []
    lock = threading.Lock()

    def send(content, buffers=None):
        with lock:
            sent.append(content)

    w.send = send
    return w, sent


def test_camera_widget_drops_frames_while_busy_never_queues():
    from facekit.live import encode_jpeg

    rec = SlowRecognizer(0.2)
    w, sent = _widget(rec)
    jpeg = encode_jpeg(np.full((48, 64, 3), 100, np.uint8))
    # a burst of 20 frames from two "views" while the first is being processed (held at the gate,
    # so the burst never depends on how fast this machine is)
    rec.gate.clear()
    accepted = [w.offer_frame(jpeg, {"id": i, "view": "v%d" % (i % 2)}) for i in range(20)]
    assert w.pending <= 1
    rec.gate.set()
    assert w.wait_idle(60)
    assert accepted == [True] + [False] * 19, accepted
    ids = sorted(m["id"] for m in sent)
    assert ids == list(range(20)), "every frame gets exactly one answer"
    kinds = [m["type"] for m in sent]
    assert kinds.count("result") == sum(accepted) and kinds.count("dropped") == 20 - sum(accepted)
    assert w.stats["dropped"] == 20 - sum(accepted) and w.stats["max_pending"] <= 1
    # the answer goes back to the view that sent the frame
    assert all(m["view"] == "v%d" % (m["id"] % 2) for m in sent)
    # with the browser's rule (next frame only after the answer) nothing is dropped
    sent.clear()
    for i in range(5):
        assert w.offer_frame(jpeg, {"id": 100 + i, "view": "v"})
        assert w.wait_idle(60)
    assert [m["type"] for m in sent] == ["result"] * 5
    res = sent[-1]
    assert res["width"] == 64 and res["height"] == 48 and res["server_ms"] >= 200
    w.close()


def test_camera_widget_messages_threshold_and_enrol():
    from facekit.live.camera import CameraWidget

    rec = SlowRecognizer(0.0)
    w, sent = _widget(rec, threaded=False)
    assert w.threshold == pytest.approx(0.9) and w.names == ["a", "b"]
    w.threshold = 0.6
    assert rec.threshold == pytest.approx(0.6)
    # messages as they come from the comm (content, buffers)
    w._handle_custom_msg({"type": "frame", "id": 7, "view": "x"}, [memoryview(b"not a jpeg")])
    assert sent[-1]["type"] == "result" and sent[-1]["ok"] is False and sent[-1]["id"] == 7
    assert "not an image" in sent[-1]["message"] and "Fix" in sent[-1]["message"]
    w._handle_custom_msg({"type": "frame", "id": 8, "view": "x"}, [])
    assert sent[-1]["id"] == 8 and sent[-1]["ok"] is False
    w._handle_custom_msg({"type": "enroll", "name": "zoe", "shots": 4}, [])  # no consent: refused
    assert rec.enrolled == [] and "consent" in w.status
    w._handle_custom_msg({"type": "enroll", "name": "zoe", "shots": 4, "consent": "agreed"}, [])
    assert rec.enrolled == [("zoe", 4, "agreed")] and "zoe" in w.status
    w._handle_custom_msg({"type": "enroll", "name": " ", "shots": 4, "consent": "agreed"}, [])
    assert "cannot enrol" in w.status
    w.close()
    # the front end ships with the package
    assert "getUserMedia" in str(CameraWidget._esm) and "describeCameraError" in str(CameraWidget._esm)
    assert "fk-consent" in str(CameraWidget._esm)
    assert ".facekit-camera" in str(CameraWidget._css)


# --- server-side sources -----------------------------------------------------------------

def test_video_file_source_and_run_source(identifier, scene, detector, embedder, tmp_path):
    from facekit.live.camera import VideoSource, write_video
    from facekit.live import LiveRecognizer, run_source

    path = write_video(tmp_path / "demo.mp4", (scene.frame(i) for i in range(30, 60)), fps=15)
    with VideoSource(path) as src:
        assert len(src) == 30 and not src.live
        first = src.read()
        assert first.shape == (480, 640, 3) and first.dtype == np.uint8
    rec = LiveRecognizer(identifier, detector=detector, embedder=embedder)
    summary = run_source(rec, path, display=False, progress=False, snapshots=2)
    assert summary.frames == 30 and summary.bad_frames == 0
    assert summary.names.get("ben_afflek", 0) >= 20 and summary.names.get("elton_john", 0) >= 20, summary.names
    assert summary.names.get("unknown", 0) >= 10  # the stranger
    assert len(summary.snapshots) == 2 and summary.snapshots[0][1].shape == (480, 640, 3)
    assert "fps" in str(summary)


def test_video_source_errors_are_clear(tmp_path):
    from facekit.live.camera import VideoSource

    with pytest.raises(FileNotFoundError, match="no such video file"):
        VideoSource(tmp_path / "missing.mp4")
    junk = tmp_path / "junk.mp4"
    junk.write_bytes(b"not a video at all")
    with pytest.raises(OSError, match="could not open"):
        VideoSource(junk)


def test_live_source_keeps_only_the_newest_frame(tmp_path, scene):
    """A live source read slower than it produces frames drops old ones instead of queueing."""
    from facekit.live.camera import VideoSource, write_video

    path = write_video(tmp_path / "live.avi", (scene.frame(i) for i in range(0, 60)), fps=30)
    src = VideoSource(path, live=True)  # a file read like a stream: the reader thread runs ahead
    got = [src.read(timeout=60)]
    # the consumer is slow (it reads nothing for a while): frames must be dropped, not queued
    deadline = time.monotonic() + 120
    while src.dropped < 10 and time.monotonic() < deadline:
        time.sleep(0.05)
    while (f := src.read(timeout=5)) is not None:
        got.append(f)
    src.close()
    assert src.dropped >= 10, "a slow consumer made the source queue frames instead of dropping them"
    assert got[0] is not None and 1 < len(got) < 60 and len(got) + src.dropped == 60


def test_write_y4m_layout(tmp_path, scene):
    from facekit.live.camera import write_video

    path = write_video(tmp_path / "cam.y4m", (scene.frame(i) for i in range(3)), fps=15)
    data = path.read_bytes()
    header, rest = data.split(b"\n", 1)
    assert header.startswith(b"YUV4MPEG2 W640 H480 F15000:1000") and b"C420" in header
    frame = 640 * 480 * 3 // 2
    assert len(rest) == 3 * (len(b"FRAME\n") + frame) and rest.startswith(b"FRAME\n")


# --- soak --------------------------------------------------------------------------------

@pytest.mark.slow
def test_soak_5000_frames_stable_memory_no_queue(identifier, frames, detector, embedder):
    """>= 5,000 frames through the widget path (JPEG -> worker -> loop), memory and queue stable.

    Cheap on purpose: mostly tracked frames (refine every 25, scan every 250 frames); every
    frame is still decoded, tracked and answered, and every kind of frame occurs.
    """
    import gc

    import psutil

    from facekit.live import LiveRecognizer, encode_jpeg

    rec = LiveRecognizer(identifier, detector=detector, embedder=embedder, detect_every=25,
                         scan_every=250, reembed_every=500)
    w, sent = _widget(rec)
    jpegs = [encode_jpeg(f, 80) for f in frames[30:70]]
    jpegs += [encode_jpeg(np.zeros((480, 640, 3), np.uint8)), b"corrupt"]
    proc = psutil.Process()
    n, rss, t0 = 5000, [], time.perf_counter()
    order = list(range(40)) + list(range(39, -1, -1))  # back and forth: smooth motion
    for i in range(n):
        k = order[i % len(order)]
        data = jpegs[k] if i % 997 else jpegs[40 + (i // 997) % 2]  # a black or corrupt frame now and then
        w.offer_frame(data, {"id": i, "view": "soak"})
        assert w.pending <= 1
        assert w.wait_idle(30), f"frame {i} not answered"
        if i % 500 == 499:
            gc.collect()
            rss.append(proc.memory_info().rss / 2**20)
            sent.clear()  # the test's own record of answers; the widget keeps none
    secs = time.perf_counter() - t0
    growth = rss[-1] - rss[1]  # after the first 1,000 frames (caches, graph tracing)
    print(f"soak: {n} frames in {secs:.0f} s ({n / secs:.0f} fps); RSS MiB every 500 frames: "
          f"{[round(x) for x in rss]}; growth after warm-up {growth:+.1f} MiB; stats {rec.stats}")
    assert w.stats["processed"] == n and w.stats["dropped"] == 0 and w.stats["max_pending"] <= 1
    assert rec.stats["bad_frames"] >= 2 and rec.stats["errors"] == 0
    assert growth < 40, rss
    assert len(rec.tracks) <= 3
    w.close()


def test_webcam_enrolment_goes_into_the_face_store_at_once(identifier, detector, embedder, tmp_path):
    """Enrolments reach the SQLite store in their own transaction: another process (a new
    kernel) sees them while this recogniser is still running."""
    import copy
    import subprocess
    import sys

    from facekit.live import LiveRecognizer, make_demo_scene
    from facekit.store.db import FaceStore

    store = FaceStore(tmp_path / "faces.sqlite3")
    store.add_faces("someone_else", identifier.gallery_[:2], model=embedder)  # enrolled elsewhere
    stranger = make_demo_scene([STRANGER], n_frames=20, seed=3, detector=detector)
    rec = LiveRecognizer(copy.deepcopy(identifier), detector=detector, embedder=embedder, store=store)
    assert rec.enrol_frames([stranger.frame(i) for i in (6, 10, 14)], "newcomer") >= 2
    code = ("import sys; from facekit.store.db import FaceStore; "
            "print(sorted(p.name for p in FaceStore(sys.argv[1]).people()))")
    out = subprocess.run([sys.executable, "-c", code, str(store.path)], capture_output=True, text=True, timeout=120)
    assert out.stdout.strip() == "['newcomer', 'someone_else']", out.stderr
    assert "newcomer" in rec.names
    for bad in ("../x", "/abs/path", "a/b", ".", "", "unknown", "x\x00y"):
        with pytest.raises(ValueError):
            rec.enrol(identifier.gallery_[:1], bad)
    assert sorted(p.name for p in store.people()) == ["newcomer", "someone_else"]


def test_existing_gallery_file_is_never_overwritten_with_less(identifier, detector, embedder, tmp_path):
    import copy

    from facekit.recognition.identify import FaceIdentifier
    from facekit.live import LiveRecognizer

    path = tmp_path / "gallery.npz"
    identifier.save(path)
    before = set(FaceIdentifier.load(path).names)
    with pytest.raises(ValueError, match="already holds a gallery"):
        LiveRecognizer(FaceIdentifier().fit(identifier.gallery_[:2], ["x", "x"]), gallery_path=path)
    rec = LiveRecognizer(None, detector=detector, embedder=embedder, gallery_path=path)  # loads it
    rec.enrol(copy.deepcopy(identifier.gallery_[:2]), "newcomer")
    assert set(FaceIdentifier.load(path).names) == before | {"newcomer"}


def test_oversized_and_bomb_frames_are_refused_before_decoding(identifier, detector, embedder):
    import io

    from PIL import Image

    from facekit.live import LiveRecognizer

    rec = LiveRecognizer(identifier, detector=detector, embedder=embedder)
    buf = io.BytesIO()
    Image.new("L", (12000, 12000)).save(buf, format="PNG")  # ~140 KB, 144 MP once decoded
    r = rec.process_jpeg(buf.getvalue())
    assert not r.ok and "pixels" in r.message
    r = rec.process_jpeg(b"\xff\xd8" + b"\x00" * (9 * 2**20))
    assert not r.ok and "MiB" in r.message
