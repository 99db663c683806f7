"""LFW through facekit's pipeline: MTCNN detections and FaceNet embeddings, cached on disk,
and LFW's part of the 10-fold protocol (the pairs, their folds, the subject face of each photo).

Taught in notebook 02 (and used by 03-05 and ``bench/lfw.py``). The protocol's arithmetic (best
threshold per training folds, accuracy on the held-out fold) is generic and lives in
:mod:`facekit.recognition.verify`; this module only turns LFW photos into embeddings of pairs.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Sequence

import numpy as np

from facekit.recognition.verify import TenFoldResult, evaluate_10fold, evaluate_10fold_centered, sq_l2
from facekit.teach.lfw.cache import RowTable, lfw_cache_dir, rel_key, settings_key
from facekit.data.lfw import LFW_FALLBACK_BOX, LFW_SIZE, SELECT_RULES, lfw_pairs, lfw_subset, pick_subject

__all__ = ["detect_lfw", "embed_lfw", "embed_lfw_pairs", "lfw_verification", "LFWEmbeddings", "TTA_VIEWS",
           "FLIP_MODES"]

#: Mirror fusion modes of :func:`embed_lfw`.
FLIP_MODES = (None, "concat", "mean")


def _detector_settings(detector) -> dict:
    return {"min_face_size": detector.min_face_size, "thresholds": list(detector.thresholds),
            "scale_factor": detector.scale_factor, "max_side": detector.max_side,
            "backend": getattr(detector, "backend", None), "fast": getattr(detector, "fast", True)}


def _faces_from_row(row: np.ndarray) -> list:
    """Cached detection row (up to 4 faces x 15 floats, NaN-padded) -> list[Face]."""
    from facekit.detection.detector import Face

    faces = []
    for r in row.reshape(-1, 15):
        if np.isnan(r[4]):
            continue
        faces.append(Face(box=r[:4].astype(np.float32), landmarks=r[5:15].reshape(5, 2).astype(np.float32),
                          confidence=float(r[4])))
    return faces


_MAX_CACHED_FACES = 4


def _row_from_faces(faces: list) -> np.ndarray:
    row = np.full((_MAX_CACHED_FACES, 15), np.nan, np.float32)
    # keep the most confident ones; pick_subject chooses among them
    for i, f in enumerate(sorted(faces, key=lambda f: -f.confidence)[:_MAX_CACHED_FACES]):
        row[i, :4] = f.box
        row[i, 4] = f.confidence
        row[i, 5:] = f.landmarks.ravel()
    return row.ravel()


def detect_lfw(paths: Sequence[str], *, detector=None, batch_size: int = 32, progress: bool = True,
               cache: bool = True) -> dict[str, list]:
    """MTCNN faces of LFW images: ``{path: list[Face]}``, cached on disk per detector settings.
    Used by notebook 02 and ``bench/lfw.py``.

    The cache lives in ``facekit.cache_dir()/lfw/detections-<key>.npz`` (up to 4 most confident
    faces per image), so the notebook and ``bench/lfw.py`` detect each image once.
    """
    from facekit.detection.detector import get_detector
    from facekit.core.images import load_image

    det = detector or get_detector()
    settings = {"kind": "mtcnn-detections", **_detector_settings(det)}
    store = RowTable(lfw_cache_dir() / f"detections-{settings_key(settings)}.npz" if cache else None, settings)
    rows = store.rows
    todo = list(dict.fromkeys(p for p in paths if rel_key(p) not in rows))
    if todo:
        from tqdm.auto import tqdm

        bar = tqdm(total=len(todo), desc="detecting LFW faces", unit="img", disable=not progress)
        for i in range(0, len(todo), batch_size):
            chunk = todo[i:i + batch_size]
            found = det.detect_batch([load_image(p) for p in chunk])
            for p, faces in zip(chunk, found):
                rows[rel_key(p)] = _row_from_faces(faces)
            if (i // batch_size) % 8 == 7:
                store.save()
            bar.update(len(chunk))
        bar.close()
        store.save()
    return {p: _faces_from_row(rows[rel_key(p)]) for p in paths}


def _image_shape(path: str) -> tuple[int, int]:
    """(H, W) of an image file from its header (no decoding)."""
    from PIL import Image

    with Image.open(path) as im:
        w, h = im.size
    return h, w


def fallback_face(image_shape: tuple[int, int]):
    """The centre box :data:`LFW_FALLBACK_BOX` (scaled to the image) as a Face with unknown (NaN)
    landmarks: what LFW evaluation embeds where MTCNN finds no face."""
    from facekit.detection.detector import Face

    h, w = image_shape
    box = np.asarray(LFW_FALLBACK_BOX, np.float32) * np.asarray([w, h, w, h], np.float32) / float(LFW_SIZE)
    return Face(box=box, landmarks=np.full((5, 2), np.nan, np.float32), confidence=0.0)


@dataclass(frozen=True)
class LFWEmbeddings:
    """Embeddings of LFW pairs: ``a``, ``b`` float32 (M, D) unit rows; ``same`` bool (M,);
    ``fold`` int (M,); ``paths`` (M, 2); ``no_face``: image paths where MTCNN found no face (a
    centre crop :data:`LFW_FALLBACK_BOX` was embedded instead); ``settings``: the pipeline."""

    a: np.ndarray
    b: np.ndarray
    same: np.ndarray
    fold: np.ndarray
    paths: np.ndarray
    no_face: list[str] = field(default_factory=list)
    settings: dict = field(default_factory=dict)

    @property
    def distances(self) -> np.ndarray:
        """Squared L2 distance of each pair: float64 (M,)."""
        return sq_l2(self.a, self.b)

    def evaluate(self, subtract_mean: bool = False) -> TenFoldResult:
        """:func:`evaluate_10fold` on these pairs (squared L2), or with ``subtract_mean``
        :func:`evaluate_10fold_centered` (facenet's ``validate_on_lfw --subtract_mean``)."""
        if subtract_mean:
            return evaluate_10fold_centered(self.a, self.b, self.same, self.fold)
        return evaluate_10fold(self.distances, self.same, self.fold)


def _fuse(e: np.ndarray, ef: np.ndarray | None, flip: str | None) -> np.ndarray:
    if flip is None:
        return e
    if flip == "concat":  # (e, ef) / sqrt(2): unit norm, distance = mean of the two distances
        return (np.hstack([e, ef]) / np.sqrt(2.0)).astype(np.float32)
    m = e + ef
    return (m / np.linalg.norm(m, axis=1, keepdims=True)).astype(np.float32)


#: Test-time augmentation views for :func:`embed_lfw` (``views=TTA_VIEWS``, with ``flip="concat"``):
#: the crop with and without eye-line rotation, each also mirrored -- four embeddings per face.
TTA_VIEWS = ({"rotate": True}, {"rotate": False})


def embed_lfw(paths: Sequence[str], *, margin: float | None = None, rotate: bool = True,
              flip: str | None = None, select: str = "center", views: Sequence[dict] | None = None,
              detector=None, embedder=None, chunk: int = 128, progress: bool = True,
              cache: bool = True) -> tuple[np.ndarray, list[str]]:
    """Embed LFW images with facekit's pipeline: ``(embeddings float32 (N, D'), no_face paths)``.

    ``paths``: images under LFW's ``lfw_funneled/`` (cache rows are keyed ``Person/Person_NNNN.jpg``).

    Pipeline per image (the defaults are ``facekit.extract_faces``'s): MTCNN (:func:`detect_lfw`,
    cached) -> the subject face (:func:`pick_subject`, ``select``) -> :func:`facekit.detection.align.align_face`
    (``margin``, default ``facekit.detection.align.DEFAULT_MARGIN``; ``rotate`` levels the eyes) -> FaceNet.
    With ``flip``, the horizontally mirrored crop is embedded too and fused: ``"concat"`` (D' = 2D,
    rows re-normalised, so a distance is the mean of the plain and mirrored distances) or ``"mean"``
    (D' = D). ``views`` (test-time augmentation, e.g. :data:`TTA_VIEWS`): several crops, each a dict
    overriding ``margin`` / ``rotate``, embedded as above and concatenated (re-normalised), so a
    distance is the mean over views. Images with no detected face use the centre box
    :data:`LFW_FALLBACK_BOX` and are returned in ``no_face``. Embeddings are cached under
    ``facekit.cache_dir()/lfw``: one file per (model, margin, rotate, mirrored), one row per (image,
    crop geometry), so repeated runs and other configurations reuse every crop they share.
    """
    from facekit.detection.align import DEFAULT_MARGIN
    from facekit.embedding.embedder import get_embedder
    from facekit.detection.detector import get_detector
    from facekit.core.images import load_image

    if views:
        bad = [v for v in views if not set(v) <= {"margin", "rotate"}]
        if bad:
            raise ValueError(f"a view may set only 'margin' and 'rotate', got {bad}")
        common = dict(margin=margin, rotate=rotate, flip=flip, select=select, detector=detector,
                      embedder=embedder, chunk=chunk, progress=progress, cache=cache)
        parts = [embed_lfw(paths, **{**common, **v}) for v in views]
        fused = np.hstack([e for e, _ in parts]) / np.sqrt(len(parts))
        return fused.astype(np.float32), parts[0][1]
    if flip not in FLIP_MODES:
        raise ValueError(f"flip must be one of {FLIP_MODES}, got {flip!r}")
    if select not in SELECT_RULES:
        raise ValueError(f"select must be one of {SELECT_RULES}, got {select!r}")
    margin = DEFAULT_MARGIN if margin is None else float(margin)
    det = detector or get_detector()
    emb = embedder or get_embedder()
    if flip and emb.spec.crop != "facenet":
        raise ValueError(f"flip mirrors FaceNet's crop; model {emb.spec.name!r} cuts {emb.spec.crop!r}")
    paths = list(paths)
    faces = detect_lfw(paths, detector=det, progress=progress, cache=cache)
    settings = {"kind": "lfw-embeddings", "model": emb.fingerprint, "margin": margin, "rotate": bool(rotate)}
    variants = [False, True] if flip else [False]
    stores = {m: RowTable(lfw_cache_dir() / f"embeddings-{settings_key({**settings, 'mirrored': m})}.npz" if cache else None,
                        {**settings, "mirrored": m}) for m in variants}
    uniq = list(dict.fromkeys(paths))
    chosen, keys, no_face = {}, {}, []
    for p in uniq:
        shape = _image_shape(p)
        face = pick_subject(faces[p], shape, select)
        if face is None:
            no_face.append(p)
            face = fallback_face(shape)
        chosen[p] = face
        # a row is keyed by image AND crop geometry: selection / detector changes never reuse a wrong row
        keys[p] = rel_key(p) + "#" + ",".join(f"{v:.2f}" for v in np.concatenate([face.box, face.landmarks[:2].ravel()]))
    todo = [p for p in uniq if any(keys[p] not in stores[m].rows for m in variants)]
    if todo:
        from tqdm.auto import tqdm

        bar = tqdm(total=len(todo), desc=f"embedding LFW ({'aligned' if rotate else 'not rotated'}"
                   f"{', +mirror' if flip else ''})", unit="img", disable=not progress)
        for i in range(0, len(todo), chunk):
            part = todo[i:i + chunk]
            crops = np.stack([_model_crop(emb.spec.crop, load_image(p), chosen[p], margin, rotate) for p in part])
            for mirrored in variants:
                e = emb.embed(crops[:, :, ::-1] if mirrored else crops)
                for p, row in zip(part, e):
                    stores[mirrored].rows[keys[p]] = row
                stores[mirrored].save()
            bar.update(len(part))
        bar.close()
    plain = np.stack([stores[False].rows[keys[p]] for p in paths]).astype(np.float32)
    mirror = np.stack([stores[True].rows[keys[p]] for p in paths]).astype(np.float32) if flip else None
    return _fuse(plain, mirror, flip), no_face


def _model_crop(kind: str, img: np.ndarray, face, margin: float, rotate: bool) -> np.ndarray:
    """The crop of ``face`` that a model of crop ``kind`` takes (FaceNet's with ``margin``/``rotate``)."""
    from facekit.detection.align import align_face, align_for

    crop = align_face(img, face, margin=margin, rotate=rotate)
    return crop if kind == "facenet" else align_for(kind, img, [face], facenet_crops=crop[None])[0]


def embed_lfw_pairs(pairs=None, *, per_fold: int | None = None, random_state: int = 0, **pipeline) -> LFWEmbeddings:
    """Embed both images of every LFW pair (all 6,000 of View 2 by default, or ``per_fold`` per
    fold via :func:`lfw_subset`). ``pipeline``: keyword arguments of :func:`embed_lfw`.
    Taught in notebook 02; ``bench/lfw.py`` runs it on all pairs.
    """
    pairs = lfw_subset(pairs if pairs is not None else lfw_pairs(), per_fold, random_state)
    flat = pairs.paths.ravel().tolist()
    uniq = list(dict.fromkeys(flat))
    e, no_face = embed_lfw(uniq, **pipeline)
    index = {p: i for i, p in enumerate(uniq)}
    ia = np.asarray([index[p] for p in pairs.paths[:, 0]])
    ib = np.asarray([index[p] for p in pairs.paths[:, 1]])
    settings = {k: v for k, v in pipeline.items() if k not in ("detector", "embedder", "progress")}
    return LFWEmbeddings(e[ia], e[ib], pairs.same, pairs.fold, pairs.paths, no_face, settings)


def lfw_verification(pairs=None, *, per_fold: int | None = None, random_state: int = 0,
                     **pipeline) -> tuple[TenFoldResult, LFWEmbeddings]:
    """LFW View 2 accuracy of facekit's pipeline by the 10-fold protocol: ``(result, embeddings)``.

    ``per_fold=None`` uses all 6,000 pairs (the published protocol); a small even number (e.g. 20)
    gives a quick estimate on a balanced subset. Taught in notebook 02; called by ``bench/lfw.py``.
    """
    embs = embed_lfw_pairs(pairs, per_fold=per_fold, random_state=random_state, **pipeline)
    return embs.evaluate(), embs
