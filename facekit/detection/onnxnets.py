"""MTCNN's P-, R- and O-Net in ONNX Runtime, built from the weights in the mtcnn wheel (no TensorFlow).

Taught in notebook 01 (the default detector) and appendix A1 (speed). The mtcnn wheel ships each
network's weights as a joblib + lz4 file (``mtcnn/assets/weights/{pnet,rnet,onet}.lz4``): the list
``model.get_weights()`` of its Keras model, in layer order. :data:`ARCHITECTURES` writes down the
layers of mtcnn 1.0's ``mtcnn/network/*.py`` (Conv2D, PReLU, MaxPooling2D, Permute, Flatten,
Dense); :func:`export_net` pairs them with those arrays and writes an ONNX graph with the same
arithmetic (NCHW inside; NHWC float32 in [-1, 1] in, outputs as the Keras model's). The files are
read without importing mtcnn (its ``__init__`` imports TensorFlow), cached under
``cache_dir()/compiled`` with a manifest (sha256 and the outputs on fixed test crops, checked on
every load: :func:`facekit.runtime.onnxgraph.cached_model`). Building all three takes ~0.2 s.

Same outputs as the Keras networks to ~1e-6 (float32); the detector built on them equals the
TensorFlow one within 0.5 px and 1e-3 in confidence (``tests/test_tf_free.py``, ``bench/detect.py``).
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
import threading
from collections.abc import Callable
from pathlib import Path

import numpy as np

__all__ = ["ARCHITECTURES", "NET_NAMES", "weights_dir", "load_weights", "export_net", "net_key", "fp32_paths",
           "ort_net", "net_probe", "load_networks", "fp32_networks"]

NET_NAMES = ("pnet", "rnet", "onet")
#: the export recipe, in the cache key: bump when the graphs below change
EXPORT_TAG = "mtcnn-onnx-lz4-1"

#: mtcnn 1.0's networks, layer by layer: ("conv",) 3x3/2x2 VALID stride 1 (kernel size from the
#: weights); ("prelu",); ("pool", size, stride, padding); ("permute",) NHWC (2, 1, 3); ("flatten",);
#: ("dense",). After "|" come the heads, each ("conv" | "dense", activation) reading the trunk.
ARCHITECTURES = {
    "pnet": [("conv",), ("prelu",), ("pool", 2, 2, "same"), ("conv",), ("prelu",), ("conv",), ("prelu",), "|",
             ("conv", "linear"), ("conv", "softmax")],
    "rnet": [("conv",), ("prelu",), ("pool", 3, 2, "same"), ("conv",), ("prelu",), ("pool", 3, 2, "valid"),
             ("conv",), ("prelu",), ("permute",), ("flatten",), ("dense",), ("prelu",), "|",
             ("dense", "linear"), ("dense", "softmax")],
    "onet": [("conv",), ("prelu",), ("pool", 3, 2, "same"), ("conv",), ("prelu",), ("pool", 3, 2, "valid"),
             ("conv",), ("prelu",), ("pool", 2, 2, "same"), ("conv",), ("prelu",), ("permute",), ("flatten",),
             ("dense",), ("prelu",), "|", ("dense", "linear"), ("dense", "linear"), ("dense", "softmax")],
}
#: input side of R-Net and O-Net (P-Net takes any size)
INPUT_SIDES = {"rnet": 24, "onet": 48}
_PROBE_SIDES = (48, 24, 48)  # probe input sides (P-Net: 48 keeps its manifest small)


def weights_dir() -> Path:
    """``mtcnn/assets/weights`` of the installed mtcnn wheel, found without importing mtcnn."""
    spec = importlib.util.find_spec("mtcnn")
    if spec is None or not spec.submodule_search_locations:
        raise ImportError("the mtcnn package (its weights) is not installed: pip install mtcnn")
    return Path(list(spec.submodule_search_locations)[0]) / "assets" / "weights"


def load_weights(name: str) -> list[np.ndarray]:
    """The Keras weights of network ``name`` ("pnet", "rnet", "onet"): float32 arrays in layer order."""
    import joblib

    return [np.asarray(w, np.float32) for w in joblib.load(weights_dir() / f"{name}.lz4")]


def export_net(name: str, weights: list[np.ndarray] | None = None) -> bytes:
    """Serialised ONNX model of network ``name``: input ``x`` float32 NHWC (N, H, W, 3) in [-1, 1];
    outputs ``out0``.. as mtcnn's Keras model returns them (P-Net: NHWC maps (N, h, w, 4) and
    (N, h, w, 2); R-Net (N, 4), (N, 2); O-Net (N, 4), (N, 10), (N, 2))."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    from facekit.runtime.onnxgraph import OPSET

    ws = list(load_weights(name) if weights is None else weights)
    nodes, inits, outs = [], [], []

    def op(kind, ins, out, **attrs):
        nodes.append(helper.make_node(kind, ins, [out], name=out, **attrs))
        return out

    def const(n, v):
        inits.append(numpy_helper.from_array(np.asarray(v, np.float32), n))
        return n

    x, flat, head = op("Transpose", ["x"], "nchw", perm=[0, 3, 1, 2]), False, False
    for i, layer in enumerate(ARCHITECTURES[name]):
        if layer == "|":
            head = True
            continue
        kind, lname = layer[0], f"{name}/{i}_{layer[0]}"
        if kind == "conv":
            w, b = ws.pop(0), ws.pop(0)
            y = op("Conv", [x, const(f"{lname}/W", np.transpose(w, (3, 2, 0, 1))), const(f"{lname}/B", b)], lname)
        elif kind == "dense":
            w, b = ws.pop(0), ws.pop(0)
            y = op("Gemm", [x, const(f"{lname}/W", w), const(f"{lname}/B", b)], lname)
        elif kind == "prelu":
            alpha = ws.pop(0).reshape(-1)
            y = op("PRelu", [x, const(f"{lname}/slope", alpha if flat else alpha.reshape(-1, 1, 1))], lname)
        elif kind == "pool":
            y = op("MaxPool", [x], lname, kernel_shape=[layer[1]] * 2, strides=[layer[2]] * 2,
                   auto_pad="SAME_UPPER" if layer[3] == "same" else "VALID")
        elif kind == "permute":
            y = op("Transpose", [x], lname, perm=[0, 3, 2, 1])  # NCHW -> N W H C, as Keras' NHWC Permute(2, 1, 3)
        elif kind == "flatten":
            y, flat = op("Flatten", [x], lname, axis=1), True
        else:  # pragma: no cover - ARCHITECTURES holds only the kinds above
            raise NotImplementedError(kind)
        if not head:
            x = y
            continue
        if layer[1] == "softmax":
            y = op("Softmax", [y], f"{lname}/softmax", axis=1)
        c = int(w.shape[-1])
        outs.append((y if flat else op("Transpose", [y], f"{lname}/nhwc", perm=[0, 2, 3, 1]),
                     ["N", c] if flat else ["N", "h", "w", c]))
    if ws:
        raise ValueError(f"{name}: {len(ws)} weight arrays left over: the weights do not fit {name}'s layers")
    for k, (o, _) in enumerate(outs):
        op("Identity", [o], f"out{k}")
    side = INPUT_SIDES.get(name)
    hw = [side, side] if side else ["H", "W"]
    graph = helper.make_graph(nodes, f"mtcnn_{name}", [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", *hw, 3])],
                              [helper.make_tensor_value_info(f"out{k}", TensorProto.FLOAT, shape)
                               for k, (_, shape) in enumerate(outs)], inits)
    m = helper.make_model(graph, opset_imports=[helper.make_opsetid("", OPSET)], producer_name="facekit")
    m.ir_version = 8
    onnx.checker.check_model(m)
    return m.SerializeToString()


def net_key(precision: str, recipe: str = EXPORT_TAG, **extra) -> dict:
    """Cache key of the MTCNN ONNX files: the weights' sha256, the export code and recipe."""
    import onnxruntime

    from facekit.runtime.onnxgraph import code_hash

    h = hashlib.sha256()
    for n in NET_NAMES:
        h.update((weights_dir() / f"{n}.lz4").read_bytes())
    return {"weights_sha256": h.hexdigest(), "precision": precision, "recipe": recipe,
            "code": code_hash(__file__), "onnxruntime": onnxruntime.__version__, **extra}


def paths_for(precision: str, key: dict) -> tuple[Path, Path, Path]:
    """``cache_dir()/compiled/mtcnn-{net}-{precision}-{key digest}.onnx`` for the three networks."""
    from facekit.core.cache import cache_dir

    digest = hashlib.sha256(json.dumps(key, sort_keys=True).encode()).hexdigest()[:12]
    return tuple(cache_dir() / "compiled" / f"mtcnn-{n}-{precision}-{digest}.onnx" for n in NET_NAMES)


def fp32_paths(rebuild: bool = False) -> tuple[Path, Path, Path]:
    """The float32 ONNX files of P-, R- and O-Net, built from the wheel's weights on first use."""
    from facekit.runtime.onnxgraph import cached_model

    paths = paths_for("fp32", net_key("fp32"))
    for i, p in enumerate(paths):
        cached_model(p, net_key("fp32"), lambda i=i: export_net(NET_NAMES[i]), net_probe(i), rebuild=rebuild,
                     prune=f"mtcnn-{NET_NAMES[i]}-fp32-*.onnx")
    return paths


def net_probe(i: int, threads: int | None = None):
    """For :func:`facekit.runtime.onnxgraph.cached_model`: ``path -> (crops -> outputs)`` of network
    ``i`` on the fixed test crops (resized to its input, scaled to [-1, 1]), flattened per crop."""
    return lambda path: _probe_with(ort_net(path, threads), i)


def _probe_with(net, i: int):
    """``(ignored) -> outputs`` of a loaded network ``net`` (index ``i``) on the probe crops:
    :func:`facekit.runtime.onnxgraph.test_crops` resized to its input, scaled to [-1, 1]."""
    import cv2

    from facekit.runtime.onnxgraph import test_crops

    side = _PROBE_SIDES[i]
    x = (np.stack([cv2.resize(c, (side, side), interpolation=cv2.INTER_AREA) for c in test_crops()])
         .astype(np.float32) - 127.5) / 128.0
    return lambda _: np.concatenate([o.reshape(len(x), -1) for o in net(x)], 1)


def ort_net(path: Path, threads: int | None = None) -> Callable[[np.ndarray], tuple[np.ndarray, ...]]:
    """One network file as a callable ``float32 NHWC batch -> tuple of numpy outputs``."""
    from facekit.runtime.sessions import ort_session

    sess = ort_session(path, threads=threads)
    names = [o.name for o in sess.get_outputs()]

    def net(x):
        return tuple(sess.run(names, {"x": np.ascontiguousarray(x, np.float32)}))

    return net


def load_networks(paths_fn: Callable[[bool], tuple[Path, Path, Path]], atol: float, threads: int | None = None):
    """:class:`facekit.detection.cascade.Networks` from the files ``paths_fn(rebuild)`` returns, each
    checked against its manifest (``atol``); a file that fails (tampered, damaged) is rebuilt once,
    with a warning."""
    import warnings

    from facekit.detection.cascade import Networks
    from facekit.runtime.onnxgraph import CacheMismatch, check_session, manifest_path

    def load(rebuild: bool):
        paths = paths_fn(rebuild)
        nets = [ort_net(p, threads) for p in paths]
        for i, (p, net) in enumerate(zip(paths, nets)):
            check_session(_probe_with(net, i), json.loads(manifest_path(p).read_text()), atol, p)
        return Networks(*nets)

    try:
        return load(False)
    except (CacheMismatch, OSError, ValueError, RuntimeError) as exc:
        warnings.warn(f"facekit: an MTCNN ONNX file failed its check ({exc}); rebuilding them", RuntimeWarning,
                      stacklevel=3)
        return load(True)


_loaded: dict = {}
_loaded_lock = threading.Lock()


def fp32_networks(threads: int | None = None):
    """The default detector's networks: float32 P-, R- and O-Net in ONNX Runtime, built once per
    cache and loaded once per process (and thread count); ``threads``: intra-op threads per
    session (default one per core; a Ray actor passes its CPUs)."""
    from facekit.core.cache import cache_dir

    key = ("fp32", threads, str(cache_dir()))
    with _loaded_lock:
        if key not in _loaded:
            _loaded[key] = load_networks(fp32_paths, 1e-4, threads)
        return _loaded[key]
