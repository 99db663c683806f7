"""LFW View 2 verification accuracy of facekit's pipeline (10-fold protocol, 6,000 pairs).

    .venv/bin/python bench/lfw.py                 # default pipeline + ablations (alignment, mirroring, TTA)
    .venv/bin/python bench/lfw.py --levers        # also margin / face choice / flip fusion variants
    .venv/bin/python bench/lfw.py --per-fold 60   # quick estimate on a balanced subset

Needs LFW under scikit-learn's data home (``SCIKIT_LEARN_DATA``). Detections and embeddings are
cached per image under ``facekit.cache_dir()/lfw`` (keyed by every pipeline setting), so the
first run embeds the 7,701 images (tens of minutes on 2 CPU cores) and later runs, notebook 02
included, take seconds. Prints each configuration as it finishes; the last line is one JSON object:
``lfw_accuracy``, ``lfw_std`` (fraction, over the 10 folds), ``threshold`` (best single squared-L2
threshold over all pairs), ``fold_thresholds``, ``no_face`` (images where MTCNN found no face; a
centre crop was embedded), ``lfw_accuracy_subtract_mean`` (the default embeddings evaluated as
facenet's ``validate_on_lfw --subtract_mean``), and the same accuracy without alignment, with the mirrored crop added
(``_flip``) and with test-time augmentation (``_tta``: rotated + unrotated crops, each mirrored).
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

from facekit.align import DEFAULT_MARGIN  # noqa: E402
from facekit.datasets import lfw_pairs  # noqa: E402
from facekit.verify import (DEFAULT_THRESHOLD, LFW_FALLBACK_BOX, PUBLISHED_LFW, TTA_VIEWS, lfw_subset,  # noqa: E402
                            lfw_verification)

# name -> pipeline settings (keyword arguments of facekit.verify.embed_lfw); the first is facekit's
# default, i.e. what facekit.extract_faces gives (one aligned crop, no mirroring)
DEFAULT = dict(rotate=True, flip=None, select="center")
ABLATIONS = {
    "default": DEFAULT,
    "no_align": dict(DEFAULT, rotate=False),                    # box + margin only, no eye-line rotation
    "flip": dict(DEFAULT, flip="concat"),                       # + the mirrored crop's embedding
    "tta": dict(DEFAULT, flip="concat", views=TTA_VIEWS),       # rotated and unrotated crops, each mirrored
}
LEVERS = {  # cheapest first: cached crops are shared between configurations
    "flip_mean": dict(DEFAULT, flip="mean"),
    "no_align_flip": dict(DEFAULT, rotate=False, flip="concat"),
    "select_facenet": dict(DEFAULT, select="facenet"),
    "select_confidence": dict(DEFAULT, select="confidence"),
    "margin_0.15": dict(DEFAULT, margin=0.15),
    "margin_0.2": dict(DEFAULT, margin=0.2),
}


def _show(cfg: dict) -> dict:
    return {k: (["rotate" if v.get("rotate", True) else "no rotate" for v in cfg["views"]] if k == "views" else v)
            for k, v in cfg.items()}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--per-fold", type=int, default=None, help="pairs per fold (even); default all 600")
    ap.add_argument("--levers", action="store_true", help="also run margin / selection / fusion variants")
    ap.add_argument("--no-progress", action="store_true")
    args = ap.parse_args()

    pairs = lfw_subset(lfw_pairs(), args.per_fold)
    n_img = len(pairs.unique_paths)
    print(f"LFW View 2: {len(pairs)} pairs ({int(pairs.same.sum())} same), {n_img} images, "
          f"10 folds; default margin {DEFAULT_MARGIN}, DEFAULT_THRESHOLD {DEFAULT_THRESHOLD}", flush=True)
    configs = dict(ABLATIONS, **(LEVERS if args.levers else {}))
    results = {}
    for name, cfg in configs.items():
        t0 = time.perf_counter()
        res, embs = lfw_verification(pairs, progress=not args.no_progress, **cfg)
        dt = time.perf_counter() - t0
        results[name] = (res, embs, cfg)
        print(f"[{name}] {_show(cfg)}\n    {res}\n    no face in {len(embs.no_face)} images; {dt:.0f} s", flush=True)

    res, embs, _ = results["default"]
    centered = embs.evaluate(subtract_mean=True)
    print(f"[default, evaluated with facenet's --subtract_mean (cosine of embeddings centred on the "
          f"training folds' mean)]\n    {centered}", flush=True)
    print(f"no face detected in {len(embs.no_face)} of {n_img} images (policy: the centre box "
          f"{LFW_FALLBACK_BOX} is embedded instead, and counted) "
          + ", ".join(Path(p).name for p in embs.no_face[:20]), flush=True)
    print("published: " + "; ".join(f"{k}: {100 * v:.2f}%" for k, v in PUBLISHED_LFW.items()), flush=True)
    out = {
        "lfw_accuracy": round(res.mean, 5),
        "lfw_std": round(res.std, 5),
        "threshold": round(res.threshold, 4),
        "threshold_accuracy": round(res.threshold_accuracy, 5),
        "fold_thresholds": [round(float(t), 4) for t in res.thresholds],
        "auc": round(res.auc, 6),
        "no_face": len(embs.no_face),
        "n_pairs": res.n_pairs,
        "n_images": n_img,
        "pipeline": _show(DEFAULT) | {"margin": DEFAULT_MARGIN},
        "default_threshold": DEFAULT_THRESHOLD,
        "lfw_accuracy_subtract_mean": round(centered.mean, 5),
        "lfw_std_subtract_mean": round(centered.std, 5),
        "correct_pairs": int(round(res.mean * res.n_pairs)),
    }
    for name, (r, _, _) in results.items():
        if name == "default":
            continue
        out[f"lfw_accuracy_{name}"] = round(r.mean, 5)
        out[f"lfw_std_{name}"] = round(r.std, 5)
        out[f"threshold_{name}"] = round(r.threshold, 4)
    print(json.dumps(out))


if __name__ == "__main__":
    main()
