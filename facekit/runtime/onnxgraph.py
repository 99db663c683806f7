"""Export a folded graph (:mod:`facekit.runtime.fastgraph`) to ONNX, run it with ONNX Runtime.

Taught in appendix A1 (speed) (why the embedding is fast). The folded FaceNet graph (BatchNorm and
residual scales folded into the convolutions, 1x1 branches merged) is written as an ONNX model
in NCHW layout with the input standardisation and the final L2 normalisation inside it, so one
``session.run`` maps ``uint8 (N, 160, 160, 3)`` crops to unit-length embeddings. ONNX Runtime's
CPU kernels (MLAS, blocked NCHWc convolutions with fused bias + ReLU) run this network about
1.5x faster than TensorFlow's on a 2-core AVX2 CPU, and the model file is cached on disk, so a
new process embeds without importing TensorFlow at all (``bench/smoke.py``).

Outputs equal the Keras model's to ~1e-6 (float32 throughout, no Winograd rounding);
``tests/test_perf_equivalence.py`` checks 1e-4.

The compiled-model cache (:func:`cached_model`, :func:`check_session`): each file's name carries
its key (the source weights' sha256, :data:`EXPORT_VERSION` and :func:`code_hash` of the folding
and export code, plus whatever a derived model such as the int8 one adds), and a JSON manifest
beside it stores the key, the file's sha256 and the embedding of fixed test crops
(:func:`test_crops`). A file whose manifest is missing or disagrees (truncated, tampered, built
by other code) is rebuilt, never used.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import warnings
from collections.abc import Callable
from pathlib import Path

import numpy as np

from facekit.runtime.fastgraph import FoldedGraph

__all__ = [
    "EXPORT_VERSION",
    "OPSET",
    "CacheMismatch",
    "cached_model",
    "check_session",
    "code_hash",
    "export_onnx",
    "test_crops",
]

OPSET = 17
#: bump when the exported graph's outputs change: part of the cache key and of Embedder.fingerprint
EXPORT_VERSION = 2


def code_hash(*extra: str | os.PathLike) -> str:
    """sha256 (hex, 12 digits) of the code of fastgraph.py, onnxgraph.py and ``extra`` files, read
    as syntax trees without docstrings and comments: any change to what the folding/export code
    does gives new cache keys (no stale model is used), while editing its documentation does not
    rebuild every cached model."""
    import ast

    h = hashlib.sha256()
    here = Path(__file__).resolve().parent
    for p in (here / "fastgraph.py", here / "onnxgraph.py", *map(Path, extra)):
        tree = ast.parse(Path(p).read_text())
        for node in ast.walk(tree):
            body = getattr(node, "body", None)
            if (isinstance(body, list) and body and isinstance(body[0], ast.Expr)
                    and isinstance(body[0].value, ast.Constant) and isinstance(body[0].value.value, str)):
                node.body = body[1:] or [ast.Pass()]
        h.update(ast.dump(tree).encode())
    return h.hexdigest()[:12]


def test_crops() -> np.ndarray:
    """Two fixed synthetic crops, ``uint8 (2, 160, 160, 3)``: smooth colour gradients plus seeded
    noise, so every channel and layer sees varied values. Their embeddings go in the manifest."""
    yy, xx = np.mgrid[0:160, 0:160].astype(np.float64) / 159
    base = np.stack([xx, yy, 1 - xx * yy], -1) * 200
    noise = np.random.default_rng(20240517).normal(0, 25, (2, 160, 160, 3))
    return np.clip(np.stack([base, base[::-1, ::-1]]) + noise, 0, 255).astype(np.uint8)


class CacheMismatch(RuntimeError):
    """A cached compiled model does not match its manifest (truncated, tampered or stale)."""


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def manifest_path(path: Path) -> Path:
    """The JSON manifest beside compiled model ``path``."""
    return Path(path).with_suffix(".json")


def _manifest_ok(path: Path, key: dict) -> dict | None:
    """The manifest of ``path`` if it matches ``key`` and the file's sha256, else None."""
    try:
        m = json.loads(manifest_path(path).read_text())
    except (OSError, ValueError):
        return None
    if m.get("key") != key or not path.is_file() or _sha256(path) != m.get("sha256"):
        return None
    return m


@contextlib.contextmanager
def _build_lock(path: Path):
    """An exclusive file lock per compiled model: two processes never build the same file at once."""
    import fcntl

    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path.with_suffix(".lock"), "a") as f:
        fcntl.flock(f, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)


def cached_model(path: Path, key: dict, build: Callable[[], bytes],
                 run: Callable[[Path], Callable[[np.ndarray], np.ndarray]], rebuild: bool = False,
                 prune: str | None = None) -> dict:
    """Make sure ``path`` holds a model that matches ``key``; return its manifest.

    A file whose manifest is missing or names another key or sha256 is rebuilt with ``build()``
    (serialised ONNX bytes), under a file lock, written atomically (temporary file +
    ``os.replace``). ``run(path)`` must return a function ``uint8 crops -> float32 embeddings``;
    the manifest stores its output on :func:`test_crops`, which :func:`check_session` compares
    on every load. ``rebuild=True`` rebuilds whatever is there. ``prune``: a glob (in the same
    folder) of superseded files to delete after a build.
    """
    path = Path(path)
    if not rebuild and (m := _manifest_ok(path, key)) is not None:
        return m
    with _build_lock(path):
        if not rebuild and (m := _manifest_ok(path, key)) is not None:
            return m  # another process built it while we waited
        if path.exists():
            warnings.warn(f"facekit: rebuilding {path} (its manifest is missing or does not match: "
                          "truncated, modified or built by other code)", RuntimeWarning, stacklevel=3)
        blob = build()
        tmp = path.with_suffix(f".{os.getpid()}.tmp")
        tmp.write_bytes(blob)
        ref = np.asarray(run(tmp)(test_crops()), np.float32)
        m = {"key": key, "sha256": hashlib.sha256(blob).hexdigest(), "bytes": len(blob),
             "test_embeddings": ref.round(7).tolist()}
        mtmp = manifest_path(path).with_suffix(f".{os.getpid()}.jtmp")
        mtmp.write_text(json.dumps(m, indent=1))
        os.replace(tmp, path)  # atomic: a concurrent reader never sees half a file
        os.replace(mtmp, manifest_path(path))
        for stale in path.parent.glob(prune) if prune else ():
            if stale != path:  # older keys of the same model: ~90 MB each, never used again
                for f in (stale, manifest_path(stale), stale.with_suffix(".lock")):
                    f.unlink(missing_ok=True)
        return m


def check_session(fn: Callable[[np.ndarray], np.ndarray], manifest: dict, atol: float, path: Path) -> None:
    """Raise :class:`CacheMismatch` unless ``fn(test_crops())`` equals the manifest's embeddings
    to ``atol`` (max abs difference): the loaded model computes what was built."""
    ref = np.asarray(manifest["test_embeddings"], np.float32)
    got = np.asarray(fn(test_crops()), np.float32)
    if got.shape != ref.shape or not np.isfinite(got).all() or np.abs(got - ref).max() > atol:
        diff = np.abs(got - ref).max() if got.shape == ref.shape else float("nan")
        raise CacheMismatch(f"{path}: the test crops' embeddings differ from its manifest's "
                            f"(max abs difference {diff:.3g} > {atol}); the file is damaged or stale")


def _same_pads(size: int, k: int, s: int) -> tuple[int, int]:
    """TensorFlow's SAME padding (begin, end) for one axis."""
    out = -(-size // s)
    total = max((out - 1) * s + k - size, 0)
    return total // 2, total - total // 2


def export_onnx(g: FoldedGraph, input_hw: tuple[int, int], standardization: str = "per_image") -> bytes:
    """Serialised ONNX model of ``g``: input ``crops`` uint8 ``(N, H, W, 3)`` NHWC, output
    ``embeddings`` float32 ``(N, D)`` L2-normalised. ``standardization`` is ``"per_image"``
    (facenet's prewhiten) or ``"fixed"`` (``(x - 127.5) / 128``)."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    nodes, inits = [], []
    counter = [0]

    def fresh(prefix: str) -> str:
        counter[0] += 1
        return f"{prefix}_{counter[0]}"

    def const(name: str, value) -> str:
        arr = np.asarray(value, np.float32) if np.asarray(value).dtype.kind == "f" else np.asarray(value)
        inits.append(numpy_helper.from_array(arr, name))
        return name

    def op(kind: str, ins: list[str], out: str | None = None, **attrs) -> str:
        out = out or fresh(kind.lower())
        nodes.append(helper.make_node(kind, ins, [out], name=out, **attrs))  # named: quantisers exclude by name
        return out

    H, W = input_hw
    x = op("Cast", ["crops"], to=TensorProto.FLOAT)
    x = op("Transpose", [x], perm=[0, 3, 1, 2])
    if standardization == "per_image":
        mean = op("ReduceMean", [x], axes=[1, 2, 3], keepdims=1)
        xc = op("Sub", [x, mean])
        var = op("ReduceMean", [op("Mul", [xc, xc])], axes=[1, 2, 3], keepdims=1)
        std = op("Max", [op("Sqrt", [var]), const("min_std", 1.0 / np.sqrt(H * W * 3.0))])
        x = op("Div", [xc, std])
    elif standardization == "fixed":
        x = op("Mul", [op("Sub", [x, const("c127_5", 127.5)]), const("inv128", 1.0 / 128.0)])
    else:
        raise ValueError(f"unknown standardization {standardization!r}")

    vals: dict[str, str] = {}
    sizes: dict[str, tuple[int, int]] = {}
    split_outs: dict[str, list[str]] = {}
    for k in g.order:
        n = g.nodes[k]
        ins = [vals[i] for i in n.inputs]
        hw = sizes[n.inputs[0]] if n.inputs else (H, W)
        if n.kind == "input":
            v, hw = x, (H, W)
        elif n.kind in ("conv", "maxpool"):
            kh, kw = n.attrs["w"].shape[:2] if n.kind == "conv" else n.attrs["size"]
            sh, sw = n.attrs["strides"]
            if n.attrs["padding"] == "SAME":
                (pt, pb), (pl, pr) = _same_pads(hw[0], kh, sh), _same_pads(hw[1], kw, sw)
                out_hw = (-(-hw[0] // sh), -(-hw[1] // sw))
            else:
                pt = pb = pl = pr = 0
                out_hw = ((hw[0] - kh) // sh + 1, (hw[1] - kw) // sw + 1)
            common = dict(kernel_shape=[kh, kw], strides=[sh, sw], pads=[pt, pl, pb, pr])
            if n.kind == "conv":
                w = const(f"{k}/W", np.transpose(n.attrs["w"], (3, 2, 0, 1)))
                b = const(f"{k}/B", n.attrs["b"])
                v = op("Conv", [ins[0], w, b], k, **common)  # node named after the Keras layer
                if n.attrs["relu"]:
                    v = op("Relu", [v])
            else:
                v = op("MaxPool", [ins[0]], **common)
            hw = out_hw
        elif n.kind == "dense":
            v = op("Gemm", [ins[0], const(f"{k}/W", n.attrs["w"]), const(f"{k}/B", n.attrs["b"])], k)
            if n.attrs["relu"]:
                v = op("Relu", [v])
        elif n.kind == "slice":
            grp = n.attrs["group"]
            if grp not in split_outs:
                members = [c for c in g.order if g.nodes[c].kind == "slice" and g.nodes[c].attrs["group"] == grp]
                outs = [fresh("split") for _ in members]
                sizes_ = np.array([g.nodes[c].attrs["size"] for c in members], np.int64)
                nodes.append(helper.make_node("Split", [ins[0], const(f"{grp}/sizes", sizes_)], outs, name=f"{grp}/split", axis=1))
                split_outs[grp] = outs
            v = split_outs[grp].pop(0)
        elif n.kind == "affine":
            mul = np.asarray(n.attrs["mul"], np.float64)
            add = np.asarray(n.attrs["add"], np.float64)
            shape = (-1, 1, 1) if mul.ndim or add.ndim else ()
            v = op("Add", [op("Mul", [ins[0], const(f"{k}/mul", mul.reshape(shape) if mul.ndim else mul)]),
                           const(f"{k}/add", add.reshape(shape) if add.ndim else add)])
        elif n.kind == "relu":
            v = op("Relu", ins)
        elif n.kind == "identity":
            v = ins[0]
        elif n.kind == "add":  # Add (not Sum) for two inputs: the int8 quantiser fuses it (QLinearAdd)
            v = op("Add", ins) if len(ins) == 2 else op("Sum", ins)
        elif n.kind == "concat":
            axis = {-1: 1, 3: 1}.get(n.attrs["axis"])
            if axis is None:
                raise NotImplementedError(f"{k}: concat on axis {n.attrs['axis']}")
            v = op("Concat", ins, axis=axis)
        elif n.kind == "gap":
            v = op("Flatten", [op("GlobalAveragePool", ins)], axis=1)
            hw = (1, 1)
        elif n.kind == "l2norm":
            v = op("LpNormalization", ins, axis=1, p=2)
        else:  # pragma: no cover - fastgraph only makes the kinds above
            raise NotImplementedError(n.kind)
        vals[k], sizes[k] = v, hw
    op("LpNormalization", [vals[g.output]], "embeddings", axis=1, p=2)
    dim = int(g.nodes[g.output].attrs["w"].shape[1]) if g.nodes[g.output].kind == "dense" else None
    graph = helper.make_graph(
        nodes, "facekit_facenet",
        [helper.make_tensor_value_info("crops", TensorProto.UINT8, ["N", H, W, 3])],
        [helper.make_tensor_value_info("embeddings", TensorProto.FLOAT, ["N", dim])],
        inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", OPSET)],
                              producer_name="facekit")
    model.ir_version = 8
    onnx.checker.check_model(model)
    return model.SerializeToString()
