"""Benchmark of face detection: facekit's ONNX Runtime detector vs its TensorFlow one and mtcnn's default, same run.

    .venv/bin/python bench/detect.py [--rounds 3] [--timing-frames 12] [--lfw 1000]

Frames: every sample-set photo (train + val, 118) letterboxed onto a black 640x480 canvas
(resized to fit, centred), the size of a webcam frame; and the first ``--lfw`` LFW photos
(250x250, LFW's pair list order; skipped when LFW is not available).

- baseline: ``mtcnn.MTCNN().detect_faces(frame)`` with mtcnn 1.0's default settings;
- facekit: ``Detector().detect(frame)`` (defaults: min face 20 px, thresholds 0.6/0.7/0.7, the
  networks in ONNX Runtime, float32, built from the mtcnn wheel's weights: no TensorFlow);
- facekit_tf: ``Detector(backend="tensorflow")`` (same cascade, the networks as ``tf.function``);
- reference: ``Detector(fast=False)`` (mtcnn's eager Keras models), to show what compiling buys.

Recall (each photo's labelled person): on the frames, the labelled face is the largest face
``Detector(fast=False)`` finds on the full-resolution photo, mapped into the frame, and a frame
counts as found when a detected box overlaps it with IoU >= 0.5 (``detect_recall``,
``detect_recall_tf``); on LFW, whose photos are centred on the labelled person, a photo counts as
found when a detected box contains the centre (``lfw_recall``, ``lfw_recall_tf``).
Equality of the ONNX and TensorFlow detectors, over the frames and the LFW photos: their faces
matched one to one (IoU >= 0.5); ``precision_vs_tf``: the share of ONNX faces that match a
TensorFlow face, ``recall_vs_tf``: the share of TensorFlow faces matched; on matched faces the
largest difference of a box coordinate (``max_box_diff_px``), of a landmark
(``max_landmark_diff_px``) and of the confidence (``max_confidence_diff``). Targets: 0.5 px, 0.5
px, 1e-3, and recall/precision within 0.1 point (``*_vs_tf`` >= 0.999).
Speed: interleaved rounds over the first ``--timing-frames`` frames, median frames/s. Prints
each round, then ONE JSON line. Target: speedup >= 2 at recall >= baseline_recall.
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


def compare(a: list, b: list) -> dict:
    """Two detectors' faces per photo (lists of ``Face`` lists), matched one to one (IoU >= 0.5)."""
    out = {"faces": 0, "faces_tf": 0, "matched": 0, "box": 0.0, "landmarks": 0.0, "confidence": 0.0}
    for fa, fb in zip(a, b):
        out["faces"] += len(fa)
        out["faces_tf"] += len(fb)
        free = list(range(len(fb)))
        for f in fa:
            j = max(free, key=lambda j: iou(f.box, fb[j].box), default=None)
            if j is None or iou(f.box, fb[j].box) < 0.5:
                continue
            free.remove(j)
            out["matched"] += 1
            out["box"] = max(out["box"], float(np.abs(f.box - fb[j].box).max()))
            out["landmarks"] = max(out["landmarks"], float(np.abs(f.landmarks - fb[j].landmarks).max()))
            out["confidence"] = max(out["confidence"], abs(float(f.confidence) - float(fb[j].confidence)))
    return out


def lfw_photos(n: int) -> list[np.ndarray]:
    """The first ``n`` LFW photos of the pair list (RGB uint8 250x250), or [] without LFW."""
    from facekit.core.images import load_image

    try:
        from facekit.data.lfw import lfw_pairs

        paths = lfw_pairs().unique_paths[:n]
    except (FileNotFoundError, OSError) as exc:
        print(f"LFW not available ({exc}): LFW figures skipped", flush=True)
        return []
    return [load_image(p) for p in paths]


def centred(img: np.ndarray, faces) -> bool:
    cy, cx = img.shape[0] / 2, img.shape[1] / 2
    return any(f.box[0] <= cx <= f.box[2] and f.box[1] <= cy <= f.box[3] for f in faces)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--timing-frames", type=int, default=12)
    ap.add_argument("--lfw", type=int, default=1000, help="LFW photos for the equality check (0: none)")
    args = ap.parse_args()

    from mtcnn import MTCNN

    from facekit.core.cache import celebrity_dir
    from facekit.core.images import load_image
    from facekit.detection.detector import Detector, largest_face

    root = celebrity_dir()
    paths = sorted(p for p in root.glob("*/*/*") if p.is_file())
    fast, tfd, ref, base = Detector(), Detector(backend="tensorflow"), Detector(fast=False), MTCNN()
    assert fast.backend == "onnxruntime"

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

    on_frames = {k: [d.detect(fr) for fr in frames] for k, d in (("onnx", fast), ("tf", tfd))}
    hits = {k: [found(t, [f.box for f in fs]) for fs, t in zip(v, targets)] for k, v in on_frames.items()}
    hits_base = [found(t, [(d["box"][0], d["box"][1], d["box"][0] + d["box"][2], d["box"][1] + d["box"][3])
                           for d in base.detect_faces(fr)]) for fr, t in zip(frames, targets)]
    print(f"recall: facekit {np.mean(hits['onnx']):.4f}, facekit TensorFlow {np.mean(hits['tf']):.4f}, "
          f"mtcnn default {np.mean(hits_base):.4f}", flush=True)

    lfw = lfw_photos(args.lfw)
    on_lfw = {k: [d.detect(im) for im in lfw] for k, d in (("onnx", fast), ("tf", tfd))}
    eq = compare(on_frames["onnx"] + on_lfw["onnx"], on_frames["tf"] + on_lfw["tf"])
    print(f"ONNX vs TensorFlow on {len(frames)} frames + {len(lfw)} LFW photos: {eq}", flush=True)

    timing = frames[:args.timing_frames]
    variants = {
        "baseline": lambda: [base.detect_faces(f) for f in timing],
        "facekit": lambda: [fast.detect(f) for f in timing],
        "facekit_tf": lambda: [tfd.detect(f) for f in timing],
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
        "fps_tf": round(1 / med["facekit_tf"], 2),
        "baseline_fps": round(1 / med["baseline"], 2),
        "speedup": round(med["baseline"] / med["facekit"], 2),
        "speedup_vs_tf": round(med["facekit_tf"] / med["facekit"], 2),
        "recall": round(float(np.mean(hits["onnx"])), 4),
        "detect_recall": round(float(np.mean(hits["onnx"])), 4),
        "detect_recall_tf": round(float(np.mean(hits["tf"])), 4),
        "baseline_recall": round(float(np.mean(hits_base)), 4),
        "lfw_photos": len(lfw),
        "lfw_recall": round(float(np.mean([centred(im, f) for im, f in zip(lfw, on_lfw["onnx"])])), 4) if lfw else None,
        "lfw_recall_tf": round(float(np.mean([centred(im, f) for im, f in zip(lfw, on_lfw["tf"])])), 4) if lfw else None,
        "precision_vs_tf": round(eq["matched"] / max(eq["faces"], 1), 5),
        "recall_vs_tf": round(eq["matched"] / max(eq["faces_tf"], 1), 5),
        "max_box_diff_px": round(eq["box"], 5),
        "max_landmark_diff_px": round(eq["landmarks"], 5),
        "max_confidence_diff": float(f"{eq['confidence']:.3g}"),
        "faces_compared": eq["matched"],
        "reference_fps": round(1 / med["reference"], 2),
        "facekit_cpu_ms": round(statistics.median(cpu["facekit"]) * 1e3, 1),
        "facekit_tf_cpu_ms": round(statistics.median(cpu["facekit_tf"]) * 1e3, 1),
        "baseline_cpu_ms": round(statistics.median(cpu["baseline"]) * 1e3, 1),
        "reference_cpu_ms": round(statistics.median(cpu["reference"]) * 1e3, 1),
        "frames": len(frames),
        "load_avg_1min": round(os.getloadavg()[0], 2),
    }
    print(json.dumps(res))
    from facts import record  # noqa: E402 - bench/facts.json: the one source of the figures the text quotes
    record("detect", res)


if __name__ == "__main__":
    main()
