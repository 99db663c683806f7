"""int8 inference: the compiled FaceNet quantised for the CPU's integer units, and CPU detection.

Taught in notebook A1 (speed appendix). The float32 embedding already runs near the CPU's float32
matrix-multiply ceiling (``bench/embed.py``); CPUs with AVX-512 VNNI, AVX-VNNI or AMX do several
times more int8 multiply-adds per cycle. This module:

- :func:`cpu_int8` reports which int8 instructions the CPU has (``"amx"``, ``"vnni"``,
  ``"avx2"``, ``"none"``), from ``/proc/cpuinfo`` flags;
- :func:`int8_model_path` quantises the compiled float32 model (:func:`facekit.embed.onnx_path`)
  once with ONNX Runtime's *static* quantisation: QDQ format, int8 weights per output channel
  (symmetric), uint8 activations (asymmetric) whose ranges are calibrated (min/max) on
  :func:`calibration_crops`. Dynamic quantisation was tried and rejected (``bench/quant.py``
  numbers in the README): ONNX Runtime runs its ``ConvInteger`` without the fused kernels, so it
  is slower than float32, while static QDQ convolutions become fused ``QLinearConv`` kernels;
  int8 activations (s8s8) were also slower than uint8 (u8s8) here. The first convolution (it
  sees raw standardised pixels) and the last linear layer (the 128-D embedding itself) stay in
  float32 (:data:`EXCLUDE`): on LFW View 2 that moved int8 from 99.20% to 99.32% (float32
  99.38%) at the same speed, since both layers are a tiny share of the multiply-adds;
- :func:`auto_precision` decides ``Embedder(precision="auto")``: int8 only where it was
  measured faster on this CPU (measured once, cached in ``cache_dir()/compiled/speed-*.json``).

The calibration set (:data:`CALIBRATION`) is the 93 "5 Celebrity Faces" *training* photos'
aligned crops and their mirror images: fixed, offline, covered by the sdist's sha256, and with no
LFW image in it (LFW is the test set); the 25 validation photos stay held out.

The int8 model gets its own calibrated thresholds (registry entry ``"facenet128-int8"``) and its
own fingerprint (:data:`PRECISION_TAG`), so stores never mix int8 and float32 embeddings.
"""

from __future__ import annotations

import hashlib
import json
import os
import time
from pathlib import Path

import numpy as np

__all__ = [
    "ATOL",
    "CALIBRATION",
    "EXCLUDE",
    "PRECISION_TAG",
    "auto_precision", "cpu_signature",
    "calibration_crops",
    "cpu_int8",
    "int8_model_path",
    "int8_mtcnn_networks",
    "measure_speed",
    "qdq_quantize",
    "quantize_static_qdq",
]

#: the int8 recipe's name in fingerprints and cache keys; bump when this module's recipe changes
#: (the float32 model's own key already covers the folding/export code)
PRECISION_TAG = "int8-qdq2"
#: the documented calibration set: sample training photos' largest-face crops + mirror images
CALIBRATION = "5celeb-train+mirror"
#: layers kept in float32 (by node name = Keras layer name); see the module docstring
EXCLUDE: tuple[str, ...] = ("Conv2d_1a_3x3", "Bottleneck")
#: a loaded int8 model must reproduce its manifest's test embeddings to this (max abs). On one
#: machine the int8 kernels are deterministic (~1e-7); zeroing 4 KB of weights moves them ~7e-3;
#: another CPU's kernels may differ slightly, which costs one rebuild there, never a wrong answer
ATOL = 1e-3
#: int8 must be at least this much faster than float32 for precision="auto" to pick it
AUTO_MARGIN = 1.1


def cpu_int8(cpuinfo: str | os.PathLike = "/proc/cpuinfo") -> str:
    """The best int8 matrix instructions this CPU has: ``"amx"`` (AMX-INT8 tiles, recent Xeons),
    ``"vnni"`` (AVX-512 VNNI or AVX-VNNI: one instruction per 4 int8 multiply-adds), ``"avx2"``
    (int8 through 16-bit multiply-adds), ``"none"``, or ``"unknown"`` where ``cpuinfo`` cannot be
    read (not Linux)."""
    try:
        text = Path(cpuinfo).read_text()
    except OSError:
        return "unknown"
    flags: set[str] = set()
    for line in text.splitlines():
        if line.startswith(("flags", "Features")):
            flags.update(line.split(":", 1)[1].split())
    if "amx_int8" in flags:
        return "amx"
    if flags & {"avx512_vnni", "avx_vnni", "avx512vnni"}:
        return "vnni"
    if "avx2" in flags:
        return "avx2"
    return "none"


def cpu_signature() -> dict:
    """What a speed measurement is valid for: CPU model name, int8 instructions, cores, ONNX Runtime."""
    import onnxruntime

    name = ""
    try:
        name = next((l.split(":", 1)[1].strip() for l in Path("/proc/cpuinfo").read_text().splitlines()
                     if l.startswith("model name")), "")
    except OSError:
        pass
    return {"cpu": name, "int8": cpu_int8(), "cores": os.cpu_count(), "onnxruntime": onnxruntime.__version__}


def calibration_crops() -> np.ndarray:
    """The calibration set, ``uint8 (186, 160, 160, 3)``: the largest face of each of the 93
    sample training photos (``load_celebrities("train")``, aligned as everywhere else) and its
    mirror image. Cached as ``cache_dir()/compiled/calibration-crops.npy`` (detection runs once)."""
    from .registry import cache_dir

    path = cache_dir() / "compiled" / f"calibration-{CALIBRATION}.npy"
    if path.is_file():
        try:
            x = np.load(path)
            if x.dtype == np.uint8 and x.shape[1:] == (160, 160, 3) and len(x) >= 100:
                return x
        except (OSError, ValueError):
            pass  # damaged: recomputed below
    from .datasets import load_celebrities

    crops = load_celebrities("train", progress=False, verbose=False, embed=False).crops
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


def qdq_quantize(fp32_path: Path, reader, exclude: tuple[str, ...] = (), activations: str = "uint8") -> bytes:
    """QDQ static quantisation of ``fp32_path`` calibrated by min/max over ``reader``'s batches."""
    import tempfile

    from onnxruntime.quantization import (
        CalibrationMethod,
        QuantFormat,
        QuantType,
        quantize_static,
    )

    with tempfile.TemporaryDirectory(prefix="facekit-quant-") as tmp:
        out = Path(tmp) / "int8.onnx"
        quantize_static(str(fp32_path), str(out), reader, quant_format=QuantFormat.QDQ, per_channel=True,
                        activation_type=QuantType.QUInt8 if activations == "uint8" else QuantType.QInt8,
                        weight_type=QuantType.QInt8, calibrate_method=CalibrationMethod.MinMax,
                        nodes_to_exclude=list(exclude),
                        extra_options={"ActivationSymmetric": False, "WeightSymmetric": True})
        return out.read_bytes()


def _int8_key(model: str) -> dict:
    import onnxruntime

    from .compiled import compiled_key
    from .registry import SDIST_SHA256

    return {**compiled_key(model), "precision": PRECISION_TAG, "method": "static-qdq-u8s8-perchannel-minmax",
            "exclude": list(EXCLUDE), "calibration": CALIBRATION, "calibration_source_sha256": SDIST_SHA256,
            "onnxruntime": onnxruntime.__version__}


def int8_model_path(model: str = "facenet128", keras_model=None, rebuild: bool = False, build: bool = True) -> Path:
    """Cached int8 ONNX file of ``model`` (built once from the float32 compiled model, ~1 min).

    Keyed like the float32 one (weights sha256, export version, code hash) plus the recipe
    (:data:`PRECISION_TAG`, method, layers kept in float32), calibration set and ONNX Runtime's
    version; its manifest's test-crop
    embeddings are checked on load (:func:`facekit.onnxgraph.check_session`, :data:`ATOL`), so a
    truncated or tampered file is rebuilt, never used."""
    if model != "facenet128":
        raise ValueError(f"int8 is calibrated for 'facenet128' only, not {model!r}")
    from .compiled import onnx_path, ort_embed_fn
    from .onnxgraph import cached_model
    from .registry import cache_dir

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
    from .registry import cache_dir

    return cache_dir() / "compiled" / f"speed-{model}.json"


def measure_speed(model: str = "facenet128", batch: int = 32, rounds: int = 5) -> dict:
    """Time float32 and int8 embedding at ``batch`` on this CPU (interleaved rounds, median, wall
    time) and cache the result with the CPU's signature; returns it (``fp32_faces_per_s``,
    ``int8_faces_per_s``, ``cpu``...). Builds the int8 model first if needed."""
    import statistics

    from .compiled import onnx_path, ort_session
    from .onnxgraph import test_crops

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


def int8_mtcnn_networks(precision: str = "int8"):
    """MTCNN's three networks as ONNX Runtime callables (:class:`facekit.cascade.Networks`):
    ``Detector(networks=int8_mtcnn_networks())`` detects with int8 P-, R- and O-Nets;
    ``precision="fp32"``: the same ONNX graphs unquantised (the like-for-like baseline). Built and
    cached once (:func:`facekit.mtcnn_int8.mtcnn_paths`)."""
    from .mtcnn_int8 import onnx_networks

    return onnx_networks(precision)
