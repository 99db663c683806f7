"""Benchmark of FaceNet embedding: facekit's folded graph vs Keras ``model.predict``, same run.

    .venv/bin/python bench/embed.py [--rounds 5] [--faces 64] [--ablation]

Real 160x160 crops of the sample set (validation photos, repeated to ``--faces``). Interleaved
rounds (baseline, optimised, baseline, ...; the machine is shared, so only same-run ratios and
medians mean anything):

- baseline: ``model.predict`` on one face per call, as keras-facenet's ``FaceNet.embeddings``
  and most tutorials do (prewhitened in numpy);
- batched: ``facekit.embedding.embedder.Embedder().embed`` on all crops (batch 32; default backend: the
  folded graph exported to ONNX, run by ONNX Runtime);
- single: ``Embedder().embed`` on one crop per call (latency of one face);
- with ``--ablation`` also the unmodified Keras model as one ``tf.function`` (batch 32), the
  folded graph as a ``tf.function`` without and with Winograd convolutions
  (``backend="tensorflow"``), to show what each technique buys.

Prints each round, then ONE JSON line: batched_faces_per_s, single_face_ms,
baseline_faces_per_s, speedup (batched / baseline), single_speedup, max_abs_diff (facekit vs the
Keras model's embeddings, batched and single), gflops (2 x 1.417 GMAC x batched faces/s),
sgemm_gflops (numpy float32 matmul on the same cores, same run: the practical ceiling for the
gflops figure), the CPU seconds per face of each variant (``*_cpu_ms``: process time, less sensitive to other
processes than wall time) and, with --ablation, ``keras_fn_faces_per_s``/``folded_faces_per_s``/
``tf_winograd_faces_per_s``.
Targets on 2 quiet cores: batched >= 30 faces/s, >= 5x baseline, one face <= 50 ms.
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


def timed(fn, n_faces: int) -> tuple[float, float]:
    """(wall seconds per face, CPU seconds per face) of one call of ``fn``."""
    c, t = time.process_time(), time.perf_counter()
    fn()
    return (time.perf_counter() - t) / n_faces, (time.process_time() - c) / n_faces


def sgemm_gflops(n: int = 2048, reps: int = 5) -> float:
    """This CPU's practical float32 matrix-multiply ceiling: numpy (OpenBLAS) n x n x n, best of
    ``reps`` (all cores). A convolution network cannot run its multiply-adds faster than this
    without doing fewer of them (Winograd)."""
    a = np.random.default_rng(0).random((n, n), dtype=np.float32)
    a @ a
    best = float("inf")
    for _ in range(reps):
        t = time.perf_counter()
        a @ a
        best = min(best, time.perf_counter() - t)
    return 2 * n ** 3 / best / 1e9


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--faces", type=int, default=64, help="crops per batched round")
    ap.add_argument("--single", type=int, default=8, help="crops per one-at-a-time round")
    ap.add_argument("--ablation", action="store_true", help="also time Keras tf.function and no-Winograd graph")
    args = ap.parse_args()

    import tensorflow as tf

    from facekit.data.folders import load_celebrities
    from facekit.embedding.embedder import EMBED_SIZE, Embedder, prewhiten
    from facekit.runtime.fastgraph import build_graph_fn, conv_macs, winograd_plan

    crops = load_celebrities("val", progress=False, verbose=False, embed=False).crops
    crops = np.concatenate([crops] * (args.faces // len(crops) + 1))[:args.faces]
    print(f"{len(crops)} sample crops; TensorFlow {tf.__version__}, "
          f"{tf.config.threading.get_intra_op_parallelism_threads() or os.cpu_count()} intra-op threads", flush=True)

    emb = Embedder()
    t = time.perf_counter()
    emb.warmup()
    print(f"load compiled model + first face ({emb.backend}): {time.perf_counter() - t:.1f} s", flush=True)
    model = emb.keras_model
    graph = emb.folded_graph()
    macs = conv_macs(graph)
    x = prewhiten(crops)

    ref = model.predict(x, batch_size=32, verbose=0)
    batched = emb.embed(crops)
    single = np.concatenate([emb.embed(crops[i:i + 1]) for i in range(args.single)])
    diff = max(float(np.abs(batched - ref).max()), float(np.abs(single - ref[:args.single]).max()))
    print(f"max |facekit - keras| = {diff:.2e}  ({macs / 1e9:.3f} GMAC per face)", flush=True)

    variants = {
        "baseline": (lambda: [model.predict(x[i:i + 1], verbose=0) for i in range(args.single)], args.single),
        "batched": (lambda: emb.embed(crops), len(crops)),
        "single": (lambda: [emb.embed(crops[i:i + 1]) for i in range(args.single)], args.single),
    }
    if args.ablation:
        spec = [tf.TensorSpec([None, EMBED_SIZE, EMBED_SIZE, 3], tf.float32)]
        keras_fn = tf.function(lambda t: model(t, training=False), input_signature=spec)
        folded = tf.function(build_graph_fn(graph), input_signature=spec)
        print("winograd layers (batched):", sorted(winograd_plan(graph, True).items()), flush=True)
        for name, f in (("keras_fn", keras_fn), ("folded", folded)):
            y = f(x[:32]).numpy()
            print(f"{name}: max diff {np.abs(y - ref[:32]).max():.2e}", flush=True)
            variants[name] = (lambda f=f: [f(x[i:i + 32]).numpy() for i in range(0, len(x), 32)], len(x))
        tfw = Embedder(backend="tensorflow", keras_model=model)  # shares the loaded model
        print(f"tf_winograd: max diff {np.abs(tfw.embed(crops[:32]) - ref[:32] / np.linalg.norm(ref[:32], axis=1, keepdims=True)).max():.2e}", flush=True)
        variants["tf_winograd"] = (lambda: tfw.embed(crops), len(crops))
    for name, (fn, _) in variants.items():  # warm every path (and the baseline's predict function)
        fn()

    wall = {k: [] for k in variants}
    cpu = {k: [] for k in variants}
    for r in range(args.rounds):
        line = []
        for name, (fn, n) in variants.items():
            w, c = timed(fn, n)
            wall[name].append(w)
            cpu[name].append(c)
            line.append(f"{name} {1 / w:.1f} faces/s ({c * 1e3:.0f} cpu ms/face)")
        print(f"round {r + 1}: " + ", ".join(line), flush=True)

    med = {k: statistics.median(v) for k, v in wall.items()}
    medc = {k: statistics.median(v) for k, v in cpu.items()}
    res = {
        "batched_faces_per_s": round(1 / med["batched"], 2),
        "single_face_ms": round(med["single"] * 1e3, 1),
        "baseline_faces_per_s": round(1 / med["baseline"], 2),
        "speedup": round(med["baseline"] / med["batched"], 2),
        "single_speedup": round(med["baseline"] / med["single"], 2),
        "max_abs_diff": float(f"{diff:.3g}"),
        "gflops": round(2 * macs / med["batched"] / 1e9, 1),
        "sgemm_gflops": round(sgemm_gflops(), 1),
    }
    for k in variants:
        res[f"{k}_cpu_ms"] = round(medc[k] * 1e3, 1)
    for k in ("keras_fn", "folded", "tf_winograd"):
        if k in med:
            res[f"{k}_faces_per_s"] = round(1 / med[k], 2)
    res["load_avg_1min"] = round(os.getloadavg()[0], 2)
    print(json.dumps(res))
    from facts import record  # noqa: E402 - bench/facts.json: the one source of the figures the text quotes
    record("embed", res)


if __name__ == "__main__":
    main()
