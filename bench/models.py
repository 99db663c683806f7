"""Two models, one decision: facenet128, dlib128 and their fusion on LFW and under harsh light (issue #23).

    .venv/bin/python bench/models.py [--view2-per-fold 300] [--robust-per-fold 30] [--skip-speed]

Same run, same pairs, same MTCNN detections (``facekit.teach.lfw.detect_lfw``, cached) for every model:

1. Faithfulness: dlib's own ``compute_face_descriptor`` (dlib-bin) against facekit's ONNX graph on the
   same chips of the 25 sample validation photos: ``max_abs_diff_dlib`` (raw descriptors).
2. dlib's alignment, chosen on LFW View 1: the chip from dlib's 5-point shape predictor run on the
   MTCNN box (``dlib-sp5``) or from MTCNN's five landmarks mapped onto dlib's template
   (``dlib-mtcnn5``). Each: threshold = best cut on DevTrain (2,200 pairs), accuracy on DevTest
   (1,000 pairs). The better one is ``dlib128``'s crop.
3. Verify thresholds, calibrated as facenet128's: the best single cut over the pairs (here View 1's
   3,200, so that View 2 stays held out). The fused model's weights are ``1/sqrt(verify threshold)``
   of each part; its own cut is chosen the same way.
4. LFW View 2: the 10-fold protocol (``lfw_accuracy_<model>``: each fold's cut chosen on the other
   nine) and each model at its View 1 cut (``lfw_accuracy_at_view1_<model>``); McNemar tests.
5. Robustness (``--robust-per-fold`` balanced View 2 pairs per fold): the second image of each pair
   transformed (``facekit.core.photometric``: the seven mild transforms of bench/robust.py plus the
   harsh ``half_shadow`` and ``gray_lowres``), detected again, embedded by each model; 10-fold accuracy
   per transform; ``robust_mean_accuracy_<model>`` is the mean over all nine, ``harsh_mean_accuracy_<model>``
   over the two harsh ones.
6. Speed: faces/s of each model's embedder on 2 threads, batch 32, in the same run.

Ends with one JSON line (the issue's keys: lfw_accuracy_facenet128, lfw_accuracy_dlib128,
lfw_accuracy_fused, robust_mean_accuracy_fused, robust_mean_accuracy_facenet128, faces_per_s_*,
max_abs_diff_dlib, plus the thresholds and the alignment choice). The thresholds it prints are the
ones registered in facekit.models.registry.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import sys
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import numpy as np  # noqa: E402

FUSED = "facenet128+dlib128"


def best_cut(d: np.ndarray, same: np.ndarray) -> tuple[float, float]:
    from facekit.recognition.verify import best_threshold

    return best_threshold(d, same)


def sq(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return ((a - b) ** 2).sum(1)


def fuse(parts: list[np.ndarray], cuts: list[float]) -> np.ndarray:
    """The fused embedding from its parts (what embedding/fused.py computes), row-normalised."""
    x = np.hstack([p / np.sqrt(c) for p, c in zip(parts, cuts)])
    return (x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float32)


def embed_pairs(pairs, model: str, progress: bool):
    from facekit.embedding.embedder import Embedder
    from facekit.teach.lfw import embed_lfw_pairs

    return embed_lfw_pairs(pairs, embedder=Embedder(model), progress=progress)


def max_abs_diff_dlib() -> tuple[float, int]:
    """dlib-bin's descriptor (of the chip and its mirror, averaged, as dlib128) vs facekit's ONNX graph
    on the sample validation photos' sp5 chips."""
    import dlib

    from facekit.core.cache import celebrity_dir, dlib_model_file
    from facekit.core.images import load_image
    from facekit.detection.align import dlib_chips
    from facekit.detection.detector import get_detector, largest_face
    from facekit.embedding import dlib as backend
    from facekit.models.registry import model_spec

    net = dlib.face_recognition_model_v1(str(dlib_model_file(backend.DAT)))
    fn = backend.make(model_spec("dlib128"))
    det = get_detector()
    worst, n = 0.0, 0
    for p in sorted((celebrity_dir() / "val").glob("*/*.jpg")):
        img = load_image(p)
        face = largest_face(det.detect(img))
        if face is None:
            continue
        chip = dlib_chips(img, [face], "dlib-sp5")
        ref = np.asarray(net.compute_face_descriptor(np.ascontiguousarray(chip[0])), np.float32)
        if backend.MIRROR:  # dlib128 = the mean of the chip's and its mirror's descriptors
            ref = (ref + np.asarray(net.compute_face_descriptor(np.ascontiguousarray(chip[0, :, ::-1])), np.float32)) / 2
        worst = max(worst, float(np.abs(fn(chip)[0] - ref).max()))
        n += 1
    return worst, n


def faces_per_s(model: str, rounds: int = 3, n: int = 64) -> float:
    from facekit.embedding.embedder import Embedder
    from facekit.models.registry import model_spec

    spec = model_spec(model)
    e = Embedder(model, threads=2)
    x = np.random.default_rng(0).integers(0, 255, (n, spec.input_size, spec.input_size, spec.channels), dtype=np.uint8)
    e.embed(x[:32])
    best = 0.0
    for _ in range(rounds):
        t = time.perf_counter()
        e.embed(x)
        best = max(best, n / (time.perf_counter() - t))
    return best


def robust(per_fold: int, dlib_name: str, parts: list[float], progress: bool) -> dict:
    """10-fold accuracy per transform of the second image, per model (facenet128, dlib128, fused)."""
    from tqdm.auto import tqdm

    from facekit.core.images import load_image
    from facekit.core.photometric import HARSH_TRANSFORMS, TRANSFORMS, photometric_transform
    from facekit.data.lfw import LFW_FALLBACK_BOX, lfw_pairs, lfw_subset, pick_subject
    from facekit.detection.align import align_face, align_for
    from facekit.detection.detector import get_detector
    from facekit.embedding.embedder import Embedder
    from facekit.recognition.verify import evaluate_10fold
    from facekit.teach.lfw import embed_lfw, rel_key
    from facekit.teach.lfw.pipeline import fallback_face

    models = {"facenet128": "facenet128", "dlib128": dlib_name}  # result key -> registry name
    pairs = lfw_subset(lfw_pairs(), per_fold, 0)
    first = {k: embed_lfw(pairs.paths[:, 0].tolist(), embedder=Embedder(m), progress=progress)[0] for k, m in models.items()}
    det = get_detector()
    out = {}
    for name in TRANSFORMS + HARSH_TRANSFORMS:
        crops = {k: [] for k in models}
        for p in tqdm(pairs.paths[:, 1], desc=name, disable=not progress):
            img = photometric_transform(load_image(p), name, key=rel_key(p), box=LFW_FALLBACK_BOX)
            face = pick_subject(det.detect(img), img.shape[:2], "center")
            if face is None:  # as bench/lfw.py and embed_lfw: the centre box (counted as a miss)
                face = fallback_face(img.shape[:2])
            fc = align_face(img, face)
            for k, m in models.items():
                kind = Embedder(m).spec.crop
                crops[k].append(fc if kind == "facenet" else align_for(kind, img, [face], facenet_crops=fc[None])[0])
        second = {k: Embedder(m).embed(np.stack(crops[k])) for k, m in models.items()}
        res = {k: evaluate_10fold(sq(first[k], second[k]), pairs.same, pairs.fold).mean for k in models}
        fa, fb = [first["facenet128"], first["dlib128"]], [second["facenet128"], second["dlib128"]]
        res["fused"] = evaluate_10fold(sq(fuse(fa, parts), fuse(fb, parts)), pairs.same, pairs.fold).mean
        out[name] = res
        print(f"  {name:12s} " + "  ".join(f"{k} {v:.4f}" for k, v in res.items()), flush=True)
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--view2-per-fold", type=int, default=None, help="balanced View 2 pairs per fold (default all 600)")
    ap.add_argument("--robust-per-fold", type=int, default=30)
    ap.add_argument("--skip-robust", action="store_true")
    ap.add_argument("--skip-speed", action="store_true")
    ap.add_argument("--quiet", action="store_true")
    args = ap.parse_args()
    prog = not args.quiet

    from facekit.data.lfw import lfw_pairs, lfw_subset
    from facekit.models.registry import MODELS, model_spec, register_model
    from facekit.models.registry import thresholds as fk_thresholds
    from facekit.core.stats import mcnemar
    from facekit.recognition.verify import accuracy_at, evaluate_10fold

    fig: dict = {}
    cpu = next((ln.split(":", 1)[1].strip() for ln in open("/proc/cpuinfo") if ln.startswith("model name")), "?")
    fig["cpu"] = cpu
    print(f"machine: {cpu}, {os.cpu_count()} cpus", flush=True)

    # 2. alignment of dlib's chip, on View 1
    train, test = lfw_pairs(subset="train"), lfw_pairs(subset="test")
    view1 = {}
    base = model_spec("dlib128")
    for crop in ("dlib-sp5", "dlib-mtcnn5"):
        name = f"dlib128@{crop}"
        register_model(dataclasses.replace(base, name=name, crop=crop, thresholds=None), replace=True)
        tr, te = embed_pairs(train, name, prog), embed_pairs(test, name, prog)
        cut, acc_tr = best_cut(sq(tr.a, tr.b), tr.same)
        acc = accuracy_at(sq(te.a, te.b), te.same, cut)
        view1[crop] = {"cut_devtrain": round(cut, 4), "acc_devtest": round(acc, 4)}
        print(f"View 1, dlib128 with {crop}: cut {cut:.3f} (DevTrain {acc_tr:.4f}), DevTest {acc:.4f}", flush=True)
    fig["view1_alignment"] = view1
    crop = max(view1, key=lambda c: (view1[c]["acc_devtest"], c == "dlib-sp5"))
    fig["dlib128_crop"] = crop
    print(f"chosen: {crop} (registry: {base.crop})", flush=True)

    # 3. verify cuts on all of View 1 (3,200 pairs)
    cuts = {}
    v1 = {}
    for m in ("facenet128", "dlib128"):
        name = m if m == "facenet128" else f"dlib128@{crop}"
        tr, te = embed_pairs(train, name, prog), embed_pairs(test, name, prog)
        v1[m] = (np.vstack([tr.a, te.a]), np.vstack([tr.b, te.b]), np.r_[tr.same, te.same])
        cuts[m], acc = best_cut(sq(v1[m][0], v1[m][1]), v1[m][2])
        print(f"View 1 cut {m}: {cuts[m]:.4f} (accuracy there {acc:.4f})", flush=True)
    # the fused weights are 1/sqrt(each part's registered verify cut): facenet128's registry cut (1.22,
    # chosen on View 2 in an earlier issue) and dlib128's View 1 cut, as embedding/fused.py computes them
    parts = [fk_thresholds("facenet128").verify, cuts["dlib128"]]
    fa, fb = fuse([v1["facenet128"][0], v1["dlib128"][0]], parts), fuse([v1["facenet128"][1], v1["dlib128"][1]], parts)
    cuts["fused"], acc = best_cut(sq(fa, fb), v1["dlib128"][2])
    print(f"View 1 cut fused: {cuts['fused']:.4f} (accuracy there {acc:.4f})", flush=True)
    fig["view1_cuts"] = {k: round(v, 4) for k, v in cuts.items()}
    fig["registry_verify"] = {m: (MODELS[m].thresholds.verify if MODELS[m].thresholds else None)
                              for m in ("facenet128", "dlib128", FUSED)}

    # 4. View 2
    v2 = lfw_subset(lfw_pairs(), args.view2_per_fold, 0)
    e = {m: embed_pairs(v2, m if m == "facenet128" else f"dlib128@{crop}", prog) for m in ("facenet128", "dlib128")}
    d = {m: sq(e[m].a, e[m].b) for m in e}
    d["fused"] = sq(fuse([e["facenet128"].a, e["dlib128"].a], parts), fuse([e["facenet128"].b, e["dlib128"].b], parts))
    correct = {}
    for m in ("facenet128", "dlib128", "fused"):
        r = evaluate_10fold(d[m], v2.same, v2.fold)
        fig[f"lfw_accuracy_{m}"] = round(r.mean, 4)
        fig[f"lfw_std_{m}"] = round(r.std, 4)
        fig[f"lfw_accuracy_at_view1_{m}"] = round(accuracy_at(d[m], v2.same, cuts[m]), 4)
        correct[m] = (d[m] < cuts[m]) == v2.same
        print(f"View 2 ({len(v2.same)} pairs) {m}: 10-fold {r.mean:.4f} ± {r.std:.4f}; at the View 1 cut "
              f"{fig[f'lfw_accuracy_at_view1_{m}']:.4f}", flush=True)
    for a, b in (("fused", "facenet128"), ("fused", "dlib128"), ("facenet128", "dlib128")):
        t = mcnemar(correct[a], correct[b])
        fig[f"mcnemar_{a}_vs_{b}"] = {"only_a": t.only_a, "only_b": t.only_b, "p": round(t.p, 5)}
        print(f"McNemar {a} vs {b}: {t.only_a} vs {t.only_b} pairs right only by one, p = {t.p:.4g}", flush=True)
    fig["view2_pairs"] = int(len(v2.same))

    # 5. robustness
    if not args.skip_robust:
        from facekit.core.photometric import HARSH_TRANSFORMS

        res = robust(args.robust_per_fold, f"dlib128@{crop}", parts, prog)
        for m in ("facenet128", "dlib128", "fused"):
            fig[f"robust_mean_accuracy_{m}"] = round(float(np.mean([r[m] for r in res.values()])), 4)
            fig[f"harsh_mean_accuracy_{m}"] = round(float(np.mean([res[t][m] for t in HARSH_TRANSFORMS])), 4)
        fig["robust"] = {t: {k: round(v, 4) for k, v in r.items()} for t, r in res.items()}

    # 1. and 6.
    fig["max_abs_diff_dlib"], fig["dlib_chips_checked"] = max_abs_diff_dlib()
    if not args.skip_speed:
        for m, key in (("facenet128", "facenet128"), ("dlib128", "dlib128"), (FUSED, "fused")):
            fig[f"faces_per_s_{key}"] = round(faces_per_s(m), 1)
        fig["dlib_over_facenet_speed"] = round(fig["faces_per_s_dlib128"] / fig["faces_per_s_facenet128"], 2)
    print(json.dumps(fig))
    from facts import record  # noqa: E402 - bench/facts.json: the one source of the figures the text quotes

    record("models", fig)


if __name__ == "__main__":
    main()
