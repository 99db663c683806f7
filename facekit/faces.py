"""One call from an image to its faces with embeddings: detect -> align -> embed.

Taught in notebook 02 (and used by 04-06); the hard-light levers (``normalize``, ``fuse``,
``gray_consistent``, ``retry_normalized``) in notebook A2 and ``bench/robust.py``.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Sequence

import numpy as np

from facekit.detection.align import DEFAULT_MARGIN, align_faces, align_for
from facekit.detection.detector import Detector, Face, get_detector
from facekit.embedding.embedder import Embedder, get_embedder
from facekit.models.registry import DEFAULT_MODEL, spec_name
from facekit.core.images import as_rgb, load_image
from facekit.core.photometric import NORMALIZATIONS, apply_crop_op, crop_ops, fuse_unit, normalize as normalize_image

__all__ = ["FaceEmbedding", "extract_faces", "NORMALIZE_FOR", "LeverPlan", "lever_plan", "LEVERS",
           "MORE_LEVERS"]

#: Where ``extract_faces(normalize=...)`` applies the normalisation.
NORMALIZE_FOR = ("embedder", "detector", "both")

#: The named hard-light levers (appendix A2, ``bench/robust.py``): name -> ``extract_faces`` options;
#: "default" is today's pipeline
LEVERS = {
    "default": {},
    "clahe": dict(normalize="clahe"),
    "tan_triggs": dict(normalize="tan_triggs"),
    "fuse_clahe": dict(normalize="clahe", fuse=True),
    "fuse_tan_triggs": dict(normalize="tan_triggs", fuse=True),
    "gray_consistent": dict(gray_consistent=True),
    "gray_only": dict(gray_consistent="gray"),
    "retry_clahe": dict(retry_normalized=True),
    "fuse_clahe_retry": dict(normalize="clahe", fuse=True, retry_normalized=True),
}
#: ``bench/robust.py --levers all`` adds these:
MORE_LEVERS = {  # each needs a pass the others do not share (detection / grey CLAHE crop)
    "fuse_clahe_gray": dict(normalize="clahe", fuse=True, gray_consistent=True),
    "detect_clahe": dict(normalize="clahe", normalize_for="detector"),
    "both_clahe": dict(normalize="clahe", normalize_for="both"),
}


@dataclass(frozen=True)
class FaceEmbedding:
    """A face found in an image: detection, its aligned 160x160 crop and its unit embedding."""

    face: Face
    crop: np.ndarray  # uint8 (160, 160, 3)
    embedding: np.ndarray  # float32 (dim,), unit L2 norm
    model: str = DEFAULT_MODEL  # fingerprint of the embedder that made ``embedding``

    @property
    def box(self) -> np.ndarray:
        return self.face.box


@dataclass(frozen=True)
class LeverPlan:
    """What :func:`extract_faces`'s hard-light options do, spelled out (``bench/robust.py`` runs the
    same plan batched and cached): ``detect_with`` the normalisation of the image the detector sees
    (None: the image as given); ``retry_with`` the one tried when that finds nothing (None: no
    retry); ``crop_ops`` the crops embedded and fused (:func:`facekit.core.photometric.apply_crop_op`)."""

    detect_with: str | None
    retry_with: str | None
    crop_ops: tuple[str, ...]


def lever_plan(normalize: str | None = None, normalize_for: str = "embedder", fuse: bool = False,
               gray_consistent: bool | str = False, retry_normalized: bool | str = False) -> LeverPlan:
    """The :class:`LeverPlan` of :func:`extract_faces`'s options (checked; ValueError names the bad one)."""
    if normalize_for not in NORMALIZE_FOR:
        raise ValueError(f"normalize_for must be one of {NORMALIZE_FOR}, got {normalize_for!r}")
    if fuse and normalize_for == "detector":
        raise ValueError("fuse=True fuses plain and normalised crops: use normalize_for='embedder' or 'both'")
    ops = crop_ops(normalize if normalize_for in ("embedder", "both") else None, fuse, gray_consistent)
    det = normalize if normalize_for in ("detector", "both") else None
    retry = (normalize or "clahe") if retry_normalized is True else (retry_normalized or None)
    if retry is not None and retry not in NORMALIZATIONS:
        raise ValueError(f"retry_normalized must be a bool or one of {NORMALIZATIONS[1:]}, got {retry_normalized!r}")
    return LeverPlan(det, None if retry == det else retry, ops)


def extract_faces(image: np.ndarray | str | os.PathLike, *, detector: Detector | None = None,
                  embedder: Embedder | None = None, min_face_size: float | None = None,
                  margin: float = DEFAULT_MARGIN, rotate: bool = True, normalize: str | None = None,
                  normalize_for: str = "embedder", fuse: bool = False, gray_consistent: bool | str = False,
                  retry_normalized: bool | str = False, model: str | None = None,
                  faces: Sequence[Face] | None = None) -> list[FaceEmbedding]:
    """Every face in ``image`` (an RGB array or a file path) with crop and embedding.

    ``faces``: detections of this image made already (``Detector.detect`` or ``detect_batch``, in
    its pixels; like face_recognition's ``known_face_locations``): detection is skipped, so the
    detector's options (``min_face_size``, ``normalize_for`` the detector, ``retry_normalized``)
    cannot be given with it. The CLI detects a chunk of photos in one batched call this way.

    ``model`` (registry name; default ``"facenet128"``) or ``embedder`` chooses the embedding model;
    each result records its embedder's fingerprint in ``.model``.

    Faces come sorted by confidence, highest first; ``[]`` when there are none. ``crop`` is always
    the plain aligned crop (uint8 (160, 160, 3)); ``embedding`` float32 (128,), unit norm.

    Hard-light levers (:mod:`facekit.core.photometric`; notebook A2; measured by ``bench/robust.py``,
    whose README row says which help). The defaults are the plain pipeline:

    - ``normalize``: ``None``, ``"clahe"`` (CLAHE on luminance) or ``"tan_triggs"``, applied to the
      crop before FaceNet's standardisation (``normalize_for="embedder"``), to the image the
      detector sees (``"detector"``; crops still come from the original pixels) or both;
    - ``fuse``: embed the plain AND the normalised crop, fuse (mean of unit vectors, renormalised);
      twice the embedding time;
    - ``gray_consistent``: ``True`` also embeds a grey copy of every crop and fuses it in (a grey
      photo's grey copy is itself, so grey scans and colour photos of one person meet halfway;
      twice the embedding time); ``"gray"`` embeds the grey copy only;
    - ``retry_normalized``: when the detector finds nothing, detect again on the normalised image
      (``True``: with ``normalize``, or CLAHE when that is ``None``; or name the method). Costs
      only on images without a face.

    Distances of a lever's embeddings are calibrated differently from the plain ones: keep one
    setting per gallery (enrolments and queries embedded alike). Measured trade-offs (``bench/robust.py``,
    2,000 LFW View 2 pairs, second photo shaded / grey / gamma 0.4, 2.5 / 24-40 px / JPEG 10 / mixed;
    today's pipeline: 98.99% mean, 99.38% untransformed on all 6,000): ``normalize="clahe"`` 98.04%,
    untransformed 98.87% (worse on both); ``"tan_triggs"`` 94.8% untransformed on View 1 (much worse);
    ``fuse=True`` with CLAHE 98.74% (98.79% vs 98.64% at the untransformed threshold), untransformed
    99.38%, twice the embedding time; ``retry_normalized`` finds 9 of 12 missed faces of the mix,
    accuracy unchanged; the grey levers lost more pairs than they won on View 1. None is a default.
    """
    plan = lever_plan(normalize, normalize_for, fuse, gray_consistent, retry_normalized)
    if embedder is None:
        embedder = get_embedder(spec_name(model))
    elif model is not None and spec_name(model) != spec_name(embedder.fingerprint):
        raise ValueError(f"extract_faces: model={model!r} but the embedder computes {embedder.fingerprint!r}. "
                         "Fix: pass one of them")
    if isinstance(image, (list, tuple)):
        raise TypeError(f"extract_faces takes one image (an RGB array or a path), not a {type(image).__name__} of "
                        f"{len(image)}. Fix: call it once per image, e.g. [extract_faces(im) for im in images]")
    img = load_image(image) if isinstance(image, (str, os.PathLike)) else as_rgb(image)
    if faces is not None:
        if plan.detect_with is not None or plan.retry_with is not None or min_face_size is not None:
            raise ValueError("extract_faces: faces= skips detection, so min_face_size, normalize_for='detector'/'both' "
                             "and retry_normalized do not apply. Fix: pass either faces= or the detector options")
        faces = list(faces)
    else:
        det = detector or get_detector()
        faces = det.detect(normalize_image(img, plan.detect_with), min_face_size=min_face_size)
        if not faces and plan.retry_with is not None:
            faces = det.detect(normalize_image(img, plan.retry_with), min_face_size=min_face_size)
    if not faces:
        return []
    crops = align_faces(img, faces, margin=margin, rotate=rotate)
    kind = embedder.spec.crop
    if kind == "facenet":
        embs = fuse_unit([embedder.embed(apply_crop_op(crops, op)) for op in plan.crop_ops])
    elif plan.crop_ops != ("plain",):
        raise ValueError(f"the hard-light crop options work on FaceNet's crops; model {embedder.spec.name!r} cuts "
                         f"{kind!r}. Fix: use them with model='facenet128'")
    else:
        embs = embedder.embed(align_for(kind, img, faces, facenet_crops=crops))
    fp = embedder.fingerprint
    return [FaceEmbedding(f, c, e, fp) for f, c, e in zip(faces, crops, embs)]
