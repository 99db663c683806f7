"""Issue #24: a runtime without TensorFlow.

- The default detector (MTCNN in ONNX Runtime, built from the weights in the mtcnn wheel) equals the
  TensorFlow one: boxes and landmarks within 0.5 px, confidences within 1e-3, the same faces, on
  60 LFW photos, the sample photos and their 640x480 frames (``bench/detect.py`` measures 1,000 LFW
  photos and the bench's frames).
- The compiled FaceNet file built from the h5 with h5py alone is the one built from Keras.
- Nothing on the inference path imports TensorFlow or Keras: extract_faces, the store, identify,
  verify, cluster, the live loop and every ``facekit`` subcommand that does not train, each in a
  fresh process, plus the Ray engine's actors; commands print no TensorFlow/absl log lines.

A watcher (``sitecustomize``, on PYTHONPATH in every child process, Ray workers included) writes a
marker with the import's traceback when a process imports ``tensorflow`` or ``keras``, so a
failure says where the import came from.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np
import pytest

import facekit
from helpers import SAMPLE_FACE, iou

SRC = Path(facekit.__file__).resolve().parents[1]  # the facekit under test (a scratch copy too)
BANNED = ("tensorflow", "keras", "tf_keras")

WATCHER = '''
import os, sys, traceback
_OUT = os.environ.get("FK_IMPORT_MARKERS")

class _Watch:
    """Writes a marker when this process really imports a banned package (not a find_spec probe)."""
    def find_spec(self, name, path=None, target=None):
        if _OUT and path is None and name in %r:
            stack = traceback.extract_stack()
            if any(f.name == "_find_and_load" for f in stack):
                with open(os.path.join(_OUT, "import-%%d-%%s.txt" %% (os.getpid(), name)), "w") as f:
                    f.write(" ".join(sys.argv) + "\\n" + "".join(traceback.format_list(stack)))
        return None

if _OUT:
    sys.meta_path.insert(0, _Watch())
    with open(os.path.join(_OUT, "process-%%d.txt" %% os.getpid()), "w") as f:
        f.write(" ".join(sys.argv))
''' % (BANNED,)

#: run code, then write the banned modules this process holds to $FK_MODULES
EPILOGUE = '''
import json as _json, os as _os, sys as _sys
with open(_os.environ["FK_MODULES"], "w") as _f:
    _json.dump(sorted(m for m in _sys.modules if m.split(".")[0] in %r), _f)
''' % (BANNED,)

CLI = '''
import sys
from facekit.cli.main import main
code = main(sys.argv[1:])
''' + EPILOGUE + "sys.exit(code)\n"

LOG_NOISE = ("oneDNN", "absl::", "I0000 ", "W0000 ", "E0000 ", "tensorflow", "cuda", "TF-TRT", "All log messages")


@pytest.fixture(scope="module")
def watch(tmp_path_factory):
    """``run(argv or code, ...)`` -> CompletedProcess, in a fresh process that must not import TF."""
    hook = tmp_path_factory.mktemp("watcher")
    (hook / "sitecustomize.py").write_text(WATCHER)

    def run(code: str, *args: str, timeout: float = 300, env: dict | None = None, ok=(0,)):
        marks = tmp_path_factory.mktemp("markers")
        mods = marks / "modules.json"
        e = {**os.environ, "PYTHONPATH": os.pathsep.join([str(hook), str(SRC)]), "FK_IMPORT_MARKERS": str(marks),
             "FK_MODULES": str(mods), **(env or {})}
        e.pop("TF_CPP_MIN_LOG_LEVEL", None)  # a user's shell: TensorFlow's log lines would show
        r = subprocess.run([sys.executable, "-c", code, *args], capture_output=True, text=True, timeout=timeout, env=e)
        what = f"{' '.join(args) or code[:200]}\nstdout: {r.stdout[-2000:]}\nstderr: {r.stderr[-4000:]}"
        assert r.returncode in ok, what
        imports = sorted(marks.glob("import-*.txt"))
        assert not imports, "TensorFlow/Keras imported:\n" + "\n".join(p.read_text()[-3000:] for p in imports[:2])
        assert json.loads(mods.read_text()) == [], what
        r.processes = [p.read_text() for p in marks.glob("process-*.txt")]
        return r

    return run


def _quiet(r) -> None:
    """No TensorFlow or absl log line on the terminal: only the command's output and progress."""
    for line in (r.stdout + r.stderr).splitlines():
        assert not any(n in line for n in LOG_NOISE), line


# -- the detector: ONNX Runtime equals TensorFlow ------------------------------------------------
def _compare(photos, a, b) -> dict:
    """Faces of two detectors on ``photos``: matched one to one (IoU >= 0.5), differences measured."""
    out = {"faces_a": 0, "faces_b": 0, "matched": 0, "box": 0.0, "landmarks": 0.0, "confidence": 0.0}
    for img in photos:
        fa, fb = a.detect(img), b.detect(img)
        out["faces_a"] += len(fa)
        out["faces_b"] += len(fb)
        used = set()
        for f in fa:
            j = max((j for j in range(len(fb)) if j not in used), key=lambda j: iou(f.box, fb[j].box), default=None)
            if j is None or iou(f.box, fb[j].box) < 0.5:
                continue
            used.add(j)
            out["matched"] += 1
            out["box"] = max(out["box"], float(np.abs(f.box - fb[j].box).max()))
            out["landmarks"] = max(out["landmarks"], float(np.abs(f.landmarks - fb[j].landmarks).max()))
            out["confidence"] = max(out["confidence"], abs(f.confidence - fb[j].confidence))
    return out


@pytest.fixture(scope="module")
def detectors():
    from facekit.detection.detector import Detector

    onnx, tf = Detector(), Detector(backend="tensorflow")
    assert onnx.backend == "onnxruntime" and tf.backend == "tensorflow"
    return onnx, tf


def test_onnx_detector_equals_tensorflow(detectors, celeb_dir, lfw_pairs):
    from facekit.core.images import load_image
    from facekit.detection.int8 import letterbox_frame

    samples = [load_image(p) for p in sorted(p for p in celeb_dir.glob("*/*/*") if p.is_file())[::2]]
    lfw = [load_image(p) for p in lfw_pairs.unique_paths[:60]]
    for name, photos in (("LFW", lfw), ("samples", samples), ("frames", [letterbox_frame(im) for im in samples[::2]])):
        c = _compare(photos, *detectors)
        assert c["faces_a"] == c["faces_b"] == c["matched"] >= len(photos), (name, c)
        assert c["box"] <= 0.5 and c["landmarks"] <= 0.5 and c["confidence"] <= 1e-3, (name, c)


def test_onnx_detector_other_paths_equal_tensorflow(detectors, sample_face):
    """refine (the live loop), detect_batch and a small min_face_size (an enlarged pyramid level:
    the numpy area resize, not OpenCV's) agree too."""
    onnx, tf = detectors
    faces = tf.detect(sample_face)
    moved = [f.box + np.float32([5, -3, 5, -3]) for f in faces]
    for a, b in zip(onnx.refine(sample_face, moved), tf.refine(sample_face, moved)):
        assert a is not None and b is not None and np.abs(a.box - b.box).max() <= 0.5
    small = sample_face[::3, ::3]
    a, b = onnx.detect(small, min_face_size=8), tf.detect(small, min_face_size=8)
    assert len(a) == len(b) >= 1 and max(np.abs(x.box - y.box).max() for x, y in zip(a, b)) <= 0.5
    for x, y in zip(onnx.detect_batch([sample_face] * 2), tf.detect_batch([sample_face] * 2)):
        assert len(x) == len(y) and np.abs(x[0].box - y[0].box).max() <= 0.5


def test_mtcnn_onnx_files_are_cached_with_manifests(detectors):
    from facekit.detection.onnxnets import fp32_paths
    from facekit.runtime.onnxgraph import manifest_path

    for p in fp32_paths():
        m = json.loads(manifest_path(p).read_text())
        assert p.is_file() and m["sha256"] and m["key"]["weights_sha256"] and m["key"]["precision"] == "fp32"


# -- FaceNet's ONNX file from the h5, without TensorFlow ----------------------------------------
def test_facenet_onnx_from_h5_equals_keras_export(embedder):
    """The h5 read with h5py gives the graph Keras gives (node for node, same weights) and an ONNX
    file whose embeddings equal the Keras-built one's within 1e-4 (here: bit for bit)."""
    from facekit.core.cache import model_path
    from facekit.embedding.facenet import build_keras_model
    from facekit.runtime.fastgraph import fold_keras_model
    from facekit.runtime.h5graph import fold_h5_model
    from facekit.runtime.onnxgraph import export_onnx, test_crops
    from facekit.runtime.sessions import ort_session

    h5, keras = fold_h5_model(model_path()), fold_keras_model(build_keras_model("facenet128"))
    assert [h5.nodes[k].kind for k in h5.order] == [keras.nodes[k].kind for k in keras.order]
    for a, b in zip(h5.order, keras.order):
        for k in ("w", "b"):
            if k in h5.nodes[a].attrs:
                np.testing.assert_array_equal(h5.nodes[a].attrs[k], keras.nodes[b].attrs[k], err_msg=a)
    rng = np.random.default_rng(0)
    crops = np.concatenate([test_crops(), rng.integers(0, 256, (6, 160, 160, 3), dtype=np.uint8)])
    got = []
    for g in (h5, keras):
        with tempfile.NamedTemporaryFile(suffix=".onnx") as f:
            f.write(export_onnx(g, (160, 160), "per_image"))
            f.flush()
            got.append(ort_session(f.name).run(None, {"crops": crops})[0])
    assert np.abs(got[0] - got[1]).max() <= 1e-4
    # and the file the embedder runs (built from the h5 in this session) computes the same
    np.testing.assert_allclose(embedder.embed(crops), got[1], atol=1e-4)


# -- nothing on the inference path imports TensorFlow -------------------------------------------
API = {
    "extract_faces": "import facekit as fk\nassert fk.extract_faces({photo!r})",
    "verify": ("import facekit as fk\nfrom facekit.recognition.verify import verify\n"
               "a, b = (fk.extract_faces(p)[0].embedding for p in ({photo!r}, {other!r}))\nassert verify(a, b)[0]"),
    "identify_cluster": ("import numpy as np\nfrom facekit.faces import extract_faces\n"
                         "from facekit.recognition.identify import FaceIdentifier\n"
                         "from facekit.recognition.cluster import cluster_faces\n"
                         "e = np.stack([extract_faces(p)[0].embedding for p in ({photo!r}, {other!r}, {third!r})])\n"
                         "ident = FaceIdentifier().fit(e[:2], ['a', 'a'])\nassert ident.predict(e[:1])[0] == 'a'\n"
                         "cluster_faces(e, min_cluster_size=1)"),
    "store": ("from facekit.store.db import FaceStore\ns = FaceStore({store!r})\n"
              "s.enrol_folder({people!r}, verbose=False)\nassert s.names\ns.identifier()"),
    "live": ("from facekit.core.images import load_image\nfrom facekit.live import LiveRecognizer\n"
             "rec = LiveRecognizer(None, min_face_size=20)\nimg = load_image({photo!r})\n"
             "for _ in range(4):\n    r = rec.process(img)\nassert r.ok and r.faces"),
}


@pytest.fixture(scope="module")
def places(celeb_dir, tmp_path_factory):
    d = tmp_path_factory.mktemp("tf-free")
    people = d / "people"
    for who in ("ben_afflek", "madonna"):
        (people / who).mkdir(parents=True)
        for p in sorted((celeb_dir / "train" / who).glob("*.jpg"))[:3]:
            os.symlink(p, people / who / p.name)
    return {"photo": str(celeb_dir / SAMPLE_FACE), "other": str(sorted((celeb_dir / "val/ben_afflek").glob("*"))[0]),
            "third": str(sorted((celeb_dir / "val/madonna").glob("*"))[0]), "people": str(people),
            "store": str(d / "api.sqlite3"), "dir": d}


@pytest.mark.parametrize("name", sorted(API))
def test_api_without_tensorflow(name, watch, places, embedder):
    watch(API[name].format(**places) + EPILOGUE)


def _video(path: Path, photo: str) -> Path:
    import cv2

    from facekit.core.images import load_image
    from facekit.detection.int8 import letterbox_frame

    w = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), 10, (640, 480))
    for _ in range(6):
        w.write(cv2.cvtColor(letterbox_frame(load_image(photo)), cv2.COLOR_RGB2BGR))
    w.release()
    return path


def test_every_command_that_does_not_train_runs_without_tensorflow(watch, places, lfw_home_dir, embedder):
    """Every subcommand ``facekit --help`` lists, in a user's shell (no TF_CPP_MIN_LOG_LEVEL)."""
    from facekit.cli.main import build_parser

    d, photo = places["dir"], places["photo"]
    store = ["--store", str(d / "cli.sqlite3")]
    ben = str(Path(places["people"]) / "ben_afflek")
    runs = {
        "fetch": ["fetch"],
        "models": ["models"],
        "detect": ["detect", photo, "--json"],
        "verify": ["verify", photo, places["other"]],
        "enrol": ["enrol", "ben", ben, *store],
        "people": ["people", *store],
        "identify": ["identify", places["other"], *store],
        "index": ["index", places["people"], "--engine", "local", *store],
        "album": ["album", places["people"], "--out", str(d / "album")],
        "live": ["live", str(_video(d / "clip.mp4", photo)), "--max-frames", "4", *store],
        "lfw": ["lfw", "--per-fold", "2"],
        "export": ["export", str(d / "people.npz"), *store],
        "import": ["import", str(d / "people.npz"), "--store", str(d / "imported.sqlite3")],
        "forget": ["forget", "ben", *store],
        "gc": ["gc", *store],
    }
    sub = next(a for a in build_parser()._actions if a.__class__.__name__ == "_SubParsersAction")
    assert set(sub.choices) == set(runs), "a new subcommand: add it here"
    for name, argv in runs.items():  # in this order: enrol before identify and export, forget late
        r = watch(CLI, *argv, env={"SCIKIT_LEARN_DATA": str(lfw_home_dir.parent)}, ok=(0, 3))
        _quiet(r)
    assert json.loads(watch(CLI, *runs["detect"]).stdout)["rows"][0]["confidence"] > 0.9
    r = watch(CLI, "identify", "--known", places["people"], "--unknown", str(Path(places["other"]).parent), *store)
    assert "ben_afflek" in r.stdout


@pytest.mark.slow
def test_ray_engine_actors_import_no_tensorflow(watch, places, embedder):
    """``facekit index --engine ray``: the driver and every Ray worker process (the watcher runs in
    them too, and must have seen at least one) import neither TensorFlow nor Keras."""
    pytest.importorskip("ray")
    r = watch(CLI, "index", places["people"], "--engine", "ray", "--num-cpus", "2", "--store",
              str(places["dir"] / "ray.sqlite3"), timeout=600)
    assert "ray" in r.stdout and sum("default_worker" in p for p in r.processes) >= 1, r.processes
    _quiet(r)
