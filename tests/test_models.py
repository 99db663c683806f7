"""Adding an embedding model is one backend file plus one registry entry (issue #28), and every
decision takes its thresholds from the model that made the embeddings.

The stand-in model (tests/standin_backend.py, 16-D) runs through extract_faces, verify, identify,
cluster and the face store on real sample photos; each check picks the stand-in's thresholds from
the data so that facenet128's cut would decide the other way, then asserts the stand-in's decision.
"""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

import facekit as fk
from facekit.core.cache import celebrity_dir
from facekit.core.constants import UNKNOWN
from facekit.embedding.embedder import Embedder
from facekit.faces import extract_faces
from facekit.models.registry import MODELS, ModelSpec, Thresholds, register_model
from facekit.recognition.cluster import cluster_faces
from facekit.recognition.identify import FaceIdentifier
from facekit.recognition.verify import pairwise_sq_l2, verify
from facekit.store.db import FaceStore

NAME = "standin16"
FACENET = fk.thresholds("facenet128")


def _spec(th: Thresholds) -> ModelSpec:
    return ModelSpec(NAME, 16, "test", "standin-v1", "none", "16-D stand-in (tests/standin_backend.py)", th,
                     backend="standin_backend", input_size=96)


@pytest.fixture(scope="module")
def standin():
    register_model(_spec(Thresholds(1.0, 1.0, 1.0, {"all": "placeholder"}, dbscan=1.0)))
    photos = {p: sorted((celebrity_dir() / "train" / p).glob("*.jpg"))[:3] for p in ("ben_afflek", "madonna")}
    faces = {p: [extract_faces(f, model=NAME)[0] for f in fs] for p, fs in photos.items()}
    yield faces
    MODELS.pop(NAME, None)


def _use(**cuts) -> Thresholds:
    """Re-register the stand-in with these cuts (thresholds are read when a decision is made)."""
    th = Thresholds(**{"verify": 1.0, "unknown": 1.0, "cluster": 1.0, "dbscan": 1.0, **cuts}, where={"all": "test"})
    register_model(dataclasses.replace(MODELS[NAME], thresholds=th), replace=True)
    return th


def test_extract_faces_runs_the_registered_backend(standin):
    f = standin["ben_afflek"][0]
    assert f.embedding.shape == (16,) and abs(float(np.linalg.norm(f.embedding)) - 1) < 1e-5
    assert f.model == "standin16/standin-v1/fp32" == Embedder(NAME).fingerprint
    assert f.crop.shape == (160, 160, 3)  # the shared aligned crop; the embedder resizes to its 96 px


def test_verify_uses_the_models_own_cut(standin):
    a, b = standin["ben_afflek"][0].embedding, standin["madonna"][0].embedding
    d = float(pairwise_sq_l2(a[None], b[None])[0, 0])
    cut = d / 2 if d < FACENET.verify else (d + 4) / 2  # facenet128's 1.22 decides the other way
    _use(verify=cut)
    same, dist = verify(a, b, model=NAME)
    assert dist == pytest.approx(d) and same == (d < cut) and same != (d < FACENET.verify)
    assert verify(a, b, model=Embedder(NAME).fingerprint)[0] == same  # a fingerprint names the model too


def test_identify_uses_the_models_own_unknown_cut(standin):
    x = np.stack([f.embedding for p in standin for f in standin[p][:2]])
    y = [p for p in standin for _ in range(2)]
    query = standin["madonna"][2].embedding
    s = float(FaceIdentifier(threshold=float("inf"), model=NAME).fit(x, y).predict_scores(query[None])[1][0])
    cut = s / 2 if s <= FACENET.unknown else min(3.9, s * 1.5)
    _use(unknown=cut)
    ident = FaceIdentifier(model=NAME).fit(x, y)
    names, scores = ident.predict_scores(query[None])
    assert ident.threshold_ == cut and scores[0] == pytest.approx(s, abs=1e-5)
    assert (names[0] == UNKNOWN) == (s > cut) and (names[0] == UNKNOWN) != (s > FACENET.unknown)
    with pytest.raises(ValueError, match=r"16 dims.*'facenet128' makes 128|128.*16"):
        FaceIdentifier().fit(x, y)  # facenet128's cut on 16-D embeddings: refused, naming both


def test_cluster_uses_the_models_own_cut(standin):
    x = np.stack([f.embedding for p in standin for f in standin[p]])
    with_facenet_cut = cluster_faces(x, threshold=FACENET.cluster)
    cut = 1e-4 if (with_facenet_cut == 0).all() else 3.99  # the opposite extreme of facenet128's result
    _use(cluster=cut)
    got = cluster_faces(x, model=NAME)
    expect = np.full(len(x), -1) if cut < 1 else np.zeros(len(x), int)
    assert np.array_equal(got, expect) and not np.array_equal(got, with_facenet_cut)
    with pytest.raises(ValueError, match="16 dims"):
        cluster_faces(x)  # the default model's cut on another model's embeddings: refused


def test_store_keeps_the_model_and_its_cut(standin, tmp_path):
    cut = 0.123
    _use(unknown=cut)
    store = FaceStore(tmp_path / "faces.sqlite3")
    emb = Embedder(NAME)
    for p, faces in standin.items():
        store.add_faces(p, np.stack([f.embedding for f in faces]), model=emb)
    ident = store.identifier(emb)
    assert ident.threshold_ == cut and ident.model == emb.fingerprint and ident.gallery_.shape == (6, 16)
    assert len(store.embeddings("facenet128")[0]) == 0  # FaceNet's gallery holds none of them
    with pytest.raises(ValueError, match="16"):
        store.add_faces("ada", np.ones((1, 128), np.float32), model=emb)


def test_register_refuses_a_second_network_under_one_name(standin):
    with pytest.raises(ValueError, match="already registered"):
        register_model(dataclasses.replace(MODELS[NAME], dim=32))
