"""Benchmark of face detection on 640x480 frames: facekit's Detector vs mtcnn's default, same run.

    .venv/bin/python bench/detect.py [--rounds 3] [--timing-frames 12]

Frames: every sample-set photo (train + val, 118) letterboxed onto a black 640x480 canvas
(resized to fit, centred), the size of a webcam frame.

- baseline: ``mtcnn.MTCNN().detect_faces(frame)`` with mtcnn 1.0's default settings;
- facekit: ``facekit.detection.detector.Detector().detect(frame)`` (defaults: min face 20 px, thresholds
  0.6/0.7/0.7, networks compiled with ``tf.function``);
- reference: ``Detector(fast=False)`` (same pyramid and thresholds through mtcnn's own eager
  ``detect_faces``), to show what compiling buys on its own.

Recall (each photo's labelled person is its largest face): the labelled face is the largest face
``Detector(fast=False)`` finds on the full-resolution photo, mapped into the frame; a frame counts
as found when a detected box overlaps it with IoU >= 0.5. Speed: interleaved rounds over the
first ``--timing-frames`` frames, median frames/s. Prints each round, then ONE JSON line: fps,
baseline_fps, speedup, recall, baseline_recall, reference_fps, *_cpu_ms (process CPU time per
frame, less sensitive to other processes than wall time), frames.
Target: speedup >= 2 at recall >= baseline_recall.
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

FRAME_W, FRAME_H = 640, 480


def letterbox(img: np.ndarray, w: int = FRAME_W, h: int = FRAME_H) -> tuple[np.ndarray, float, tuple[int, int]]:
    """``img`` resized to fit a black ``h x w`` canvas, centred: (frame, scale, (x0, y0))."""
    import cv2

    s = min(w / img.shape[1], h / img.shape[0])
    r = cv2.resize(img, (max(1, round(img.shape[1] * s)), max(1, round(img.shape[0] * s))),
                   interpolation=cv2.INTER_AREA)
    canvas = np.zeros((h, w, 3), np.uint8)
    y0, x0 = (h - r.shape[0]) // 2, (w - r.shape[1]) // 2
    canvas[y0:y0 + r.shape[0], x0:x0 + r.shape[1]] = r
    return canvas, s, (x0, y0)


def iou(a: np.ndarray, b: np.ndarray) -> float:
    ix = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    iy = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = ix * iy
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return inter / union if union > 0 else 0.0


def found(target: np.ndarray, boxes) -> bool:
    return any(iou(target, np.asarray(b, np.float64)) >= 0.5 for b in boxes)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--timing-frames", type=int, default=12)
    args = ap.parse_args()

    from mtcnn import MTCNN

    from facekit.detection.detector import Detector
    from facekit.core.images import load_image
    from facekit.detection.detector import largest_face
    from facekit.core.cache import celebrity_dir

    root = celebrity_dir()
    paths = sorted(p for p in root.glob("*/*/*") if p.is_file())
    fast, ref, base = Detector(), Detector(fast=False), MTCNN()

    frames, targets = [], []
    for p in paths:
        img = load_image(p)
        faces = ref.detect(img)
        if not faces:
            print(f"skip {p.relative_to(root)}: no face at full resolution", flush=True)
            continue
        frame, s, (x0, y0) = letterbox(img)
        frames.append(frame)
        targets.append(largest_face(faces).box.astype(np.float64) * s + np.array([x0, y0, x0, y0]))
    print(f"{len(frames)} frames of {FRAME_W}x{FRAME_H} from {len(paths)} sample photos", flush=True)

    hits_fast = [found(t, [f.box for f in fast.detect(fr)]) for fr, t in zip(frames, targets)]
    hits_base = [found(t, [(d["box"][0], d["box"][1], d["box"][0] + d["box"][2], d["box"][1] + d["box"][3])
                           for d in base.detect_faces(fr)]) for fr, t in zip(frames, targets)]
    print(f"recall: facekit {np.mean(hits_fast):.3f}, mtcnn default {np.mean(hits_base):.3f}", flush=True)

    timing = frames[:args.timing_frames]
    variants = {
        "baseline": lambda: [base.detect_faces(f) for f in timing],
        "facekit": lambda: [fast.detect(f) for f in timing],
        "reference": lambda: [ref.detect(f) for f in timing],
    }
    wall = {k: [] for k in variants}
    cpu = {k: [] for k in variants}
    for r in range(args.rounds):
        line = []
        for name, fn in variants.items():
            c, t = time.process_time(), time.perf_counter()
            fn()
            wall[name].append((time.perf_counter() - t) / len(timing))
            cpu[name].append((time.process_time() - c) / len(timing))
            line.append(f"{name} {1 / wall[name][-1]:.2f} fps ({cpu[name][-1] * 1e3:.0f} cpu ms/frame)")
        print(f"round {r + 1}: " + ", ".join(line), flush=True)

    med = {k: statistics.median(v) for k, v in wall.items()}
    res = {
        "fps": round(1 / med["facekit"], 2),
        "baseline_fps": round(1 / med["baseline"], 2),
        "speedup": round(med["baseline"] / med["facekit"], 2),
        "recall": round(float(np.mean(hits_fast)), 4),
        "baseline_recall": round(float(np.mean(hits_base)), 4),
        "reference_fps": round(1 / med["reference"], 2),
        "facekit_cpu_ms": round(statistics.median(cpu["facekit"]) * 1e3, 1),
        "baseline_cpu_ms": round(statistics.median(cpu["baseline"]) * 1e3, 1),
        "reference_cpu_ms": round(statistics.median(cpu["reference"]) * 1e3, 1),
        "frames": len(frames),
        "load_avg_1min": round(os.getloadavg()[0], 2),
    }
    print(json.dumps(res))


if __name__ == "__main__":
    main()
