"""Probe: would Winograd convolutions, written as ONNX graph operations, speed up the network?

    .venv/bin/python bench/winograd_onnx.py [--batch 32] [--reps 5]

The default embedding already runs its convolutions at about the CPU's float32 matmul ceiling
(``bench/embed.py``: gflops vs sgemm_gflops), so the only way left to go faster with equal outputs
is to do fewer multiply-adds. Winograd F(m x m, 3x3) does ``(m+2)^2`` instead of ``9 m^2`` per
output tile (Lavin & Gray, 2016). ONNX Runtime has no Winograd kernel, so here each convolution is
rewritten with standard ONNX ops (the fastest arrangement found: a grouped Conv that cuts tiles and
applies the input transform, one batched MatMul per tile position against the pre-transformed
kernel, a MatMul for the output transform, Transpose + DepthToSpace to put the tiles back).

For every distinct stride-1 3x3 / 1xk / kx1 convolution of the real folded FaceNet graph
(real weights, batch ``--batch``, random activations), it times ONNX Runtime's direct Conv and the
Winograd subgraph for m = 2, 4, 6 in the same run, interleaved, and reports the error. It then
projects the whole network: measured batched faces/s with every layer swapped to its fastest form.

Prints one line per layer shape, then ONE JSON line: network_faces_per_s, projected_faces_per_s,
projected_speedup, layers (name -> count, direct_ms, best_m, best_ms, ratio, rel_err).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import numpy as np  # noqa: E402


def _model(nodes, inits, shape) -> bytes:
    from onnx import TensorProto, helper

    g = helper.make_graph(nodes, "probe", [helper.make_tensor_value_info("x", TensorProto.FLOAT, list(shape))],
                          [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)], inits)
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)])
    m.ir_version = 8
    return m.SerializeToString()


def direct_conv(w: np.ndarray, b: np.ndarray, pads: list[int], shape) -> bytes:
    """ONNX Conv + ReLU; ``w (kh, kw, C, K)`` as in the folded graph, pads [top, left, bottom, right]."""
    from onnx import helper, numpy_helper

    w = np.transpose(w, (3, 2, 0, 1))  # ONNX: (K, C, kh, kw)
    inits = [numpy_helper.from_array(w.astype(np.float32), "w"), numpy_helper.from_array(b.astype(np.float32), "b")]
    nodes = [helper.make_node("Conv", ["x", "w", "b"], ["c"], kernel_shape=list(w.shape[2:]), pads=pads),
             helper.make_node("Relu", ["c"], ["y"])]
    return _model(nodes, inits, shape)


def winograd_conv(w: np.ndarray, b: np.ndarray, pads: list[int], shape, m: int) -> bytes:
    """The same convolution as ONNX ops computing Winograd F(m, k) along each axis with k > 1."""
    from onnx import helper, numpy_helper

    from facekit.runtime.fastgraph import _winograd_constants  # the TensorFlow path's transformed kernel

    N, C, H, W = shape
    kh, kw, _, K = w.shape
    pt, pl, pb, pr = pads
    oh, ow = H + pt + pb - kh + 1, W + pl + pr - kw + 1
    mh, mw = (m if kh > 1 else 1), (m if kw > 1 else 1)
    ah, aw = mh + kh - 1, mw + kw - 1
    th, tw = -(-oh // mh), -(-ow // mw)
    A, T = ah * aw, th * tw
    U, Tin, Tout = _winograd_constants(w.astype(np.float64), m)
    U = U.transpose(0, 2, 1)  # (A, K, C): the left operand of each tile position's GEMM
    inits = []

    def c(name, a, dt=np.float32):
        inits.append(numpy_helper.from_array(np.asarray(a, dt), name))
        return name

    i64 = np.int64
    nodes = [
        # cut (ah x aw) tiles every (mh, mw) pixels and apply BT . d . B: one grouped Conv
        helper.make_node("Conv", ["x", c("Tin", np.tile(Tin.reshape(A, 1, ah, aw), (C, 1, 1, 1)))], ["v0"],
                         group=C, kernel_shape=[ah, aw], strides=[mh, mw],
                         pads=[pt, pl, th * mh + kh - 1 - H - pt, tw * mw + kw - 1 - W - pl]),
        helper.make_node("Reshape", ["v0", c("s1", [N, C, A, T], i64)], ["v1"]),
        helper.make_node("Transpose", ["v1"], ["v2"], perm=[2, 1, 0, 3]),            # (A, C, N, T)
        helper.make_node("Reshape", ["v2", c("s2", [A, C, N * T], i64)], ["v3"]),
        helper.make_node("MatMul", [c("U", U), "v3"], ["p0"]),                        # (A, K, N*T)
        helper.make_node("Reshape", ["p0", c("s3", [A, K * N * T], i64)], ["p1"]),
        helper.make_node("MatMul", [c("Tout", Tout), "p1"], ["o0"]),                  # (mh*mw, K*N*T)
        helper.make_node("Reshape", ["o0", c("s4", [mh * mw, K, N, T], i64)], ["o1"]),
        helper.make_node("Transpose", ["o1"], ["o2"], perm=[2, 1, 0, 3]),            # (N, K, mh*mw, T)
    ]
    if mh == mw:
        nodes += [helper.make_node("Reshape", ["o2", c("s5", [N, K * mh * mw, th, tw], i64)], ["o3"]),
                  helper.make_node("DepthToSpace", ["o3"], ["o4"], blocksize=mh, mode="CRD")]
    else:  # one axis: (N, K, mh, mw, th, tw) -> (N, K, th, mh, tw, mw)
        nodes += [helper.make_node("Reshape", ["o2", c("s5", [N, K, mh, mw, th, tw], i64)], ["o3"]),
                  helper.make_node("Transpose", ["o3"], ["o3t"], perm=[0, 1, 4, 2, 5, 3]),
                  helper.make_node("Reshape", ["o3t", c("s6", [N, K, th * mh, tw * mw], i64)], ["o4"])]
    nodes += [
        helper.make_node("Slice", ["o4", c("st", [0, 0], i64), c("en", [oh, ow], i64), c("ax", [2, 3], i64)], ["o5"]),
        helper.make_node("Add", ["o5", c("b", b.reshape(K, 1, 1))], ["o6"]),
        helper.make_node("Relu", ["o6"], ["y"]),
    ]
    return _model(nodes, inits, shape)


def session(model: bytes):
    import onnxruntime as ort

    so = ort.SessionOptions()  # as facekit.embedding.embedder's sessions
    so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    so.log_severity_level = 3
    so.add_session_config_entry("session.intra_op.allow_spinning", "0")
    return ort.InferenceSession(model, so, providers=["CPUExecutionProvider"])


def candidate_layers(graph, batch: int) -> dict[str, dict]:
    """Distinct stride-1 convolutions with a spatial kernel: shape key -> conv, count, input shape, pads."""
    from facekit.runtime.fastgraph import annotate_shapes
    from facekit.runtime.onnxgraph import _same_pads

    annotate_shapes(graph, (160, 160))
    out: dict[str, dict] = {}
    for n in graph.convs():
        kh, kw, cin, cout = n.attrs["w"].shape
        if n.attrs["strides"] != (1, 1) or kh * kw == 1:
            continue
        oh, ow = n.attrs["out_h"], n.attrs["out_w"]
        if n.attrs["padding"] == "SAME":
            (pt, pb), (pl, pr) = _same_pads(oh, kh, 1), _same_pads(ow, kw, 1)
            h, w = oh, ow
        else:
            pt = pb = pl = pr = 0
            h, w = oh + kh - 1, ow + kw - 1
        key = f"{kh}x{kw} {cin}->{cout} @{oh}px"
        if key in out:
            out[key]["count"] += 1
            continue
        out[key] = dict(node=n.name, count=1, shape=(batch, cin, h, w), pads=[pt, pl, pb, pr],
                        w=n.attrs["w"], b=np.asarray(n.attrs["b"]))
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--reps", type=int, default=5)
    args = ap.parse_args()

    from facekit.embedding.embedder import Embedder

    emb = Embedder()
    emb.warmup()
    layers = candidate_layers(emb.folded_graph(), args.batch)
    rng = np.random.default_rng(0)
    crops = rng.integers(0, 256, (args.batch, 160, 160, 3), dtype=np.uint8)
    emb.embed(crops)
    net_s = statistics.median(_time(lambda: emb.embed(crops)) for _ in range(args.reps))
    print(f"network (facekit default, batch {args.batch}): {args.batch / net_s:.2f} faces/s", flush=True)

    report, saved_s = {}, 0.0
    for key, L in layers.items():
        x = rng.standard_normal(L["shape"]).astype(np.float32)
        runs = {0: session(direct_conv(L["w"], L["b"], L["pads"], L["shape"]))}
        for m in (2, 4, 6):
            runs[m] = session(winograd_conv(L["w"], L["b"], L["pads"], L["shape"], m))
        outs = {m: s.run(None, {"x": x})[0] for m, s in runs.items()}
        times = {m: [] for m in runs}
        for _ in range(args.reps):  # interleaved
            for m, s in runs.items():
                times[m].append(_time(lambda s=s: s.run(None, {"x": x})))
        med = {m: statistics.median(t) for m, t in times.items()}
        scale = float(np.abs(outs[0]).max()) or 1.0
        err = {m: float(np.abs(outs[m] - outs[0]).max()) / scale for m in (2, 4, 6)}
        best = min(med, key=med.get)
        saved_s += (med[0] - med[best]) * L["count"]
        report[key] = dict(count=L["count"], direct_ms=round(med[0] * 1e3, 1), best_m=best,
                           best_ms=round(med[best] * 1e3, 1), ratio=round(med[0] / med[best], 2),
                           winograd_ms={m: round(med[m] * 1e3, 1) for m in (2, 4, 6)},
                           rel_err={m: float(f"{err[m]:.1e}") for m in (2, 4, 6)})
        print(f"{key} (x{L['count']}, e.g. {L['node']}): direct {med[0] * 1e3:.1f} ms; " +
              ", ".join(f"F({m}) {med[m] * 1e3:.1f} ms = {med[0] / med[m]:.2f}x (err {err[m]:.0e})"
                        for m in (2, 4, 6)), flush=True)
    projected = args.batch / (net_s - saved_s)
    print(f"every layer in its fastest form: {projected:.2f} faces/s "
          f"({projected / (args.batch / net_s):.3f}x the network)", flush=True)
    print(json.dumps(dict(network_faces_per_s=round(args.batch / net_s, 2),
                          projected_faces_per_s=round(projected, 2),
                          projected_speedup=round(projected * net_s / args.batch, 3),
                          batch=args.batch, layers=report)))


def _time(fn) -> float:
    t = time.perf_counter()
    fn()
    return time.perf_counter() - t


if __name__ == "__main__":
    main()
