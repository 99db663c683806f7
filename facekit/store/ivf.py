"""The FAISS side of :class:`facekit.store.index.GalleryIndex`: training, refilling, state.

Training the inverted file (k-means lists, PQ codebooks and, from :data:`OPQ_MIN` faces, the OPQ
rotation) is the slow step (62-103 s at 1M faces on 2 cores), so it runs with a progress bar,
and :meth:`TrainedLists.refill` replaces a trained index's contents without training again: what a
saved index of an older store generation needs (:mod:`facekit.store.index_file`). Removed faces
never reach a saved file: :meth:`TrainedLists.__getstate__` drops them (and unused names) first.
"""

from __future__ import annotations

import math
import sys
import threading

import numpy as np

from facekit.core.threads import faiss_threads
from facekit.store.search import K_FACTOR, MIN_PROBES, MIN_TRAIN, PROBE_SHARE, RETRAIN_GROWTH, TRAIN_MAX, factory_string

__all__ = ["TrainedLists", "ADD_CHUNK"]

#: faces added to FAISS per call when filling a trained index (one progress bar step)
ADD_CHUNK = 65_536


class TrainedLists:
    """Training, refilling and the saved state of a :class:`~facekit.store.index.GalleryIndex`
    (a mixin: the index supplies its arrays, ``add`` and ``_rows``)."""

    def _rebuild(self) -> None:
        """Drop removed faces and refill with the live ones (trained again only when the lists no
        longer suit the size; exact mode if few are left)."""
        x = self._live_vectors()
        live = np.flatnonzero(self._alive)
        ids, names = self._ids[live], [self._names[c] for c in self._codes[live]]
        self.refill(x, ids, names)

    def _live_vectors(self) -> np.ndarray:
        import faiss

        if self._ann is None:
            return self._x[self._alive]
        return faiss.downcast_index(self._ann.refine_index).reconstruct_n(0, self._ann.ntotal)[self._alive]

    def _clear(self) -> None:
        self._ids, self._codes = np.zeros(0, np.int64), np.zeros(0, np.int32)
        self._alive, self._dead, self._order = np.zeros(0, bool), 0, None
        self._names, self._code_of = [], {}
        self._x = np.zeros((0, self.dim), np.float32)

    def keeps_training(self, n: int) -> bool:
        """Whether :meth:`refill` with ``n`` faces keeps the trained lists (no training)."""
        return self._ann is not None and max(self.exact_max, MIN_TRAIN - 1) < int(n) <= RETRAIN_GROWTH * self._trained_n

    def refill(self, embeddings: np.ndarray, ids, names, *, progress: bool = False) -> None:
        """Replace every face by these (``ids``, ``names`` as in ``add``). A trained index keeps its
        lists and codebooks (no training) while they suit the size: more than ``exact_max`` faces
        and at most :data:`RETRAIN_GROWTH` x the size it was trained at; otherwise it is built anew
        (trained when large). Nothing of the faces it held before is kept."""
        x = self._rows(embeddings, "GalleryIndex.refill") if len(embeddings) else np.zeros((0, self.dim), np.float32)
        ids = np.asarray(ids, np.int64).ravel()
        names = [names] * len(ids) if isinstance(names, str) else list(names)
        n = len(x)
        keep = self.keeps_training(n)
        self._clear()
        if not keep:
            self._ann = self._ivf = None
            self._trained_n = 0
            self.add(x, ids, names, progress=progress)
            return
        if len(np.unique(ids)) != n or len(names) != n:
            raise ValueError(f"refill needs {n} unique ids and {n} names, got {len(np.unique(ids))} and {len(names)}")
        self._ann.reset()
        self._fill(x, progress, f"refilling the gallery index ({n:,} faces, no training)")
        self._ids = ids.copy()
        self._codes = np.asarray([self._code(v) for v in names], np.int32)
        self._alive = np.ones(n, bool)

    def _fill(self, x: np.ndarray, progress: bool, desc: str) -> None:
        from tqdm.auto import tqdm

        with tqdm(total=len(x), desc=desc, unit="face", disable=not progress, file=sys.stderr, leave=False) as bar:
            for s in range(0, len(x), ADD_CHUNK):
                with faiss_threads(self.threads):
                    self._ann.add(x[s:s + ADD_CHUNK])
                bar.update(len(x[s:s + ADD_CHUNK]))

    def _train(self, x: np.ndarray, progress: bool = False) -> None:
        """Train the inverted file on ``x`` and add it. The training is one FAISS call, run on a
        thread while the bar shows the time spent; then the faces are added in steps."""
        import faiss
        from tqdm.auto import tqdm

        n = len(x)
        index = faiss.index_factory(self.dim, factory_string(n, self.dim), faiss.METRIC_INNER_PRODUCT)
        sample = x if n <= TRAIN_MAX else x[np.sort(np.random.default_rng(0).choice(n, TRAIN_MAX, replace=False))]
        failed: list[BaseException] = []

        def train() -> None:
            try:
                with faiss_threads(self.threads):
                    index.train(sample)
            except BaseException as exc:  # re-raised below, on the caller's thread
                failed.append(exc)

        with tqdm(total=None, desc=f"training the gallery index ({n:,} faces, {factory_string(n, self.dim)})",
                  bar_format="{desc}: {elapsed}", disable=not progress, file=sys.stderr, leave=False) as bar:
            t = threading.Thread(target=train, name="facekit-train", daemon=True)
            t.start()
            while t.is_alive():
                t.join(0.5)
                bar.refresh()
        if failed:
            raise failed[0]
        self._ann = index
        self._fill(x, progress, "adding faces to the trained index")
        ivf = faiss.downcast_index(faiss.extract_index_ivf(index))
        ivf.nprobe = min(ivf.nlist, self._nprobe or max(MIN_PROBES, math.ceil(ivf.nlist * PROBE_SHARE)))
        index.k_factor = K_FACTOR
        self._ann, self._ivf, self._trained_n = index, ivf, n
        self._x = np.zeros((0, self.dim), np.float32)  # FAISS holds the vectors now

    def trained_on_any(self, vectors: np.ndarray, tol: float = 1e-6) -> bool:
        """Whether a list centre of the trained index equals one of ``vectors`` (in the space the
        lists live in, after the OPQ rotation): a list holding a single face has that face as its
        centre, so after forgetting it the index must be trained again, not only refilled."""
        import faiss

        if self._ann is None or not len(vectors):
            return False
        v = np.ascontiguousarray(np.asarray(vectors, np.float32).reshape(-1, self.dim))
        base = faiss.downcast_index(self._ann.base_index)
        if isinstance(base, faiss.IndexPreTransform):
            v = base.apply_py(v)
        quant = self._ivf.quantizer
        centres = quant.reconstruct_n(0, quant.ntotal)
        d = (v * v).sum(1)[:, None] + (centres * centres).sum(1)[None, :] - 2 * v @ centres.T
        return bool((d <= tol).any())

    # -- state (the pickle protocol; facekit.store.index_file keeps it in an .npz, no pickle) ---
    def __getstate__(self) -> dict:
        """Arrays and numbers only: the FAISS index serialised (IVF mode) or the vectors (exact).
        Removed faces and names nobody holds any more are dropped first: never saved."""
        import faiss

        if self._dead or len(set(self._codes.tolist())) < len(self._names):
            self._rebuild()
        ann = np.zeros(0, np.uint8) if self._ann is None else faiss.serialize_index(self._ann)
        return {"dim": self.dim, "exact_max": self.exact_max, "nprobe": self._nprobe or 0, "x": self._x,
                "ids": self._ids, "codes": self._codes, "alive": self._alive, "names": np.array(self._names, str),
                "ann": ann, "trained_n": self._trained_n, "model": np.array(self.model or "", str)}

    def __setstate__(self, state: dict) -> None:
        import faiss

        model = str(state["model"]) if "model" in state else ""
        self.__init__(int(state["dim"]), exact_max=int(state["exact_max"]), nprobe=int(state["nprobe"]) or None,
                      model=model or None)
        self._x = np.asarray(state["x"], np.float32).reshape(-1, self.dim)
        self._ids, self._codes = np.asarray(state["ids"], np.int64), np.asarray(state["codes"], np.int32)
        self._alive = np.asarray(state["alive"], bool)
        self._names = [str(n) for n in state["names"]]
        self._code_of = {n: i for i, n in enumerate(self._names)}
        self._dead = int((~self._alive).sum())
        if len(state["ann"]):
            self._ann = faiss.deserialize_index(np.asarray(state["ann"], np.uint8))
            self._ivf = faiss.downcast_index(faiss.extract_index_ivf(self._ann))
            self._trained_n = int(state["trained_n"])
        n = len(self._x) if self._ann is None else self._ann.ntotal
        if not (len(self._ids) == len(self._codes) == len(self._alive) == n) or (
                len(self._codes) and self._codes.max() >= len(self._names)):
            raise ValueError("inconsistent gallery index state")
