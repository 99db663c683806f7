"""Nearest-face search over a gallery of any size: exact up to a measured size, FAISS IVF beyond it.

Taught in notebook 07 ("At scale"). Identification asks "which stored face is nearest to this
one?". For a few thousand faces the exact answer is one matrix product (``2 - 2 * X @ q``, well
under a millisecond); at a million faces that product reads 512 MB per query (~17 ms on 2 cores,
memory-bound), so beyond :data:`EXACT_MAX` faces :class:`GalleryIndex` switches to a FAISS
inverted file with compressed codes and an exact re-ranking step:
``OPQ32 -> IVF(nlist) -> PQ32x4fs -> refine with the float32 vectors`` (``index_factory`` string
``"OPQ32_128,IVF1024,PQ32x4fs,RFlat"`` at 1M faces, inner product on the unit embeddings):

1. a learnt rotation (OPQ) spreads the variance evenly over 32 sub-vectors of 4 dimensions;
2. k-means cuts the gallery into ``nlist`` ~ sqrt(N) lists (:func:`nlist_for`); a query visits
   the :data:`PROBE_SHARE` (5/32, at least :data:`MIN_PROBES`) of the lists whose centres are
   nearest;
3. in them, each face is a 16-byte code (32 sub-vectors x 4 bits) scanned with SIMD lookup
   tables ("fast scan", 16 faces per instruction), on all threads for one query;
4. the :data:`K_FACTOR` x k best codes are re-ranked with their exact float32 vectors, so the
   distances returned are exact.

Why not HNSW, the usual first choice (``bench/gallery.py``, 1M faces, 2 quiet cores, one query
at a time)? The graph (M=32) took 147 s to build, 0.77 GB, and reached only 0.964 of exact
search's rank-1 identification rate at 1.2 ms a query: in 128-D every face is about equally far
from every other, and each graph step is a cache miss. The inverted file reads 16-byte codes
sequentially: trained in 65 s, 0.67 GB, 0.996 of exact at 0.15 ms for identification (142x exact
search's 20.6 ms). Its price: a face's nearest face is often not in the nearest lists (weak
cluster structure), so a full search scans ~16 % of the codes (past ~10M faces, shard the gallery).

Identification (:meth:`GalleryIndex.identify`) first visits only :data:`FIRST_SHARE` of the lists
and stops there for a query that has found a face within :data:`STOP_SHARE` x its threshold: a
face that close settles *who* it is (different people are rarely that close), though a closer
photo of the same person may sit in a list not visited. At 1M faces most LFW queries stop early;
the top-1 face equals exact search's for 0.983 of them, the person for 0.996 of exact's rate.

The index is built from the face store (:meth:`GalleryIndex.from_store`) and kept in step with
enrolments and ``forget`` by :meth:`GalleryIndex.sync` (adds the store's new face ids, removes the
gone ones). New faces go into the trained lists; once the gallery has grown
:data:`RETRAIN_GROWTH` x past the size it was trained at, or a fifth of it is removed faces
(which are skipped at search time), it is rebuilt. Distances are squared L2 in [0, 4], as
everywhere in facekit.

Threads (:mod:`facekit.core.threads`): each FAISS call runs with an explicit OpenMP thread count:
``threads`` (default: this process's CPUs) for training, adding, batch searches and one query on
galleries of at least :data:`PARALLEL_MIN` faces (FAISS's ``implem`` 15); one otherwise.
A trained index is saved between runs by :mod:`facekit.store.index_file` (``facekit identify``).
"""

from __future__ import annotations

import math
import os
from typing import Callable

import numpy as np

from facekit.core.threads import cpu_count, faiss_threads
from facekit.store.ivf import TrainedLists
from facekit.store.records import unit_rows
from facekit.store.search import (DEAD_REBUILD, EXACT_MAX, FIRST_SHARE, K_FACTOR, MIN_PROBES, MIN_TRAIN,  # noqa: F401
    OPQ_MIN, PARALLEL_MIN, PQ_M, PROBE_SHARE, RETRAIN_GROWTH, SERIAL_QUERIES, STOP_SHARE, TRAIN_MAX, exact_search,
    factory_string, nlist_for)

__all__ = ["EXACT_MAX", "FIRST_SHARE", "K_FACTOR", "MIN_PROBES", "PARALLEL_MIN", "PQ_M", "PROBE_SHARE",
           "SERIAL_QUERIES", "STOP_SHARE", "GalleryIndex", "exact_search", "factory_string", "nlist_for"]


class GalleryIndex(TrainedLists):
    """Stored face embeddings with their face ids and names, searchable by nearest neighbour.

    Parameters
    ----------
    dim : embedding length (128 for facenet128).
    exact_max : up to this many faces, search exactly (default :data:`EXACT_MAX`); beyond it (and
        from :data:`MIN_TRAIN` faces), a FAISS inverted file trained on the gallery when it
        crosses the size (later faces are added to its lists; see the module docstring).
    nprobe : lists a query visits (default: :data:`PROBE_SHARE` of them, at least
        :data:`MIN_PROBES`, set when trained).
    threads : FAISS threads for training and batch searches (default :func:`cpu_count`); one
        query uses them too on galleries of at least :data:`PARALLEL_MIN` faces, else one.
    model : the fingerprint of the model whose embeddings it holds (set by :meth:`from_store`):
        errors about queries that do not fit name it.

    ``search`` returns face ids (the store's ``faces.id``), ``identify`` names. Exact mode keeps
    the vectors in one numpy array; IVF mode keeps them only inside FAISS (no second copy).
    """

    def __init__(self, dim: int = 128, *, exact_max: int = EXACT_MAX, nprobe: int | None = None,
                 threads: int | None = None, model: str | None = None):
        if int(dim) < 1 or int(exact_max) < 0 or (nprobe is not None and int(nprobe) < 1) or (
                threads is not None and int(threads) < 1):
            raise ValueError(f"need dim >= 1, exact_max >= 0, nprobe >= 1, threads >= 1; got {dim}, "
                             f"{exact_max}, {nprobe}, {threads}")
        self.dim, self.exact_max = int(dim), int(exact_max)
        self._nprobe = None if nprobe is None else int(nprobe)
        self.threads = int(threads) if threads is not None else cpu_count()
        self._x = np.zeros((0, self.dim), np.float32)  # exact mode: the vectors, row i <-> _ids[i]
        self._ids = np.zeros(0, np.int64)  # face id per row (exact) or per FAISS node (IVF)
        self._codes = np.zeros(0, np.int32)  # name code per row / node
        self._alive = np.zeros(0, bool)  # nodes not removed (exact mode: all True)
        self._dead = 0  # removed nodes still in the FAISS index (kept as a count: searches need it)
        self._names: list[str] = []
        self._code_of: dict[str, int] = {}
        self._ann = None  # the FAISS index (IndexRefineFlat over [OPQ +] IVF-PQ fast scan)
        self._ivf = None  # its inverted file, for nprobe and the search implementation
        self._trained_n = 0
        self._order: np.ndarray | None = None
        self.model = model
        #: called with the names :meth:`identify` accepted (the store records when it last named them)
        self.on_match: Callable[[list[str]], None] | None = None

    def _rows(self, x, what: str) -> np.ndarray:
        """``x`` as unit float32 rows of this index's width; anything else is refused with an error
        that names both sides and the right call."""
        if isinstance(x, (str, os.PathLike)) or (isinstance(x, (list, tuple)) and x and isinstance(x[0], (str, os.PathLike))):
            raise TypeError(f"{what} takes embeddings (float32 (N, {self.dim})), not file paths. Fix: "
                            "facekit.extract_faces(path) gives each face's .embedding")
        a = np.asarray(x) if not isinstance(x, (list, tuple)) or not x or not hasattr(x[0], "embedding") else None
        if a is None:
            raise TypeError(f"{what} takes embeddings, not FaceEmbedding objects. Fix: pass "
                            "np.stack([f.embedding for f in faces])")
        if a.dtype == np.uint8 or (a.ndim >= 3 and a.shape[-1] in (3, 4)):
            raise TypeError(f"{what} takes embeddings (float32 (N, {self.dim})), got an image-like {a.dtype} array "
                            f"{a.shape}. Fix: facekit.extract_faces(image) gives each face's .embedding")
        width = a.shape[-1] if a.ndim in (1, 2) else None
        if width is not None and width != self.dim:
            raise ValueError(f"{what}: the embeddings have {width} dimensions, but this gallery index holds "
                             f"{self.dim}-D faces of model {self.model or '(not recorded)'}. Fix: embed them with "
                             "that model (the one the store's faces were enrolled with)")
        return unit_rows(a, self.dim, what)

    # -- state ---------------------------------------------------------------------------
    def __len__(self) -> int:
        return len(self._alive) - self._dead

    @property
    def kind(self) -> str:
        """``"exact"`` or ``"ivf"`` (FAISS, :func:`factory_string`): what :meth:`search` uses now."""
        return "exact" if self._ann is None else "ivf"

    @property
    def description(self) -> str:
        """``"exact"`` or the FAISS factory string with its search settings."""
        if self._ann is None:
            return "exact"
        return f"{factory_string(self._trained_n, self.dim)} nprobe={self.nprobe} k_factor={K_FACTOR}"

    @property
    def nprobe(self) -> int:
        """Inverted lists one query visits (settable; more is slower and closer to exact)."""
        if self._ivf is None:
            return self._nprobe or 0
        return int(self._ivf.nprobe)

    @nprobe.setter
    def nprobe(self, value: int) -> None:
        if int(value) < 1:
            raise ValueError(f"nprobe must be >= 1, got {value}")
        self._nprobe = int(value)
        if self._ivf is not None:
            self._ivf.nprobe = min(self._nprobe, self._ivf.nlist)

    @property
    def ids(self) -> np.ndarray:
        """The face ids in the index, int64 (N,) sorted."""
        return np.sort(self._ids[self._alive])

    def names_of(self, ids: np.ndarray) -> list[str]:
        """Names of face ids (``""`` for -1 or an id not in the index)."""
        node = self._nodes_of(ids)
        return [self._names[self._codes[n]] if n >= 0 else "" for n in node.tolist()]

    def _nodes_of(self, ids) -> np.ndarray:
        """Row (exact) or FAISS node of each live face id, -1 where absent."""
        ids = np.asarray(ids, np.int64).ravel()
        if self._order is None:  # sorted view of the live ids, kept until the next add/remove
            live = np.flatnonzero(self._alive)
            self._order = live[np.argsort(self._ids[live], kind="stable")]
        if not len(self._order):
            return np.full(len(ids), -1, np.int64)
        node = self._order[np.clip(np.searchsorted(self._ids[self._order], ids), 0, len(self._order) - 1)]
        return np.where(self._ids[node] == ids, node, -1)

    # -- building ------------------------------------------------------------------------
    @classmethod
    def from_store(cls, store, model=None, *, progress: bool = False, **kwargs) -> GalleryIndex:
        """An index of every face of ``model`` (embedder, registry name or fingerprint) in a
        :class:`facekit.store.db.FaceStore` (``progress``: a bar while a large one trains)."""
        from facekit.store.records import model_fingerprint

        x, names, ids = store.embeddings(model)
        index = cls(x.shape[1] if x.ndim == 2 and x.shape[1] else kwargs.pop("dim", 128),
                    model=model_fingerprint(model), **kwargs)
        index.add(x, ids, names, progress=progress)
        return index

    def add(self, embeddings: np.ndarray, ids, names, *, progress: bool = False) -> None:
        """Add faces: ``embeddings`` float32 (N, dim) unit rows, their face ``ids`` (int64, new)
        and ``names`` (a list of N names or one name for all). ``progress``: a bar while the index
        trains (when this addition makes it large)."""
        ids = np.asarray(ids, np.int64).ravel()
        if len(ids) == 0:
            return
        x = self._rows(embeddings, "GalleryIndex.add")
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
        if self._ann is not None:
            with faiss_threads(self.threads if len(x) > SERIAL_QUERIES else 1):
                self._ann.add(x)
            if len(self._ids) > RETRAIN_GROWTH * self._trained_n:
                self._rebuild()
            return
        self._x = np.concatenate([self._x, x]) if len(self._x) else x.copy()
        if len(self._ids) > max(self.exact_max, MIN_TRAIN - 1):
            self._train(self._x, progress)

    def remove(self, ids) -> int:
        """Remove faces by id (unknown ids are ignored); returns how many were removed."""
        hit = np.isin(self._ids, np.asarray(ids, np.int64).ravel()) & self._alive
        n = int(hit.sum())
        if n == 0:
            return 0
        self._order = None
        if self._ann is None:
            keep = ~hit
            self._x, self._ids, self._codes, self._alive = self._x[keep], self._ids[keep], self._codes[keep], self._alive[keep]
            return n
        self._alive[hit] = False  # removed faces are skipped at search time, then rebuilt away
        self._dead += n
        if (~self._alive).mean() > DEAD_REBUILD or len(self) <= max(self.exact_max, MIN_TRAIN - 1):
            self._rebuild()
        return n

    def sync(self, store, model=None) -> tuple[int, int]:
        """Follow the store: add the faces the index lacks, remove those gone (``forget``); an id
        the store gave another face (SQLite reuses the largest id after a delete) is both.
        Returns ``(added, removed)``."""
        x, names, ids = store.embeddings(model)
        ids = np.asarray(ids, np.int64)
        node = self._nodes_of(ids)
        both = np.flatnonzero(node >= 0)
        if len(both):  # ids both have: the same face only if the same vector and the same name
            have = self._x[node[both]] if self._ann is None else self._ann.refine_index.reconstruct_batch(node[both])
            same = np.abs(have - (x if len(both) == len(x) else x[both])).max(axis=1) <= 1e-6
            same &= self._codes[node[both]] == [self._code_of.get(names[i], -1) for i in both.tolist()]
            node[both[~same]] = -1
        kept = np.zeros(len(self._ids), bool)
        kept[node[node >= 0]] = True
        removed = self.remove(self._ids[self._alive & ~kept])
        new = node < 0
        self.add(x[new], ids[new], [n for n, m in zip(names, new.tolist()) if m])
        return int(new.sum()), removed

    def _code(self, name: str) -> int:
        if name not in self._code_of:
            self._code_of[name] = len(self._names)
            self._names.append(name)
        return self._code_of[name]

    # -- search --------------------------------------------------------------------------
    def search(self, queries: np.ndarray, k: int = 1, *, stop_within: float | None = None
               ) -> tuple[np.ndarray, np.ndarray]:
        """k nearest faces of each query (float32 (Q, dim) or (dim,) rows, renormalised):
        ``(distances float32 (Q, k) squared L2 ascending, face ids int64 (Q, k); -1 / inf where
        fewer)``. IVF mode re-ranks with the exact vectors, so distances are exact.

        ``stop_within`` (k = 1, IVF mode): first visit only :data:`FIRST_SHARE` of the lists, and
        keep that answer where it is a face within this squared distance; search the rest of the
        queries fully. For identification: a face that close settles *who* it is, though a closer
        photo of the same person may sit in a list not visited (:meth:`identify` uses it).
        """
        q = self._rows(queries, "GalleryIndex.search queries")
        k = int(k)
        if k < 1:
            raise ValueError(f"k must be >= 1, got {k}")
        if self._ann is None:
            d, rows = exact_search(self._x, q, k)
            return d, np.where(rows >= 0, self._ids[np.maximum(rows, 0)] if len(self._ids) else -1, -1)
        full = int(self._ivf.nprobe)
        first = min(full, max(8, math.ceil(self._ivf.nlist * FIRST_SHARE)))
        if stop_within is None or k != 1 or first >= full:
            return self._search_ivf(q, k)
        self._ivf.nprobe = first
        try:
            d, ids = self._search_ivf(q, 1)
        finally:
            self._ivf.nprobe = full
        hard = ~(d[:, 0] <= float(stop_within))  # NaN: search fully
        if hard.any():
            d[hard], ids[hard] = self._search_ivf(q[hard], 1)
        return d, ids

    def _search_ivf(self, q: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        """:meth:`search` in IVF mode at the current nprobe, skipping removed faces."""
        dead, total = self._dead, len(self._alive)  # total == the FAISS index's ntotal
        want = k if dead == 0 else min(total, k + min(dead, 4 * k + 16))
        one = len(q) <= SERIAL_QUERIES
        threads = self.threads if (not one or total >= PARALLEL_MIN) else 1
        self._ivf.implem = 15 if one else 0  # 15: one query's lists split over the threads
        while True:
            with faiss_threads(threads):
                sims, nodes = self._ann.search(q, want)
            if dead == 0:  # every node is a live face: no filtering
                return (np.clip(2.0 - 2.0 * sims, 0.0, 4.0).astype(np.float32),
                        np.where(nodes >= 0, self._ids[np.maximum(nodes, 0)], -1))
            ok = (nodes >= 0) & self._alive[np.maximum(nodes, 0)]
            if ok.sum(axis=1).min() >= min(k, len(self)) or want >= total:
                break
            want = min(total, want * 4)
        dist = np.full((len(q), k), np.inf, np.float32)
        out = np.full((len(q), k), -1, np.int64)
        for r in range(len(q)):
            sel = np.flatnonzero(ok[r])[:k]
            dist[r, :len(sel)] = np.clip(2.0 - 2.0 * sims[r, sel], 0.0, 4.0)
            out[r, :len(sel)] = self._ids[nodes[r, sel]]
        return dist, out

    def identify(self, queries: np.ndarray, threshold: float, *, model=None) -> tuple[list[str], np.ndarray]:
        """Nearest-face identification: the nearest stored face's name when its squared L2
        distance is <= ``threshold``, else ``"unknown"``. Returns ``(names, distances float32 (Q,))``.
        A NaN threshold rejects everyone (fails closed). In IVF mode a query stops early once it
        has found a face within :data:`STOP_SHARE` x ``threshold`` (see :meth:`search`).
        ``model`` (the embedder or fingerprint that made the queries): refused, naming both, when
        it is not the model of the gallery's faces."""
        from facekit.core.constants import UNKNOWN

        if model is not None and self.model is not None:
            from facekit.store.records import model_fingerprint

            fp = model_fingerprint(model)
            if fp != self.model:
                raise ValueError(f"GalleryIndex.identify: the queries were embedded by model {fp!r}, the gallery's "
                                 f"faces by {self.model!r}; embeddings of two models are never compared. Fix: embed "
                                 "the queries with the gallery's model")
        d, ids = self.search(queries, 1, stop_within=STOP_SHARE * float(threshold))
        names = self.names_of(ids[:, 0])
        t = float(threshold)
        out = [n if (n and np.isfinite(t) and dist <= t) else UNKNOWN for n, dist in zip(names, d[:, 0])]
        if self.on_match is not None and any(n != UNKNOWN for n in out):
            self.on_match([n for n in out if n != UNKNOWN])
        return out, d[:, 0]

    def memory_bytes(self) -> int:
        """Bytes held by the vectors, codes, lists and ids."""
        if self._ann is None:
            vec = self._x.nbytes
        else:  # float32 vectors for re-ranking + per face a code and its id in a list + centres, rotation
            n, nlist = self._ann.ntotal, self._ivf.nlist
            vec = n * (self.dim * 4 + self._ivf.code_size + 8) + nlist * self.dim * 4 + self.dim * self.dim * 4
        return int(vec + self._ids.nbytes + self._codes.nbytes + self._alive.nbytes)
