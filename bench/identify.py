"""Identification, open-set rejection and clustering on LFW people (issue 5; notebooks 04-05).

Run: ``.venv/bin/python bench/identify.py [--min-faces 20] [--repeats 5]``
(``SCIKIT_LEARN_DATA`` pointing at LFW; embeddings are cached by facekit.teach.lfw.embed_lfw, so
only the first run embeds the 3,023 images).

Measures, on LFW people with >= ``--min-faces`` photos (62 people, 3,023 photos at 20):

- closed set: linear SVM on facekit embeddings (:class:`facekit.recognition.identify.FaceIdentifier`) vs
  scikit-learn's "eigenfaces" (PCA on pixels) + the same linear SVM, and + an RBF SVM tuned by
  grid search, on the same stratified 75/25 split; plus the 5-fold CV accuracy of the SVM.
- open set: half the people enrolled, the other half strangers; strangers split into
  calibration and test identities, enrolled people's photos into gallery/calibration/test.
  The threshold is chosen on calibration data only; AUC, known accuracy and stranger accept
  rate are reported on test people never used to pick it. Repeated over ``--repeats`` random
  splits (mean and std); also at facekit's fixed ``DEFAULT_THRESHOLD``. Rejection rules compared.
- clustering: average-linkage cut chosen on half the people (best ARI), reported on the other
  half; ARI/NMI on all people at facekit's ``DEFAULT_CLUSTER_THRESHOLD``; DBSCAN and HDBSCAN.

Last line: one JSON object of figures.
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


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--min-faces", type=int, default=20)
    ap.add_argument("--repeats", type=int, default=5, help="random open-set splits")
    ap.add_argument("--max-people", type=int, default=None, help="first N people only (quick runs)")
    ap.add_argument("--verify-cut", type=float, default=None, help="the verify cut of a model being calibrated")
    ap.add_argument("--model", default="facenet128", help="embedding model (registry name); a model without "
                    "calibrated thresholds is calibrated here (its cut grids scale with its verify threshold)")
    args = ap.parse_args()

    from sklearn.model_selection import GridSearchCV, train_test_split

    from facekit.recognition.cluster import cluster_faces, clustering_scores, sweep_cluster_threshold
    from facekit.embedding.embedder import Embedder
    from facekit.models.registry import model_spec
    emb = Embedder(args.model)
    th_ = model_spec(args.model).thresholds  # the model's own cuts (None: being calibrated by this run)
    DEFAULT_CLUSTER_THRESHOLD = th_.cluster if th_ else None
    from facekit.recognition.identify import REJECTION_RULES, FaceIdentifier, choose_threshold, evaluate_open_set, open_set_scores, open_set_split, rejection_roc
    DEFAULT_THRESHOLD = th_.unknown if th_ else float("inf")
    from facekit.teach.baselines import cross_val_names, eigenfaces_classifier
    from facekit.teach.lfw import lfw_people_faces

    fig: dict = {}
    t0 = time.perf_counter()
    lfw = lfw_people_faces(args.min_faces, max_people=args.max_people, embedder=emb)
    fig["model"] = emb.fingerprint
    X, y = lfw.embeddings, lfw.labels
    print(f"LFW people >= {args.min_faces} photos: {len(lfw)} photos of {len(lfw.names)} people "
          f"({len(lfw.no_face)} without a detected face, standard box used); {time.perf_counter() - t0:.0f} s")
    fig.update(n_images=len(lfw), n_people=len(lfw.names), no_face=len(lfw.no_face))

    # --- closed set: the same split for FaceNet and eigenfaces ------------------------------
    idx = np.arange(len(y))
    tr, te = train_test_split(idx, test_size=0.25, stratify=y, random_state=42)
    ident = FaceIdentifier(threshold=float("inf"), model=args.model).fit(X[tr], y[tr])
    acc = float(np.mean(ident.predict(X[te]) == y[te]))
    pix = lfw.pixels.reshape(len(lfw), -1).astype(np.float32) / 255.0
    t = time.perf_counter()
    eig = eigenfaces_classifier(150, "linear").fit(pix[tr], y[tr])
    eig_acc = float(np.mean(eig.predict(pix[te]) == y[te]))
    grid = GridSearchCV(eigenfaces_classifier(150, "rbf"), {"svc__gamma": [5e-4, 1e-3, 5e-3]}, cv=3, n_jobs=1)
    grid.fit(pix[tr], y[tr])
    eig_rbf = float(np.mean(grid.predict(pix[te]) == y[te]))
    cv_names, k = cross_val_names(X, y, folds=5)
    cv_acc = float(np.mean(cv_names == y))
    print(f"closed set, {len(te)} test photos: FaceNet + linear SVM {acc:.4f}; eigenfaces + linear SVM "
          f"{eig_acc:.4f}; eigenfaces + RBF SVM (grid {grid.best_params_}) {eig_rbf:.4f} "
          f"[{time.perf_counter() - t:.0f} s]; FaceNet SVM {k}-fold CV {cv_acc:.4f}")
    fig.update(closed_set_accuracy=acc, closed_set_cv_accuracy=cv_acc, eigenfaces_accuracy=eig_acc,
               eigenfaces_rbf_accuracy=eig_rbf, gain_over_eigenfaces_points=100 * (acc - eig_acc))

    # --- open set ---------------------------------------------------------------------------
    runs, at_default, aucs = [], [], {r: [] for r in REJECTION_RULES}
    for seed in range(args.repeats):
        sp = open_set_split(y, n_known=0.5, calib_frac=0.5, test_size=0.25, random_state=seed)
        g = FaceIdentifier(threshold=DEFAULT_THRESHOLD, model=args.model).fit(X[sp["gallery"]], y[sp["gallery"]])
        for rule in REJECTION_RULES:
            names, ks = open_set_scores(g, X[sp["known_test"]], rule)
            _, ss = open_set_scores(g, X[sp["stranger_test"]], rule)
            aucs[rule].append(rejection_roc(ks, ss)["auc"])
        names_c, ks_c = open_set_scores(g, X[sp["known_calib"]])
        _, ss_c = open_set_scores(g, X[sp["stranger_calib"]])
        th = choose_threshold(ks_c, names_c == y[sp["known_calib"]], ss_c)
        names_t, ks_t = open_set_scores(g, X[sp["known_test"]])
        _, ss_t = open_set_scores(g, X[sp["stranger_test"]])
        ok = names_t == y[sp["known_test"]]
        r = evaluate_open_set(ks_t, ok, ss_t, th)
        d = evaluate_open_set(ks_t, ok, ss_t, DEFAULT_THRESHOLD)
        runs.append(r)
        at_default.append(d)
        print(f"  split {seed}: {len(set(y[sp['gallery']]))} known, {len(set(y[sp['stranger_test']]))} test "
              f"strangers; threshold {th:.3f} -> known acc {r.known_accuracy:.4f}, strangers accepted "
              f"{r.stranger_accept_rate:.4f}, AUC {r.auc:.4f}; at default {DEFAULT_THRESHOLD}: "
              f"{d.known_accuracy:.4f} / {d.stranger_accept_rate:.4f}")

    def ms(vals):
        return float(np.mean(vals)), float(np.std(vals))

    for key in ("threshold", "known_accuracy", "stranger_accept_rate", "auc", "known_reject_rate"):
        m, s = ms([getattr(r, key) for r in runs])
        fig[f"open_set_{key}" if key in ("threshold", "auc") else key] = m
        fig[f"{key}_std"] = s
        print(f"open set {key}: {m:.4f} +- {s:.4f}")
    fig["open_set_auc"] = fig.pop("open_set_auc")
    fig["default_threshold"] = DEFAULT_THRESHOLD
    fig["known_accuracy_at_default"] = ms([r.known_accuracy for r in at_default])[0]
    fig["stranger_accept_rate_at_default"] = ms([r.stranger_accept_rate for r in at_default])[0]
    for rule, v in aucs.items():
        fig[f"auc_rule_{rule}"] = ms(v)[0]
        print(f"rejection rule {rule:12s}: AUC {ms(v)[0]:.4f} +- {ms(v)[1]:.4f}")

    # --- the threshold depends on the gallery's size: personal galleries vs a large one ------
    ids = np.array(lfw.names)
    for n_known, per in ((3, 5), (5, 5), (10, 5), (10, 10), (len(ids) // 2, None)):
        if n_known >= len(ids) - 2:
            continue
        chosen, res = [], []
        for seed in range(10):
            rng = np.random.default_rng(seed)
            perm = rng.permutation(ids)
            known, strangers = perm[:n_known], perm[n_known:]
            s_cal, s_test = strangers[: len(strangers) // 2], strangers[len(strangers) // 2:]
            gal, cal, test = [], [], []
            for k_ in known:
                i_ = rng.permutation(np.flatnonzero(y == k_))
                n_ = len(i_) // 2 if per is None else per
                rest = i_[n_:]
                gal += list(i_[:n_]); cal += list(rest[: len(rest) // 2]); test += list(rest[len(rest) // 2:])
            g = FaceIdentifier(threshold=DEFAULT_THRESHOLD, model=args.model).fit(X[gal], y[gal])
            nc, kc_ = open_set_scores(g, X[cal])
            th = choose_threshold(kc_, nc == y[cal], open_set_scores(g, X[np.isin(y, s_cal)])[1])
            nt, kt_ = open_set_scores(g, X[test])
            st_ = open_set_scores(g, X[np.isin(y, s_test)])[1]
            chosen.append(th)
            res.append(evaluate_open_set(kt_, nt == y[test], st_, DEFAULT_THRESHOLD))
        tag = f"g{n_known}x{per or 'half'}"
        fig[f"threshold_{tag}"] = float(np.mean(chosen))
        fig[f"known_accuracy_default_{tag}"] = float(np.mean([r.known_accuracy for r in res]))
        fig[f"stranger_accept_default_{tag}"] = float(np.mean([r.stranger_accept_rate for r in res]))
        print(f"gallery {n_known} people x {per or 'half their'} photos: chosen threshold {np.mean(chosen):.3f} +- "
              f"{np.std(chosen):.3f}; at default {DEFAULT_THRESHOLD}: enrolled named correctly "
              f"{fig[f'known_accuracy_default_{tag}']:.4f}, strangers accepted {fig[f'stranger_accept_default_{tag}']:.4f}")

    # --- clustering -----------------------------------------------------------------------
    people = np.array(lfw.names)
    rng = np.random.default_rng(0)
    rng.shuffle(people)
    a = np.isin(y, people[: len(people) // 2])
    scale = th_.verify if th_ else args.verify_cut
    if scale is None:
        raise SystemExit(f"{args.model} has no calibrated thresholds: pass --verify-cut (bench/models.py's View 1 cut)")
    grid_t = np.round(np.arange(0.5, 1.61, 0.05) * scale / 1.22, 4)  # facenet128's grid, scaled to the model
    sweep = sweep_cluster_threshold(X[a], y[a], grid_t)
    best = max(sweep, key=lambda r: r["ari"])
    held = clustering_scores(y[~a], cluster_faces(X[~a], threshold=best["threshold"]))
    allp = clustering_scores(y, cluster_faces(X, threshold=DEFAULT_CLUSTER_THRESHOLD or best["threshold"]))
    allbest = clustering_scores(y, cluster_faces(X, threshold=best["threshold"]))
    print("agglomerative sweep (half A): " + ", ".join(f"{r['threshold']:.2f}:{r['ari']:.3f}" for r in sweep))
    print(f"agglomerative: best cut {best['threshold']:.2f} on half A (ARI {best['ari']:.4f}); held-out half "
          f"ARI {held['ari']:.4f} NMI {held['nmi']:.4f}; all people at default {DEFAULT_CLUSTER_THRESHOLD}: "
          f"ARI {allp['ari']:.4f} NMI {allp['nmi']:.4f}, {allp['n_clusters']} clusters for {allp['n_true']} "
          f"people, {allp['singleton_fraction']:.3f} singletons; all people at the LFW-best cut: ARI {allbest['ari']:.4f}")
    sweep_db = sweep_cluster_threshold(X[a], y[a], np.round(np.arange(0.3, 1.01, 0.05) * scale / 1.22, 4), method="dbscan")
    best_db = max(sweep_db, key=lambda r: r["ari"])
    held_db = clustering_scores(y[~a], cluster_faces(X[~a], "dbscan", best_db["threshold"]))
    hd = clustering_scores(y, cluster_faces(X, "hdbscan", min_cluster_size=3))
    print(f"DBSCAN: best eps {best_db['threshold']:.2f} (half A ARI {best_db['ari']:.4f}), held-out ARI "
          f"{held_db['ari']:.4f}; HDBSCAN (min_cluster_size 3) all people ARI {hd['ari']:.4f} NMI {hd['nmi']:.4f}")
    fig.update(ari=allp["ari"], nmi=allp["nmi"], ari_heldout=held["ari"], best_cut=best["threshold"],
               cluster_threshold=DEFAULT_CLUSTER_THRESHOLD, n_clusters=allp["n_clusters"],
               dbscan_ari_heldout=held_db["ari"], dbscan_best_eps=best_db["threshold"], hdbscan_ari=hd["ari"])
    # the same methods on the varied "5 Celebrity Faces" sample (118 photos, 5 people): an album-like set
    from facekit.data.folders import load_celebrities

    cel = [load_celebrities(s_, progress=False, verbose=False, embedder=emb) for s_ in ("train", "val")]
    xc, yc = np.vstack([c.embeddings for c in cel]), np.concatenate([c.labels for c in cel])
    cut = {"agglomerative": DEFAULT_CLUSTER_THRESHOLD or best["threshold"],
           "dbscan": (th_.dbscan if th_ else None) or best_db["threshold"], "hdbscan": None}
    sc = {m: clustering_scores(yc, cluster_faces(xc, m, cut[m], **({"min_cluster_size": 3} if m == "hdbscan" else {})))["ari"]
          for m in ("agglomerative", "dbscan", "hdbscan")}
    # the sample set's own best cut (facenet128's registered cut is the mean of LFW's and this one)
    sweep_s = sweep_cluster_threshold(xc, yc, grid_t)
    fig["sample_best_cut"] = max(sweep_s, key=lambda r: r["ari"])["threshold"]
    fig["cluster_cut_mean_of_bests"] = round((best["threshold"] + fig["sample_best_cut"]) / 2, 4)
    print("sample set (118 photos, 5 people) ARI at defaults: " + ", ".join(f"{m} {v:.4f}" for m, v in sc.items()))
    fig.update({f"sample_ari_{m}": v for m, v in sc.items()})
    fig["ari_lfw_best_cut"] = allbest["ari"]
    fig["seconds"] = time.perf_counter() - t0
    print(json.dumps({k: (round(v, 5) if isinstance(v, float) else v) for k, v in fig.items()}))
    from facts import record  # noqa: E402 - bench/facts.json: the one source of the figures the text quotes
    record("identify" if args.model == "facenet128" else f"identify-{args.model}", fig)


if __name__ == "__main__":
    main()
