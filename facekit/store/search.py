"""The search parameters of :class:`facekit.store.index.GalleryIndex` and exact search.

Constants measured by ``bench/gallery.py`` (the reasoning is in :mod:`facekit.store.index`'s
docstring, notebook 07): when to switch from exact search to the FAISS inverted file, how many
lists a query visits, how the index is described to FAISS (:func:`factory_string`), and exact
nearest-neighbour search in numpy (:func:`exact_search`).
"""

from __future__ import annotations

import math

import numpy as np

__all__ = ["EXACT_MAX", "MIN_TRAIN", "OPQ_MIN", "PQ_M", "PROBE_SHARE", "MIN_PROBES", "FIRST_SHARE", "STOP_SHARE",
           "K_FACTOR", "TRAIN_MAX", "RETRAIN_GROWTH", "DEAD_REBUILD", "SERIAL_QUERIES", "PARALLEL_MIN",
           "nlist_for", "factory_string", "exact_search"]

#: galleries up to this many faces are searched exactly (numpy); beyond it, the FAISS inverted file.
#: bench/gallery.py: exact search of 10k faces takes ~0.1 ms for one query on 2 cores, 100k ~2 ms.
EXACT_MAX = 20_000
#: the inverted file needs this many faces to train on (k-means, 4-bit PQ), whatever ``exact_max``
MIN_TRAIN = 1_000
#: from this many faces the codes are computed after a learnt rotation (OPQ; its training
#: clusters 256 centroids per sub-vector and wants ~40 faces per centroid)
OPQ_MIN = 10_000
#: PQ sub-vectors: 32 x 4 bits = a 16-byte code per 128-D face
PQ_M = 32
#: a query visits this share of the inverted lists (160 of 1024 at 1M faces) and at least
#: MIN_PROBES of them: smaller galleries need a larger share (96 of 256 lists at 100k faces for
#: 0.99 of exact's rank-1 rate; bench/gallery.py)
PROBE_SHARE, MIN_PROBES = 5 / 32, 96
#: identification visits this share of the lists first (32 of 1024 at 1M faces, at least 8) and
#: stops there when it found a face within STOP_SHARE x its threshold (0.5 for facenet128's 0.8,
#: where LFW's different-person pairs start at ~1.5): the identity is settled, only a closer photo
#: of the same person may be missed. bench/gallery.py at 1M faces: rank-1 identification rate
#: 0.996 of exact's (full search 0.995), one-query median 0.15 ms (full search 0.31 ms).
FIRST_SHARE, STOP_SHARE = 1 / 32, 0.625
#: codes re-ranked with the exact vectors, per result asked for
K_FACTOR = 32
#: at most this many faces train the lists and codes (256 per list at 1024 lists)
TRAIN_MAX = 262_144
#: rebuild (retrain) once the gallery has grown this many times past the size it was trained at
RETRAIN_GROWTH = 4
#: rebuild once this share of the indexed faces are removed faces
DEAD_REBUILD = 0.2
#: searches of up to this many queries run on one thread (no OpenMP team to wait for) ...
SERIAL_QUERIES = 16
#: ... unless the gallery has at least this many faces: then one query's lists are split over threads
PARALLEL_MIN = 100_000


def nlist_for(n: int) -> int:
    """Inverted lists for ``n`` faces: the power of two nearest sqrt(n) (1024 at 1M faces),
    16..4096, and at most n / 39 (k-means wants ~40 faces per list)."""
    want = 2 ** round(math.log2(max(int(n), 1)) / 2)
    cap = 2 ** math.floor(math.log2(max(int(n) // 39, 16)))
    return int(min(4096, max(16, min(want, cap))))


def factory_string(n: int, dim: int = 128) -> str:
    """The FAISS ``index_factory`` description used for ``n`` faces of ``dim`` dimensions,
    e.g. ``"OPQ32_128,IVF1024,PQ32x4fs,RFlat"`` at 1M (see the module docstring)."""
    m = next(m for m in (PQ_M, 16, 8, 4, 2, 1) if dim % m == 0)
    opq = f"OPQ{m}_{dim}," if n >= OPQ_MIN else ""
    return f"{opq}IVF{nlist_for(n)},PQ{m}x4fs,RFlat"


def exact_search(gallery: np.ndarray, queries: np.ndarray, k: int = 1, chunk: int = 256) -> tuple[np.ndarray, np.ndarray]:
    """Exact k nearest rows of ``gallery`` (N, d) for ``queries`` (Q, d), both unit float32.

    Returns ``(distances float32 (Q, k) squared L2 ascending, rows int64 (Q, k))``; rows are -1
    (distance inf) where the gallery has fewer than ``k`` faces. Queries go in chunks so memory
    stays at ``chunk * N`` floats; for k = 1 the best row is an ``argmax`` (one pass), otherwise
    ``argpartition`` then a sort of the k.
    """
    q = np.asarray(queries, np.float32)
    n = len(gallery)
    dist = np.full((len(q), k), np.inf, np.float32)
    rows = np.full((len(q), k), -1, np.int64)
    kk = min(k, n)
    if kk == 0:
        return dist, rows
    for s in range(0, len(q), chunk):
        sims = q[s:s + chunk] @ gallery.T  # (c, N) cosine similarities
        if kk == 1:
            part = np.argmax(sims, axis=1)[:, None]
        elif kk < n:
            part = np.argpartition(-sims, kk - 1, axis=1)[:, :kk]
        else:
            part = np.broadcast_to(np.arange(n), (len(sims), n))
        top = np.take_along_axis(sims, part, axis=1)
        order = np.argsort(-top, axis=1, kind="stable")
        rows[s:s + chunk, :kk] = np.take_along_axis(part, order, axis=1)
        dist[s:s + chunk, :kk] = np.clip(2.0 - 2.0 * np.take_along_axis(top, order, axis=1), 0.0, 4.0)
    return dist, rows
