"""Everything LFW in one place: files and pair lists (:mod:`.data`), the on-disk caches
(:mod:`.cache`), detections and embeddings with facekit's pipeline (:mod:`.pipeline`) and LFW
people for identification and clustering (:mod:`.faces`).

Taught in notebooks 02-05. The generic verification arithmetic (distances, the 10-fold best
threshold, ROC) lives in :mod:`facekit.recognition.verify`; old import paths (``facekit.teach.lfw.embed_lfw``,
``facekit.data.lfw.lfw_pairs``, ``facekit.teach.lfw.lfw_people_faces``) keep working.
"""

from __future__ import annotations

from facekit.teach.lfw.cache import RowTable, lfw_cache_dir, rel_key, settings_key
from facekit.data.lfw import (EIGEN_SLICE, LFW_FACE_BOX, LFW_FALLBACK_BOX, LFW_SIZE, SELECT_RULES, THUMB_BOX,
    LFWPairs, lfw_home, lfw_pairs, lfw_people, lfw_subset, make_writable_data_home, pick_subject)
from facekit.teach.lfw.faces import THUMB, LFWFaces, eigenface_pixels, lfw_people_faces
from facekit.teach.lfw.pipeline import (FLIP_MODES, TTA_VIEWS, LFWEmbeddings, detect_lfw, embed_lfw,
    embed_lfw_pairs, lfw_verification)

__all__ = [
    "LFW_SIZE", "LFW_FALLBACK_BOX", "LFW_FACE_BOX", "EIGEN_SLICE", "THUMB_BOX", "SELECT_RULES", "FLIP_MODES",
    "TTA_VIEWS", "THUMB", "make_writable_data_home", "lfw_home", "LFWPairs", "lfw_pairs", "lfw_people",
    "lfw_subset", "pick_subject", "detect_lfw", "embed_lfw", "embed_lfw_pairs", "lfw_verification",
    "LFWEmbeddings", "LFWFaces", "lfw_people_faces", "eigenface_pixels", "RowTable", "lfw_cache_dir",
    "rel_key", "settings_key",
]
