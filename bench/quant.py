"""int8 vs float32 (issue 17): speed, agreement and accuracy of the quantised FaceNet and MTCNN.

    .venv/bin/python bench/quant.py [--rounds 7] [--per-fold N] [--skip-lfw]

In one run, on this machine (only same-run ratios mean anything on a shared machine; the timing
part takes the bench lock /tmp/fk-locks/bench when that folder exists):

- ``cpu_int8``: the CPU's int8 instructions (facekit.runtime.quant.cpu_int8: amx / vnni / avx2 / none);
- agreement on the 25 held-out sample crops (never used for calibration): cosine int8 vs float32,
  the largest change of a squared distance;
- embedding faces/s at batch 32, float32 and int8 (``embed_speedup``), and static QDQ vs dynamic
  quantisation (why static is kept); one face, float32 and int8, in ms;
- MTCNN frames/s on 640x480 frames (the 25 sample validation photos letterboxed): facekit's
  default float32 detector (TensorFlow), the same networks as float32 ONNX, and int8 ONNX
  (``detect_speedup`` = int8 / default); recall (photos and frames with a face found) and the
  fraction of float32's faces int8 finds (IoU >= 0.5) on all 118 sample photos and their frames;
- full LFW View 2 10-fold accuracy with float32 and with int8 (``lfw_accuracy_fp32``,
  ``lfw_accuracy_int8``; each fold's threshold chosen on the other nine), and each precision's
  calibrated thresholds measured the same way: verification = best single threshold over the
  6,000 pairs (bench/lfw.py), unknown = open-set threshold chosen on calibration people, mean over
  5 splits (bench/identify.py), clustering = best-ARI average-linkage cut on half the LFW people
  with >= 20 photos (bench/identify.py);
- held-out verification on the 5-celebrity validation photos (all 300 pairs) at each precision's
  own verification threshold.

Ends with ONE JSON line. Targets: embed_speedup >= 1.8 with VNNI/AMX (>= 1.2 on AVX2 only),
lfw_accuracy_int8 >= lfw_accuracy_fp32 - 0.001, detect_speedup >= 1.3 at recall within 0.5 points.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import numpy as np

LOCK = Path("/tmp/fk-locks/bench")


@contextlib.contextmanager
def bench_lock():
    """Hold /tmp/fk-locks/bench (shared-machine convention) while timing, if the folder exists."""
    if not LOCK.parent.is_dir():
        yield
        return
    while True:
        try:
            LOCK.mkdir()
            break
        except FileExistsError:
            print("waiting for the bench lock ...", flush=True)
            time.sleep(30)
    try:
        yield
    finally:
        LOCK.rmdir()


def interleaved(fns: dict, rounds: int) -> dict[str, float]:
    """Median wall seconds per call of each function, rounds interleaved (fair on a noisy machine)."""
    for f in fns.values():
        f()
    t: dict[str, list[float]] = {k: [] for k in fns}
    for _ in range(rounds):
        for k, f in fns.items():
            s = time.perf_counter()
            f()
            t[k].append(time.perf_counter() - s)
    return {k: statistics.median(v) for k, v in t.items()}


def iou(a, b) -> float:
    ix = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    iy = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    u = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - ix * iy
    return ix * iy / u if u > 0 else 0.0


def pair_accuracy(e: np.ndarray, labels: np.ndarray, threshold: float) -> float:
    from facekit.recognition.verify import accuracy_at, pairwise_sq_l2

    iu = np.triu_indices(len(e), 1)
    return accuracy_at(pairwise_sq_l2(e)[iu], (labels[:, None] == labels[None, :])[iu], threshold)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--rounds", type=int, default=7)
    ap.add_argument("--per-fold", type=int, default=None, help="LFW pairs per fold (default: all 600)")
    ap.add_argument("--skip-lfw", action="store_true")
    args = ap.parse_args()

    from facekit.data.folders import load_celebrities
    from facekit.detection.detector import Detector
    from facekit.embedding.embedder import Embedder, ort_session
    from facekit.core.images import load_image
    from facekit.embedding.int8 import calibration_crops, int8_model_path, quantize_static_qdq
    from facekit.runtime.quant import cpu_int8
    from facekit.detection.int8 import int8_mtcnn_networks
    from facekit.core.cache import celebrity_dir
    from facekit.recognition.verify import pairwise_sq_l2
    from facekit.models.registry import thresholds
    DEFAULT_THRESHOLD = thresholds("facenet128").verify  # the model's own cut (facekit.models.registry)

    res: dict = {"cpu_int8": cpu_int8()}
    print(f"CPU int8 instructions: {res['cpu_int8']}", flush=True)
    val = load_celebrities("val", progress=False, verbose=False, embed=False)
    emb = {p: Embedder(precision=p).warmup() for p in ("fp32", "int8")}
    e = {p: m.embed(val.crops) for p, m in emb.items()}
    cos = (e["fp32"] * e["int8"]).sum(1)
    dd = np.abs(pairwise_sq_l2(e["fp32"]) - pairwise_sq_l2(e["int8"])).max()
    print(f"int8 vs fp32 on {len(cos)} held-out crops: cosine min {cos.min():.4f} mean {cos.mean():.4f}; "
          f"largest distance change {dd:.3f}", flush=True)
    res.update(cosine_min=round(float(cos.min()), 4), cosine_mean=round(float(cos.mean()), 5),
               max_distance_change=round(float(dd), 4), fingerprint_int8=emb["int8"].fingerprint)

    # dynamic quantisation, for the record (static QDQ is what facekit uses)
    from onnxruntime.quantization import QuantType, quantize_dynamic

    from facekit.embedding.embedder import onnx_path

    tmp = Path(tempfile.mkdtemp(prefix="fk-quant-bench-"))
    dyn = tmp / "dynamic.onnx"
    quantize_dynamic(str(onnx_path()), str(dyn), per_channel=True, weight_type=QuantType.QInt8)
    dyn_sess = ort_session(dyn)
    ed = dyn_sess.run(None, {"crops": val.crops})[0]
    res["dynamic_cosine_min"] = round(float((ed * e["fp32"]).sum(1).min()), 4)
    # static with the first convolution and the last linear layer kept in float32
    exc = tmp / "static_exclude.onnx"
    exc.write_bytes(quantize_static_qdq(onnx_path(), calibration_crops(), exclude=("Conv2d_1a_3x3", "Bottleneck")))
    exc_sess = ort_session(exc)
    ex = exc_sess.run(None, {"crops": val.crops})[0]
    res["static_exclude_cosine_min"] = round(float((ex * e["fp32"]).sum(1).min()), 4)

    # 640x480 frames and photos for detection
    from facekit.detection.int8 import letterbox_frame

    photos = [load_image(p) for p in sorted(celebrity_dir().glob("*/*/*.jpg"))]
    frames = [letterbox_frame(im) for im in photos]
    det = {"fp32": Detector(), "fp32_onnx": Detector(networks=int8_mtcnn_networks("fp32")),
           "int8": Detector(networks=int8_mtcnn_networks("int8"))}
    timing_frames = frames[-25:]

    x32 = np.resize(val.crops, (32, 160, 160, 3))
    with bench_lock():
        print("timing (bench lock held)", flush=True)
        t = interleaved({"fp32": lambda: emb["fp32"].embed(x32), "int8": lambda: emb["int8"].embed(x32),
                         "dynamic": lambda: dyn_sess.run(None, {"crops": x32}),
                         "static_exclude": lambda: exc_sess.run(None, {"crops": x32})}, args.rounds)
        one = interleaved({p: (lambda p=p: [emb[p].embed(x32[i:i + 1]) for i in range(8)]) for p in emb},
                          args.rounds)
        td = interleaved({k: (lambda d=d: [d.detect(f) for f in timing_frames]) for k, d in det.items()},
                         max(3, args.rounds // 2))
    for k, v in t.items():
        res[f"embed_{k}_faces_per_s"] = round(32 / v, 2)
    res["embed_speedup"] = round(t["fp32"] / t["int8"], 3)
    res["dynamic_speedup"] = round(t["fp32"] / t["dynamic"], 3)
    res["static_exclude_speedup"] = round(t["fp32"] / t["static_exclude"], 3)
    res["one_face_fp32_ms"] = round(one["fp32"] / 8 * 1e3, 1)
    res["one_face_int8_ms"] = round(one["int8"] / 8 * 1e3, 1)
    for k, v in td.items():
        res[f"detect_{k}_fps"] = round(len(timing_frames) / v, 2)
    res["detect_speedup"] = round(td["fp32"] / td["int8"], 3)
    res["detect_speedup_vs_fp32_onnx"] = round(td["fp32_onnx"] / td["int8"], 3)
    print(f"embedding batch 32: fp32 {res['embed_fp32_faces_per_s']} faces/s, int8 "
          f"{res['embed_int8_faces_per_s']} ({res['embed_speedup']}x); dynamic {res['dynamic_speedup']}x "
          f"(cosine min {res['dynamic_cosine_min']}); static keeping first conv + last linear in fp32 "
          f"{res['static_exclude_speedup']}x (cosine min {res['static_exclude_cosine_min']}); one face "
          f"{res['one_face_fp32_ms']} vs {res['one_face_int8_ms']} ms", flush=True)
    print(f"MTCNN 640x480: default {res['detect_fp32_fps']} frames/s, fp32 ONNX {res['detect_fp32_onnx_fps']}, "
          f"int8 {res['detect_int8_fps']} ({res['detect_speedup']}x)", flush=True)

    # recall: images with a face found; int8's agreement with float32's faces
    for name, imgs in (("photos", photos), ("frames", frames)):
        found = {k: [d.detect(im) for im in imgs] for k, d in det.items() if k != "fp32_onnx"}
        for k, f in found.items():
            res[f"recall_{name}_{k}"] = round(float(np.mean([len(x) > 0 for x in f])), 4)
        ref = [f for fs in found["fp32"] for f in fs]
        hit = sum(any(iou(a.box, b.box) >= 0.5 for b in fb) for fa, fb in zip(found["fp32"], found["int8"]) for a in fa)
        res[f"int8_finds_fp32_faces_{name}"] = round(hit / max(len(ref), 1), 4)
        print(f"{name}: found a face in {res[f'recall_{name}_fp32']:.2%} (fp32) vs {res[f'recall_{name}_int8']:.2%} "
              f"(int8); int8 finds {res[f'int8_finds_fp32_faces_{name}']:.2%} of fp32's {len(ref)} faces", flush=True)

    if not args.skip_lfw:
        from facekit.recognition.cluster import sweep_cluster_threshold
        from facekit.recognition.identify import FaceIdentifier, choose_threshold, open_set_scores, open_set_split
        from facekit.teach.lfw import embed_lfw, lfw_verification
        from facekit.data.lfw import lfw_people

        paths, labels = lfw_people(min_faces_per_person=20)
        people = np.array(sorted(set(labels.tolist())))
        np.random.default_rng(0).shuffle(people)
        half = np.isin(labels, people[: len(people) // 2])
        for p, m in emb.items():
            t0 = time.perf_counter()
            r, embs = lfw_verification(per_fold=args.per_fold, embedder=m, progress=False)
            X, _ = embed_lfw(paths, embedder=m, progress=False)
            chosen = []
            for seed in range(5):
                sp = open_set_split(labels, n_known=0.5, calib_frac=0.5, test_size=0.25, random_state=seed)
                g = FaceIdentifier().fit(X[sp["gallery"]], labels[sp["gallery"]])
                names_c, ks_c = open_set_scores(g, X[sp["known_calib"]])
                chosen.append(choose_threshold(ks_c, names_c == labels[sp["known_calib"]],
                                               open_set_scores(g, X[sp["stranger_calib"]])[1]))
            sweep = sweep_cluster_threshold(X[half], labels[half], np.round(np.arange(0.5, 1.61, 0.05), 3))
            best = max(sweep, key=lambda s: s["ari"])
            res[f"lfw_accuracy_{p}"] = round(r.mean, 5)
            res[f"lfw_std_{p}"] = round(r.std, 5)
            res[f"verify_threshold_{p}"] = round(r.threshold, 3)
            res[f"unknown_threshold_{p}"] = round(float(np.mean(chosen)), 3)
            res[f"cluster_threshold_{p}"] = round(float(best["threshold"]), 3)
            print(f"[{p}] LFW View 2 {r}; thresholds: verify {r.threshold:.3f}, unknown {np.mean(chosen):.3f}, "
                  f"cluster {best['threshold']:.2f} (ARI {best['ari']:.4f}); {time.perf_counter() - t0:.0f} s",
                  flush=True)
        res["lfw_pairs"] = int(r.n_pairs)

    # held-out verification on the 5-celebrity validation photos, each at its own threshold
    own = {"fp32": DEFAULT_THRESHOLD, "int8": res.get("verify_threshold_int8", DEFAULT_THRESHOLD)}
    for p in emb:
        res[f"celeb_val_accuracy_{p}"] = round(pair_accuracy(e[p], val.labels, own[p]), 4)
    print(f"5-celebrity validation pairs: fp32 {res['celeb_val_accuracy_fp32']:.4f} at {own['fp32']}, "
          f"int8 {res['celeb_val_accuracy_int8']:.4f} at {own['int8']}", flush=True)
    res["int8_model"] = int8_model_path(build=False).name
    res["load_avg_1min"] = round(os.getloadavg()[0], 2)
    print(json.dumps(res))
    from facts import record  # noqa: E402 - bench/facts.json: the one source of the figures the text quotes
    record("quant", res)


if __name__ == "__main__":
    main()
