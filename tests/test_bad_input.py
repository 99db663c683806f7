"""Every kind of awkward input gets a correct result or a clear error naming the file and the fix."""

from __future__ import annotations

import shutil

import cv2
import numpy as np
import pytest
from PIL import Image

import facekit as fk
from facekit.core.images import ImageLoadError, load_image
from facekit.data.folders import EmptyDatasetError, load_folder
from helpers import iou


@pytest.fixture(scope="module")
def face_path(sample_face_path):
    return sample_face_path


@pytest.fixture(scope="module")
def face_img(sample_face):
    return sample_face


def _upright_face(img):
    faces = fk.detect_faces(img)
    if not faces:  # MTCNN finds no face lying on its side
        return False
    lm = faces[0].landmarks
    return lm[0, 1] < lm[2, 1] < lm[3, 1] and lm[0, 0] < lm[1, 0]


# --- files that cannot be images --------------------------------------------------------

def test_truncated_jpeg(tmp_path, face_path):
    data = face_path.read_bytes()
    bad = tmp_path / "cut.jpg"
    bad.write_bytes(data[: len(data) // 2])
    with pytest.raises(ImageLoadError) as exc:
        load_image(bad)
    msg = str(exc.value)
    assert str(bad) in msg and "truncated or corrupt" in msg and "Fix:" in msg


def test_corrupt_jpeg_garbage_after_header(tmp_path, face_path):
    data = bytearray(face_path.read_bytes())
    bad = tmp_path / "garbage.jpg"
    bad.write_bytes(bytes(data[:20]) + np.random.default_rng(0).bytes(4000))
    with pytest.raises(ImageLoadError) as exc:
        load_image(bad)
    assert str(bad) in str(exc.value)


def test_non_image_file_and_empty_file_and_missing(tmp_path):
    txt = tmp_path / "notes.jpg"
    txt.write_text("these are not pixels")
    with pytest.raises(ImageLoadError, match="not an image file"):
        load_image(txt)
    empty = tmp_path / "empty.png"
    empty.write_bytes(b"")
    with pytest.raises(ImageLoadError, match="empty"):
        load_image(empty)
    with pytest.raises(ImageLoadError, match="file not found"):
        load_image(tmp_path / "nope.jpg")


# --- colour modes and bit depths --------------------------------------------------------

def test_grayscale_file_and_2d_array(tmp_path, face_img):
    g = cv2.cvtColor(face_img, cv2.COLOR_RGB2GRAY)
    p = tmp_path / "gray.jpg"
    Image.fromarray(g).save(p)
    img = load_image(p)
    assert img.shape == face_img.shape and img.dtype == np.uint8
    assert (img[..., 0] == img[..., 1]).all()
    assert fk.detect_faces(img) and fk.detect_faces(g)  # 2-D array straight into the detector


def test_rgba_and_palette_png(tmp_path, face_img):
    rgba = np.dstack([face_img, np.full(face_img.shape[:2], 255, np.uint8)])
    rgba[:10, :10, 3] = 0  # a transparent corner becomes white
    p = tmp_path / "rgba.png"
    Image.fromarray(rgba, "RGBA").save(p)
    img = load_image(p)
    assert img.shape == face_img.shape
    assert (img[:10, :10] == 255).all() and np.array_equal(img[20:, 20:], face_img[20:, 20:])
    pal = tmp_path / "palette.png"
    Image.fromarray(face_img).convert("P", palette=Image.Palette.ADAPTIVE, colors=256).save(pal)
    img = load_image(pal)
    assert img.shape == face_img.shape and np.abs(img.astype(int) - face_img).mean() < 12
    assert fk.detect_faces(img)
    assert fk.detect_faces(rgba)  # RGBA arrays are accepted too


def test_cmyk_jpeg(tmp_path, face_img):
    p = tmp_path / "cmyk.jpg"
    Image.fromarray(face_img).convert("CMYK").save(p, quality=95)
    assert Image.open(p).mode == "CMYK"
    img = load_image(p)
    assert img.shape == face_img.shape and np.abs(img.astype(int) - face_img).mean() < 12
    assert fk.detect_faces(img)


def test_16bit_png_gray_and_rgb(tmp_path, face_img):
    g16 = cv2.cvtColor(face_img, cv2.COLOR_RGB2GRAY).astype(np.uint16) * 257
    p = tmp_path / "gray16.png"
    cv2.imwrite(str(p), g16)
    img = load_image(p)
    assert img.dtype == np.uint8 and img.shape == face_img.shape
    np.testing.assert_allclose(img[..., 0].astype(int), g16 // 257, atol=1)
    rgb16 = face_img.astype(np.uint16) * 257
    p2 = tmp_path / "rgb16.png"
    cv2.imwrite(str(p2), cv2.cvtColor(rgb16, cv2.COLOR_RGB2BGR))
    img2 = load_image(p2)
    assert img2.dtype == np.uint8 and np.abs(img2.astype(int) - face_img).max() <= 1
    assert fk.detect_faces(img2)
    # uint16 and float arrays straight into the detector
    assert fk.detect_faces(rgb16) and fk.detect_faces(face_img / 255.0)


def test_exif_rotated_phone_photo_comes_out_upright(tmp_path, face_img):
    stored = np.ascontiguousarray(np.rot90(face_img, 1))  # sensor pixels rotated 90 deg CCW
    im = Image.fromarray(stored)
    exif = im.getexif()
    exif[0x0112] = 6  # Orientation: rotate 90 CW to display
    p = tmp_path / "phone.jpg"
    im.save(p, exif=exif, quality=95)
    assert not _upright_face(np.asarray(Image.open(p).convert("RGB")))  # raw pixels lie sideways
    img = load_image(p)
    assert img.shape == face_img.shape
    assert np.abs(img.astype(int) - face_img).mean() < 6
    assert _upright_face(img)


# --- sizes ------------------------------------------------------------------------------

def test_tiny_image_has_no_face_and_does_not_crash(tmp_path):
    p = tmp_path / "tiny.png"
    Image.fromarray(np.full((10, 10, 3), 200, np.uint8)).save(p)
    img = load_image(p)
    assert img.shape == (10, 10, 3)
    assert fk.detect_faces(img) == []
    assert fk.extract_faces(img) == []


def test_huge_image_boxes_in_full_resolution(tmp_path, face_img):
    big = np.full((4000, 6000, 3), 90, np.uint8)
    h, w = face_img.shape[:2]
    k = 4  # the photo, 4x larger, pasted at a known place
    up = cv2.resize(face_img, (w * k, h * k))
    y0, x0 = 1500, 3200
    big[y0:y0 + h * k, x0:x0 + w * k] = up
    p = tmp_path / "huge.jpg"
    Image.fromarray(big).save(p, quality=90)
    img = load_image(p)
    faces = fk.detect_faces(img)
    ref = fk.detect_faces(face_img)[0]
    assert faces, "face in a 6000x4000 photo not found"
    got = faces[0].box
    want = ref.box * k + np.array([x0, y0, x0, y0])
    assert np.abs(got - want).max() < 0.15 * (want[2] - want[0]), (got, want)


def _vga_frame(face_img):
    frame = np.zeros((480, 640, 3), np.uint8)
    face = cv2.resize(face_img, (300, 300 * face_img.shape[0] // face_img.shape[1]))
    frame[60:60 + face.shape[0], 170:470] = face[:420]
    return frame  # the face: about 205 x 240 px


@pytest.mark.parametrize("mfs", [12, 20, 30, 40, 60, 80, 120, 200, 400])
def test_any_min_face_size_on_vga(face_img, mfs):
    frame = _vga_frame(face_img)
    faces = fk.detect_faces(frame, min_face_size=mfs)  # mtcnn 1.0 itself raises for 40 and 80
    if mfs <= 200:  # at most the face's size: found, in the same place
        ref = fk.detect_faces(frame, min_face_size=20)
        assert len(faces) == len(ref) == 1, (mfs, faces)
        assert iou(faces[0].box, ref[0].box) >= 0.75, (mfs, faces[0].box, ref[0].box)
    else:  # larger than the face: nothing
        assert faces == [], (mfs, faces)


def test_no_face_image():
    rng = np.random.default_rng(1)
    noise = cv2.GaussianBlur(rng.integers(0, 255, (300, 400, 3), dtype=np.uint8), (9, 9), 3)
    assert [f for f in fk.detect_faces(noise) if f.confidence > 0.9] == []


# --- folders ----------------------------------------------------------------------------

def test_folder_reports_what_it_skips(tmp_path, celeb_dir, capsys):
    root = tmp_path / "people"
    (root / "alice").mkdir(parents=True)
    (root / "empty_person").mkdir()
    (root / "solo").mkdir()
    ben = sorted((celeb_dir / "train" / "ben_afflek").iterdir())
    for i, src in enumerate(ben[:3]):
        shutil.copy(src, root / "alice" / f"{i}.jpg")
    shutil.copy(sorted((celeb_dir / "train" / "madonna").iterdir())[0], root / "solo" / "only.jpg")
    (root / "alice" / "readme.txt").write_text("not a photo")
    data = ben[0].read_bytes()
    (root / "alice" / "broken.jpg").write_bytes(data[: len(data) // 3])
    Image.fromarray(np.full((200, 200, 3), 40, np.uint8)).save(root / "alice" / "wall.png")

    fs = load_folder(root, progress=False)
    out = capsys.readouterr().out
    assert len(fs) == 4 and fs.names == ["alice", "solo"]
    assert (fs.labels == "solo").sum() == 1  # a folder of one image is fine
    assert fs.embeddings.shape == (4, 128)
    skipped = {s.path.rsplit("/", 1)[-1]: s.reason for s in fs.skipped}
    assert set(skipped) == {"readme.txt", "broken.jpg", "wall.png"}
    assert "not an image" in skipped["readme.txt"]
    assert "truncated" in skipped["broken.jpg"]
    assert "no face" in skipped["wall.png"]
    assert fs.empty_identities == ["empty_person"]
    for name in ("readme.txt", "broken.jpg", "wall.png", "empty_person"):
        assert name in out  # printed, not silently dropped


def test_folder_with_nothing_usable(tmp_path):
    (tmp_path / "bob").mkdir()
    with pytest.raises(EmptyDatasetError, match="no usable face photos"):
        load_folder(tmp_path, progress=False, verbose=False)
    with pytest.raises(FileNotFoundError, match="one sub-folder per"):
        load_folder(tmp_path / "missing", progress=False)


def test_nan_min_face_size_and_permission_errors_are_clear(tmp_path, monkeypatch):
    from unittest import mock

    from facekit.data.folders import load_folder
    from facekit.core.images import ImageLoadError, load_image

    (tmp_path / "ada").mkdir()
    with pytest.raises(ValueError, match="min_face_size.*Fix"):
        load_folder(tmp_path, min_face_size=float("nan"))
    p = tmp_path / "ada" / "x.jpg"
    p.write_bytes(b"\xff\xd8\xff\xe0" + b"0" * 100)
    with mock.patch("builtins.open", side_effect=PermissionError(13, "Permission denied")):
        with pytest.raises(ImageLoadError, match="permission denied") as err:
            load_image(p)
    assert "corrupt" not in str(err.value) and str(p) in str(err.value)


def test_decompression_bomb_refused_before_decoding(tmp_path):
    import resource

    from PIL import Image

    from facekit.core.images import ImageLoadError, decode_image_bytes, load_image

    bomb = tmp_path / "bomb.png"
    Image.new("L", (12000, 12000)).save(bomb)
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    with pytest.raises(ImageLoadError, match="bomb.png.*decompression bomb"):
        load_image(bomb)
    with pytest.raises(ImageLoadError, match="exceeds"):
        decode_image_bytes(bomb.read_bytes())
    assert (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before) / 1024 < 200  # MB: nothing decoded
