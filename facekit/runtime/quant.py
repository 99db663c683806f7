"""int8 building blocks shared by every quantised graph (FaceNet's and MTCNN's): which int8
instructions this CPU has, and ONNX Runtime's static QDQ quantisation of a float32 graph.

Taught in appendix A1 (speed). The float32 embedding already runs near the CPU's float32
matrix-multiply ceiling (``bench/embed.py``); CPUs with AVX-512 VNNI, AVX-VNNI or AMX do several
times more int8 multiply-adds per cycle. Static QDQ (int8 weights per output channel, uint8
activations calibrated min/max) becomes fused ``QLinearConv`` kernels; dynamic quantisation was
tried and rejected (``bench/quant.py``): ONNX Runtime runs its ``ConvInteger`` without the fused
kernels, so it is slower than float32, and int8 activations (s8s8) were slower than uint8 (u8s8).
What each network keeps in float32 and what it is calibrated on belongs to that network:
:mod:`facekit.embedding.int8` (FaceNet), :mod:`facekit.detection.int8` (MTCNN).

The calibration set (:data:`CALIBRATION`) is the 93 "5 Celebrity Faces" *training* photos and their
mirror images: fixed, offline, covered by the sdist's sha256, and with no LFW image in it (LFW is
the test set); the 25 validation photos stay held out.
"""

from __future__ import annotations

import os
from pathlib import Path


__all__ = ["ATOL", "CALIBRATION", "PRECISION_TAG", "cpu_int8", "cpu_signature", "qdq_quantize"]

#: the int8 recipe's name in fingerprints and cache keys; bump when this module's recipe changes
#: (the float32 model's own key already covers the folding/export code)
PRECISION_TAG = "int8-qdq2"
#: the documented calibration set: sample training photos' largest-face crops + mirror images
CALIBRATION = "5celeb-train+mirror"
#: a loaded int8 model must reproduce its manifest's test embeddings to this (max abs). On one
#: machine the int8 kernels are deterministic (~1e-7); zeroing 4 KB of weights moves them ~7e-3;
#: another CPU's kernels may differ slightly, which costs one rebuild there, never a wrong answer
ATOL = 1e-3


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


