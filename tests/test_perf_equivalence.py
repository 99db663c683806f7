"""Issue #7: the fast paths give the same answers as the unoptimised models.

- embedding: facekit's default backend (folded graph exported to ONNX, run by ONNX Runtime) and
  the TensorFlow folded/Winograd graph vs the Keras model's ``predict`` on real sample crops,
  batched and one face at a time (max abs difference <= 1e-4); the cached ONNX file is rebuilt
  when damaged and a new process embeds without importing TensorFlow;
- Winograd convolution and matrices vs direct convolution;
- detection: the compiled detector vs mtcnn's own ``detect_faces`` (same pyramid) on sample
  photos, and a min_face_size sweep on a 640x480 frame (40 and 80 crashed mtcnn 1.0's pyramid).

No timing assertions here: ``bench/embed.py`` and ``bench/detect.py`` measure speed.
"""

from __future__ import annotations

import numpy as np
import pytest

from helpers import iou

TOL = 1e-4


# -- embedding --------------------------------------------------------------------------------
def test_fast_embedding_equals_keras_model(embedder, celeb_val):
    from facekit.embedding.embedder import prewhiten

    assert embedder.backend == "onnxruntime", "the exported folded graph must be in use by default"
    crops = celeb_val.crops
    assert len(crops) >= embedder.SMALL_BATCH  # exercises the batched graph
    ref = embedder.keras_model.predict(prewhiten(crops), verbose=0)
    batched = embedder.embed(crops)
    assert batched.dtype == np.float32 and batched.shape == ref.shape
    assert np.abs(batched - ref).max() <= TOL
    single = np.concatenate([embedder.embed(crops[i:i + 1]) for i in range(3)])  # latency graph
    assert np.abs(single - ref[:3]).max() <= TOL
    np.testing.assert_allclose(np.linalg.norm(batched, axis=1), 1.0, atol=1e-5)


def test_fast_embedding_equals_keras_on_other_inputs(embedder, rng):
    """Saturated, flat and noisy crops (std floor of prewhitening, extreme activations)."""
    from facekit.embedding.embedder import prewhiten

    crops = np.stack([np.zeros((160, 160, 3), np.uint8), np.full((160, 160, 3), 255, np.uint8),
                      *rng.integers(0, 256, (8, 160, 160, 3), dtype=np.uint8)])
    ref = embedder.keras_model.predict(prewhiten(crops), verbose=0)
    assert np.abs(embedder.embed(crops) - ref).max() <= TOL


@pytest.fixture(scope="module")
def tf_embedder(embedder):
    from facekit.embedding.embedder import Embedder

    return Embedder(backend="tensorflow", keras_model=embedder.keras_model)  # share the loaded weights


def test_other_backends_agree(embedder, tf_embedder, celeb_val):
    from facekit.embedding.embedder import Embedder

    slow = Embedder(backend="keras", keras_model=embedder.keras_model)
    crops = celeb_val.crops[:10]
    ref = slow.embed(crops)
    assert slow.backend == "keras"
    assert np.abs(embedder.embed(crops) - ref).max() <= TOL
    assert np.abs(tf_embedder.embed(crops) - ref).max() <= TOL  # Winograd path (batched)
    assert np.abs(tf_embedder.embed(crops[:2]) - ref[:2]).max() <= TOL  # latency path
    with pytest.raises(ValueError, match="backend"):
        Embedder(backend="torch")


def test_damaged_or_tampered_onnx_cache_is_rebuilt(embedder, celeb_val, tmp_path, monkeypatch):
    """Issue 13: a truncated file, a file whose bytes were changed (still a loadable model), and
    one whose manifest was forged to match it are each rebuilt, never used."""
    import json

    import facekit.embedding.embedder as fe
    from facekit.runtime.onnxgraph import manifest_path

    monkeypatch.setenv("FACEKIT_HOME", str(tmp_path))  # a cache of its own (nothing shared is patched)
    crops = celeb_val.crops[:3]
    ref = embedder.embed(crops)
    path = fe.onnx_path(build=False)
    path.parent.mkdir(parents=True)
    path.write_bytes(b"not an onnx model")  # e.g. a download interrupted by a full disk
    fresh = fe.Embedder(keras_model=embedder.keras_model)
    assert np.abs(fresh.embed(crops) - ref).max() <= TOL
    assert path.stat().st_size > 50e6 and manifest_path(path).is_file()  # rebuilt in place
    good = path.read_bytes()

    def tamper(forge_manifest: bool):
        blob = bytearray(good)
        i = len(blob) // 2  # inside a weight tensor: the model still loads, it computes something else
        blob[i:i + 4096] = bytes(4096)
        path.write_bytes(bytes(blob))
        if forge_manifest:  # the sha256 check passes: only the test-crop embedding can tell
            import hashlib

            m = json.loads(manifest_path(path).read_text())
            m["sha256"] = hashlib.sha256(bytes(blob)).hexdigest()
            manifest_path(path).write_text(json.dumps(m))

    for forge in (False, True):
        tamper(forge)
        with pytest.warns(RuntimeWarning, match="rebuilding"):
            out = fe.Embedder(keras_model=embedder.keras_model).embed(crops)
        assert np.abs(out - ref).max() <= TOL
        assert path.read_bytes() == good, "rebuilt, not used"


def test_onnx_falls_back_when_folding_fails(embedder, celeb_val, tmp_path, monkeypatch):
    """Issue 12: a model fastgraph cannot fold runs on TensorFlow/Keras with a warning saying why."""
    import keras

    import facekit.embedding.embedder as fe

    monkeypatch.setenv("FACEKIT_HOME", str(tmp_path))
    km = embedder.keras_model
    inp = keras.Input((160, 160, 3))
    odd = keras.Model(inp, keras.layers.Lambda(lambda t: t * 1.0, name="mystery")(km(inp)))
    e = fe.Embedder(keras_model=odd)
    with pytest.warns(RuntimeWarning, match="not supported.*falling back to backend=.tensorflow."):
        out = e.embed(celeb_val.crops[:2])
    assert e.backend == "tensorflow"
    assert np.abs(out - embedder.embed(celeb_val.crops[:2])).max() <= TOL


def test_fingerprint_is_cheap_and_stable(embedder):
    import subprocess
    import sys

    from facekit.embedding.embedder import Embedder

    fp = Embedder().fingerprint
    assert fp.startswith("facenet128/6acdd8fb3a3f/onnx-v") and fp.endswith("/fp32")
    assert embedder.fingerprint == fp == Embedder(backend="keras").fingerprint
    assert Embedder(precision="int8").fingerprint != fp
    code = "import sys, facekit.embedding.embedder as fe; print(fe.Embedder().fingerprint, 'tensorflow' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.stdout.split() == [fp, "False"], out.stderr[-2000:]


def test_new_process_embeds_without_tensorflow(embedder, celeb_val, tmp_path):
    """Cold start (issue #7): with the compiled model cached, no TensorFlow import at all."""
    import subprocess
    import sys

    from facekit.embedding.embedder import onnx_path

    assert onnx_path(build=False).exists()  # the session fixture built it
    np.save(tmp_path / "crops.npy", celeb_val.crops[:4])
    code = ("import sys, numpy as np, facekit; "
            f"e = facekit.embed(np.load({str(tmp_path / 'crops.npy')!r})); "
            f"np.save({str(tmp_path / 'out.npy')!r}, e); "
            "print('tensorflow' in sys.modules, 'keras' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.split()[-2:] == ["False", "False"]
    assert np.abs(np.load(tmp_path / "out.npy") - embedder.embed(celeb_val.crops[:4])).max() <= TOL


def test_folding_removed_batchnorm_and_merged_branches(embedder):
    from facekit.runtime.fastgraph import conv_macs, winograd_plan

    g = embedder.folded_graph()
    kinds = [g.nodes[k].kind for k in g.order]
    assert "affine" not in kinds and "identity" not in kinds, "every BatchNorm/scale/Dropout folded"
    assert kinds.count("slice") >= 2 * 5 + 2 * 10, "1x1 branches of every block merged"
    assert abs(conv_macs(g) / 1e9 - 1.417) < 0.01  # Inception-ResNet-v1 at 160x160
    assert "Conv2d_4a_3x3" in winograd_plan(g, batched=False)
    assert set(winograd_plan(g, batched=False)) <= set(winograd_plan(g, batched=True))


@pytest.mark.parametrize("m,r", [(2, 3), (4, 3), (6, 3), (4, 7)])
def test_winograd_matrices(m, r, rng):
    from facekit.runtime.fastgraph import winograd_matrices

    AT, G, BT = winograd_matrices(m, r)
    d, g = rng.standard_normal(m + r - 1), rng.standard_normal(r)
    y = AT @ ((G @ g) * (BT @ d))
    ref = np.array([d[i:i + r] @ g for i in range(m)])
    np.testing.assert_allclose(y, ref, atol=1e-9)


@pytest.mark.parametrize("shape,kernel,padding,m", [
    ((2, 19, 21, 16), (3, 3), "VALID", 6), ((1, 17, 17, 8), (3, 3), "SAME", 4),
    ((3, 8, 8, 8), (1, 7), "SAME", 4), ((2, 8, 9, 8), (7, 1), "SAME", 4)])
def test_winograd_conv_equals_direct(shape, kernel, padding, m, rng):
    import tensorflow as tf

    from facekit.runtime.fastgraph import _winograd_constants, _winograd_conv

    x = np.maximum(rng.standard_normal(shape), 0).astype(np.float32)
    w = rng.standard_normal((*kernel, shape[3], 12)) / np.sqrt(np.prod(kernel) * shape[3])
    ref = tf.nn.conv2d(x, w.astype(np.float32), 1, padding).numpy()
    U, Tin, Tout = (tf.constant(a.astype(np.float32)) for a in _winograd_constants(w, m))
    y = _winograd_conv(tf, tf.constant(x), U, Tin, Tout, kernel[0], kernel[1], m, padding).numpy()
    assert y.shape == ref.shape
    assert np.abs(y - ref).max() <= 1e-4 * np.abs(ref).max()


# -- detection --------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def sample_photos(celeb_dir):
    from facekit.core.images import load_image

    paths = sorted(p for p in celeb_dir.glob("val/*/*") if p.is_file())[::4]  # 7 photos, 5 people
    return [load_image(p) for p in paths]


def test_fast_detector_agrees_with_mtcnn(sample_photos, detector):
    from facekit.detection.detector import Detector
    from facekit.detection.detector import largest_face

    assert detector.fast
    ref = Detector(fast=False)
    for img in sample_photos:
        a, b = detector.detect(img), ref.detect(img)
        assert len(a) == len(b) >= 1
        assert iou(largest_face(a).box, largest_face(b).box) >= 0.99
        for fa, fb in zip(a, b):
            np.testing.assert_allclose(fa.box, fb.box, atol=0.05)
            np.testing.assert_allclose(fa.landmarks, fb.landmarks, atol=0.05)
            assert abs(fa.confidence - fb.confidence) < 1e-4


def _frame(img, w=640, h=480):
    from facekit.detection.int8 import letterbox_frame  # the webcam-sized test frame bench/quant.py uses too

    return letterbox_frame(img, w, h)


@pytest.mark.parametrize("min_face_size", [12, 20, 40, 80, 160, 300, 479, 480, 2000])
def test_min_face_size_sweep_on_640x480(min_face_size, sample_photos, detector):
    frame = _frame(sample_photos[0])  # one face of about 190 x 260 px
    faces = detector.detect(frame, min_face_size=min_face_size)
    if min_face_size <= 300:  # up to the face's size: found, in the same place
        ref = detector.detect(frame, min_face_size=20)
        assert len(faces) == len(ref) == 1, f"min_face_size={min_face_size}: {faces}"
        f = faces[0]
        assert f.box.shape == (4,) and f.landmarks.shape == (5, 2)
        assert 0 <= f.box[0] < f.box[2] <= 640 and 0 <= f.box[1] < f.box[3] <= 480
        assert iou(f.box, ref[0].box) >= 0.75, (f.box, ref[0].box)
    else:  # larger than the face (479, 480: the whole frame's height; 2000: more than the frame)
        assert faces == [], f"min_face_size={min_face_size}: {faces}"


def test_fast_detector_odd_images(sample_photos, detector):
    import cv2

    img = sample_photos[1]
    gray = cv2.cvtColor(img, cv2.COLOR_RGB2GRAY)
    assert detector.detect(gray), "grayscale photo"
    rgba = np.dstack([img, np.full(img.shape[:2], 255, np.uint8)])
    assert len(detector.detect(rgba)) == len(detector.detect(img))
    assert detector.detect(np.zeros((8, 8, 3), np.uint8)) == []
    assert detector.detect(np.zeros((480, 640, 3), np.uint8)) == []  # no candidate at all
    huge = cv2.resize(img, None, fx=3000 / max(img.shape[:2]), fy=3000 / max(img.shape[:2]))
    faces = detector.detect(huge)
    assert faces and max(f.box[2] for f in faces) > 1280  # boxes in full-resolution pixels


def test_no_retracing(tf_embedder, sample_photos, rng):
    """One trace per network whatever the image size / batch size (mtcnn 1.0 re-dispatched eagerly);
    the TensorFlow backend's compiled networks (the default detector runs ONNX Runtime)."""
    from facekit.detection.detector import Detector

    detector = Detector(backend="tensorflow")
    for img in (sample_photos[0], sample_photos[0][::2, ::3], np.ascontiguousarray(sample_photos[2][:300, :200])):
        detector.detect(img)
    for fn in detector.compiled_nets():
        assert fn.experimental_get_tracing_count() == 1
    for n in (1, 2, 3):
        tf_embedder.embed(rng.integers(0, 256, (n, 160, 160, 3), dtype=np.uint8))
    assert tf_embedder._fn_small.experimental_get_tracing_count() == 1
