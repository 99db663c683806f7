"""MTCNN's P-, R- and O-Net in ONNX Runtime, float32 and int8 (issue 17).

Taught in notebook A1 (speed appendix). :func:`mtcnn_paths` exports each network of
``mtcnn.MTCNN().stages[i].model`` (Conv2D / PReLU / MaxPooling2D / Permute / Flatten / Dense) to
ONNX with the same arithmetic (NCHW inside, NHWC in and out), then quantises it with ONNX
Runtime's static QDQ quantisation (per-channel int8 weights, uint8 activations, min/max
calibration) on the inputs each float32 network receives while detecting in the calibration
photos (:data:`facekit.runtime.quant.CALIBRATION`: the 93 sample training photos, plus each letterboxed
into a 640x480 frame). Files are cached under ``cache_dir()/compiled`` with manifests, like the
FaceNet ones (:func:`facekit.runtime.onnxgraph.cached_model`). :func:`onnx_networks` returns callables
for ``Detector(networks=...)``; :func:`facekit.detection.int8.int8_mtcnn_networks` is the public entry.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np

from facekit.runtime.quant import CALIBRATION, qdq_quantize

__all__ = ["MTCNN_TAG", "letterbox_frame", "mtcnn_paths", "onnx_networks", "int8_mtcnn_networks"]

#: the MTCNN export + int8 recipe, in its cache keys; bump when the code below changes
MTCNN_TAG = "mtcnn-int8-qdq2"


def _mtcnn_onnx(model, name: str) -> bytes:
    """One mtcnn Keras network (``mtcnn.MTCNN().stages[i].model``) as ONNX: input ``x`` float32
    NHWC in [-1, 1] (what :class:`facekit.detection.cascade.Networks` receive), outputs as the Keras
    model's (P-Net NHWC maps). Conv2D / PReLU / MaxPooling2D / Permute / Flatten / Dense only."""
    import keras
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    L = keras.layers
    nodes, inits = [], []

    def op(kind, ins, out, **attrs):
        nodes.append(helper.make_node(kind, ins, [out], name=out, **attrs))
        return out

    def const(n, v):
        inits.append(numpy_helper.from_array(np.asarray(v, np.float32), n))
        return n

    layers = [l for l in model.layers if not isinstance(l, L.InputLayer)]
    last_prelu = max(i for i, l in enumerate(layers) if isinstance(l, L.PReLU))
    x = op("Transpose", ["x"], "nchw", perm=[0, 3, 1, 2])
    flat, outs = False, []
    for i, layer in enumerate(layers):
        src = x  # the heads (after the last PReLU) all read the trunk's output: x stops there
        act = getattr(getattr(layer, "activation", None), "__name__", "linear")
        if act not in ("linear", "softmax"):
            raise NotImplementedError(f"{name}/{layer.name}: activation {act}")
        if type(layer) is L.Conv2D:
            if tuple(layer.dilation_rate) != (1, 1) or layer.padding != "valid":
                raise NotImplementedError(f"{name}/{layer.name}: only VALID undilated Conv2D")
            w = np.transpose(np.asarray(layer.kernel), (3, 2, 0, 1))
            y = op("Conv", [src, const(f"{layer.name}/W", w), const(f"{layer.name}/B", layer.bias)], layer.name,
                   strides=list(layer.strides))
            axis = 1
        elif type(layer) is L.Dense:
            y = op("Gemm", [src, const(f"{layer.name}/W", layer.kernel), const(f"{layer.name}/B", layer.bias)],
                   layer.name)
            axis = 1
        elif isinstance(layer, L.PReLU):
            alpha = np.asarray(layer.alpha, np.float32).reshape(-1)
            y = op("PRelu", [src, const(f"{layer.name}/slope", alpha.reshape((-1, 1, 1) if not flat else (-1,)))],
                   layer.name)
        elif isinstance(layer, L.MaxPooling2D):
            y = op("MaxPool", [src], layer.name, kernel_shape=list(layer.pool_size), strides=list(layer.strides),
                   auto_pad="SAME_UPPER" if layer.padding == "same" else "VALID")
        elif isinstance(layer, L.Permute):
            if tuple(layer.dims) != (2, 1, 3):
                raise NotImplementedError(f"{name}/{layer.name}: Permute{layer.dims}")
            y = op("Transpose", [src], layer.name, perm=[0, 3, 2, 1])  # NCHW -> N W H C, as Keras' NHWC permute
        elif isinstance(layer, L.Flatten):
            y, flat = op("Flatten", [src], layer.name, axis=1), True
        else:
            raise NotImplementedError(f"{name}/{layer.name}: {type(layer).__name__}")
        if act == "softmax":
            y = op("Softmax", [y], f"{layer.name}/softmax", axis=axis)
        if i > last_prelu:
            c = int(getattr(layer, "filters", None) or layer.units)
            outs.append((y if flat else op("Transpose", [y], f"{layer.name}/nhwc", perm=[0, 2, 3, 1]),
                         ["N", c] if flat else ["N", "h", "w", c]))
        else:
            x = y
    out_names = [f"out{i}" for i in range(len(outs))]
    for (o, _), n in zip(outs, out_names):
        op("Identity", [o], n)
    hw = ["H", "W"] if not flat else [24 if len(outs) == 2 else 48] * 2
    graph = helper.make_graph(nodes, f"mtcnn_{name}",
                              [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", *hw, 3])],
                              [helper.make_tensor_value_info(n, TensorProto.FLOAT, shape)
                               for n, (_, shape) in zip(out_names, outs)], inits)
    m = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], producer_name="facekit")
    m.ir_version = 8
    onnx.checker.check_model(m)
    return m.SerializeToString()


def _mtcnn_key(precision: str) -> dict:
    import mtcnn
    import onnxruntime

    assets = sorted(Path(mtcnn.__file__).parent.rglob("*.weights.h5")) or sorted(
        p for p in Path(mtcnn.__file__).parent.joinpath("assets").rglob("*") if p.is_file())
    h = hashlib.sha256()
    for p in assets:
        h.update(p.read_bytes())
    return {"mtcnn": getattr(mtcnn, "__version__", "?"), "weights_sha256": h.hexdigest(), "precision": precision,
            "recipe": MTCNN_TAG, "calibration": CALIBRATION, "onnxruntime": onnxruntime.__version__}


_NET_NAMES = ("pnet", "rnet", "onet")
_NET_SIDES = (48, 24, 48)  # probe input sides (P-Net takes any size: 48 keeps its manifest small)


def _net_probe(i: int):
    """Function for :func:`facekit.runtime.onnxgraph.cached_model`: network ``i`` on the fixed test crops
    (resized to its input, scaled to [-1, 1]) -> its outputs flattened per crop."""
    import cv2

    from facekit.runtime.onnxgraph import test_crops

    crops = test_crops()
    side = _NET_SIDES[i]
    crops = np.stack([cv2.resize(c, (side, side), interpolation=cv2.INTER_AREA) for c in crops])
    x = (crops.astype(np.float32) - 127.5) / 128.0

    def run(path):
        from facekit.runtime.sessions import ort_session

        s = ort_session(path)
        return lambda _: np.concatenate([o.reshape(len(x), -1) for o in s.run(None, {"x": x})], 1)

    return run


def _ort_net(path: Path):
    from facekit.runtime.sessions import ort_session

    sess = ort_session(path)
    names = [o.name for o in sess.get_outputs()]

    def net(x):
        return tuple(sess.run(names, {"x": np.ascontiguousarray(np.asarray(x, np.float32))}))

    return net


def mtcnn_paths(precision: str = "int8", rebuild: bool = False) -> tuple[Path, Path, Path]:
    """Cached ONNX files of MTCNN's P-, R- and O-Net at ``precision`` ("fp32" or "int8"), built
    once from ``mtcnn.MTCNN().stages[i].model``; int8: QDQ static quantisation (as for FaceNet)
    calibrated on the inputs each network receives while the float32 networks detect faces in
    the calibration photos (the 93 sample training photos and their 640x480 letterboxed frames)."""
    from facekit.runtime.onnxgraph import cached_model
    from facekit.core.cache import cache_dir

    key = _mtcnn_key(precision)
    digest = hashlib.sha256(json.dumps(key, sort_keys=True).encode()).hexdigest()[:12]
    paths = tuple(cache_dir() / "compiled" / f"mtcnn-{n}-{precision}-{digest}.onnx" for n in _NET_NAMES)
    if precision == "fp32":
        import mtcnn

        models = None
        for i, p in enumerate(paths):
            def build(i=i):
                nonlocal models
                models = models or [st.model for st in mtcnn.MTCNN().stages]
                return _mtcnn_onnx(models[i], _NET_NAMES[i])

            cached_model(p, key, build, _net_probe(i), rebuild=rebuild, prune=f"mtcnn-{_NET_NAMES[i]}-fp32-*.onnx")
        return paths
    if precision != "int8":
        raise ValueError(f"precision must be 'fp32' or 'int8', not {precision!r}")
    fp32 = mtcnn_paths("fp32", rebuild=rebuild)
    calib = None
    for i, p in enumerate(paths):
        def build(i=i):
            nonlocal calib
            calib = calib or _mtcnn_calibration(fp32)
            return _quantize_net(fp32[i], calib[i])

        cached_model(p, key, build, _net_probe(i), rebuild=rebuild, prune=f"mtcnn-{_NET_NAMES[i]}-int8-*.onnx")
    return paths


def _mtcnn_calibration(fp32: tuple[Path, Path, Path]) -> list[list[np.ndarray]]:
    """Inputs of each float32 network while detecting in the calibration photos."""
    from facekit.detection.detector import Detector
    from facekit.core.images import load_image
    from facekit.core.cache import celebrity_dir

    seen: list[list[np.ndarray]] = [[], [], []]

    def recorder(i):
        net = _ort_net(fp32[i])

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


def onnx_networks(precision: str = "int8"):
    """MTCNN's three networks as ONNX Runtime callables (:class:`facekit.detection.cascade.Networks`) at
    ``precision`` ("int8" or "fp32"), built and cached once (:func:`mtcnn_paths`). Each loaded
    file must reproduce its manifest's outputs on the test crops; a file that does not
    (tampered, damaged) is rebuilt once, with a warning."""
    import warnings

    from facekit.detection.cascade import Networks
    from facekit.runtime.onnxgraph import CacheMismatch, check_session, manifest_path
    from facekit.runtime.quant import ATOL

    def load(rebuild: bool):
        paths = mtcnn_paths(precision, rebuild=rebuild)
        for i, p in enumerate(paths):
            check_session(_net_probe(i)(p), json.loads(manifest_path(p).read_text()), ATOL, p)
        return Networks(*(_ort_net(p) for p in paths))

    try:
        return load(False)
    except (CacheMismatch, OSError, ValueError, RuntimeError) as exc:
        warnings.warn(f"facekit: an MTCNN ONNX file failed its check ({exc}); rebuilding them", RuntimeWarning,
                      stacklevel=2)
        return load(True)


def int8_mtcnn_networks(precision: str = "int8"):
    """MTCNN's three networks as ONNX Runtime callables (:class:`facekit.detection.cascade.Networks`):
    ``Detector(networks=int8_mtcnn_networks())`` detects with int8 P-, R- and O-Nets;
    ``precision="fp32"``: the same ONNX graphs unquantised (the like-for-like baseline). Built and
    cached once (:func:`mtcnn_paths`)."""
    return onnx_networks(precision)
