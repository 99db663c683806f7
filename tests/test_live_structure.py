"""The shape of facekit.live (issue 12): the tracker seam, headless video, old names kept.

- A fake tracker of a dozen lines (re-detect every frame, keep ids by IoU; no optical flow)
  replaces :class:`FlowTracker` in :class:`LiveRecognizer`, and the loop still names the sample
  faces (real model, real sample photos, the synthetic demo scene).
- ``import facekit.live.video`` in a fresh interpreter imports no widget library (nor TensorFlow).
- Every name ``facekit.live`` and ``facekit.live.camera`` exported before the split still imports; the
  American enrolment spellings are aliases; the camera widget's slider starts at the recogniser's
  threshold, which defaults to the model's calibrated one.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from helpers import ENROLLED, STRANGER

ROOT = Path(__file__).resolve().parents[1]


class DetectEveryFrame:
    """A test tracker: MTCNN on every frame, a detection keeps the id of the box it overlaps."""

    def __init__(self, detector):
        self.detector, self.tracks, self.next_id, self.calls = detector, [], 1, 0

    def reset(self):
        self.tracks = []

    def follow(self, frame):
        from facekit.live import Track, iou

        old, self.tracks, self.calls = self.tracks, [], self.calls + 1
        for f in self.detector.detect(frame, min_face_size=40):
            same = [t.id for t in old if iou(t.box, f.box) > 0.3]
            self.tracks.append(Track(same[0] if same else self.next_id, f.box, f.landmarks, f.confidence))
            self.next_id += not same
        return False

    def update(self, faces, *, per_track=False):
        return False  # it found the faces itself in follow()


@pytest.fixture(scope="module")
def identifier(live_identifier):
    """This module's copy of the sample people's gallery (conftest.live_identifier); a test that
    enrols into it works on a copy of its own."""
    import copy

    return copy.deepcopy(live_identifier)


def test_a_fake_tracker_replaces_optical_flow_and_faces_are_still_named(identifier, detector, embedder):
    from facekit.live import FlowTracker, LiveRecognizer, Tracker, make_demo_scene

    scene = make_demo_scene(["ben_afflek", "elton_john", STRANGER], n_frames=90, seed=0, detector=detector)
    fake = DetectEveryFrame(detector)
    assert isinstance(fake, Tracker) and isinstance(FlowTracker(), Tracker)
    rec = LiveRecognizer(identifier, detector=detector, embedder=embedder, tracker=fake)
    assert rec.tracker is fake
    results = [rec.process(scene.frame(i)) for i in range(25, 70)]
    score = _score(scene, results, start=25)
    print("fake tracker:", score, rec.stats)
    assert fake.calls == len(results)  # the recogniser asked the fake, every frame
    assert score["faces"] > 60 and score["strangers"] > 20, score
    assert score["face_correct_rate"] >= 0.85, score
    assert score["unknown_rate"] >= 0.8, score
    ids = {f.track_id for r in results for f in r.faces}
    assert ids <= set(range(1, fake.next_id)) and len(ids) <= 6, ids
    assert rec.stats["errors"] == 0


def _score(scene, results, start):
    """Per-face naming rates of ``results`` (frames ``start``, ``start + 1``, ...): an enrolled
    face is right with its name, a stranger with "unknown" (as DemoScene.score judges)."""
    from facekit.live import iou

    right = {True: [], False: []}
    for i, r in enumerate(results, start):
        for name, box in scene.truth(i):
            got = [f.name for f in r.faces if iou(f.box, box) >= 0.3]
            want = name if name in ENROLLED else "unknown"
            right[name in ENROLLED].append(bool(got) and got[0] == want)
    return {"face_correct_rate": float(np.mean(right[True])), "unknown_rate": float(np.mean(right[False])),
            "faces": len(right[True]), "strangers": len(right[False])}


def _fresh_import(code: str) -> dict:
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=120,
                         env={"PYTHONPATH": str(ROOT), "PATH": "/usr/bin:/bin"})
    assert out.returncode == 0, out.stderr
    return json.loads(out.stdout.strip().splitlines()[-1])


def test_headless_video_imports_no_widget_library():
    got = _fresh_import(
        "import json, sys; import facekit.live.video as v; v.VideoSource, v.write_video, v.write_y4m; "
        "print(json.dumps(sorted(m for m in sys.modules if m.split('.')[0] in "
        "('anywidget', 'ipywidgets', 'traitlets', 'IPython', 'tensorflow', 'keras'))))")
    assert got == [], got


def test_importing_facekit_live_is_light():
    got = _fresh_import(
        "import json, sys; from facekit.live import LiveRecognizer, make_demo_scene, run_source; "
        "print(json.dumps(sorted(m for m in sys.modules if m.split('.')[0] in "
        "('anywidget', 'ipywidgets', 'tensorflow', 'keras', 'mtcnn'))))")
    assert got == [], got


def test_every_old_public_name_still_imports():
    import facekit.live.camera as camera
    import facekit.live as live
    from facekit.live import video

    old_live = ["LiveRecognizer", "LiveFace", "FrameResult", "Track", "PENDING", "UNKNOWN", "iou", "iou_matrix",
                "refine_faces", "stage_costs", "annotate", "run_source", "SourceSummary", "DemoScene",
                "make_demo_scene", "decode_jpeg", "encode_jpeg"]
    for name in old_live:
        obj = getattr(live, name)  # AttributeError when it is gone
        assert name in live.__all__, name
        assert isinstance(obj, str) or (callable(obj) and obj.__module__.startswith("facekit.")), (name, obj)
    for name in ["CameraWidget", "VideoSource", "write_video", "write_y4m"]:
        obj = getattr(camera, name)
        assert callable(obj) and obj.__module__.startswith("facekit.live"), (name, obj)
    assert camera.VideoSource is video.VideoSource and camera.write_video is video.write_video
    assert live.UNKNOWN == "unknown" and live.PENDING == "..."
    with pytest.raises(AttributeError):
        live.no_such_name  # noqa: B018


def test_enrol_is_the_api_spelling_and_enroll_an_alias():
    from facekit.live import LiveRecognizer

    for old, new in [("start_enrollment", "start_enrolment"), ("cancel_enrollment", "cancel_enrolment"),
                     ("enroll", "enrol"), ("enroll_frames", "enrol_frames")]:
        assert getattr(LiveRecognizer, old) is getattr(LiveRecognizer, new)
    rec = LiveRecognizer()
    rec.start_enrollment("ada", shots=2)
    assert rec.enrolling == "ada"
    rec.cancel_enrolment()
    assert rec.enrolling is None


def test_threshold_defaults_to_the_model_and_the_slider_starts_there(celeb_train):
    from facekit.live.camera import CameraWidget
    from facekit.recognition.identify import FaceIdentifier
    from facekit.live import LiveRecognizer
    from facekit.models.registry import model_spec

    unknown = model_spec("facenet128").thresholds.unknown
    rec = LiveRecognizer()  # no gallery yet
    assert rec.threshold == pytest.approx(unknown)
    w = CameraWidget(rec, threaded=False)
    assert w.threshold == pytest.approx(rec.threshold)
    w.close()
    strict = FaceIdentifier(threshold=0.55).fit(celeb_train.embeddings, celeb_train.labels)
    w = CameraWidget(LiveRecognizer(strict), threaded=False)  # the gallery's own threshold
    assert w.threshold == pytest.approx(0.55)
    w.close()
    rec = LiveRecognizer(strict, threshold=0.7)  # set on the recogniser: wins
    w = CameraWidget(rec, threaded=False)
    assert w.threshold == pytest.approx(0.7)
    w.threshold = 0.9  # the slider drives the recogniser
    assert rec.threshold == pytest.approx(0.9)
    w.close()


def test_deprecated_refine_faces_is_detector_refine(detector):
    from facekit.live import make_demo_scene, refine_faces

    scene = make_demo_scene(["elton_john"], n_frames=4, enter_exit=False, detector=detector)
    img = scene.frame(1)
    boxes = [b for _, b in scene.truth(1)]
    with pytest.warns(DeprecationWarning):
        old = refine_faces(detector, img, boxes)
    new = detector.refine(img, boxes)
    assert len(old) == len(new) == 1 and old[0] is not None
    np.testing.assert_allclose(old[0].box, new[0].box)
