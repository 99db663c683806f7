"""facekit: FaceNet, step by step. A tiny, flat API; numpy in and out.

The flat namespace is the face_recognition-sized API of the README's "facekit in ten lines", plus
each chapter's main object (``FaceIdentifier``, ``FaceStore``, ``LiveRecognizer``, ...). Anything
else is imported from the module that is its one home (``from facekit.data.lfw import lfw_pairs``).

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
    "load_image": "core.images", "ImageLoadError": "core.images", "as_rgb": "core.images",
    "Face": "detection.detector", "Detector": "detection.detector", "detect_faces": "detection.detector", "get_detector": "detection.detector",
    "align_face": "detection.align", "align_faces": "detection.align",
    "Embedder": "embedding.embedder", "embed": "embedding.embedder", "get_embedder": "embedding.embedder",
    "FaceEmbedding": "faces", "extract_faces": "faces", "largest_face": "detection.detector",
    "FaceSet": "data.folders", "load_folder": "data.folders", "load_celebrities": "data.folders",
    "lfw_pairs": "data.lfw", "lfw_people": "data.lfw",
    "cache_dir": "core.cache", "FetchError": "core.cache", "ChecksumError": "core.cache",
    "thresholds": "models.registry", "model_spec": "models.registry", "register_model": "models.registry",
    # your people (notebooks 04, 06, 07 and the facekit command)
    "FaceStore": "store.db", "check_name": "core.names",
    # notebook 02
    "verify": "recognition.verify", "evaluate_10fold": "recognition.verify", "pairwise_sq_l2": "recognition.verify",
    # notebooks 04-05
    "FaceIdentifier": "recognition.identify", "UNKNOWN": "core.constants", "identify_photo": "recognition.identify",
    "cluster_faces": "recognition.cluster", "project": "recognition.cluster", "organise_album": "album.organise",
    # notebook 03
    "triplet_loss": "training.triplet", "PKSampler": "training.triplet", "TripletNet": "training.triplet_train",
    "lfw_face_crops": "training.triplet", "split_identities": "training.triplet", "make_pairs": "training.triplet",
    # notebook 06
    "LiveRecognizer": "live", "FrameResult": "live", "make_demo_scene": "live", "run_source": "live",
    "CameraWidget": "live.camera", "VideoSource": "live",
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
