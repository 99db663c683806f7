"""dlib's ResNet as ONNX, dlib's face chips and 5-point shape predictor in numpy: all checked
against dlib itself (dlib-bin) on real faces (LFW people and the sample photos), real weights."""

from __future__ import annotations

from pathlib import Path

import cv2
import dlib
import face_recognition_models
import numpy as np
import pytest

from facekit.runtime.dlib_chip import (
    MTCNN_TEMPLATE,
    ShapePredictor5,
    face_chip,
    mtcnn_chip,
)
from facekit.runtime.dlib_dat import (
    DESCRIPTOR_DIM,
    dlib_resnet_onnx,
    ort_descriptor,
    ort_session,
    read_dlib_resnet,
)

RESNET = face_recognition_models.face_recognition_model_location()
SP5 = face_recognition_models.pose_predictor_five_point_model_location()
SP68 = face_recognition_models.pose_predictor_model_location()
LFW_PEOPLE = ["Aaron_Eckhart", "Angelina_Jolie", "Colin_Powell", "George_W_Bush", "Gloria_Macapagal_Arroyo",
              "Jennifer_Lopez", "Junichiro_Koizumi", "Serena_Williams", "Tony_Blair", "Vladimir_Putin"]


def _rgb(path: Path) -> np.ndarray:
    return cv2.cvtColor(cv2.imread(str(path)), cv2.COLOR_BGR2RGB)


def _pts(shape: dlib.full_object_detection) -> np.ndarray:
    return np.array([(p.x, p.y) for p in shape.parts()], np.float64)


@pytest.fixture(scope="module")
def faces(lfw_home_dir: Path, celeb_dir: Path) -> list[dict]:
    """One face per image: 10 LFW people and 6 sample photos, with dlib's box, landmarks, chip."""
    paths = [lfw_home_dir / "lfw_funneled" / p / f"{p}_0001.jpg" for p in LFW_PEOPLE]
    paths += sorted(celeb_dir.glob("val/*/*.jpg"))[::4][:6]
    det, sp = dlib.get_frontal_face_detector(), dlib.shape_predictor(SP5)
    out = []
    for path in paths:
        img = _rgb(path)
        rects = det(img, 1)
        if not rects:
            continue
        shape = sp(img, rects[0])
        out.append({"path": path, "img": img, "rect": rects[0], "pts": _pts(shape),
                    "chip": dlib.get_face_chip(img, shape, size=150, padding=0.25)})
    assert len(out) >= 14, [f["path"].name for f in out]
    return out


@pytest.fixture(scope="module")
def onnx_path(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The converted network, built once per test session."""
    path = tmp_path_factory.mktemp("dlib") / "dlib_resnet_v1.onnx"
    path.write_bytes(dlib_resnet_onnx(RESNET))
    return path


@pytest.fixture(scope="module")
def dlib_net() -> dlib.face_recognition_model_v1:
    return dlib.face_recognition_model_v1(RESNET)


def test_reader_finds_dlib_anet_type():
    net = read_dlib_resnet(RESNET)
    kinds = [layer["type"] for layer in net.layers]
    assert kinds[0] == "input" and net.layers[0]["size"] == (150, 150)
    np.testing.assert_allclose(net.mean_rgb, (122.782, 117.001, 104.298), atol=1e-4)
    assert kinds.count("con") == 29 and kinds.count("affine") == 29 and kinds.count("add_prev") == 14
    first, last = net.layers[1], net.layers[-1]
    assert first["W"].shape == (32, 3, 7, 7) and first["stride"] == (2, 2) and first["pad"] == (0, 0)
    assert last["type"] == "fc" and last["W"].shape == (256, DESCRIPTOR_DIM) and last["b"] is None
    assert net.loss["type"] == "loss_metric" and abs(net.loss["dist_thresh"] - 0.6) < 1e-6
    with pytest.raises(ValueError):
        read_dlib_resnet(SP5)  # a shape predictor is not a network


@pytest.mark.parametrize("optimize", [True, False], ids=["ort_enable_all", "ort_disable_all"])
def test_onnx_descriptor_equals_dlib(faces, onnx_path, dlib_net, optimize):
    chips = np.stack([f["chip"] for f in faces])
    ref = np.array(dlib_net.compute_face_descriptor(list(chips)), np.float32)
    got = ort_descriptor(ort_session(onnx_path, threads=2, optimize=optimize), chips)
    assert got.shape == (len(faces), DESCRIPTOR_DIM) and got.dtype == np.float32
    err = float(np.abs(got - ref).max())
    print(f"\nONNX ({'ORT_ENABLE_ALL' if optimize else 'no graph optimisation'}) vs dlib on "
          f"{len(faces)} faces: max abs diff {err:.3g}; descriptor norms "
          f"{np.linalg.norm(ref, axis=1).min():.3f}..{np.linalg.norm(ref, axis=1).max():.3f}")
    assert err <= 1e-4
    # a single chip, uint8 in, works the same
    np.testing.assert_allclose(ort_descriptor(onnx_path.read_bytes(), chips[0]), ref[:1], atol=1e-4)


def test_face_chip_equals_dlib(faces):
    for f in faces:
        chip = face_chip(f["img"], f["pts"], size=150, padding=0.25)
        assert chip.shape == (150, 150, 3) and chip.dtype == np.uint8
        diff = int(np.abs(chip.astype(int) - f["chip"]).max())
        assert diff == 0, f"{f['path'].name}: {diff} grey levels"


@pytest.mark.parametrize("scale", [4, 9])
def test_face_chip_equals_dlib_on_large_faces(faces, scale):
    """A face much larger than the chip goes through dlib's 2x image pyramid first."""
    f = faces[0]
    big = cv2.resize(f["img"], None, fx=scale, fy=scale, interpolation=cv2.INTER_LINEAR)
    pts = np.round(f["pts"] * scale)
    shape = dlib.full_object_detection(dlib.rectangle(0, 0, 1, 1), [dlib.point(int(x), int(y)) for x, y in pts])
    ref = dlib.get_face_chip(big, shape, size=150, padding=0.25)
    assert int(np.abs(face_chip(big, pts).astype(int) - ref).max()) == 0


def test_face_chip_equals_dlib_at_the_image_border(faces):
    f = faces[1]
    x0 = int(f["pts"][:, 0].min()) - 5  # cut the image just left of the face: black chip border
    img = np.ascontiguousarray(f["img"][:, x0:])
    pts = f["pts"] - [x0, 0]
    shape = dlib.full_object_detection(dlib.rectangle(0, 0, 1, 1), [dlib.point(int(x), int(y)) for x, y in pts])
    ref = dlib.get_face_chip(img, shape, size=150, padding=0.25)
    chip = face_chip(img, pts)
    assert (ref == 0).all(axis=2).any() and int(np.abs(chip.astype(int) - ref).max()) == 0


def test_shape_predictor_equals_dlib(faces):
    ours, theirs = ShapePredictor5(SP5), dlib.shape_predictor(SP5)
    assert ours.num_parts == 5
    rng = np.random.default_rng(0)
    worst = 0.0
    for f in faces:
        r = f["rect"]
        boxes = [(r.left(), r.top(), r.right(), r.bottom())]
        for _ in range(3):  # jittered boxes: sizes w % 4 == 2 hit exact .5 ties, some leave the image
            w = int(rng.integers(15, 40)) * 4 + 2
            x, y = r.left() + int(rng.integers(-30, 30)), r.top() + int(rng.integers(-30, 30))
            boxes.append((x, y, x + w, y + w + int(rng.integers(-3, 4))))
        for box in boxes:
            ref = _pts(theirs(f["img"], dlib.rectangle(*box)))
            worst = max(worst, float(np.abs(ours(f["img"], box) - ref).max()))
    print(f"\nShapePredictor5 vs dlib on {4 * len(faces)} boxes: max abs diff {worst} px")
    assert worst <= 0.01


def test_mtcnn_chip_aligns_like_dlib(faces, onnx_path, dlib_net):
    """MTCNN-style points (eye centres, nose tip, mouth corners; taken from dlib's 68-point
    model here) give chips whose descriptors sit as close to dlib's own chips as dlib's 5- and
    68-point alignments sit to each other (~0.1 in Euclidean units; dlib's threshold is 0.6)."""
    sp68 = dlib.shape_predictor(SP68)
    assert MTCNN_TEMPLATE[0, 0] < MTCNN_TEMPLATE[1, 0] and MTCNN_TEMPLATE[3, 0] < MTCNN_TEMPLATE[4, 0]
    chips, refs = [], []
    for f in faces:
        shape = sp68(f["img"], f["rect"])
        p = _pts(shape)
        m5 = np.stack([p[36:42].mean(0), p[42:48].mean(0), p[30], p[48], p[54]])
        chips.append(mtcnn_chip(f["img"], m5))
        refs.append(dlib.get_face_chip(f["img"], shape, size=150, padding=0.25))
    sess = ort_session(onnx_path, threads=2)
    dist = np.linalg.norm(ort_descriptor(sess, np.stack(chips)) - ort_descriptor(sess, np.stack(refs)), axis=1)
    print(f"\nmtcnn_chip vs dlib 68-point chip: descriptor distance mean {dist.mean():.3f} max {dist.max():.3f}")
    assert dist.max() < 0.25


def test_dlib128_is_dlibs_descriptor_of_the_chip_and_its_mirror(faces, dlib_net):
    """The registered model's raw output (``facekit.embedding.dlib.make``, what the Embedder scales
    to unit length) is the mean of dlib's own descriptors of the chip and of its mirror image."""
    from facekit.embedding import dlib as backend
    from facekit.embedding.embedder import Embedder
    from facekit.models.registry import model_spec

    chips = np.stack([f["chip"] for f in faces])
    mirrored = np.ascontiguousarray(chips[:, :, ::-1])
    ref = (np.array(dlib_net.compute_face_descriptor(list(chips)), np.float32)
           + np.array(dlib_net.compute_face_descriptor(list(mirrored)), np.float32)) / 2
    assert backend.MIRROR
    got = backend.make(model_spec("dlib128"), threads=2)(chips)
    assert float(np.abs(got - ref).max()) <= 1e-4
    unit = Embedder("dlib128", threads=2).embed(chips)
    np.testing.assert_allclose(unit, ref / np.linalg.norm(ref, axis=1, keepdims=True), atol=1e-4)
    # a face and its mirror image get the same embedding
    np.testing.assert_allclose(Embedder("dlib128", threads=2).embed(mirrored), unit, atol=1e-5)
