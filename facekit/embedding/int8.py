"""FaceNet in int8: the compiled float32 model quantised once for the CPU's integer units.

Taught in appendix A1 (speed). :func:`int8_model_path` quantises the compiled float32 model
(:func:`facekit.embedding.facenet.onnx_path`) with ONNX Runtime's static QDQ quantisation
(:func:`facekit.runtime.quant.qdq_quantize`), calibrated on :func:`calibration_crops`; the first
convolution and the last linear layer stay in float32 (:data:`EXCLUDE`). :func:`auto_precision`
decides ``Embedder(precision="auto")``: int8 only where it was measured faster on this CPU.
"""

from __future__ import annotations

import hashlib
import json
import os
import time
from pathlib import Path

import numpy as np

from facekit.core.cache import cache_dir, celebrity_dir
from facekit.core.images import IMAGE_SUFFIXES, load_image
from facekit.detection.align import DEFAULT_MARGIN, align_face
from facekit.detection.detector import get_detector, subject_face
from facekit.runtime.quant import CALIBRATION, PRECISION_TAG, cpu_signature, qdq_quantize

__all__ = ["EXCLUDE", "AUTO_MARGIN", "calibration_crops", "quantize_static_qdq", "int8_model_path", "measure_speed",
           "auto_precision"]


#: layers kept in float32 (by node name = Keras layer name); see the module docstring
EXCLUDE: tuple[str, ...] = ("Conv2d_1a_3x3", "Bottleneck")



#: int8 must be at least this much faster than float32 for precision="auto" to pick it
AUTO_MARGIN = 1.1



def calibration_crops() -> np.ndarray:
    """The calibration set, ``uint8 (186, 160, 160, 3)``: the labelled (largest) face of each of the
    93 sample training photos (:func:`facekit.detection.detector.subject_face`, aligned as
    everywhere else) and its mirror image. Cached as ``cache_dir()/compiled/calibration-*.npy``
    (detection runs once). Built from layer-2 pieces, so the embedding layer never reaches up into
    the datasets layer."""
    path = cache_dir() / "compiled" / f"calibration-{CALIBRATION}.npy"
    if path.is_file():
        try:
            x = np.load(path)
            if x.dtype == np.uint8 and x.shape[1:] == (160, 160, 3) and len(x) >= 100:
                return x
        except (OSError, ValueError):
            pass  # damaged: recomputed below
    det = get_detector()
    crops = []
    for photo in sorted(p for p in (celebrity_dir() / "train").glob("*/*") if p.suffix.lower() in IMAGE_SUFFIXES):
        img = load_image(photo)
        face = subject_face(det, img)
        if face is not None:
            crops.append(align_face(img, face, margin=DEFAULT_MARGIN))
    crops = np.stack(crops)
    x = np.concatenate([crops, crops[:, :, ::-1]])
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(f".{os.getpid()}.tmp.npy")
    np.save(tmp, x)
    os.replace(tmp, path)
    return x


def quantize_static_qdq(fp32_path: str | os.PathLike, crops: np.ndarray, exclude: tuple[str, ...] = EXCLUDE,
                        activations: str = "uint8") -> bytes:
    """Serialised int8 ONNX model of ``fp32_path``: QDQ static quantisation, per-channel
    symmetric int8 weights, ``activations`` ("uint8" or "int8") calibrated by min/max over
    ``crops`` (uint8 (N, 160, 160, 3)); ``exclude``: node names left in float32."""
    import tempfile

    from onnxruntime.quantization import CalibrationDataReader
    from onnxruntime.quantization.shape_inference import quant_pre_process

    class Reader(CalibrationDataReader):
        def __init__(self):
            self.batches = iter([{"crops": crops[i:i + 16]} for i in range(0, len(crops), 16)])

        def get_next(self):
            return next(self.batches, None)

    with tempfile.TemporaryDirectory(prefix="facekit-quant-") as tmp:
        pre = Path(tmp) / "pre.onnx"
        quant_pre_process(str(fp32_path), str(pre), skip_symbolic_shape=True)
        return qdq_quantize(pre, Reader(), exclude, activations)



def _int8_key(model: str) -> dict:
    import onnxruntime

    from facekit.embedding.facenet import compiled_key
    from facekit.core.cache import SDIST_SHA256

    return {**compiled_key(model), "precision": PRECISION_TAG, "method": "static-qdq-u8s8-perchannel-minmax",
            "exclude": list(EXCLUDE), "calibration": CALIBRATION, "calibration_source_sha256": SDIST_SHA256,
            "onnxruntime": onnxruntime.__version__}



def int8_model_path(model: str = "facenet128", keras_model=None, rebuild: bool = False, build: bool = True) -> Path:
    """Cached int8 ONNX file of ``model`` (built once from the float32 compiled model, ~1 min).

    Keyed like the float32 one (weights sha256, export version, code hash) plus the recipe
    (:data:`PRECISION_TAG`, method, layers kept in float32), calibration set and ONNX Runtime's
    version; its manifest's test-crop
    embeddings are checked on load (:func:`facekit.runtime.onnxgraph.check_session`, :data:`ATOL`), so a
    truncated or tampered file is rebuilt, never used."""
    if model != "facenet128":
        raise ValueError(f"int8 is calibrated for 'facenet128' only, not {model!r}")
    from facekit.embedding.facenet import onnx_path
    from facekit.runtime.sessions import ort_embed_fn
    from facekit.runtime.onnxgraph import cached_model
    from facekit.core.cache import cache_dir

    key = _int8_key(model)
    digest = hashlib.sha256(json.dumps(key, sort_keys=True).encode()).hexdigest()[:12]
    path = cache_dir() / "compiled" / f"{model}-int8-{digest}.onnx"
    if not build:
        return path
    fp32 = onnx_path(model, keras_model=keras_model)
    cached_model(path, key, lambda: quantize_static_qdq(fp32, calibration_crops()), ort_embed_fn,
                 rebuild=rebuild, prune=f"{model}-int8-*.onnx")
    return path



def _speed_path(model: str) -> Path:
    from facekit.core.cache import cache_dir

    return cache_dir() / "compiled" / f"speed-{model}.json"



def measure_speed(model: str = "facenet128", batch: int = 32, rounds: int = 5) -> dict:
    """Time float32 and int8 embedding at ``batch`` on this CPU (interleaved rounds, median, wall
    time) and cache the result with the CPU's signature; returns it (``fp32_faces_per_s``,
    ``int8_faces_per_s``, ``cpu``...). Builds the int8 model first if needed."""
    import statistics

    from facekit.embedding.facenet import onnx_path
    from facekit.runtime.sessions import ort_session
    from facekit.runtime.onnxgraph import test_crops

    x = np.resize(test_crops(), (batch, 160, 160, 3))
    sess = {"fp32": ort_session(onnx_path(model)), "int8": ort_session(int8_model_path(model))}
    for s in sess.values():
        s.run(None, {"crops": x})
    times: dict[str, list[float]] = {k: [] for k in sess}
    for _ in range(rounds):
        for k, s in sess.items():
            t = time.perf_counter()
            s.run(None, {"crops": x})
            times[k].append(time.perf_counter() - t)
    res = {**cpu_signature(), "model": model, "batch": batch, "measured_at": time.strftime("%Y-%m-%d %H:%M:%S"),
           **{f"{k}_faces_per_s": round(batch / statistics.median(v), 2) for k, v in times.items()}}
    path = _speed_path(model)
    tmp = path.with_suffix(f".{os.getpid()}.tmp")
    tmp.write_text(json.dumps(res, indent=1))
    os.replace(tmp, path)
    return res



def auto_precision(model: str = "facenet128") -> str:
    """``"int8"`` if int8 was measured at least :data:`AUTO_MARGIN` times faster than float32 on
    this CPU (the cached :func:`measure_speed` result, re-measured when the CPU, core count or
    ONNX Runtime version differ), else ``"fp32"``. Only ``Embedder(precision="auto")`` (or
    ``FACEKIT_PRECISION=auto``) calls it: choosing "auto" is the user's consent to int8; the
    default stays float32. Models without an int8 version give ``"fp32"``."""
    if model != "facenet128":
        return "fp32"
    try:
        m = json.loads(_speed_path(model).read_text())
        if any(m.get(k) != v for k, v in cpu_signature().items()):
            raise ValueError("measured on another CPU or runtime")
        fp32, int8 = float(m["fp32_faces_per_s"]), float(m["int8_faces_per_s"])
    except (OSError, ValueError, KeyError, TypeError):
        m = measure_speed(model)
        fp32, int8 = m["fp32_faces_per_s"], m["int8_faces_per_s"]
    return "int8" if np.isfinite(int8) and int8 >= AUTO_MARGIN * fp32 else "fp32"
