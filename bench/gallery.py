"""Identification against galleries of 10k, 100k and 1M faces: exact search vs FAISS (issue 15).

Run: ``.venv/bin/python bench/gallery.py [--sizes 10000,100000,1000000] [--queries 1000]``
(``SCIKIT_LEARN_DATA`` pointing at LFW; LFW View 2 embeddings are cached by
``facekit.teach.lfw.embed_lfw``, so only the first run embeds the 7,701 images).

**Queries and mates are real**: every LFW View 2 person with two or more photos gives one query
photo; all other LFW photos (their mates included) are in the gallery.

**Distractors are synthetic**, drawn to match LFW's distance statistics. Random directions on the
sphere would be far too easy (their squared distances are all ~2.0, while real different-person
distances are ~1.0-1.7). Instead, a two-level Gaussian model is fitted to the real embeddings
(LDA-style): the global mean ``mu``, the between-identity covariance ``Sb`` (of per-person means)
and the within-identity covariance ``Sw`` (of residuals from them). A synthetic person is a centre
``c = mu + s_b * chol(Sb) z``; each of its faces (1 + Poisson(3)) is ``normalise(c + s_w * r *
chol(Sw) z')``, where ``r`` (log-normal, sigma 0.35, mean 1) varies per person: some people vary
more than others, which gives LFW's long same-person tail. The two scales ``s_b, s_w`` are calibrated (fixed-point iterations) so that the
mean same-person and different-person squared distances equal LFW's; the bench prints both
distance distributions by quantile, plus the rate of different-person pairs under the
verification threshold (1.22), for LFW and the synthetic set, so the match can be checked.

Per gallery size: exact search (numpy, :func:`facekit.store.index.exact_search`: one matrix-vector
product and an ``argmax`` for k = 1) is the ground truth and the speed baseline; facekit's choice,
:class:`facekit.store.index.GalleryIndex` (FAISS ``OPQ32,IVF,PQ32x4fs,RFlat``, see facekit/index.py), at
its default ``nprobe`` as identification searches (:meth:`GalleryIndex.identify`: it visits 1/32
of the lists first and stops there for a query that has found a face within ``STOP_SHARE`` x the
model's "unknown" threshold = 0.5; these are the headline keys) and as full searches at several
``nprobe`` (keys ``ivf_full*``); and FAISS HNSW (``IndexHNSWFlat``, M=32, efConstruction
40, faiss directly) at several ``efSearch`` up to ``--hnsw-max`` faces, for the comparison that
argues the choice. Reported per setting: ``recall_at_1`` = rank-1 identification rate (the nearest
face is the query's person) as a share of exact search's, ``top1_agreement`` = share of queries
whose nearest face is exact's (or at an equal distance), p50/p99 latency of one query (through
``GalleryIndex.search``, so its Python overhead is included), build seconds and index memory.
Take the bench lock (``mkdir /tmp/fk-locks/bench``) before timing.

Last line: one JSON object (keys ``recall_at_1_1m``, ``p99_ms_1m``, ``speedup_vs_exact_1m``,
``memory_gb_1m``, ...).
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

import numpy as np

from facekit.recognition.identify import default_threshold
from facekit.store.index import STOP_SHARE, GalleryIndex, exact_search

QUANTILES = (0.05, 0.25, 0.5, 0.75, 0.95)


def rss_bytes() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def lfw_embeddings() -> tuple[np.ndarray, np.ndarray]:
    """Real LFW View 2 embeddings ``(X float32 (N, 128), person label (N,))``."""
    from facekit.teach.lfw import embed_lfw_pairs

    e = embed_lfw_pairs(progress=True)
    paths = np.concatenate([e.paths[:, 0], e.paths[:, 1]])
    x = np.concatenate([e.a, e.b])
    _, first = np.unique(paths, return_index=True)
    paths, x = paths[first], x[first]
    labels = np.asarray([Path(p).parent.name for p in paths])
    return x.astype(np.float32), labels


def pair_stats(x: np.ndarray, labels: np.ndarray, rng, n_diff: int = 200_000) -> tuple[np.ndarray, np.ndarray]:
    """Squared distances of all same-person pairs and of ``n_diff`` random different-person pairs."""
    same = []
    order = np.argsort(labels, kind="stable")
    lab = labels[order]
    starts = np.flatnonzero(np.r_[True, lab[1:] != lab[:-1]])
    ends = np.r_[starts[1:], len(lab)]
    for s, e in zip(starts, ends):
        if e - s >= 2:
            g = x[order[s:e]]
            d = 2.0 - 2.0 * g @ g.T
            same.append(d[np.triu_indices(e - s, 1)])
    i, j = rng.integers(0, len(x), n_diff), rng.integers(0, len(x), n_diff)
    keep = labels[i] != labels[j]
    diff = 2.0 - 2.0 * np.einsum("ij,ij->i", x[i[keep]], x[j[keep]])
    return np.concatenate(same), diff


class Synth:
    """The two-level Gaussian model of embeddings (see the module docstring)."""

    def __init__(self, x: np.ndarray, labels: np.ndarray):
        names, inv, counts = np.unique(labels, return_inverse=True, return_counts=True)
        means = np.zeros((len(names), x.shape[1]))
        np.add.at(means, inv, x)
        means /= counts[:, None]
        multi = counts[inv] >= 2
        resid = (x - means[inv])[multi]
        scale = counts[inv][multi] / (counts[inv][multi] - 1.0)  # unbiased within-person spread
        self.sw = np.cov((resid * np.sqrt(scale)[:, None]).T) + 1e-6 * np.eye(x.shape[1])
        self.mu = x.mean(0)
        self.sb = np.cov(means.T) + 1e-6 * np.eye(x.shape[1])
        self.lb, self.lw = np.linalg.cholesky(self.sb), np.linalg.cholesky(self.sw)
        self.s_b = self.s_w = 1.0
        self.sigma = 0.35  # per-person spread of the within-person scale: LFW's long same-person tail

    def draw(self, n: int, rng, mean_faces: float = 4.0) -> tuple[np.ndarray, np.ndarray]:
        """``n`` synthetic faces ``(float32 (n, d) unit rows, person id (n,))``."""
        per = 1 + rng.poisson(mean_faces - 1.0, size=int(n / mean_faces * 1.2) + 16)
        while per.sum() < n:
            per = np.concatenate([per, 1 + rng.poisson(mean_faces - 1.0, size=n // 10 + 16)])
        person = np.repeat(np.arange(len(per)), per)[:n]
        k = person.max() + 1
        d = len(self.mu)
        spread = np.exp(self.sigma * rng.standard_normal(k) - self.sigma ** 2 / 2).astype(np.float32)
        centres = self.mu + self.s_b * rng.standard_normal((k, d)).astype(np.float32) @ self.lb.T.astype(np.float32)
        out = np.empty((n, d), np.float32)
        for s in range(0, n, 200_000):  # in chunks: bounded memory at 1M
            z = rng.standard_normal((min(200_000, n - s), d)).astype(np.float32)
            pp = person[s:s + len(z)]
            v = centres[pp].astype(np.float32) + (self.s_w * spread[pp])[:, None] * (z @ self.lw.T.astype(np.float32))
            out[s:s + len(z)] = v / np.linalg.norm(v, axis=1, keepdims=True)
        return out, person

    def calibrate(self, same_target: float, diff_target: float, rng, iters: int = 12) -> None:
        """Fit ``s_b, s_w`` so the mean same / different squared distances equal the targets."""
        for _ in range(iters):
            x, p = self.draw(20_000, rng)
            s, d = pair_stats(x, p, rng, 50_000)
            self.s_w *= (same_target / s.mean()) ** 0.75
            self.s_b *= (diff_target / d.mean()) ** 1.5


def faiss_one(nq: int):
    """FAISS threads for a search of ``nq`` queries: one for a single query, all for batches."""
    from facekit.store.index import SERIAL_QUERIES
    from facekit.core.threads import cpu_count, faiss_threads

    return faiss_threads(1 if nq <= SERIAL_QUERIES else cpu_count())


def latencies(fn, queries: np.ndarray, n: int) -> np.ndarray:
    """Milliseconds of ``fn(one query)`` for the first ``n`` queries (after one warm-up)."""
    fn(queries[:1])
    out = []
    for q in queries[:n]:
        t = time.perf_counter()
        fn(q[None])
        out.append((time.perf_counter() - t) * 1e3)
    return np.asarray(out)


def ms(a: np.ndarray) -> tuple[float, float]:
    return round(float(np.percentile(a, 50)), 3), round(float(np.percentile(a, 99)), 3)


def recall(ids: np.ndarray, dist: np.ndarray, ex_ids: np.ndarray, ex_dist: np.ndarray) -> float:
    """Top-1 equal to exact's (same face id, or a tie in distance)."""
    return float(np.mean((ids[:, 0] == ex_ids[:, 0]) | (np.abs(dist[:, 0] - ex_dist[:, 0]) <= 1e-5)))


def measure(name: str, search, key: str | None, ctx: dict, fig: dict, queries: np.ndarray, args) -> None:
    """Recall, agreement and one-query latency of ``search`` (queries -> (distances, rows)) against
    exact search (``ctx``); stored in ``fig`` under ``key`` (None: the headline keys)."""
    d, i = search(queries)
    rec = recall(i, d, ctx["ex_i"], ctx["ex_d"])
    acc = float(np.mean(ctx["g_lab"][np.maximum(i[:, 0], 0)] == ctx["q_lab"])) / ctx["acc_exact"]
    lat = latencies(search, queries, args.latency_queries)
    sp = float(np.median(ctx["lat_ex"]) / np.median(lat))
    print(f"    {name:18s}: recall@1 {acc:.4f} of exact  top-1 = exact's {rec:.4f}  p50/p99 {ms(lat)} ms  "
          f"speedup {sp:.0f}x", flush=True)
    tag, pre = ctx["tag"], f"{key}_" if key else ""
    fig[f"{pre}recall_at_1_{tag}"], fig[f"{pre}top1_agreement_{tag}"] = round(acc, 4), round(rec, 4)
    fig[f"{pre}p50_ms_{tag}"], fig[f"{pre}p99_ms_{tag}"] = ms(lat)
    fig[f"{pre}speedup_vs_exact_{tag}"] = round(sp, 1)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--sizes", default="10000,100000,1000000")
    ap.add_argument("--queries", type=int, default=1000)
    ap.add_argument("--latency-queries", type=int, default=300, help="single-query timings per setting")
    ap.add_argument("--nprobes", default="0.5,0.75,1,1.5", help="nprobe values measured, as multiples of the default")
    ap.add_argument("--efs", default="64,128", help="HNSW efSearch values measured (the comparison)")
    ap.add_argument("--hnsw-max", type=int, default=1_000_000, help="largest gallery HNSW is compared on")
    args = ap.parse_args()
    import faiss

    rng = np.random.default_rng(0)
    stop = STOP_SHARE * default_threshold("facenet128")
    fig: dict = {"threads": faiss.omp_get_max_threads(), "stop_within": stop}
    x, labels = lfw_embeddings()
    print(f"LFW View 2: {len(x)} embeddings of {len(set(labels))} people")

    # --- the synthetic distractor model, and the check that it matches LFW ------------------
    s_real, d_real = pair_stats(x, labels, rng)
    synth = Synth(x, labels)
    synth.calibrate(float(s_real.mean()), float(d_real.mean()), rng)
    xs, ps = synth.draw(30_000, rng)
    s_syn, d_syn = pair_stats(xs, ps, rng)
    print("squared distances     " + "  ".join(f"q{int(q * 100):02d}" for q in QUANTILES) + "   mean  <1.22")
    for name, arr in [("LFW same", s_real), ("synthetic same", s_syn), ("LFW different", d_real),
                      ("synthetic different", d_syn)]:
        print(f"  {name:20s}" + "  ".join(f"{np.quantile(arr, q):.2f}" for q in QUANTILES)
              + f"   {arr.mean():.3f}  {np.mean(arr < 1.22):.3f}")
    fig.update(lfw_same_mean=round(float(s_real.mean()), 3), synth_same_mean=round(float(s_syn.mean()), 3),
               lfw_diff_mean=round(float(d_real.mean()), 3), synth_diff_mean=round(float(d_syn.mean()), 3),
               lfw_diff_under_122=round(float(np.mean(d_real < 1.22)), 4),
               synth_diff_under_122=round(float(np.mean(d_syn < 1.22)), 4))

    # --- queries: one photo of every LFW person with >= 2 photos; the rest is gallery --------
    _, first = np.unique(labels, return_index=True)
    counts = {n: c for n, c in zip(*np.unique(labels, return_counts=True))}
    q_rows = np.asarray([i for i in first if counts[labels[i]] >= 2])
    q_rows = rng.permutation(q_rows)[:args.queries]
    g_rows = np.setdiff1d(np.arange(len(x)), q_rows)
    queries, q_lab = x[q_rows], labels[q_rows]
    print(f"{len(queries)} queries; {len(g_rows)} real LFW gallery faces (their mates included)")

    for n in [int(s) for s in args.sizes.split(",")]:
        tag = f"{n // 1000}k" if n < 1_000_000 else f"{n // 1_000_000}m"
        n_syn = max(0, n - len(g_rows))
        xd, _ = synth.draw(n_syn, rng)
        gallery = np.concatenate([x[g_rows], xd])
        g_lab = np.concatenate([labels[g_rows], np.full(n_syn, "~synthetic")])
        del xd
        print(f"\n== gallery {len(gallery):,} faces ({len(g_rows)} LFW + {n_syn:,} synthetic) ==")
        t = time.perf_counter()
        ex_d, ex_i = exact_search(gallery, queries, 1, chunk=32)
        t_ex_all = time.perf_counter() - t
        acc_exact = float(np.mean(g_lab[ex_i[:, 0]] == q_lab))
        lat_ex = latencies(lambda q, g=gallery: exact_search(g, q, 1), queries, min(args.latency_queries, 100))
        print(f"  exact (numpy)      accuracy {acc_exact:.4f}  p50/p99 {ms(lat_ex)} ms  "
              f"(all {len(queries)} queries batched: {t_ex_all:.1f} s)")
        fig[f"exact_p50_ms_{tag}"], fig[f"exact_p99_ms_{tag}"] = ms(lat_ex)
        fig[f"identification_accuracy_exact_{tag}"] = round(acc_exact, 4)

        ctx = {"ex_i": ex_i, "ex_d": ex_d, "g_lab": g_lab, "q_lab": q_lab, "lat_ex": lat_ex, "acc_exact": acc_exact, "tag": tag}

        # facekit's choice, through GalleryIndex (training, adding and searching as facekit does)
        r0 = rss_bytes()
        t = time.perf_counter()
        index = GalleryIndex(gallery.shape[1], exact_max=0)
        index.add(gallery, np.arange(len(gallery)), g_lab.tolist() if n <= 100_000 else "x")
        t_build = time.perf_counter() - t
        mem = max(index.memory_bytes(), rss_bytes() - r0)
        default = index.nprobe
        print(f"  {index.description}  build {t_build:.1f} s, memory {mem / 1e9:.3f} GB", flush=True)
        fig[f"index_{tag}"] = index.description
        fig[f"build_s_{tag}"], fig[f"memory_gb_{tag}"] = round(t_build, 2), round(mem / 1e9, 3)
        # the headline: identification's search (GalleryIndex.identify), which stops early on a face
        # within STOP_SHARE x the model's "unknown" threshold; then full searches at several nprobe
        measure(f"identify, stop {stop:.2f}", lambda q, ix=index: ix.search(q, 1, stop_within=stop), None,
                ctx, fig, queries, args)
        for mult in sorted({float(m) for m in args.nprobes.split(",")} | {1.0}):
            index.nprobe = max(1, round(default * mult))
            measure(f"full, nprobe {index.nprobe}", lambda q, ix=index: ix.search(q, 1),
                    "ivf_full" if mult == 1.0 else f"ivf_full_nprobe{index.nprobe}", ctx, fig, queries, args)
        index.nprobe = default
        del index

        # HNSW for the comparison (faiss directly: facekit does not use it, see facekit/index.py)
        if n <= args.hnsw_max:
            r0 = rss_bytes()
            t = time.perf_counter()
            hnsw = faiss.IndexHNSWFlat(gallery.shape[1], 32, faiss.METRIC_INNER_PRODUCT)
            hnsw.hnsw.efConstruction = 40
            hnsw.add(gallery)
            t_h = time.perf_counter() - t
            mem_h = rss_bytes() - r0
            print(f"  HNSW32 efConstruction 40 (comparison)  build {t_h:.1f} s, memory {mem_h / 1e9:.3f} GB")
            fig[f"hnsw_build_s_{tag}"], fig[f"hnsw_memory_gb_{tag}"] = round(t_h, 2), round(mem_h / 1e9, 3)

            def hnsw_search(q, hnsw=hnsw):
                with faiss_one(len(q)):
                    sims, i = hnsw.search(q, 1)
                return np.clip(2.0 - 2.0 * sims, 0.0, 4.0), i

            for ef in sorted({int(p) for p in args.efs.split(",")}):
                hnsw.hnsw.efSearch = ef
                measure(f"HNSW efSearch {ef}", hnsw_search, f"hnsw_ef{ef}", ctx, fig, queries, args)
            del hnsw
        del gallery
    print(json.dumps(fig))
    from facts import record  # noqa: E402 - bench/facts.json: the one source of the figures the text quotes
    record("gallery", fig)


if __name__ == "__main__":
    main()
