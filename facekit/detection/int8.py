"""MTCNN's P-, R- and O-Net in ONNX Runtime, float32 and int8 (issue 17).

Taught in notebook A1 (speed appendix). :func:`mtcnn_paths` takes the float32 ONNX networks built
from the weights in the mtcnn wheel (:mod:`facekit.detection.onnxnets`, no TensorFlow), then
quantises each with ONNX Runtime's static QDQ quantisation (per-channel int8 weights, uint8 activations, min/max
calibration) on the inputs each float32 network receives while detecting in the calibration
photos (:data:`facekit.runtime.quant.CALIBRATION`: the 93 sample training photos, plus each letterboxed
into a 640x480 frame). Files are cached under ``cache_dir()/compiled`` with manifests, like the
FaceNet ones (:func:`facekit.runtime.onnxgraph.cached_model`). :func:`onnx_networks` returns callables
for ``Detector(networks=...)``; :func:`facekit.detection.int8.int8_mtcnn_networks` is the public entry.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from facekit.runtime.quant import CALIBRATION, qdq_quantize

__all__ = ["MTCNN_TAG", "letterbox_frame", "mtcnn_paths", "onnx_networks", "int8_mtcnn_networks"]

#: the MTCNN export + int8 recipe, in its cache keys; bump when the code below changes
MTCNN_TAG = "mtcnn-int8-qdq2"


def mtcnn_paths(precision: str = "int8", rebuild: bool = False) -> tuple[Path, Path, Path]:
    """Cached ONNX files of MTCNN's P-, R- and O-Net at ``precision`` ("fp32" or "int8"); fp32:
    built from the weights in the mtcnn wheel (:func:`facekit.detection.onnxnets.fp32_paths`, no
    TensorFlow); int8: QDQ static quantisation (as for FaceNet) calibrated on the inputs each
    float32 network receives while detecting faces in the calibration photos (the 93 sample
    training photos and their 640x480 letterboxed frames)."""
    from facekit.detection.onnxnets import NET_NAMES, fp32_paths, net_key, net_probe, paths_for
    from facekit.runtime.onnxgraph import cached_model

    if precision == "fp32":
        return fp32_paths(rebuild=rebuild)
    if precision != "int8":
        raise ValueError(f"precision must be 'fp32' or 'int8', not {precision!r}")
    fp32 = fp32_paths(rebuild=rebuild)
    key = net_key("int8", recipe=MTCNN_TAG, calibration=CALIBRATION)
    paths = paths_for("int8", key)
    calib = None
    for i, p in enumerate(paths):
        def build(i=i):
            nonlocal calib
            calib = calib or _mtcnn_calibration(fp32)
            return _quantize_net(fp32[i], calib[i])

        cached_model(p, key, build, net_probe(i), rebuild=rebuild, prune=f"mtcnn-{NET_NAMES[i]}-int8-*.onnx")
    return paths


def _mtcnn_calibration(fp32: tuple[Path, Path, Path]) -> list[list[np.ndarray]]:
    """Inputs of each float32 network while detecting in the calibration photos."""
    from facekit.core.cache import celebrity_dir
    from facekit.core.images import load_image
    from facekit.detection.detector import Detector
    from facekit.detection.onnxnets import ort_net

    seen: list[list[np.ndarray]] = [[], [], []]

    def recorder(i):
        net = ort_net(fp32[i])

        def rec(x):
            x = np.asarray(x, np.float32)
            if len(x):
                seen[i].append(x)
            return net(x)

        return rec

    det = Detector(networks=tuple(recorder(i) for i in range(3)))
    for p in sorted(celebrity_dir().glob("train/*/*.jpg")):
        img = load_image(p)
        det.detect(img)
        det.detect(letterbox_frame(img))
    return seen


def letterbox_frame(img: np.ndarray, w: int = 640, h: int = 480) -> np.ndarray:
    """``img`` scaled into a black ``h x w`` frame (a webcam-sized test frame)."""
    import cv2

    s = min(w / img.shape[1], h / img.shape[0])
    r = cv2.resize(img, (round(img.shape[1] * s), round(img.shape[0] * s)), interpolation=cv2.INTER_AREA)
    out = np.zeros((h, w, 3), np.uint8)
    y0, x0 = (h - r.shape[0]) // 2, (w - r.shape[1]) // 2
    out[y0:y0 + r.shape[0], x0:x0 + r.shape[1]] = r
    return out


def _quantize_net(fp32_path: Path, inputs: list[np.ndarray]) -> bytes:
    import logging

    from onnxruntime.quantization import CalibrationDataReader

    class Reader(CalibrationDataReader):
        def __init__(self):
            self.it = iter([{"x": x} for x in inputs])

        def get_next(self):
            return next(self.it, None)

    logging.disable(logging.WARNING)  # onnxruntime's "consider pre-processing" advice, once per call
    try:
        return qdq_quantize(fp32_path, Reader())
    finally:
        logging.disable(logging.NOTSET)


def onnx_networks(precision: str = "int8", threads: int | None = None):
    """MTCNN's three networks as ONNX Runtime callables (:class:`facekit.detection.cascade.Networks`) at
    ``precision`` ("int8" or "fp32"), built and cached once (:func:`mtcnn_paths`). Each loaded
    file must reproduce its manifest's outputs on the test crops; a file that does not
    (tampered, damaged) is rebuilt once, with a warning. ``threads``: intra-op threads per network."""
    from facekit.detection.onnxnets import load_networks
    from facekit.runtime.quant import ATOL

    return load_networks(lambda rebuild: mtcnn_paths(precision, rebuild=rebuild), ATOL, threads)


def int8_mtcnn_networks(precision: str = "int8"):
    """MTCNN's three networks as ONNX Runtime callables (:class:`facekit.detection.cascade.Networks`):
    ``Detector(networks=int8_mtcnn_networks())`` detects with int8 P-, R- and O-Nets;
    ``precision="fp32"``: the same ONNX graphs unquantised (the like-for-like baseline). Built and
    cached once (:func:`mtcnn_paths`)."""
    return onnx_networks(precision)
