"""LFW View 2 verification accuracy of facekit's pipeline (10-fold protocol, 6,000 pairs).

    .venv/bin/python bench/lfw.py                 # default pipeline + ablations (alignment, mirroring, TTA)
    .venv/bin/python bench/lfw.py --levers        # also margin / face choice / flip fusion variants
    .venv/bin/python bench/lfw.py --per-fold 60   # quick estimate on a balanced subset
    .venv/bin/python bench/lfw.py --view1         # choose the pipeline on View 1, report it on View 2

Needs LFW under scikit-learn's data home (``SCIKIT_LEARN_DATA``). Detections and embeddings are
cached per image under ``facekit.cache_dir()/lfw`` (keyed by every pipeline setting), so the
first run embeds the 7,701 images (tens of minutes on 2 CPU cores) and later runs, notebook 02
included, take seconds. Prints each configuration as it finishes; the last line is one JSON object:
``lfw_accuracy``, ``lfw_std`` (fraction, over the 10 folds), ``threshold`` (best single squared-L2
threshold over all pairs), ``fold_thresholds``, ``no_face`` (images where MTCNN found no face; a
centre crop was embedded), ``lfw_accuracy_subtract_mean`` (the default embeddings evaluated as
facenet's ``validate_on_lfw --subtract_mean``), and the same accuracy without alignment, with the mirrored crop added
(``_flip``) and with test-time augmentation (``_tta``: rotated + unrotated crops, each mirrored).

``--view1`` follows LFW's protocol for choosing a pipeline: View 1 (pairsDevTrain, 2,200 pairs;
pairsDevTest, 1,000) is the development set, View 2 only reports. Every configuration (the ones
above and a few margins) gets its threshold on DevTrain and its accuracy on DevTest, and is compared
with the default on the same DevTest pairs by McNemar's exact test (a change of one or two pairs in
1,000 is noise). The default stays unless some configuration is better with p < 0.05 (then the best
of those); only the selected configuration is run on View 2. Its JSON line: ``view1`` (name ->
dev_test_accuracy, dev_train_accuracy, threshold, wins/losses against the default, p_vs_default),
``view1_selected``, ``lfw_accuracy``/``lfw_std``/``correct_pairs`` of the selection on View 2.
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

from facekit.detection.align import DEFAULT_MARGIN  # noqa: E402
from facekit.data.lfw import lfw_pairs  # noqa: E402
from facekit.recognition.verify import PUBLISHED_LFW, best_threshold
from facekit.models.registry import thresholds
DEFAULT_THRESHOLD = thresholds("facenet128").verify  # the model's own cut (facekit.models.registry)
from facekit.data.lfw import LFW_FALLBACK_BOX, lfw_subset
from facekit.teach.lfw import TTA_VIEWS, embed_lfw_pairs, lfw_verification

# name -> pipeline settings (keyword arguments of facekit.teach.lfw.embed_lfw); the first is facekit's
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
VIEW1_ONLY = {  # tried on View 1 only: View 2 runs just the configuration View 1 selects
    "margin_0.05": dict(DEFAULT, margin=0.05),
    "margin_0.125": dict(DEFAULT, margin=0.125),
}


def choose_on_view1(progress: bool) -> None:
    """LFW's development protocol: pick the pipeline on View 1, then report it once on View 2."""
    train, test = lfw_pairs(subset="train"), lfw_pairs(subset="test")
    print(f"LFW View 1: DevTrain {len(train)} pairs, DevTest {len(test)} pairs", flush=True)
    from scipy.stats import binomtest

    configs = dict(ABLATIONS, **LEVERS, **VIEW1_ONLY)
    view1, right = {}, {}
    for name, cfg in configs.items():
        tr = embed_lfw_pairs(train, progress=progress, **cfg)
        te = embed_lfw_pairs(test, progress=progress, **cfg)
        t, train_acc = best_threshold(tr.distances, tr.same)
        right[name] = (te.distances < t) == te.same  # per DevTest pair: classified right?
        acc = float(right[name].mean())
        wins = int((right[name] & ~right["default"]).sum())  # DevTest pairs this one gets right, default wrong
        losses = int((~right[name] & right["default"]).sum())
        p = binomtest(wins, wins + losses).pvalue if wins + losses else 1.0  # McNemar, exact
        view1[name] = dict(dev_test_accuracy=round(acc, 4), dev_train_accuracy=round(train_acc, 5),
                           threshold=round(t, 4), wins=wins, losses=losses, p_vs_default=round(p, 4))
        print(f"[{name}] DevTest {100 * acc:.1f}% at threshold {t:.3f} (DevTrain {100 * train_acc:.2f}%); "
              f"vs default +{wins} -{losses} pairs, McNemar p = {p:.2f}", flush=True)
    better = [k for k, v in view1.items() if v["p_vs_default"] < 0.05 and v["wins"] > v["losses"]]
    selected = max(better, key=lambda k: view1[k]["dev_test_accuracy"]) if better else "default"
    cfg = configs[selected]
    res, embs = lfw_verification(progress=progress, **cfg)
    print(f"selected on View 1: {selected} {_show(cfg)}\n  View 2: {res}", flush=True)
    print(json.dumps(dict(view1=view1, view1_selected=selected, lfw_accuracy=round(res.mean, 5),
                          lfw_std=round(res.std, 5), correct_pairs=int(round(res.mean * res.n_pairs)),
                          threshold=round(res.threshold, 4), no_face=len(embs.no_face))))


def _show(cfg: dict) -> dict:
    return {k: (["rotate" if v.get("rotate", True) else "no rotate" for v in cfg["views"]] if k == "views" else v)
            for k, v in cfg.items()}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--per-fold", type=int, default=None, help="pairs per fold (even); default all 600")
    ap.add_argument("--levers", action="store_true", help="also run margin / selection / fusion variants")
    ap.add_argument("--view1", action="store_true", help="choose the configuration on View 1, report it on View 2")
    ap.add_argument("--no-progress", action="store_true")
    args = ap.parse_args()
    if args.view1:
        return choose_on_view1(progress=not args.no_progress)

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
    from facts import record  # noqa: E402 - bench/facts.json: the one source of the figures the text quotes
    record("lfw", out)


if __name__ == "__main__":
    main()
