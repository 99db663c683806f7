"""One MTCNN cascade (facekit.detection.cascade) serves detect, detect_batch, refine and the teaching trace.

Real networks, real sample photos (the 5 Celebrity Faces set, 118 photos)."""

from __future__ import annotations

import threading

import numpy as np
import pytest

from facekit.detection.cascade import Networks, run_cascade
from facekit.teach.trace import trace_cascade
from facekit.detection.detector import Detector, match_boxes, scale_pyramid


@pytest.fixture(scope="module")
def photos(celeb_dir):
    from facekit.core.images import load_image

    paths = sorted(p for p in celeb_dir.glob("*/*/*") if p.is_file())
    assert len(paths) == 118
    return [load_image(p) for p in paths]


def _same(a, b, tol=1e-3):
    assert len(a) == len(b)
    for fa, fb in zip(a, b):
        np.testing.assert_allclose(fa.box, fb.box, atol=tol)
        np.testing.assert_allclose(fa.landmarks, fb.landmarks, atol=tol)
        assert abs(fa.confidence - fb.confidence) < 1e-5


def test_trace_faces_equal_detect_on_every_sample_photo(photos, detector):
    found = 0
    for img in photos:
        faces = detector.detect(img)
        trace = trace_cascade(img, detector=detector)
        _same(trace.faces, faces)
        found += len(faces)
        c = trace.counts()
        assert c["P-Net windows"] >= c["after P-Net NMS"] >= c["after R-Net"] >= c["after O-Net (faces)"]
        assert len(trace.rnet_scores) == c["after P-Net NMS"] and len(trace.onet_scores) == c["after R-Net"]
    assert found >= 118  # every sample photo shows at least its labelled person


def test_cascade_equals_mtcnn_detect_faces(photos, detector):
    """The reference: mtcnn 1.0's own detect_faces, given the same pyramid (mtcnn's own)."""
    from mtcnn.utils.images import build_scale_pyramid

    m = detector.mtcnn
    compared = exact = 0
    for img in photos[::6]:
        h, w = img.shape[:2]
        scales = np.asarray(build_scale_pyramid(w, h, min_face_size=20, scale_factor=0.709))
        if (np.minimum(h, w) * scales < 12).any():
            continue  # mtcnn's own pyramid has a level below P-Net's window here (the bug facekit avoids)
        ours = run_cascade(img, detector.networks(), scales, (0.6, 0.7, 0.7))
        ref = np.asarray(m.detect_faces(img, box_format="xyxy", output_type="numpy", threshold_pnet=0.6,
                                        threshold_rnet=0.7, threshold_onet=0.7), np.float64).reshape(-1, 16)
        assert ours.shape == ref.shape and len(ours) >= 1
        ours, ref = ours[np.argsort(-ours[:, 5])], ref[np.argsort(-ref[:, 5])]
        if np.allclose(ours, ref, atol=1e-3):
            exact += 1
        else:  # a tie of P-Net scores that mtcnn's unstable sort orders differently: same faces
            assert len(match_boxes(ours[:, 1:5], ref[:, 1:5], 0.9)) == len(ours)
        compared += 1
    # facekit sorts tied P-Net scores stably (batch-independent), mtcnn's numpy sort is unstable:
    # on a photo where tied windows compete, NMS may keep a neighbour (seen: 2 photos of 20)
    assert compared >= 5 and exact >= compared - 3


def test_eager_custom_and_compiled_networks_agree(photos, detector):
    eager = Detector(fast=False)
    custom = Detector(networks=tuple(stage.model for stage in detector.mtcnn.stages))
    for img in photos[::20]:
        ref = detector.detect(img)
        _same(eager.detect(img), ref, tol=0.05)
        _same(custom.detect(img), ref, tol=0.05)


def test_two_detectors_in_two_threads_equal_sequential(photos):
    dets = [Detector(), Detector(min_face_size=40)]
    imgs = photos[::6]
    expected = [[d.detect(im) for im in imgs] for d in dets]
    got: list = [None, None]
    errors: list = []

    def work(i):
        try:
            got[i] = [dets[i].detect(im) for im in imgs for _ in range(2)][::2]
        except Exception as exc:  # reported below, not swallowed
            errors.append(exc)

    threads = [threading.Thread(target=work, args=(i,)) for i in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=600)
    assert not errors, errors
    assert not any(t.is_alive() for t in threads) and None not in got
    for e, g in zip(expected, got):
        for a, b in zip(e, g):
            _same(a, b, tol=1e-4)


def test_detect_batch_equals_detect(lfw_pairs, lfw_home_dir, detector):
    """Detector.detect_batch (one cascade call for many same-size photos) finds exactly the same
    faces as detect() per photo, whatever else is in the batch (LFW: 250x250 each, one with two faces); mixed sizes fall back to per-photo
    detection."""
    from facekit.core.images import load_image

    paths = lfw_pairs.unique_paths[:24]
    paths.append(str(lfw_home_dir / "lfw_funneled" / "John_McEnroe" / "John_McEnroe_0001.jpg"))  # 2 faces
    imgs = [load_image(p) for p in paths]
    batch = detector.detect_batch(imgs)
    assert len(batch) == len(imgs) and len(batch[-1]) >= 2
    for a, b in zip(batch, [detector.detect(im) for im in imgs]):
        # exactly the same faces: P-Net's tied scores are sorted stably (mtcnn_ops._sort_desc), so
        # what else is in the batch cannot change which window survives NMS (it did: 4 px, 1 in 24)
        assert len(a) == len(b) >= 1
        for fa, fb in zip(a, b):
            np.testing.assert_allclose(fa.box, fb.box, atol=1e-4)
            np.testing.assert_allclose(fa.landmarks, fb.landmarks, atol=1e-4)
            assert abs(fa.confidence - fb.confidence) < 1e-6
    # and the same again when the batch holds other photos
    again = detector.detect_batch(imgs[5:] + imgs[:5])
    for a, b in zip(again, batch[5:] + batch[:5]):
        assert [f.box.tolist() for f in a] == [f.box.tolist() for f in b]
    mixed = detector.detect_batch([imgs[0], np.ascontiguousarray(imgs[1][:200, :180])])
    assert len(mixed) == 2 and len(mixed[0]) == len(batch[0]) and len(mixed[1]) >= 1
    assert detector.detect_batch([]) == []


def test_refine_follows_known_faces_and_drops_empty_boxes(photos, detector):
    img = photos[0]
    faces = detector.detect(img)
    assert faces
    moved = [f.box + np.float32([6, -4, 6, -4]) for f in faces]  # the face moved a little
    empty = np.float32([0, 0, 14, 14])  # a corner with no face
    got = detector.refine(img, moved + [empty])
    assert got[-1] is None
    for f, g in zip(faces, got[:-1]):
        assert g is not None
        assert match_boxes(f.box[None], g.box[None], 0.7) == [(0, 0)]
    assert detector.refine(img, []) == []


def test_match_boxes_is_one_to_one():
    a = np.array([[0, 0, 10, 10], [100, 100, 110, 110]], float)
    b = np.array([[101, 101, 111, 111], [1, 1, 11, 11], [1, 0, 10, 10]], float)
    assert sorted(match_boxes(a, b, 0.3)) == [(0, 2), (1, 0)]
    assert match_boxes(a, b[:0], 0.3) == []


def test_networks_are_validated():
    with pytest.raises(TypeError, match="three callables"):
        Detector(networks=(len, len))
    with pytest.raises(ValueError, match="min_face_size"):
        Detector(min_face_size=float("nan"))
    scales = scale_pyramid(480, 640, 20)  # 12/20 first, x0.709 each, the last one >= 12 px on 480
    np.testing.assert_allclose(scales, 0.6 * 0.709 ** np.arange(len(scales)))
    assert 480 * scales[-1] >= 12 > 480 * scales[-1] * 0.709 and len(scales) == 10
    assert scale_pyramid(10, 640, 20).size == 0  # too small for a 20-px face
    nets = Networks(len, min, max)
    assert (nets.pnet, nets.rnet, nets.onet) == nets[:3] == (len, min, max)
