"""dlib's ResNet face descriptor (``dlib128``) in ONNX Runtime: the backend of registry entry
``"dlib128"``.

The network is dlib's ``dlib_face_recognition_resnet_model_v1.dat`` (Davis King, 2017: a 29-layer
ResNet trained with a pair-wise metric loss on about 3 million faces; the ``face_recognition``
package's model), shipped by ``face_recognition_models`` and checked by sha256
(:func:`facekit.core.cache.dlib_model_file`). It is converted once, at first use, from dlib's own
serialisation into an ONNX graph (:mod:`facekit.runtime.dlib_dat`; dlib itself is not imported) and
cached under ``cache_dir()/compiled`` with a manifest like FaceNet's. Input: dlib's 150x150 face
chip (:func:`facekit.detection.align.dlib_chips`), uint8 RGB; output: the mean of dlib's raw 128-D
descriptors of the chip and of its mirror image (:data:`MIRROR`), which the
:class:`~facekit.embedding.embedder.Embedder` scales to unit length.

Why the mirror: dlib's own ``compute_face_descriptor(..., num_jitters=N)`` "randomly jitters" the
face N times, runs each copy through the network "and the average [is] used as the face descriptor"
(dlib's Python docstring); its jitter (``random_cropper``) flips copies left-right at random, among
small shifts, scalings and rotations, and face_recognition documents more jitters as "more accurate,
but slower". The mirror alone is a deterministic form of that average, at twice one descriptor's
cost. Chosen on LFW View 1 (bench/models.py, Intel Xeon, MTCNN-landmark chips):
DevTest 98.9% vs 98.8% without it, best single cut over the 3,200 pairs 99.09% vs 98.91%. Taught in notebook A2
(a second model for hard light) and the appendix on two models.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np

from facekit.core.cache import DLIB_FILES, cache_dir, dlib_model_file
from facekit.runtime.onnxgraph import cached_model, check_session, code_hash, manifest_path
from facekit.runtime.sessions import ort_session

__all__ = ["DAT", "EXPORT_VERSION", "MIRROR", "onnx_path", "make", "fingerprint"]

DAT = "dlib_face_recognition_resnet_model_v1.dat"
#: bump when the conversion's arithmetic changes (the code hash covers its source too)
EXPORT_VERSION = 1
CHIP = 150
#: dlib128's descriptor is the mean of the chip's and its mirror image's (see the module's docstring)
MIRROR = True


def _code() -> str:
    from facekit.runtime import dlib_dat

    return code_hash(dlib_dat.__file__)


def onnx_path(rebuild: bool = False) -> Path:
    """The cached ONNX file of dlib's network (converted on first use, ~5 s; checked on load)."""
    sha = DLIB_FILES[DAT]
    stem = f"dlib128-{sha[:12]}-v"
    path = cache_dir() / "compiled" / f"{stem}{EXPORT_VERSION}-{_code()}.onnx"
    key = {"model": "dlib128", "weights_sha256": sha, "export_version": EXPORT_VERSION, "code": _code()}

    def build() -> bytes:
        from facekit.runtime.dlib_dat import dlib_resnet_onnx

        return dlib_resnet_onnx(dlib_model_file(DAT))

    cached_model(path, key, build, lambda p: _runner(ort_session(p)), rebuild=rebuild, prune=f"{stem}*[0-9a-f].onnx")
    return path


def _runner(sess):
    """``uint8 (N, S>=150, S, 3) -> float32 (N, 128)`` raw descriptors (the manifest's test crops
    are 160 px: their top-left 150x150 is used)."""
    def run(x: np.ndarray) -> np.ndarray:
        x = np.ascontiguousarray(np.asarray(x)[:, :CHIP, :CHIP, :3], np.float32)
        return sess.run(None, {"chips": x})[0]

    return run


def mirror_mean(fn):
    """``fn`` (chips -> raw descriptors) made to return the mean of the descriptors of each chip and
    of its left-right mirror, computed in one call of ``2N`` chips."""
    def run(x: np.ndarray) -> np.ndarray:
        x = np.asarray(x)[:, :CHIP, :CHIP, :3]
        y = fn(np.concatenate([x, x[:, :, ::-1]]))
        return (y[:len(x)] + y[len(x):]) / 2

    return run


def make(spec, precision: str = "fp32", threads: int | None = None):
    """The Embedder's hook: ``fn(uint8 chips (N, 150, 150, 3)) -> float32 (N, 128)`` raw descriptors
    (each the mean over the chip and its mirror, :data:`MIRROR`)."""
    if precision != "fp32":
        raise ValueError(f"{spec.name} runs in float32 only, not {precision!r}")
    import json

    path = onnx_path()
    fn = _runner(ort_session(path, threads=threads))
    try:
        check_session(fn, json.loads(manifest_path(path).read_text()), 1e-4, path)
    except Exception:
        path = onnx_path(rebuild=True)
        fn = _runner(ort_session(path, threads=threads))
    return mirror_mean(fn) if MIRROR else fn


def fingerprint(spec, precision: str = "fp32") -> str:
    """``"dlib128/<weights sha256[:12]>/onnx-v1/fp32"`` plus the chip's kind (its alignment changes
    the embeddings): loads nothing."""
    tag = hashlib.sha1(spec.crop.encode()).hexdigest()[:4] + ("-mirror" if MIRROR else "")
    return f"{spec.name}/{DLIB_FILES[DAT][:12]}/onnx-v{EXPORT_VERSION}-{tag}/{precision}"
