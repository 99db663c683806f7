"""facekit: FaceNet, step by step. A tiny, flat API; numpy in and out.

The flat namespace is the face_recognition-sized API of the README's "facekit in ten lines", plus
each chapter's main object (``FaceIdentifier``, ``FaceStore``, ``LiveRecognizer``, ...). Anything
else is imported from the module that is its one home (``from facekit.lfw import lfw_pairs``).

Images are RGB ``uint8 (H, W, 3)``; boxes ``(x1, y1, x2, y2)`` in pixels; embeddings
L2-normalised ``float32 (N, 128)``; distances squared L2 in [0, 4] (= 2 - 2 cos).

Nothing heavy happens at import: TensorFlow, MTCNN and FaceNet load on first use, once per
process. Each helper names the notebook that teaches it.
"""

from __future__ import annotations

import importlib

__version__ = "0.1.0"

# name -> module that defines it (imported lazily, PEP 562)
_EXPORTS = {
    "load_image": "io", "ImageLoadError": "io", "as_rgb": "io",
    "Face": "detect", "Detector": "detect", "detect_faces": "detect", "get_detector": "detect",
    "align_face": "align", "align_faces": "align",
    "Embedder": "embed", "embed": "embed", "get_embedder": "embed",
    "FaceEmbedding": "pipeline", "extract_faces": "pipeline", "largest_face": "pipeline",
    "FaceSet": "datasets", "load_folder": "datasets", "load_celebrities": "datasets",
    "lfw_pairs": "datasets", "lfw_people": "datasets",
    "cache_dir": "registry", "FetchError": "registry", "ChecksumError": "registry",
    "thresholds": "registry", "model_spec": "registry",
    # your people (notebooks 04, 06, 07 and the facekit command)
    "FaceStore": "store", "check_name": "names",
    # notebook 02
    "verify": "verify", "evaluate_10fold": "verify", "pairwise_sq_l2": "verify",
    # notebooks 04-05
    "FaceIdentifier": "identify", "UNKNOWN": "identify", "identify_photo": "identify",
    "cluster_faces": "cluster", "project": "cluster", "organise_album": "album",
    # notebook 03
    "triplet_loss": "triplet", "PKSampler": "triplet", "TripletNet": "triplet",
    "lfw_face_crops": "triplet", "split_identities": "triplet", "make_pairs": "triplet",
    # notebook 06
    "LiveRecognizer": "live", "FrameResult": "live", "make_demo_scene": "live", "run_source": "live",
    "CameraWidget": "camera", "VideoSource": "live",
}

__all__ = sorted(_EXPORTS) + ["__version__"]


def __getattr__(name: str):
    mod = _EXPORTS.get(name)
    if mod is None:
        raise AttributeError(f"module 'facekit' has no attribute {name!r}")
    value = getattr(importlib.import_module(f".{mod}", __name__), name)
    globals()[name] = value
    return value


def __dir__():
    return __all__
