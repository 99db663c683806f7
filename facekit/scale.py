"""``facekit index --engine ray``: the indexing pipeline of :mod:`facekit.scan` as a Ray Data job.

Taught in notebook 07 ("At scale"). Why Ray Data: it streams batches between stages with
backpressure (photos never all sit in memory), runs stateful stages in actor pools (each actor
loads the detector or the ONNX model once), and the same script runs on a laptop (a local
instance on this machine's cores) or joins a cluster (``ray up`` / KubeRay) unchanged; Spark
would add a JVM and copy every image between it and the Python workers, and Dask has no actor
pools with per-stage resources.

The job:

1. the driver lists the tree and keeps only photos the store has not cached (same test as the
   local engine);
2. ``from_items(chunks of paths)`` -> ``map_batches(DetectAlign)``: read the bytes (local paths or any
   pyarrow filesystem URI: ``s3://``, ``gs://``, ``hdfs://``), hash, decode (JPEG draft mode),
   detect (batched), align; one row per face carrying its 160x160 crop;
3. ``map_batches(Embed)`` in an actor pool, each actor with ``embed_cpus`` CPUs and ONNX
   Runtime's intra-op threads equal to them;
4. ``write_parquet`` shards of rows (:data:`facekit.scan.ROW_COLUMNS`; the crops are dropped);
5. the driver ingests the shards into the store (:func:`facekit.scan.ingest_rows`).

Stages 2-3 call the same functions as the local engine, so both produce the same rows
(embeddings equal to ~1e-6, tested to 1e-5 in tests/test_scale.py).
"""

from __future__ import annotations

import os
import tempfile
import time
from pathlib import Path

import numpy as np

from .scan import CHUNK, IndexReport, PhotoFile, detect_align, ingest_rows, list_photos, load, photo_rows, todo_photos

__all__ = ["index_folder_ray", "ray_rows", "read_shards", "DetectAlign", "Embed"]

CROP = 160


class DetectAlign:
    """Ray actor: photo paths in, one row per face (crop included) out. Loads the detector once."""

    def __init__(self, model: str, max_side: int | None = 1280):
        from .detect import Detector

        self.det = Detector(max_side=max_side)
        self.model = model

    def __call__(self, batch):
        import pandas as pd

        files = [PhotoFile(p, int(s), int(m)) for ch in batch["files"] for p, s, m in ch]
        got = [load(f.path, self.det.max_side) for f in files]
        ok = [i for i, g in enumerate(got) if g[3] is None]
        found = dict(zip(ok, detect_align([got[i][0] for i in ok], [got[i][1] for i in ok], self.det)))
        rows = []
        for i, (f, (_, _, sha, err)) in enumerate(zip(files, got)):
            faces, crops = found.get(i, ([], np.zeros((0, CROP, CROP, 3), np.uint8)))
            zero = np.zeros((len(faces), 1), np.float32)
            rs = photo_rows(f, sha, faces, zero, self.model, err)
            for r, c in zip(rs, crops if faces else [None] * len(rs)):
                r["crop"] = None if c is None else c.tobytes()
                r["embedding"] = None
            rows += rs
        return pd.DataFrame(rows)


class Embed:
    """Ray actor: embeds the ``crop`` of each face row with the ONNX model; drops the crop."""

    def __init__(self, precision: str | None, threads: int):
        import inspect

        from .embed import Embedder

        kw = {"precision": precision} if precision else {}
        if "threads" in inspect.signature(Embedder).parameters:  # ONNX Runtime intra-op threads = the actor's CPUs
            kw["threads"] = threads
        self.emb = Embedder(**kw)

    def __call__(self, batch):
        has = batch["face"].to_numpy() >= 0
        emb = [None] * len(batch)
        if has.any():
            crops = np.stack([np.frombuffer(c, np.uint8).reshape(CROP, CROP, 3) for c in batch["crop"][has]])
            for i, e in zip(np.flatnonzero(has), self.emb.embed(crops)):
                emb[i] = e.tolist()
        out = batch.drop(columns=["crop"])
        out["embedding"] = emb
        return out


def _start_ray(address: str | None, num_cpus: int | None, object_store_mb: int | None):
    """``(ray, owned)``: join ``address`` or start a local instance (owned: shut down after)."""
    import ray

    if ray.is_initialized():
        return ray, False
    if address:
        ray.init(address=address, log_to_driver=False)
        return ray, False
    ray.init(num_cpus=num_cpus or os.cpu_count(), include_dashboard=False, log_to_driver=False,
             object_store_memory=(object_store_mb or 256) * 2 ** 20,
             runtime_env={"env_vars": {"TF_CPP_MIN_LOG_LEVEL": "2"}})
    return ray, True


def ray_rows(files: list[PhotoFile], out_dir: str | os.PathLike, *, model: str, precision: str | None = None,
             address: str | None = None, num_cpus: int | None = None, detect_actors: int | None = None,
             embed_cpus: int | None = None, batch_size: int = CHUNK, object_store_mb: int | None = None) -> list[str]:
    """Run the Ray Data job over ``files`` and write Parquet shards to ``out_dir`` (local path or a
    pyarrow filesystem URI). Returns the shard paths. ``detect_actors`` (default: CPUs - embed
    CPUs, at least 1) actors of 1 CPU detect; one pool of ``embed_cpus``-CPU actors embeds
    (default: half the CPUs, at least 1)."""
    ray, owned = _start_ray(address, num_cpus, object_store_mb)
    try:
        cpus = int(ray.cluster_resources().get("CPU", 1))
        embed_cpus = embed_cpus or max(1, cpus // 2)
        detect_actors = detect_actors or max(1, cpus - embed_cpus)
        # one item = one chunk of photos, cut as the local engine cuts them: the same photos meet in
        # one batched detector call, so both engines find bit-identical faces
        chunks = [[(f.path, f.size, f.mtime_ns) for f in files[i:i + batch_size]]
                  for i in range(0, len(files), batch_size)]
        ds = ray.data.from_items([{"files": c} for c in chunks], override_num_blocks=len(chunks))
        ds = ds.map_batches(DetectAlign, fn_constructor_kwargs={"model": model}, batch_size=1,
                            batch_format="pandas", num_cpus=1,
                            compute=ray.data.ActorPoolStrategy(size=detect_actors))
        ds = ds.map_batches(Embed, fn_constructor_kwargs={"precision": precision, "threads": embed_cpus},
                            batch_size=4 * batch_size, batch_format="pandas", num_cpus=embed_cpus,
                            compute=ray.data.ActorPoolStrategy(size=max(1, (cpus - detect_actors) // embed_cpus)))
        ds.write_parquet(str(out_dir))
    finally:
        if owned:
            ray.shutdown()
    return sorted(str(p) for p in Path(out_dir).glob("*.parquet")) if "://" not in str(out_dir) else [str(out_dir)]


def read_shards(out_dir: str | os.PathLike) -> list[dict]:
    """The rows of the Parquet shards under ``out_dir`` (pyarrow; any pyarrow filesystem URI)."""
    import pyarrow.dataset as pads

    rows = pads.dataset(str(out_dir), format="parquet").to_table().to_pylist()
    for r in rows:
        for k in ("size", "mtime_ns", "face"):
            r[k] = int(r[k])
    return rows


def index_folder_ray(root: str | os.PathLike, store, *, address: str | None = None, num_cpus: int | None = None,
                     precision: str | None = None, shards: str | os.PathLike | None = None, progress: bool = True,
                     keep_rows: bool = False, **job) -> IndexReport | tuple[IndexReport, list[dict]]:
    """Index ``root`` into ``store`` with the Ray Data job (see the module docstring): same
    result as :func:`facekit.scan.index_folder`. ``shards``: where the Parquet shards go (default
    a temporary folder, removed after ingestion). ``keep_rows``: also return the rows."""
    from .embed import Embedder

    t0 = time.perf_counter()
    files = list_photos(root)
    model = (Embedder(precision=precision) if precision else Embedder()).fingerprint
    todo = todo_photos(store, files, model)
    report = IndexReport(photos=len(files), cached=len(files) - len(todo), engine="ray")
    rows: list[dict] = []
    if todo:
        with tempfile.TemporaryDirectory(prefix="facekit-shards-") as tmp:
            out = shards or tmp
            ray_rows(todo, out, model=model, precision=precision, address=address, num_cpus=num_cpus, **job)
            rows = read_shards(out)
        t = time.perf_counter()
        ingest_rows(store, rows, report)
        report.stage_s["store"] = time.perf_counter() - t
    report.seconds = time.perf_counter() - t0
    return (report, rows) if keep_rows else report
