"""Benchmark of live recognition (notebook 06): tracked loop vs the naive loop, same run.

    .venv/bin/python bench/live.py [--frames 300] [--naive-frames 40] [--per-person 10]

Builds a 640x480 video (>= 300 frames) of sample-set people (validation photos: 2 enrolled
people and 1 stranger moving and zooming, 1-3 faces at a time), enrols the enrolled people from
their *training* photos, then feeds every frame as a JPEG (what the browser camera sends) to

- ``LiveRecognizer`` (tracking, downscaled scans, O-Net refines, rare re-embedding), and
- the naive loop: full-resolution detection (min face 20 px) and embedding of every face of
  every frame (on the first ``--naive-frames`` frames; its rate is steady).

Prints progress, then ONE JSON line: fps (frames processed per second), p95/p50/max latency
(ms, JPEG decode to labelled result), naive_fps, speedup, correct_rate (frames where every
enrolled face has its right name, over frames showing an enrolled face), face_correct_rate,
unknown_rate (stranger called "unknown"), scans/refines/embeddings, RSS growth over the run.
Targets on 2 cores: fps >= 15, p95 <= 250 ms, correct_rate >= 0.95, speedup >= 5.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import numpy as np  # noqa: E402


def rss_mb() -> float:
    import psutil

    return psutil.Process().memory_info().rss / 2**20


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--frames", type=int, default=300)
    ap.add_argument("--naive-frames", type=int, default=40)
    ap.add_argument("--per-person", type=int, default=10, help="training photos enrolled per person")
    ap.add_argument("--enrolled", default="ben_afflek,elton_john")
    ap.add_argument("--stranger", default="madonna")
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()

    from facekit.detection.align import align_faces
    from facekit.data.folders import load_celebrities
    from facekit.detection.detector import get_detector
    from facekit.embedding.embedder import get_embedder
    from facekit.recognition.identify import FaceIdentifier
    from facekit.live import LiveRecognizer, decode_jpeg, encode_jpeg, make_demo_scene

    enrolled = [n for n in args.enrolled.split(",") if n]
    people = enrolled + ([args.stranger] if args.stranger else [])
    det, emb = get_detector(), get_embedder().warmup()

    t = time.perf_counter()
    train = load_celebrities("train", progress=False, verbose=False, limit_per_identity=args.per_person)
    keep = np.isin(train.labels, enrolled)
    ident = FaceIdentifier().fit(train.embeddings[keep], train.labels[keep])
    print(f"gallery: {int(keep.sum())} training photos of {enrolled} ({time.perf_counter() - t:.0f} s); "
          f"stranger: {args.stranger}", flush=True)

    scene = make_demo_scene(people, n_frames=args.frames, seed=args.seed, detector=det)
    jpegs = [encode_jpeg(f, 85) for f in scene]
    print(f"video: {len(jpegs)} frames {scene.width}x{scene.height}, "
          f"{np.mean([len(j) for j in jpegs]) / 1024:.0f} KiB/frame as JPEG", flush=True)

    # warm-up (graph tracing, first-call costs) on a different scene so nothing is cached
    warm = LiveRecognizer(ident)
    for f in make_demo_scene(people, n_frames=20, seed=args.seed + 1, detector=det):
        warm.process(f)

    # --- the tracked loop ---------------------------------------------------------------
    rec = LiveRecognizer(ident)
    rss0 = rss_mb()
    results, lat = [], []
    t0 = time.perf_counter()
    for i, j in enumerate(jpegs):
        r = rec.process_jpeg(j)
        results.append(r)
        lat.append(r.latency_ms)
        if (i + 1) % 50 == 0:
            el = time.perf_counter() - t0
            print(f"  live {i + 1}/{len(jpegs)}: {(i + 1) / el:.1f} fps, p95 so far "
                  f"{np.percentile(lat, 95):.0f} ms", flush=True)
    live_s = time.perf_counter() - t0
    rss1 = rss_mb()
    lat = np.asarray(lat)
    score = scene.score(results, enrolled)
    fps = len(jpegs) / live_s
    print(f"live: {fps:.1f} fps, latency p50 {np.percentile(lat, 50):.0f} / p95 "
          f"{np.percentile(lat, 95):.0f} / max {lat.max():.0f} ms; {score}; {rec.stats}", flush=True)

    # --- the naive loop: full-resolution detection + embedding of every face, every frame --
    n = min(args.naive_frames, len(jpegs))
    t0 = time.perf_counter()
    naive_lat = []
    for j in jpegs[:n]:
        t1 = time.perf_counter()
        img = decode_jpeg(j)
        faces = det.detect(img, min_face_size=20)
        if faces:
            ident.predict(emb.embed(align_faces(img, faces)))
        naive_lat.append((time.perf_counter() - t1) * 1000)
    naive_s = time.perf_counter() - t0
    naive_fps = n / naive_s
    print(f"naive: {naive_fps:.2f} fps over {n} frames, p95 {np.percentile(naive_lat, 95):.0f} ms", flush=True)

    out = {
        "fps": round(fps, 2),
        "p95_latency_ms": round(float(np.percentile(lat, 95)), 1),
        "p50_latency_ms": round(float(np.percentile(lat, 50)), 1),
        "max_latency_ms": round(float(lat.max()), 1),
        "naive_fps": round(naive_fps, 3),
        "naive_p95_latency_ms": round(float(np.percentile(naive_lat, 95)), 1),
        "speedup": round(fps / naive_fps, 2),
        "correct_rate": round(score["correct_rate"], 4),
        "face_correct_rate": round(score["face_correct_rate"], 4),
        "unknown_rate": None if score["stranger_faces"] == 0 else round(score["unknown_rate"], 4),
        "frames": len(jpegs),
        "frames_with_enrolled": score["frames_with_enrolled"],
        "scans": rec.stats["scans"], "refines": rec.stats["refines"], "embedded": rec.stats["embedded"],
        "rss_growth_mb": round(rss1 - rss0, 1),
        "cpus": os.cpu_count(),
        "loadavg_1m": round(os.getloadavg()[0], 2),  # other jobs on the machine inflate the absolute figures
    }
    print(json.dumps(out))
    from facts import record  # noqa: E402 - bench/facts.json: the one source of the figures the text quotes
    record("live", out)


if __name__ == "__main__":
    main()
