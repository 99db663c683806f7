"""A fast inference graph for a Keras CNN: same outputs, fewer and cheaper operations.

Taught in appendix A1 (speed) (why the embedding is fast). :func:`fold_keras_model` reads a functional
Keras model (Conv2D / BatchNormalization / Activation / Lambda / Add / Concatenate / pooling /
Dense, as in keras-facenet's Inception-ResNet-v1) into a tiny graph of nodes, then

1. folds every inference-time BatchNormalization into the convolution or dense layer before it
   (``w' = w * gamma / sqrt(var + eps)``, ``b' = (b - mean) * gamma / sqrt(var + eps) + beta``,
   computed in float64), and the residual ``Lambda(x * scale)`` into the convolution before it;
2. folds ReLU into the convolution (TensorFlow's grappler then runs conv + bias + ReLU as one
   fused kernel) and drops Dropout (identity at inference);
3. merges 1x1 convolutions that read the same tensor into one wider convolution (one GEMM
   instead of two or three) and splits the result.

:func:`build_graph_fn` turns the folded graph into a plain TensorFlow function; 3x3 and 1x7/7x1
convolutions with enough channels can run as Winograd convolutions (Lavin & Gray, 2016): the
kernel is transformed once (float64) and each output tile of ``m x m`` pixels costs
``(m + k - 1)^2`` instead of ``m^2 k^2`` multiplications, at a float32 rounding cost of about
1e-5 relative per layer (checked against the plain network in ``tests/test_perf_equivalence.py``).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from fractions import Fraction

import numpy as np

__all__ = ["Node", "FoldedGraph", "fold_keras_model", "fold_graph", "build_graph_fn", "winograd_matrices",
           "winograd_plan", "conv_macs", "annotate_shapes"]


@dataclass
class Node:
    """One operation of a folded graph. ``kind`` is one of input, conv, dense, affine, relu,
    identity, add, concat, slice, maxpool, gap, l2norm."""

    name: str
    kind: str
    inputs: list[str]
    attrs: dict = field(default_factory=dict)


@dataclass
class FoldedGraph:
    """Nodes in topological order plus the output node's name."""

    nodes: dict[str, Node]
    order: list[str]
    output: str

    def consumers(self) -> dict[str, list[str]]:
        out: dict[str, list[str]] = {k: [] for k in self.nodes}
        for k in self.order:
            for i in self.nodes[k].inputs:
                out[i].append(k)
        return out

    def convs(self) -> list[Node]:
        return [self.nodes[k] for k in self.order if self.nodes[k].kind == "conv"]

    def _remove(self, name: str, replacement: str) -> None:
        for n in self.nodes.values():
            n.inputs = [replacement if i == name else i for i in n.inputs]
        if self.output == name:
            self.output = replacement
        del self.nodes[name]
        self.order.remove(name)


def _connections(model) -> tuple[dict[str, list[str]], str]:
    """``({layer: names of the layers feeding it, in call order}, output layer name)`` from the
    model's public ``get_config()`` (Keras 3 serialises each input tensor with its
    ``keras_history``), instead of Keras' private node objects."""
    def walk(o, out: list[str]) -> list[str]:
        if isinstance(o, dict):
            conf = o.get("config")
            if o.get("class_name") == "__keras_tensor__" and isinstance(conf, dict) and conf.get("keras_history"):
                out.append(conf["keras_history"][0])
                return out
            for v in o.values():
                walk(v, out)
        elif isinstance(o, (list, tuple)):
            for v in o:
                walk(v, out)
        return out

    cfg = model.get_config()
    inputs_of = {lc["name"]: walk(lc["inbound_nodes"][0], []) if lc.get("inbound_nodes") else []
                 for lc in cfg["layers"]}
    outs = cfg["output_layers"]
    return inputs_of, outs[0] if isinstance(outs[0], str) else outs[0][0]


def _parse(model) -> FoldedGraph:
    """Read a functional Keras model into float64 nodes (weights copied, nothing folded yet)."""
    import keras

    L = keras.layers
    nodes: dict[str, Node] = {}
    order: list[str] = []
    inputs_of, output_name = _connections(model)
    for layer in model.layers:
        ins = inputs_of.get(layer.name, [])
        a: dict = {}
        if isinstance(layer, L.InputLayer):
            kind = "input"
        elif isinstance(layer, L.Conv2D) and type(layer) is L.Conv2D:
            if (tuple(layer.dilation_rate) != (1, 1) or layer.groups != 1
                    or layer.data_format != "channels_last" or layer.activation.__name__ != "linear"):
                raise NotImplementedError(f"{layer.name}: only plain channels-last Conv2D is folded")
            kind = "conv"
            w = np.asarray(layer.kernel, np.float64)
            a = dict(w=w, b=np.asarray(layer.bias, np.float64) if layer.use_bias else np.zeros(w.shape[-1]),
                     strides=tuple(int(s) for s in layer.strides), padding=layer.padding.upper(), relu=False)
        elif isinstance(layer, L.Dense):
            if layer.activation.__name__ != "linear":
                raise NotImplementedError(f"{layer.name}: Dense with an activation")
            kind = "dense"
            w = np.asarray(layer.kernel, np.float64)
            a = dict(w=w, b=np.asarray(layer.bias, np.float64) if layer.use_bias else np.zeros(w.shape[-1]),
                     relu=False)
        elif isinstance(layer, L.BatchNormalization):
            if layer.axis not in (-1, 3, [3], [-1], (3,), (-1,)) and len(layer.output.shape) == 4:
                raise NotImplementedError(f"{layer.name}: BatchNormalization on axis {layer.axis}")
            gamma = np.asarray(layer.gamma, np.float64) if layer.scale else 1.0
            beta = np.asarray(layer.beta, np.float64) if layer.center else 0.0
            inv = gamma / np.sqrt(np.asarray(layer.moving_variance, np.float64) + layer.epsilon)
            kind, a = "affine", dict(mul=inv, add=beta - np.asarray(layer.moving_mean, np.float64) * inv)
        elif isinstance(layer, L.Activation):
            if layer.activation.__name__ == "relu":
                kind = "relu"
            elif layer.activation.__name__ == "linear":
                kind = "identity"
            else:
                raise NotImplementedError(f"{layer.name}: activation {layer.activation.__name__}")
        elif isinstance(layer, L.Lambda):
            fname = getattr(layer.function, "__name__", "")
            args = getattr(layer, "arguments", None) or {}
            if fname == "scaling" and set(args) == {"scale"}:
                kind, a = "affine", dict(mul=float(args["scale"]), add=0.0)
            elif fname == "l2_normalize" and args.get("axis") in (1, -1):
                kind = "l2norm"
            else:
                raise NotImplementedError(f"{layer.name}: Lambda {fname}({args})")
        elif isinstance(layer, L.Dropout):
            kind = "identity"
        elif isinstance(layer, L.Add):
            kind = "add"
        elif isinstance(layer, L.Concatenate):
            kind, a = "concat", dict(axis=int(layer.axis))
        elif isinstance(layer, L.MaxPooling2D):
            kind, a = "maxpool", dict(size=tuple(layer.pool_size), strides=tuple(layer.strides),
                                      padding=layer.padding.upper())
        elif isinstance(layer, L.GlobalAveragePooling2D) and not layer.keepdims:
            kind = "gap"
        else:
            raise NotImplementedError(f"{layer.name}: {type(layer).__name__} is not supported")
        nodes[layer.name] = Node(layer.name, kind, ins, a)
        order.append(layer.name)
    if len(model.outputs) != 1:
        raise NotImplementedError("only single-output models are folded")
    return FoldedGraph(nodes, order, output_name)


def fold_keras_model(model, merge_1x1: bool = True) -> FoldedGraph:
    """Parse ``model`` and fold BatchNorm/scale/ReLU/Dropout into its convolutions (see module doc).

    Raises ``NotImplementedError`` for a layer it does not know (callers fall back to Keras).
    """
    shape = tuple(model.inputs[0].shape[1:3])
    return fold_graph(_parse(model), merge_1x1, shape if all(isinstance(v, int) for v in shape) else None)


def fold_graph(g: FoldedGraph, merge_1x1: bool = True, input_hw: tuple[int, int] | None = None) -> FoldedGraph:
    """Fold a parsed graph in place (affine/ReLU/identity nodes into the conv or dense before them,
    then the 1x1 merge) and annotate its shapes for ``input_hw``; returns ``g``. Shared by
    :func:`fold_keras_model` and :func:`facekit.runtime.h5graph.fold_h5_model`."""
    changed = True
    while changed:
        changed = False
        cons = g.consumers()
        for name in list(g.order):
            n = g.nodes[name]
            if n.kind not in ("identity", "affine", "relu"):
                continue
            src = g.nodes[n.inputs[0]]
            exclusive = len(cons[src.name]) == 1
            if n.kind == "identity":
                ok = True
            elif n.kind == "affine":
                ok = src.kind in ("conv", "dense") and exclusive and not src.attrs["relu"]
            else:  # relu
                ok = src.kind in ("conv", "dense") and exclusive
            if not ok:
                continue
            if n.kind == "affine":
                mul, add = n.attrs["mul"], n.attrs["add"]
                src.attrs["w"] = src.attrs["w"] * mul
                src.attrs["b"] = src.attrs["b"] * mul + add
            elif n.kind == "relu":
                src.attrs["relu"] = True
            g._remove(name, src.name)
            changed = True
            break
    if merge_1x1:
        _merge_1x1(g)
    if input_hw is not None:
        annotate_shapes(g, input_hw)
    return g


def _merge_1x1(g: FoldedGraph) -> None:
    """Merge stride-1 1x1 convolutions sharing an input into one conv followed by slices."""
    cons = g.consumers()
    for src in list(g.order):
        group = [c for c in cons.get(src, []) if g.nodes[c].kind == "conv"
                 and g.nodes[c].attrs["w"].shape[:2] == (1, 1) and g.nodes[c].attrs["strides"] == (1, 1)]
        if len(group) < 2 or len({g.nodes[c].attrs["relu"] for c in group}) != 1:
            continue
        ws = [g.nodes[c].attrs["w"] for c in group]
        fused = "merged:" + "+".join(group)
        g.nodes[fused] = Node(fused, "conv", [src], dict(
            w=np.concatenate(ws, -1), b=np.concatenate([g.nodes[c].attrs["b"] for c in group]),
            strides=(1, 1), padding="SAME", relu=g.nodes[group[0]].attrs["relu"]))
        g.order.insert(min(g.order.index(c) for c in group), fused)
        start = 0
        for c, w in zip(group, ws):
            g.nodes[c] = Node(c, "slice", [fused], dict(start=start, size=w.shape[-1], group=fused))
            start += w.shape[-1]


# -- Winograd ------------------------------------------------------------------------------
_POINTS = [Fraction(0), Fraction(1), Fraction(-1), Fraction(2), Fraction(-2), Fraction(1, 2),
           Fraction(-1, 2), Fraction(3), Fraction(-3), Fraction(1, 3), Fraction(-1, 3)]


def _poly_mul(p: list, q: list) -> list:
    out = [Fraction(0)] * (len(p) + len(q) - 1)
    for i, a in enumerate(p):
        for j, b in enumerate(q):
            out[i + j] += a * b
    return out


def winograd_matrices(m: int, r: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Toom-Cook matrices ``AT (m, a)``, ``G (a, r)``, ``BT (a, a)`` of the 1-D Winograd
    convolution F(m, r), ``a = m + r - 1``, from interpolation points 0, +-1, +-2, +-1/2, ... and
    infinity (exact rational arithmetic, returned as float64). ``y = AT @ ((G @ g) * (BT @ d))``
    is the correlation of ``d (a,)`` with ``g (r,)``."""
    a = m + r - 1
    if not 2 <= a <= len(_POINTS) + 1:
        raise ValueError(f"F({m}, {r}) needs {a - 1} points; at most {len(_POINTS)} are defined")
    pts = _POINTS[:a - 1]
    AT = [[p ** i for p in pts] + [Fraction(int(i == m - 1))] for i in range(m)]
    G, BT = [], []
    full = [Fraction(1)]
    for q in pts:
        full = _poly_mul(full, [-q, Fraction(1)])
    for i, p in enumerate(pts):
        den, poly = Fraction(1), [Fraction(1)]
        for k, q in enumerate(pts):
            if k != i:
                den *= p - q
                poly = _poly_mul(poly, [-q, Fraction(1)])
        G.append([p ** j / den for j in range(r)])
        BT.append(poly + [Fraction(0)] * (a - len(poly)))
    G.append([Fraction(0)] * (r - 1) + [Fraction(1)])
    BT.append(full + [Fraction(0)] * (a - len(full)))
    f = lambda rows: np.array([[float(v) for v in row] for row in rows], np.float64)  # noqa: E731
    return f(AT), f(G), f(BT)


def winograd_plan(g: FoldedGraph, batched: bool) -> dict[str, int]:
    """Which convolutions run as Winograd and with which output tile ``m`` (name -> m).

    Measured per layer on a 2-core AVX2 CPU (Zen 1): the transforms cost memory
    traffic, so only convolutions with many channels pay off: 3x3 stride 1 with >= 64 input and
    >= 128 output channels on maps >= 17 px use F(6x6, 3x3) (1.6-1.9x faster per layer); when
    ``batched`` also 3x3 on 8 px maps (F(4x4, 3x3)) and 1x7/7x1 (F(4, 7)), which lose at batch 1.
    """
    plan = {}
    for n in g.convs():
        kh, kw, cin, cout = n.attrs["w"].shape
        if n.attrs["strides"] != (1, 1):
            continue
        hw = n.attrs.get("out_h", 0)
        if kh == kw == 3 and cin >= 64 and cout >= 128:
            if hw >= 17:
                plan[n.name] = 6
            elif batched and hw >= 8:
                plan[n.name] = 4
        elif batched and sorted((kh, kw)) == [1, 7] and cin >= 64 and hw >= 8:
            plan[n.name] = 4
    return plan


def conv_macs(g: FoldedGraph) -> int:
    """Multiply-accumulates of one forward pass (convolutions and dense layers; needs out_h)."""
    total = 0
    for k in g.order:
        n = g.nodes[k]
        if n.kind == "conv":
            kh, kw, cin, cout = n.attrs["w"].shape
            total += n.attrs["out_h"] * n.attrs["out_w"] * kh * kw * cin * cout
        elif n.kind == "dense":
            total += n.attrs["w"].size
    return int(total)


def annotate_shapes(g: FoldedGraph, input_hw: tuple[int, int]) -> None:
    """Store each conv's output height/width (``out_h``, ``out_w``) for a given input size."""
    sizes: dict[str, tuple[int, int]] = {}
    for k in g.order:
        n = g.nodes[k]
        if n.kind == "input":
            sizes[k] = tuple(input_hw)
            continue
        h, w = sizes[n.inputs[0]] if n.inputs else (1, 1)
        if n.kind in ("conv", "maxpool"):
            kh, kw = n.attrs["w"].shape[:2] if n.kind == "conv" else n.attrs["size"]
            sh, sw = n.attrs["strides"]
            if n.attrs["padding"] == "VALID":
                h, w = (h - kh) // sh + 1, (w - kw) // sw + 1
            else:
                h, w = -(-h // sh), -(-w // sw)
            if n.kind == "conv":
                n.attrs["out_h"], n.attrs["out_w"] = h, w
        elif n.kind in ("gap", "dense", "l2norm"):
            h, w = 1, 1
        sizes[k] = (h, w)


def _winograd_conv(tf, x, U, Tin, Tout, kh: int, kw: int, m: int, padding: str):
    """Stride-1 conv of NHWC ``x`` by Winograd with transformed kernel ``U (a, C, K)``.

    Tiles come from one ``extract_patches``; the input/output transforms are one matmul each by
    the Kronecker products of the 1-D ``BT``/``AT`` (a handful of large ops rather than hundreds
    of small ones: on a CPU each TensorFlow op costs a pass over memory).
    """
    mh, mw = (m if kh > 1 else 1), (m if kw > 1 else 1)
    ah, aw = mh + kh - 1, mw + kw - 1
    H, W, C = x.shape[1], x.shape[2], x.shape[3]
    K = U.shape[2]
    if padding == "VALID":
        oh, ow, pt, pl = H - kh + 1, W - kw + 1, 0, 0
    else:
        oh, ow, pt, pl = H, W, (kh - 1) // 2, (kw - 1) // 2
    th, tw = -(-oh // mh), -(-ow // mw)
    x = tf.pad(x, [[0, 0], [pt, th * mh + kh - 1 - H - pt], [pl, tw * mw + kw - 1 - W - pl], [0, 0]])
    d = tf.image.extract_patches(x, [1, ah, aw, 1], [1, mh, mw, 1], [1, 1, 1, 1], "VALID")
    d = tf.transpose(tf.reshape(d, [-1, ah * aw, C]), [1, 0, 2])  # (a, P, C)
    v = tf.reshape(tf.matmul(Tin, tf.reshape(d, [ah * aw, -1])), [ah * aw, -1, C])
    prod = tf.linalg.matmul(v, U)  # (a, P, K): a independent GEMMs
    y = tf.reshape(tf.matmul(Tout, tf.reshape(prod, [ah * aw, -1])), [mh, mw, -1, th, tw, K])
    y = tf.reshape(tf.transpose(y, [2, 3, 0, 4, 1, 5]), [-1, th * mh, tw * mw, K])
    return y[:, :oh, :ow]


def _winograd_constants(w: np.ndarray, m: int):
    """Float64 ``U (a, C, K)``, ``Tin (a, a)``, ``Tout (m*m, a)`` for kernel ``w (kh, kw, C, K)``."""
    kh, kw = w.shape[:2]
    one = np.ones((1, 1))
    AT_h, G_h, BT_h = winograd_matrices(m, kh) if kh > 1 else (one, one, one)
    AT_w, G_w, BT_w = winograd_matrices(m, kw) if kw > 1 else (one, one, one)
    U = np.einsum("ar,bs,rsck->abck", G_h, G_w, w).reshape(-1, w.shape[2], w.shape[3])
    return U, np.kron(BT_h, BT_w), np.kron(AT_h, AT_w)


def build_graph_fn(g: FoldedGraph, winograd: dict[str, int] | None = None):
    """A function ``f(x float32 NHWC tensor) -> output tensor`` running ``g`` with plain TF ops
    (wrap it in ``tf.function``). ``winograd`` maps conv names to a Winograd tile size."""
    import tensorflow as tf

    winograd = winograd or {}
    cache = g.__dict__.setdefault("_tf_constants", {})  # shared by every function built from g

    def const(key, make):
        if key not in cache:
            cache[key] = tf.constant(np.asarray(make(), np.float32))
        return cache[key]

    consts = {}
    for k in g.order:
        n = g.nodes[k]
        if n.kind in ("conv", "dense"):
            b = const((k, "b"), lambda: n.attrs["b"])
            if k in winograd:
                m = winograd[k]
                parts = _winograd_constants(n.attrs["w"], m)
                consts[k] = ("winograd", tuple(const((k, m, i), lambda a=a: a) for i, a in enumerate(parts)), b)
            else:
                consts[k] = ("direct", const((k, "w"), lambda: n.attrs["w"]), b)

    def run(x):
        vals, splits = {}, {}
        for k in g.order:
            n = g.nodes[k]
            ins = [vals[i] for i in n.inputs]
            if n.kind == "input":
                v = x
            elif n.kind == "conv":
                how, w, b = consts[k]
                if how == "winograd":
                    kh, kw = n.attrs["w"].shape[:2]
                    v = _winograd_conv(tf, ins[0], *w, kh, kw, winograd[k], n.attrs["padding"])
                else:
                    v = tf.nn.conv2d(ins[0], w, (1, *n.attrs["strides"], 1), n.attrs["padding"])
                v = tf.nn.bias_add(v, b)
                if n.attrs["relu"]:
                    v = tf.nn.relu(v)
            elif n.kind == "dense":
                _, w, b = consts[k]
                v = tf.nn.bias_add(tf.matmul(ins[0], w), b)
                if n.attrs["relu"]:
                    v = tf.nn.relu(v)
            elif n.kind == "slice":
                grp = n.attrs["group"]
                if grp not in splits:
                    sizes = [g.nodes[c].attrs["size"] for c in g.order
                             if g.nodes[c].kind == "slice" and g.nodes[c].attrs["group"] == grp]
                    splits[grp] = iter(tf.split(ins[0], sizes, axis=-1))
                v = next(splits[grp])
            elif n.kind == "affine":  # a BatchNorm/scale that could not be folded
                v = ins[0] * tf.constant(np.asarray(n.attrs["mul"], np.float32)) + \
                    tf.constant(np.asarray(n.attrs["add"], np.float32))
            elif n.kind == "relu":
                v = tf.nn.relu(ins[0])
            elif n.kind == "identity":
                v = ins[0]
            elif n.kind == "add":
                v = tf.add_n(ins)
            elif n.kind == "concat":
                v = tf.concat(ins, axis=n.attrs["axis"])
            elif n.kind == "maxpool":
                v = tf.nn.max_pool2d(ins[0], n.attrs["size"], n.attrs["strides"], n.attrs["padding"])
            elif n.kind == "gap":
                v = tf.reduce_mean(ins[0], axis=[1, 2])
            elif n.kind == "l2norm":
                v = tf.math.l2_normalize(ins[0], axis=-1)
            else:  # pragma: no cover - _parse only makes the kinds above
                raise NotImplementedError(n.kind)
            vals[k] = v
        return vals[g.output]

    return run
