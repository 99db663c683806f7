"""dlib128 and the fused model (issue #23), on real sample photos with the real networks.

- the fused embedding's squared distance is the fixed weighted sum of the parts' (the identity the
  whole design rests on: SVM, FAISS, clustering and the store then work on it unchanged);
- embeddings of two models are never compared: each way in that takes a gallery and an embedder
  refuses a mismatch with an error naming both;
- extract_faces cuts dlib's own chip for dlib128 (not FaceNet's crop resized).
dlib's own descriptor equality is tests/test_dlib.py.
"""

from __future__ import annotations

import numpy as np
import pytest

import facekit as fk
from facekit.core.cache import celebrity_dir
from facekit.core.images import load_image
from facekit.detection.align import align_for
from facekit.detection.detector import get_detector, largest_face
from facekit.embedding.embedder import Embedder
from facekit.live import LiveRecognizer
from facekit.recognition.identify import FaceIdentifier, identify_photo

FUSED = "facenet128+dlib128"


@pytest.fixture(scope="module")
def faces():
    """(image, face) of 6 sample validation photos of 3 people."""
    out = []
    for person in ("ben_afflek", "madonna", "elton_john"):
        for p in sorted((celebrity_dir() / "val" / person).glob("*.jpg"))[:2]:
            img = load_image(p)
            out.append((img, largest_face(get_detector().detect(img)), person))
    return out


def _embed(model, faces):
    e = Embedder(model)
    return e.embed(np.stack([align_for(e.spec.crop, img, [f])[0] for img, f, _ in faces]))


def test_fused_distance_is_the_weighted_sum_of_the_parts(faces):
    f, d, x = _embed("facenet128", faces), _embed("dlib128", faces), _embed(FUSED, faces)
    tf, td = fk.thresholds("facenet128").verify, fk.thresholds("dlib128").verify
    sq = lambda e: ((e[:, None] - e[None]) ** 2).sum(-1)  # noqa: E731
    want = (sq(f) / tf + sq(d) / td) / (1 / tf + 1 / td)
    assert np.abs(sq(x) - want).max() < 1e-5
    assert np.allclose(np.linalg.norm(x, axis=1), 1, atol=1e-5) and x.shape == (6, 256)
    # and at its own threshold it decides most of the 15 pairs right (two are hard: sunglasses, profile)
    labels = np.array([p for *_, p in faces])
    same = labels[:, None] == labels[None]
    iu = np.triu_indices(6, 1)
    assert ((sq(x) < fk.thresholds(FUSED).verify) == same)[iu].mean() >= 13 / 15


def test_extract_faces_cuts_dlibs_chip(faces):
    img, face, _ = faces[0]
    got = fk.extract_faces(img, model="dlib128")
    chip = align_for("dlib-mtcnn5", img, [got[0].face])[0]
    assert chip.shape == (150, 150, 3)
    assert np.allclose(got[0].embedding, Embedder("dlib128").embed(chip[None])[0], atol=1e-6)
    resized = Embedder("dlib128").embed(got[0].crop[None])[0]  # FaceNet's crop resized: not the same input
    assert np.abs(resized - got[0].embedding).max() > 1e-3
    assert got[0].model.startswith("dlib128/")


def test_two_models_are_never_compared(faces):
    x = _embed("dlib128", faces)
    ident = FaceIdentifier(model=Embedder("dlib128").fingerprint).fit(x, [p for *_, p in faces])
    img = faces[0][0]
    with pytest.raises(ValueError, match=r"dlib128.*facenet128|facenet128.*dlib128"):
        identify_photo(img, ident, embedder=Embedder("facenet128"))
    with pytest.raises(ValueError, match=r"dlib128.*facenet128|facenet128.*dlib128"):
        LiveRecognizer(ident, embedder=Embedder("facenet128"))
    with pytest.raises(ValueError, match=r"never compared"):
        fk.organise_album(celebrity_dir() / "val", identifier=ident, progress=False)
    # without an embedder, the identifier's own model is used, and it names the person
    _, names, _ = identify_photo(img, ident)
    assert names[0] == faces[0][2]
