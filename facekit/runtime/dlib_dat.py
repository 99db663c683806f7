"""dlib's face-recognition ResNet (``dlib_face_recognition_resnet_model_v1.dat``) as an ONNX graph.

dlib's Python API runs the network but never exposes its weights, so this module reads dlib's
own serialisation and rebuilds the same arithmetic with ``onnx.helper`` (opset 17):

* the file is ``loss_metric<fc_no_bias<128, avg_pool_everything<alevel0<...alevel4<max_pool<3,3,2,2,
  relu<affine<con<32,7,7,2,2, input_rgb_image_sized<150>>>>>>>>>>`` (``anet_type`` of dlib's
  ``dnn_face_recognition_ex.cpp``); every layer's version number and name are checked against
  that template, so a different network is refused instead of being silently misread;
* dlib writes nested layers outermost first: all the version numbers top-down, then the input
  layer, then each layer's details bottom-up; integers are a length byte (0x80 = negative) plus
  little-endian bytes, scalar floats a (mantissa, exponent) integer pair, bools ASCII '0'/'1',
  and tensors (version 2) raw little-endian float32 in NCHW order;
* dlib's conventions: conv padding is read from the file (0 for the stride-2 convs, k//2 for
  stride 1); ``add_prev`` of two tensors of different sizes adds them top-left aligned and keeps
  the larger size (zero-padding the smaller), which happens in alevel0/alevel1 (3x3 + 4x4 and
  1x1 + 2x2); ``affine`` is ``x*gamma+beta`` per channel; ``fc_no_bias`` is ``x @ W`` with
  ``W`` stored (inputs, outputs).

The graph takes float32 NHWC RGB chips (N,150,150,3) in 0..255 and returns dlib's raw 128-D
descriptor (N,128) float32 -- not L2-normalised: dlib's descriptors are NOT unit length (norms
about 1.3..1.6 on LFW); dlib compares them with the plain Euclidean distance, same person when
< 0.6 (the loss_metric dist_thresh stored in the file; not squared, not cosine).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

CHIP_SIZE = 150
DESCRIPTOR_DIM = 128
OPSET = 17


# ------------------------------------------------------------------ dlib's serialisation


class DlibReader:
    """Sequential reader for dlib's portable binary serialisation (dlib/serialize.h)."""

    def __init__(self, data: bytes) -> None:
        self.buf = memoryview(data)
        self.pos = 0

    def int(self) -> int:
        """Signed or unsigned integer: control byte (low nibble = byte count, 0x80 = negative)."""
        ctl = self.buf[self.pos]
        n = ctl & 0x0F
        if n == 0 or n > 8:
            raise ValueError(f"bad dlib integer control byte {ctl:#x} at offset {self.pos}")
        val = int.from_bytes(self.buf[self.pos + 1 : self.pos + 1 + n], "little")
        self.pos += 1 + n
        return -val if ctl & 0x80 else val

    def float(self) -> float:
        """dlib's float_details: an int64 mantissa and an int16 exponent (value = m * 2**e)."""
        mantissa, exponent = self.int(), self.int()
        if exponent >= 32000:  # float_details::is_inf / is_ninf / is_nan
            return {32000: math.inf, 32001: -math.inf}.get(exponent, math.nan)
        return math.ldexp(mantissa, exponent)

    def bool(self) -> bool:
        ch = self.buf[self.pos]
        self.pos += 1
        if ch not in (48, 49):
            raise ValueError(f"bad dlib bool {ch:#x} at offset {self.pos - 1}")
        return ch == 49

    def str(self) -> str:
        n = self.int()
        s = bytes(self.buf[self.pos : self.pos + n]).decode("latin-1")
        self.pos += n
        return s

    def tensor(self) -> np.ndarray:
        """resizable_tensor -> float32 array (num_samples, k, nr, nc)."""
        version = self.int()
        shape = tuple(self.int() for _ in range(4))
        size = int(np.prod(shape))
        if version == 2:  # raw little-endian IEEE floats
            arr = np.frombuffer(self.buf, dtype="<f4", count=size, offset=self.pos).astype(np.float32)
            self.pos += 4 * size
        elif version == 1:  # older files: one float_details per element
            arr = np.array([self.float() for _ in range(size)], dtype=np.float32)
        else:
            raise ValueError(f"unknown dlib tensor version {version}")
        return arr.reshape(shape)

    def alias(self) -> tuple[int, int, int, int]:
        """alias_tensor: only its shape is stored (the data lives in the layer's params)."""
        if self.int() != 1:
            raise ValueError("unknown alias_tensor version")
        return tuple(self.int() for _ in range(4))  # type: ignore[return-value]


# ------------------------------------------------------------------ the anet_type template


def _ares(down: bool) -> list[tuple[str, Any]]:
    """ares / ares_down of dnn_face_recognition_ex.cpp, top-down, as (kind, arg) tokens."""
    block = [("layer", "affine_"), ("layer", "con_4"), ("layer", "relu_"),
             ("layer", "affine_"), ("layer", "con_4"), ("tag", 1)]
    if down:  # relu<add_prev2<avg_pool<2,2,2,2,skip1<tag2<block<stride 2, tag1<X>>>>>>>
        return [("layer", "relu_"), ("layer", ("add_prev_", 2)), ("layer", "avg_pool_2"),
                ("skip", 1), ("tag", 2), *block]
    return [("layer", "relu_"), ("layer", ("add_prev_", 1)), *block]


def anet_template() -> list[tuple[str, Any]]:
    """Every layer of ``anet_type`` below the loss, top-down (the input layer excluded)."""
    level = {0: [True], 1: [False, False, True], 2: [False, False, True],
             3: [False, False, False, True], 4: [False, False, False]}
    toks: list[tuple[str, Any]] = [("layer", "fc_2"), ("layer", "avg_pool_2")]
    for lvl in range(5):
        for down in level[lvl]:
            toks += _ares(down)
    # ... max_pool<relu<affine<con<32,7,7,2,2,input>>>>: the con holds the input layer (add_layer v3)
    return toks + [("layer", "max_pool_2"), ("layer", "relu_"), ("layer", "affine_"), ("layer", "con_4")]


@dataclass
class DlibNet:
    """A parsed dlib network: ``layers`` bottom-up (input first), each a dict with a ``type``."""

    layers: list[dict[str, Any]] = field(default_factory=list)
    loss: dict[str, Any] = field(default_factory=dict)

    @property
    def mean_rgb(self) -> tuple[float, float, float]:
        return self.layers[0]["mean"]


def _layer_details(rd: DlibReader, name: str) -> dict[str, Any]:
    got = rd.str()
    if got != name:
        raise ValueError(f"expected dlib layer {name!r}, found {got!r} at offset {rd.pos}")
    if name == "con_4":
        params = rd.tensor().ravel()
        nf, nr, nc, sy, sx, py, px = (rd.int() for _ in range(7))
        fshape, _ = rd.alias(), rd.alias()  # filters (nf, k, nr, nc), biases
        for _ in range(4):  # learning-rate / weight-decay multipliers
            rd.float()
        nw = int(np.prod(fshape))
        return {"type": "con", "W": params[:nw].reshape(fshape), "b": params[nw : nw + nf],
                "kernel": (nr, nc), "stride": (sy, sx), "pad": (py, px)}
    if name == "affine_":
        params = rd.tensor().ravel()
        gshape, _ = rd.alias(), rd.alias()
        mode = rd.int()  # 0 = CONV_MODE (per channel), 1 = FC_MODE (per element)
        ng = int(np.prod(gshape))
        return {"type": "affine", "gamma": params[:ng].reshape(gshape),
                "beta": params[ng : 2 * ng].reshape(gshape), "mode": mode}
    if name in ("max_pool_2", "avg_pool_2"):
        nr, nc, sy, sx, py, px = (rd.int() for _ in range(6))
        return {"type": name[:-2], "kernel": (nr, nc), "stride": (sy, sx), "pad": (py, px)}
    if name == "fc_2":
        n_out, n_in = rd.int(), rd.int()
        params = rd.tensor().ravel()
        rd.alias(), rd.alias()  # weights (inputs, outputs), biases
        bias_mode = rd.int()  # 1 = FC_NO_BIAS
        for _ in range(4):
            rd.float()
        nw = n_in * n_out
        bias = params[nw : nw + n_out] if bias_mode == 0 else None
        return {"type": "fc", "W": params[:nw].reshape(n_in, n_out), "b": bias}
    if name in ("relu_", "add_prev_"):
        return {"type": name[:-1]}
    raise ValueError(f"unsupported dlib layer {name!r}")


def read_dlib_resnet(path: str | Path) -> DlibNet:
    """Parse ``dlib_face_recognition_resnet_model_v1.dat`` into a :class:`DlibNet` (float32 NCHW params)."""
    rd = DlibReader(Path(path).read_bytes())
    if rd.int() != 1:
        raise ValueError("not a dlib add_loss_layer (version != 1)")
    loss_name = rd.str()
    if loss_name != "loss_metric_2":
        raise ValueError(f"expected loss_metric_2, found {loss_name!r}")
    net = DlibNet(loss={"type": "loss_metric", "margin": rd.float(), "dist_thresh": rd.float()})

    template = anet_template()
    for kind, _ in template[:-1]:  # outermost first: every layer's version number
        expect = 2 if kind == "layer" else 1  # add_layer v2; add_tag_layer / add_skip_layer v1
        got = rd.int()
        if got != expect:
            raise ValueError(f"dlib layer version {got}, expected {expect} ({kind}) at {rd.pos}")
    if rd.int() != 3:  # the add_layer that holds the input layer
        raise ValueError("unexpected version of dlib's bottom add_layer")
    if rd.str() != "input_rgb_image_sized":
        raise ValueError("expected input_rgb_image_sized")
    mean = (rd.float(), rd.float(), rd.float())
    nr, nc = rd.int(), rd.int()
    net.layers.append({"type": "input", "mean": mean, "size": (nr, nc)})

    for i, (kind, arg) in enumerate(reversed(template)):  # details, innermost first
        if kind != "layer":
            net.layers.append({"type": kind, "id": arg})
            continue
        name, tag = (arg, None) if isinstance(arg, str) else arg
        layer = _layer_details(rd, name)
        if tag is not None:
            layer["id"] = tag
        for _ in range(3):  # this_layer_setup_called, gradient_input_is_stale, ..._disabled
            rd.bool()
        for _ in range(3):  # x_grad, cached_output, params_grad (or grad_final) -- empty
            rd.tensor()
        if i == 0:
            rd.int()  # _sample_expansion_factor, only in the bottom (input-holding) add_layer
        net.layers.append(layer)
    if rd.pos != len(rd.buf):
        raise ValueError(f"{len(rd.buf) - rd.pos} unread bytes at the end of {path}")
    return net


# ------------------------------------------------------------------ ONNX graph


class _Builder:
    """Tiny helper that names nodes and initializers while tracking (C,H,W) shapes."""

    def __init__(self) -> None:
        self.nodes: list[onnx.NodeProto] = []
        self.inits: list[onnx.TensorProto] = []
        self.n = 0

    def name(self, stem: str) -> str:
        self.n += 1
        return f"{stem}_{self.n}"

    def const(self, arr: np.ndarray, stem: str, dtype: Any = np.float32) -> str:
        nm = self.name(stem)
        self.inits.append(numpy_helper.from_array(np.ascontiguousarray(arr, dtype=dtype), nm))
        return nm

    def op(self, op_type: str, inputs: list[str], stem: str, **attrs: Any) -> str:
        out = self.name(stem)
        self.nodes.append(helper.make_node(op_type, inputs, [out], name=out, **attrs))
        return out


def _out_len(n: int, k: int, s: int, p: int) -> int:
    return 1 + (n + 2 * p - k) // s  # dlib's (and ONNX's floor-mode) output size


def _pad_to(b: _Builder, x: str, shape: tuple[int, int, int], target: tuple[int, int, int]) -> str:
    """Zero-pad (N,C,H,W) at the end of C/H/W up to ``target`` (dlib's add of unequal tensors)."""
    if shape == target:
        return x
    pads = [0, 0, 0, 0, 0, target[0] - shape[0], target[1] - shape[1], target[2] - shape[2]]
    return b.op("Pad", [x, b.const(np.array(pads), "pads", np.int64)], "pad", mode="constant")


def dlib_resnet_model(net: DlibNet) -> onnx.ModelProto:
    """Build the ONNX model (opset 17) for a parsed :class:`DlibNet`."""
    b = _Builder()
    nr, nc = net.layers[0]["size"]
    mean = np.array(net.mean_rgb, np.float32)
    x = b.op("Sub", ["chips", b.const(mean, "mean_rgb")], "centred")
    x = b.op("Mul", [x, b.const(np.array(1 / 256, np.float32), "inv256")], "scaled")
    x = b.op("Transpose", [x], "nchw", perm=[0, 3, 1, 2])
    shape = (3, nr, nc)
    tags: dict[int, tuple[str, tuple[int, int, int]]] = {}
    for layer in net.layers[1:]:
        t = layer["type"]
        if t == "con":
            (kh, kw), (sy, sx), (py, px) = layer["kernel"], layer["stride"], layer["pad"]
            w = b.const(layer["W"], "conv_w")
            x = b.op("Conv", [x, w, b.const(layer["b"], "conv_b")], "conv", kernel_shape=[kh, kw],
                     strides=[sy, sx], pads=[py, px, py, px])
            shape = (layer["W"].shape[0], _out_len(shape[1], kh, sy, py), _out_len(shape[2], kw, sx, px))
        elif t == "affine":
            g, be = layer["gamma"], layer["beta"]
            gshape = (1, g.size, 1, 1) if layer["mode"] == 0 else (1, *shape)
            x = b.op("Mul", [x, b.const(g.reshape(gshape), "gamma")], "affine_mul")
            x = b.op("Add", [x, b.const(be.reshape(gshape), "beta")], "affine")
        elif t == "relu":
            x = b.op("Relu", [x], "relu")
        elif t in ("max_pool", "avg_pool"):
            (kh, kw), (sy, sx), (py, px) = layer["kernel"], layer["stride"], layer["pad"]
            if kh == 0 and kw == 0 and t == "avg_pool":  # avg_pool_everything
                x = b.op("GlobalAveragePool", [x], "gap")
                shape = (shape[0], 1, 1)
                continue
            if t == "avg_pool" and (py or px):
                raise NotImplementedError("padded avg_pool (dlib's divisor at borders) is not converted")
            op = "MaxPool" if t == "max_pool" else "AveragePool"
            x = b.op(op, [x], t, kernel_shape=[kh, kw], strides=[sy, sx], pads=[py, px, py, px])
            shape = (shape[0], _out_len(shape[1], kh, sy, py), _out_len(shape[2], kw, sx, px))
        elif t == "tag":
            tags[layer["id"]] = (x, shape)
        elif t == "skip":
            x, shape = tags[layer["id"]]
        elif t == "add_prev":
            y, yshape = tags[layer["id"]]
            target = tuple(max(a, c) for a, c in zip(shape, yshape, strict=True))
            x = b.op("Add", [_pad_to(b, x, shape, target), _pad_to(b, y, yshape, target)], "add_prev")
            shape = target  # type: ignore[assignment]
        elif t == "fc":
            x = b.op("Flatten", [x], "flat", axis=1)
            x = b.op("MatMul", [x, b.const(layer["W"], "fc_w")], "fc")
            if layer["b"] is not None:
                x = b.op("Add", [x, b.const(layer["b"], "fc_b")], "fc_bias")
            shape = (layer["W"].shape[1], 1, 1)
        else:
            raise ValueError(f"unknown layer type {t!r}")
    b.nodes.append(helper.make_node("Identity", [x], ["descriptor"], name="descriptor"))
    graph = helper.make_graph(
        b.nodes, "dlib_face_recognition_resnet_model_v1",
        [helper.make_tensor_value_info("chips", TensorProto.FLOAT, ["N", nr, nc, 3])],
        [helper.make_tensor_value_info("descriptor", TensorProto.FLOAT, ["N", shape[0]])],
        b.inits,
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", OPSET)],
                              producer_name="facekit.dlib_dat")
    model.ir_version = 8  # runnable by onnxruntime >= 1.14
    onnx.checker.check_model(model)
    return model


def dlib_resnet_onnx(path: str | Path) -> bytes:
    """ONNX model bytes equivalent to dlib's face recognition ResNet stored at ``path``."""
    return dlib_resnet_model(read_dlib_resnet(path)).SerializeToString()


# ------------------------------------------------------------------ running it


def ort_session(model: bytes | str | Path, threads: int | None = None, optimize: bool = True) -> Any:
    """An onnxruntime session on CPU; ``optimize`` = ORT_ENABLE_ALL, else ORT_DISABLE_ALL."""
    import onnxruntime as ort

    so = ort.SessionOptions()
    if threads:
        so.intra_op_num_threads = threads
        so.inter_op_num_threads = 1
    level = ort.GraphOptimizationLevel
    so.graph_optimization_level = level.ORT_ENABLE_ALL if optimize else level.ORT_DISABLE_ALL
    src = model if isinstance(model, bytes) else str(model)
    return ort.InferenceSession(src, so, providers=["CPUExecutionProvider"])


def ort_descriptor(model: Any, chips: np.ndarray | list[np.ndarray], batch: int = 32) -> np.ndarray:
    """dlib descriptors (N,128) float32 of RGB chips (N,150,150,3) or one (150,150,3), 0..255.

    ``model`` is ONNX bytes, a path to an .onnx file, or a session from :func:`ort_session`.
    """
    sess = model if hasattr(model, "run") else ort_session(model)
    arr = np.asarray(chips)
    if arr.ndim == 3:
        arr = arr[None]
    if arr.ndim != 4 or arr.shape[-1] != 3:
        raise ValueError(f"chips must be (N,H,W,3) RGB, got {arr.shape}")
    arr = arr.astype(np.float32, copy=False)
    outs = [sess.run(None, {"chips": arr[i : i + batch]})[0] for i in range(0, len(arr), batch)]
    return np.concatenate(outs) if outs else np.zeros((0, DESCRIPTOR_DIM), np.float32)
