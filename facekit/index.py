"""Nearest-face search over a gallery of any size: exact up to a measured size, FAISS beyond it.

Taught in notebook 07 ("At scale"). Identification asks "which stored face is nearest to this
one?". For a few thousand faces the exact answer is one matrix product (``2 - 2 * X @ q``, well
under a millisecond); at a million faces that product reads 512 MB per query (tens of ms on 2
cores), so beyond :data:`EXACT_MAX` faces :class:`GalleryIndex` switches to a FAISS HNSW graph
(``IndexHNSWFlat``, inner product on the unit embeddings, M = :data:`HNSW_M`).

Why HNSW and not IVF (``bench/gallery.py``: real LFW queries against 10k/100k/1M-face galleries
of LFW + synthetic faces with LFW's distance statistics, 2 cores; figures in the README):

- face embeddings are 128-D with weak cluster structure, so an inverted file must visit a large
  share of its lists to find the true nearest face: IVF-Flat with 4 sqrt(N) lists needed
  ``nprobe`` ~ 256 (6-25 % of the gallery scanned) for recall@1 >= 0.99 at 100k, and the share
  does not fall with N; HNSW reaches it at ``efSearch`` 64-128 with a cost that grows ~log N;
- memory: the raw vectors plus 2 M links per face (~0.77 GB at 1M, M=32), under the 1.5 GB budget;
- its price: the build is slower (minutes at 1M on 2 cores, one-off; enrolments add faces one by
  one cheaply) and HNSW cannot delete, so :meth:`GalleryIndex.remove` (``forget``) marks faces
  dead, searches past them, and rebuilds once a fifth of the graph is dead.

The index is built from the face store (:meth:`GalleryIndex.from_store`) and kept in step with
enrolments and ``forget`` by :meth:`GalleryIndex.sync` (adds the store's new face ids, removes the
gone ones). Distances are squared L2 in [0, 4], as everywhere in facekit.

Threads: FAISS parallelises with OpenMP over queries and over inserted vectors. One query cannot
be split, and on a busy machine an OpenMP team whose threads are descheduled waits at every
barrier (a 10k build took 3.8 s with 2 threads vs 1.7 s with 1 on a loaded 2-core machine, and
the test file ran for minutes with many small calls). So each FAISS call runs with an explicit
thread count (restored afterwards, so other FAISS users in the process are unaffected): one
thread for up to :data:`SERIAL_QUERIES` queries, and ``threads`` (default: the CPUs this process
may use, ``os.sched_getaffinity``) for builds and batch searches.
"""

from __future__ import annotations

import os
from contextlib import contextmanager

import numpy as np

__all__ = ["GalleryIndex", "EXACT_MAX", "HNSW_M", "EF_CONSTRUCTION", "EF_SEARCH", "SERIAL_QUERIES", "exact_search",
           "faiss_threads", "cpu_count"]

#: galleries up to this many faces are searched exactly (numpy); beyond it, FAISS HNSW.
#: bench/gallery.py: exact search of 10k faces takes ~0.25 ms for one query on 2 cores, 100k ~20 ms.
EXACT_MAX = 20_000
#: HNSW links per node, build-time and search-time beam widths (bench/gallery.py)
HNSW_M, EF_CONSTRUCTION, EF_SEARCH = 32, 40, 64
#: rebuild the graph once this share of its nodes are removed faces
DEAD_REBUILD = 0.2
#: searches of up to this many queries run on one thread (no OpenMP team to wait for)
SERIAL_QUERIES = 16


def cpu_count() -> int:
    """CPUs this process may run on (its affinity mask; ``os.cpu_count()`` where there is none)."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except (AttributeError, OSError):
        return max(1, os.cpu_count() or 1)


@contextmanager
def faiss_threads(n: int):
    """Run the FAISS calls inside with ``n`` OpenMP threads, then restore the previous count."""
    import faiss

    before = faiss.omp_get_max_threads()
    faiss.omp_set_num_threads(max(1, int(n)))
    try:
        yield
    finally:
        faiss.omp_set_num_threads(before)


def _unit_rows(x: np.ndarray, what: str, dim: int | None = None) -> np.ndarray:
    x = np.asarray(x, np.float32)
    if x.ndim == 1:
        x = x[None, :]
    if x.ndim != 2 or (dim is not None and x.shape[1] != dim):
        raise ValueError(f"{what} must be float32 (N, {dim or 'dim'}) embeddings, got shape {x.shape}")
    if not np.isfinite(x).all():
        raise ValueError(f"{what} contain NaN or inf; embed the faces again (facekit.embed)")
    return np.ascontiguousarray(x)


def exact_search(gallery: np.ndarray, queries: np.ndarray, k: int = 1, chunk: int = 256) -> tuple[np.ndarray, np.ndarray]:
    """Exact k nearest rows of ``gallery`` (N, d) for ``queries`` (Q, d), both unit float32.

    Returns ``(distances float32 (Q, k) squared L2 ascending, rows int64 (Q, k))``; rows are -1
    (distance inf) where the gallery has fewer than ``k`` faces. Queries go in chunks so memory
    stays at ``chunk * N`` floats.
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
        if kk < n:
            part = np.argpartition(-sims, kk - 1, axis=1)[:, :kk]
        else:
            part = np.broadcast_to(np.arange(n), (len(sims), n))
        top = np.take_along_axis(sims, part, axis=1)
        order = np.argsort(-top, axis=1, kind="stable")
        rows[s:s + chunk, :kk] = np.take_along_axis(part, order, axis=1)
        dist[s:s + chunk, :kk] = np.clip(2.0 - 2.0 * np.take_along_axis(top, order, axis=1), 0.0, 4.0)
    return dist, rows


class GalleryIndex:
    """Stored face embeddings with their face ids and names, searchable by nearest neighbour.

    Parameters
    ----------
    dim : embedding length (128 for facenet128).
    exact_max : up to this many faces, search exactly (default :data:`EXACT_MAX`); beyond it, a
        FAISS HNSW graph (built once when the gallery crosses it; later faces are inserted).
    ef_search : HNSW search beam (default :data:`EF_SEARCH`); larger is slower and closer to exact.
    threads : FAISS threads for builds and batch searches (default :func:`cpu_count`); searches of
        up to :data:`SERIAL_QUERIES` queries always use one.

    ``search`` returns face ids (the store's ``faces.id``), ``identify`` names. Exact mode keeps
    the vectors in one numpy array; HNSW mode keeps them only inside FAISS (no second copy).
    """

    def __init__(self, dim: int = 128, *, exact_max: int = EXACT_MAX, ef_search: int = EF_SEARCH,
                 threads: int | None = None):
        if int(dim) < 1 or int(exact_max) < 0 or int(ef_search) < 1 or (threads is not None and int(threads) < 1):
            raise ValueError(f"need dim >= 1, exact_max >= 0, ef_search >= 1, threads >= 1; got {dim}, "
                             f"{exact_max}, {ef_search}, {threads}")
        self.dim, self.exact_max, self._ef = int(dim), int(exact_max), int(ef_search)
        self.threads = int(threads) if threads is not None else cpu_count()
        self._x = np.zeros((0, self.dim), np.float32)  # exact mode: the vectors, row i <-> _ids[i]
        self._ids = np.zeros(0, np.int64)  # face id per row (exact) or per graph node (HNSW)
        self._codes = np.zeros(0, np.int32)  # name code per row / node
        self._alive = np.zeros(0, bool)  # HNSW nodes not removed (exact mode: all True)
        self._names: list[str] = []
        self._code_of: dict[str, int] = {}
        self._hnsw = None
        self._order: np.ndarray | None = None

    # -- state ---------------------------------------------------------------------------
    def __len__(self) -> int:
        return int(self._alive.sum())

    @property
    def kind(self) -> str:
        """``"exact"`` or ``"hnsw"`` (FAISS IndexHNSWFlat): what :meth:`search` uses now."""
        return "exact" if self._hnsw is None else "hnsw"

    @property
    def ef_search(self) -> int:
        """HNSW search beam (settable; no effect in exact mode)."""
        return self._ef

    @ef_search.setter
    def ef_search(self, value: int) -> None:
        if int(value) < 1:
            raise ValueError(f"ef_search must be >= 1, got {value}")
        self._ef = int(value)
        if self._hnsw is not None:
            self._hnsw.hnsw.efSearch = self._ef

    @property
    def ids(self) -> np.ndarray:
        """The face ids in the index, int64 (N,) sorted."""
        return np.sort(self._ids[self._alive])

    def names_of(self, ids: np.ndarray) -> list[str]:
        """Names of face ids (``""`` for -1 or an id not in the index)."""
        ids = np.asarray(ids, np.int64).ravel()
        if self._order is None:  # sorted view of the live ids, kept until the next add/remove
            live = np.flatnonzero(self._alive)
            self._order = live[np.argsort(self._ids[live], kind="stable")]
        order = self._order
        if not len(order):
            return [""] * len(ids)
        pos = np.clip(np.searchsorted(self._ids[order], ids), 0, len(order) - 1)
        node = order[pos]
        return [self._names[c] if i == j else "" for i, j, c in zip(ids.tolist(), self._ids[node].tolist(),
                                                                   self._codes[node].tolist())]

    # -- building ------------------------------------------------------------------------
    @classmethod
    def from_store(cls, store, model=None, **kwargs) -> "GalleryIndex":
        """An index of every face of ``model`` (embedder, registry name or fingerprint) in a
        :class:`facekit.store.FaceStore`."""
        x, names, ids = store.embeddings(model)
        index = cls(x.shape[1] if x.ndim == 2 and x.shape[1] else kwargs.pop("dim", 128), **kwargs)
        index.add(x, ids, names)
        return index

    def add(self, embeddings: np.ndarray, ids, names) -> None:
        """Add faces: ``embeddings`` float32 (N, dim) unit rows, their face ``ids`` (int64, new)
        and ``names`` (a list of N names or one name for all)."""
        ids = np.asarray(ids, np.int64).ravel()
        if len(ids) == 0:
            return
        x = _unit_rows(embeddings, "embeddings", self.dim)
        names = [names] * len(ids) if isinstance(names, str) else list(names)
        if not (len(x) == len(ids) == len(names)):
            raise ValueError(f"add needs as many ids and names as embeddings: {len(x)}, {len(ids)}, {len(names)}")
        if len(np.unique(ids)) != len(ids) or np.isin(ids, self._ids[self._alive]).any():
            raise ValueError("face ids must be new and unique; use sync() to follow a store")
        codes = np.asarray([self._code(n) for n in names], np.int32)
        self._ids = np.concatenate([self._ids, ids])
        self._codes = np.concatenate([self._codes, codes])
        self._alive = np.concatenate([self._alive, np.ones(len(ids), bool)])
        self._order = None
        if self._hnsw is not None:
            with faiss_threads(self.threads if len(x) > SERIAL_QUERIES else 1):
                self._hnsw.add(x)
            return
        self._x = np.concatenate([self._x, x]) if len(self._x) else x.copy()
        if len(self._ids) > self.exact_max:
            self._build_hnsw(self._x)

    def remove(self, ids) -> int:
        """Remove faces by id (unknown ids are ignored); returns how many were removed."""
        hit = np.isin(self._ids, np.asarray(ids, np.int64).ravel()) & self._alive
        n = int(hit.sum())
        if n == 0:
            return 0
        self._order = None
        if self._hnsw is None:
            keep = ~hit
            self._x, self._ids, self._codes, self._alive = self._x[keep], self._ids[keep], self._codes[keep], self._alive[keep]
            return n
        self._alive[hit] = False  # HNSW cannot delete: dead nodes are skipped, then rebuilt away
        if (~self._alive).mean() > DEAD_REBUILD or len(self) <= self.exact_max:
            live = np.flatnonzero(self._alive)
            x = self._hnsw.reconstruct_n(0, self._hnsw.ntotal)[live]
            ids, codes = self._ids[live], self._codes[live]
            self._hnsw = None
            self._ids, self._codes, self._alive = ids, codes, np.ones(len(ids), bool)
            self._x = x
            if len(ids) > self.exact_max:
                self._build_hnsw(x)
        return n

    def sync(self, store, model=None) -> tuple[int, int]:
        """Follow the store: add the faces it has that the index lacks, remove those it no longer
        has (after ``forget``). Returns ``(added, removed)``."""
        x, names, ids = store.embeddings(model)
        ids = np.asarray(ids, np.int64)
        removed = self.remove(self._ids[self._alive][~np.isin(self._ids[self._alive], ids)])
        new = ~np.isin(ids, self._ids[self._alive])
        self.add(x[new], ids[new], [n for n, m in zip(names, new) if m])
        return int(new.sum()), removed

    def _code(self, name: str) -> int:
        if name not in self._code_of:
            self._code_of[name] = len(self._names)
            self._names.append(name)
        return self._code_of[name]

    def _build_hnsw(self, x: np.ndarray) -> None:
        import faiss

        index = faiss.IndexHNSWFlat(self.dim, HNSW_M, faiss.METRIC_INNER_PRODUCT)
        index.hnsw.efConstruction = EF_CONSTRUCTION
        index.hnsw.efSearch = self._ef
        with faiss_threads(self.threads):
            index.add(np.ascontiguousarray(x))
        self._hnsw = index
        self._x = np.zeros((0, self.dim), np.float32)  # FAISS holds the vectors now

    # -- search --------------------------------------------------------------------------
    def search(self, queries: np.ndarray, k: int = 1) -> tuple[np.ndarray, np.ndarray]:
        """k nearest faces of each query (float32 (Q, dim) or (dim,) rows, renormalised):
        ``(distances float32 (Q, k) squared L2 ascending, face ids int64 (Q, k); -1 / inf where
        fewer)``."""
        q = _unit_rows(queries, "queries", self.dim)
        q = q / np.maximum(np.linalg.norm(q, axis=1, keepdims=True), 1e-12)
        k = int(k)
        if k < 1:
            raise ValueError(f"k must be >= 1, got {k}")
        if self._hnsw is None:
            d, rows = exact_search(self._x, q, k)
            return d, np.where(rows >= 0, self._ids[np.maximum(rows, 0)] if len(self._ids) else -1, -1)
        dead = int((~self._alive).sum())
        want = k if dead == 0 else min(self._hnsw.ntotal, k + min(dead, 4 * k + 16))
        while True:
            with faiss_threads(1 if len(q) <= SERIAL_QUERIES else self.threads):
                sims, nodes = self._hnsw.search(q, want)
            ok = (nodes >= 0) & self._alive[np.maximum(nodes, 0)]
            if ok.sum(axis=1).min() >= min(k, len(self)) or want >= self._hnsw.ntotal:
                break
            want = min(self._hnsw.ntotal, want * 4)
        dist = np.full((len(q), k), np.inf, np.float32)
        out = np.full((len(q), k), -1, np.int64)
        for r in range(len(q)):
            sel = np.flatnonzero(ok[r])[:k]
            dist[r, :len(sel)] = np.clip(2.0 - 2.0 * sims[r, sel], 0.0, 4.0)
            out[r, :len(sel)] = self._ids[nodes[r, sel]]
        return dist, out

    def identify(self, queries: np.ndarray, threshold: float) -> tuple[list[str], np.ndarray]:
        """Nearest-face identification: the nearest stored face's name when its squared L2
        distance is <= ``threshold``, else ``"unknown"``. Returns ``(names, distances float32 (Q,))``.
        A NaN threshold rejects everyone (fails closed)."""
        from .identify import UNKNOWN

        d, ids = self.search(queries, 1)
        names = self.names_of(ids[:, 0])
        t = float(threshold)
        out = [n if (n and np.isfinite(t) and dist <= t) else UNKNOWN for n, dist in zip(names, d[:, 0])]
        return out, d[:, 0]

    def memory_bytes(self) -> int:
        """Bytes held by the vectors, graph links and ids."""
        if self._hnsw is None:
            vec = self._x.nbytes
        else:  # flat storage + level-0 links (2 M per node) + upper levels (~1/M of nodes, M each)
            vec = self._hnsw.ntotal * (self.dim * 4 + 4 * 2 * HNSW_M + 4 * HNSW_M // max(HNSW_M - 1, 1) + 16)
        return int(vec + self._ids.nbytes + self._codes.nbytes + self._alive.nbytes)
