"""Nearest-face search over a gallery of any size: exact up to a measured size, FAISS beyond it.

Taught in notebook 07 ("At scale"). Identification asks "which stored face is nearest to this
one?". For a few thousand faces the exact answer is one matrix product (``2 - 2 * X @ q``, a
fraction of a millisecond); at a million faces that product reads 512 MB per query (~40 ms on
2 cores), so beyond :data:`EXACT_MAX` faces :class:`GalleryIndex` switches to a FAISS inverted
file (``IndexIVFFlat``, inner product on the unit embeddings).

Why IVF-Flat and these parameters (``bench/gallery.py``, LFW queries against 10k/100k/1M-face
galleries, 2 cores; figures in the README):

- recall@1 against exact search >= 0.99 at ``nprobe`` = :data:`NPROBE` with
  ``nlist`` ~ 4 sqrt(N) lists (4,096 at 1M), p99 well under 5 ms for one query;
- it supports ``remove_ids`` natively, so ``forget`` is a removal, not a rebuild (HNSW cannot
  remove; it needs a full rebuild, and its build at 1M takes minutes instead of seconds);
- memory is the raw vectors plus 8-byte ids (~0.53 GB at 1M), the same as exact search;
- build = k-means on at most 64 points per list plus one assignment pass: seconds at 1M.

The index is built from the face store (:meth:`GalleryIndex.from_store`) and kept in step with
enrolments and ``forget`` by :meth:`GalleryIndex.sync` (adds the store's new face ids, removes the
gone ones; rebuilds when the gallery outgrew the lists it was trained for).
Distances are squared L2 in [0, 4], as everywhere in facekit.
"""

from __future__ import annotations

import numpy as np

__all__ = ["GalleryIndex", "EXACT_MAX", "NPROBE", "nlist_for", "exact_search"]

#: galleries up to this many faces are searched exactly (numpy); beyond it, FAISS IVF-Flat.
#: bench/gallery.py: exact search of 50k faces takes ~1.5 ms for one query on 2 cores, IVF ~0.2 ms.
EXACT_MAX = 50_000
#: inverted lists visited per query (bench/gallery.py: recall@1 vs exact >= 0.99 at 1M faces)
NPROBE = 32


def nlist_for(n: int) -> int:
    """Number of IVF lists for ``n`` faces: the power of two nearest ``4 * sqrt(n)`` (>= 16)."""
    return int(max(16, 2 ** round(np.log2(4.0 * np.sqrt(max(n, 1))))))


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
    exact_max : up to this many faces, search exactly (default :data:`EXACT_MAX`); beyond it, use
        a FAISS IVF-Flat index trained on the faces present when it is built.
    nprobe : IVF lists visited per query (default :data:`NPROBE`); more is slower and closer to exact.

    ``search`` returns face ids (the store's ``faces.id``), ``identify`` names. Exact mode keeps
    the vectors in one numpy array; IVF mode keeps them only inside FAISS (no second copy).
    """

    def __init__(self, dim: int = 128, *, exact_max: int = EXACT_MAX, nprobe: int = NPROBE):
        if int(dim) < 1 or int(exact_max) < 0 or int(nprobe) < 1:
            raise ValueError(f"need dim >= 1, exact_max >= 0, nprobe >= 1; got {dim}, {exact_max}, {nprobe}")
        self.dim, self.exact_max, self._nprobe = int(dim), int(exact_max), int(nprobe)
        self._x = np.zeros((0, self.dim), np.float32)  # exact mode only
        self._ids = np.zeros(0, np.int64)  # face ids; exact mode: row order of _x; IVF: sorted
        self._codes = np.zeros(0, np.int32)  # name code per id (same order as _ids)
        self._names: list[str] = []
        self._code_of: dict[str, int] = {}
        self._ivf = None
        self._trained_on = 0
        self._order: np.ndarray | None = None

    # -- state ---------------------------------------------------------------------------
    def __len__(self) -> int:
        return len(self._ids)

    @property
    def kind(self) -> str:
        """``"exact"`` or ``"ivf"`` (FAISS IndexIVFFlat): what :meth:`search` uses now."""
        return "exact" if self._ivf is None else "ivf"

    @property
    def nprobe(self) -> int:
        """IVF lists visited per query (settable; no effect in exact mode)."""
        return self._nprobe

    @nprobe.setter
    def nprobe(self, value: int) -> None:
        if int(value) < 1:
            raise ValueError(f"nprobe must be >= 1, got {value}")
        self._nprobe = int(value)
        if self._ivf is not None:
            self._ivf.nprobe = min(self._nprobe, self._ivf.nlist)

    @property
    def nlist(self) -> int:
        """Number of IVF lists (0 in exact mode)."""
        return 0 if self._ivf is None else int(self._ivf.nlist)

    @property
    def ids(self) -> np.ndarray:
        """The face ids in the index, int64 (N,) sorted."""
        return np.sort(self._ids)

    def names_of(self, ids: np.ndarray) -> list[str]:
        """Names of face ids (``""`` for -1, i.e. no result)."""
        ids = np.asarray(ids, np.int64).ravel()
        if self._order is None:  # sorted view of the ids, kept until the next add/remove
            self._order = np.argsort(self._ids, kind="stable")
        order = self._order
        pos = np.searchsorted(self._ids[order], ids)
        pos = np.clip(pos, 0, max(len(order) - 1, 0))
        out = []
        for i, p in zip(ids.tolist(), pos.tolist()):
            ok = len(order) and self._ids[order[p]] == i
            out.append(self._names[self._codes[order[p]]] if ok else "")
        return out

    # -- building ------------------------------------------------------------------------
    @classmethod
    def from_store(cls, store, model: str, **kwargs) -> "GalleryIndex":
        """An index of every face of ``model`` (an embedder fingerprint) in a
        :class:`facekit.store.FaceStore`."""
        x, names, ids = store.embeddings(model)
        dim = x.shape[1] if x.ndim == 2 and x.shape[1] else kwargs.pop("dim", 128)
        kwargs.pop("dim", None)
        index = cls(dim, **kwargs)
        index.add(x, ids, names)
        return index

    def add(self, embeddings: np.ndarray, ids, names) -> None:
        """Add faces: ``embeddings`` float32 (N, dim) unit rows, their face ``ids`` (int64, new)
        and ``names`` (a list of N names or one name for all)."""
        x = _unit_rows(embeddings, "embeddings", self.dim) if len(embeddings) else np.zeros((0, self.dim), np.float32)
        ids = np.asarray(ids, np.int64).ravel()
        names = [names] * len(ids) if isinstance(names, str) else list(names)
        if not (len(x) == len(ids) == len(names)):
            raise ValueError(f"add needs as many ids and names as embeddings: {len(x)}, {len(ids)}, {len(names)}")
        if len(ids) == 0:
            return
        if len(np.unique(ids)) != len(ids) or np.isin(ids, self._ids).any():
            raise ValueError("face ids must be new and unique; use sync() to follow a store")
        codes = np.asarray([self._code(n) for n in names], np.int32)
        self._ids = np.concatenate([self._ids, ids])
        self._codes = np.concatenate([self._codes, codes])
        self._order = None
        if self._ivf is None:
            self._x = np.concatenate([self._x, x]) if len(self._x) else x.copy()
            if len(self._ids) > self.exact_max:
                self._build_ivf(self._x, self._ids)
        else:
            self._ivf.add_with_ids(x, ids)

    def remove(self, ids) -> int:
        """Remove faces by id (unknown ids are ignored); returns how many were removed."""
        ids = np.unique(np.asarray(ids, np.int64).ravel())
        keep = ~np.isin(self._ids, ids)
        n = int((~keep).sum())
        if n == 0:
            return 0
        if self._ivf is None:
            self._x = self._x[keep]
        else:
            self._ivf.remove_ids(ids)
        self._ids, self._codes = self._ids[keep], self._codes[keep]
        self._order = None
        return n

    def sync(self, store, model: str) -> tuple[int, int]:
        """Follow the store: add faces it has that the index lacks, remove those it no longer has
        (after ``forget``). Returns ``(added, removed)``. Rebuilds when the gallery has grown to
        4x the size the IVF lists were trained on, or falls back under :attr:`exact_max`."""
        x, names, ids = store.embeddings(model)
        ids = np.asarray(ids, np.int64)
        gone = self._ids[~np.isin(self._ids, ids)]
        removed = self.remove(gone)
        new = ~np.isin(ids, self._ids)
        grown = self._ivf is not None and (len(ids) > 4 * self._trained_on or len(ids) <= self.exact_max)
        if grown:
            fresh = GalleryIndex(self.dim, exact_max=self.exact_max, nprobe=self.nprobe)
            fresh.add(x, ids, names)
            self.__dict__.update(fresh.__dict__)
        else:
            self.add(x[new], ids[new], [n for n, m in zip(names, new) if m])
        return int(new.sum()), removed

    def _code(self, name: str) -> int:
        if name not in self._code_of:
            self._code_of[name] = len(self._names)
            self._names.append(name)
        return self._code_of[name]

    def _build_ivf(self, x: np.ndarray, ids: np.ndarray) -> None:
        import faiss

        nlist = nlist_for(len(x))
        quantizer = faiss.IndexFlatIP(self.dim)
        ivf = faiss.IndexIVFFlat(quantizer, self.dim, nlist, faiss.METRIC_INNER_PRODUCT)
        rng = np.random.default_rng(0)
        sample = x if len(x) <= 64 * nlist else x[rng.choice(len(x), 64 * nlist, replace=False)]
        ivf.cp.max_points_per_centroid = 64  # k-means on at most 64 points per list: seconds at 1M
        ivf.train(np.ascontiguousarray(sample))
        ivf.add_with_ids(x, ids)
        ivf.nprobe = min(self.nprobe, nlist)
        self._ivf, self._trained_on = ivf, len(x)
        self._x = np.zeros((0, self.dim), np.float32)  # FAISS holds the vectors now

    # -- search --------------------------------------------------------------------------
    def search(self, queries: np.ndarray, k: int = 1) -> tuple[np.ndarray, np.ndarray]:
        """k nearest faces of each query (float32 (Q, dim) or (dim,) unit rows): ``(distances
        float32 (Q, k) squared L2 ascending, face ids int64 (Q, k); -1 / inf where fewer)``."""
        q = _unit_rows(queries, "queries", self.dim)
        q = q / np.maximum(np.linalg.norm(q, axis=1, keepdims=True), 1e-12)
        if int(k) < 1:
            raise ValueError(f"k must be >= 1, got {k}")
        if self._ivf is None:
            d, rows = exact_search(self._x, q, int(k))
            return d, np.where(rows >= 0, self._ids[np.maximum(rows, 0)] if len(self._ids) else -1, -1)
        sims, ids = self._ivf.search(q, int(k))
        d = np.where(ids >= 0, np.clip(2.0 - 2.0 * sims, 0.0, 4.0), np.inf).astype(np.float32)
        return d, ids.astype(np.int64)

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
        """Bytes held by the vectors and ids (exact array or FAISS lists + ids)."""
        if self._ivf is None:
            vec = self._x.nbytes
        else:
            vec = self._ivf.ntotal * (self.dim * 4 + 8) + self._ivf.nlist * self.dim * 4
        return int(vec + self._ids.nbytes + self._codes.nbytes)
