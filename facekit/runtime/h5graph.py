"""Read a saved Keras 2 model (``.h5``) into a folded graph with h5py alone: no TensorFlow, no Keras.

Taught in appendix A1 (speed). The default FaceNet's weights ship as a whole-model HDF5 file
(Keras 2.1.2): its ``model_config`` attribute is the layer graph as JSON (each layer's class,
config and ``inbound_nodes``), and ``model_weights/<layer>`` holds each layer's arrays under the
names in its ``weight_names`` attribute. :func:`fold_h5_model` turns the two into the same
:class:`facekit.runtime.fastgraph.FoldedGraph` that :func:`facekit.runtime.fastgraph.fold_keras_model`
makes from the Keras model (keras-facenet's ``InceptionResNetV1`` with these weights), so
:func:`facekit.runtime.onnxgraph.export_onnx` writes the same ONNX network without TensorFlow
(embeddings equal to ~1e-7: ``tests/test_tf_free.py``).

One difference in the saved graph: the residual blocks' ``*_ScaleSum`` layers are Lambdas of two
inputs, ``inputs[0] + inputs[1] * scale`` (keras-facenet splits them into a scaling Lambda and an
``add``). Their code is marshalled Python bytecode, which is never run or unmarshalled here: a
two-input Lambda named ``*_ScaleSum`` with one ``scale`` argument is read as that sum, any other
Lambda raises ``NotImplementedError``.
"""

from __future__ import annotations

import json
import os

import numpy as np

from facekit.runtime.fastgraph import FoldedGraph, Node, fold_graph

__all__ = ["read_h5_graph", "fold_h5_model"]


def _text(v) -> str:
    return v.decode() if isinstance(v, bytes) else str(v)


def _weights(group) -> dict[str, np.ndarray]:
    """``{"kernel": float64 array, ...}`` of one layer's group (names without ``layer/`` and ``:0``)."""
    out = {}
    for wn in group.attrs.get("weight_names", []):
        wn = _text(wn)
        out[wn.rsplit("/", 1)[-1].split(":")[0]] = np.asarray(group[wn], np.float64)
    return out


def _inputs(layer: dict) -> list[str]:
    """Names of the layers feeding ``layer`` (its first call's inbound tensors, in order)."""
    nodes = layer.get("inbound_nodes") or []
    return [t[0] for t in nodes[0]] if nodes else []


def read_h5_graph(path: str | os.PathLike) -> tuple[FoldedGraph, tuple[int, int]]:
    """``(graph, (H, W))``: the layers of the whole-model h5 file ``path`` as float64 nodes (weights
    read by layer name, nothing folded yet) and the model's input size. Layers: Conv2D,
    BatchNormalization, Activation (relu, linear), Dropout, Concatenate, MaxPooling2D,
    GlobalAveragePooling2D, Dense and the ``*_ScaleSum`` Lambdas (see the module docstring)."""
    import h5py

    with h5py.File(path, "r") as f:
        cfg = json.loads(_text(f.attrs["model_config"]))["config"]
        weights = f["model_weights"]
        nodes: dict[str, Node] = {}
        order: list[str] = []
        hw = None

        def add(name: str, kind: str, ins: list[str], attrs: dict | None = None) -> None:
            nodes[name] = Node(name, kind, ins, attrs or {})
            order.append(name)

        for layer in cfg["layers"]:
            cls, c, name, ins = layer["class_name"], layer["config"], layer["name"], _inputs(layer)
            w = _weights(weights[name]) if name in weights else {}
            if cls == "InputLayer":
                hw = tuple(int(v) for v in c["batch_input_shape"][1:3])
                add(name, "input", ins)
            elif cls in ("Conv2D", "Dense"):
                if c.get("activation", "linear") != "linear" or (cls == "Conv2D" and (
                        tuple(c.get("dilation_rate", (1, 1))) != (1, 1) or c.get("data_format") != "channels_last")):
                    raise NotImplementedError(f"{name}: only plain channels-last {cls} without activation")
                k = w["kernel"]
                a = dict(w=k, b=w.get("bias", np.zeros(k.shape[-1])), relu=False)
                if cls == "Conv2D":
                    a.update(strides=tuple(int(s) for s in c["strides"]), padding=c["padding"].upper())
                add(name, "conv" if cls == "Conv2D" else "dense", ins, a)
            elif cls == "BatchNormalization":
                if c.get("axis") not in (-1, 3, [3], [-1]):
                    raise NotImplementedError(f"{name}: BatchNormalization on axis {c.get('axis')}")
                gamma = w["gamma"] if c.get("scale", True) else 1.0
                beta = w["beta"] if c.get("center", True) else 0.0
                inv = gamma / np.sqrt(w["moving_variance"] + float(c["epsilon"]))
                add(name, "affine", ins, dict(mul=inv, add=beta - w["moving_mean"] * inv))
            elif cls == "Activation":
                if c["activation"] not in ("relu", "linear"):
                    raise NotImplementedError(f"{name}: activation {c['activation']}")
                add(name, "relu" if c["activation"] == "relu" else "identity", ins)
            elif cls == "Lambda":
                args = c.get("arguments") or {}
                if not (name.endswith("_ScaleSum") and len(ins) == 2 and set(args) == {"scale"}):
                    raise NotImplementedError(f"{name}: Lambda with inputs {ins} and arguments {args}")
                add(f"{name}/scale", "affine", [ins[1]], dict(mul=float(args["scale"]), add=0.0))
                add(name, "add", [ins[0], f"{name}/scale"])
            elif cls == "Dropout":
                add(name, "identity", ins)
            elif cls == "Concatenate":
                add(name, "concat", ins, dict(axis=int(c["axis"])))
            elif cls == "MaxPooling2D":
                add(name, "maxpool", ins, dict(size=tuple(c["pool_size"]), strides=tuple(c["strides"]),
                                               padding=c["padding"].upper()))
            elif cls == "GlobalAveragePooling2D":
                add(name, "gap", ins)
            else:
                raise NotImplementedError(f"{name}: {cls} is not supported")
    outs = cfg["output_layers"]
    if len(outs) != 1 or hw is None:
        raise NotImplementedError("only single-input, single-output models are read")
    return FoldedGraph(nodes, order, outs[0][0]), hw


def fold_h5_model(path: str | os.PathLike, merge_1x1: bool = True, l2_normalize: bool = True) -> FoldedGraph:
    """The folded graph of the whole-model h5 file ``path`` (BatchNorm, scales, ReLU and Dropout
    folded, 1x1 branches merged, shapes annotated): what :func:`fold_keras_model` gives for the
    same network loaded in Keras. ``l2_normalize``: end with an L2 normalisation node
    (``normalize``), as keras-facenet's ``InceptionResNetV1`` does and the saved model leaves to
    its caller, so that both graphs are node for node the same."""
    g, hw = read_h5_graph(path)
    if l2_normalize:
        g.nodes["normalize"] = Node("normalize", "l2norm", [g.output])
        g.order.append("normalize")
        g.output = "normalize"
    return fold_graph(g, merge_1x1, hw)
