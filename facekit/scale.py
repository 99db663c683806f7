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

import logging
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

        files = [PhotoFile(str(p), int(s), int(m)) for ps, ss, ms in zip(batch["paths"], batch["sizes"], batch["mtimes"])
                 for p, s, m in zip(ps, ss, ms)]
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
    """Ray actor: embeds the ``crop`` of each face row with the ONNX model; drops the crop.

    ONNX Runtime's intra-op threads equal ``threads`` (the actor's CPUs): left at its default, each
    actor's session would start one thread per core of the node and the pool would oversubscribe
    it. :class:`facekit.embed.Embedder` has no thread option yet, so on its ONNX Runtime backend
    the actor opens the same cached model file (:func:`facekit.embed.onnx_path`, or
    :func:`facekit.quant.int8_model_path` for int8; both checked against their manifests when
    loaded) in a session with ``intra_op_num_threads = threads`` (:func:`ort_session`); other
    backends go through the Embedder."""

    def __init__(self, precision: str | None, threads: int):
        import inspect

        from .embed import Embedder

        kw = {"precision": precision} if precision else {}
        self.threads = max(1, int(threads))
        if "threads" in inspect.signature(Embedder).parameters:  # a future Embedder(threads=...) does it itself
            kw["threads"] = self.threads
        self.emb = Embedder(**kw)
        self.session = None
        if "threads" not in kw and self.emb.backend == "onnxruntime":
            if self.emb.precision == "int8":
                from .quant import int8_model_path

                path = int8_model_path(self.emb.model_name)
            else:
                from .compiled import onnx_path

                path = onnx_path(self.emb.model_name)
            self.session = ort_session(path, self.threads)

    def embed(self, crops: np.ndarray) -> np.ndarray:
        """uint8 crops (N, 160, 160, 3) -> float32 (N, d) unit embeddings."""
        if self.session is None:
            return self.emb.embed(crops)
        out = [self.session.run(None, {"crops": np.ascontiguousarray(crops[i:i + 64])})[0]
               for i in range(0, len(crops), 64)]
        return np.concatenate(out).astype(np.float32, copy=False)

    def __call__(self, batch):
        has = batch["face"].to_numpy() >= 0
        emb = [None] * len(batch)
        if has.any():
            crops = np.stack([np.frombuffer(c, np.uint8).reshape(CROP, CROP, 3) for c in batch["crop"][has]])
            for i, e in zip(np.flatnonzero(has), self.embed(crops)):
                emb[i] = e.tolist()
        out = batch.drop(columns=["crop"])
        out["embedding"] = emb
        return out


def ort_session(path: str | os.PathLike, threads: int):
    """An ONNX Runtime CPU session on a compiled model with ``threads`` intra-op threads (one
    inter-op thread, no spinning: the options of :func:`facekit.embed.ort_session` plus the count)."""
    import onnxruntime as ort

    so = ort.SessionOptions()
    so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    so.log_severity_level = 3
    so.intra_op_num_threads = max(1, int(threads))
    so.inter_op_num_threads = 1
    so.add_session_config_entry("session.intra_op.allow_spinning", "0")
    return ort.InferenceSession(str(path), so, providers=["CPUExecutionProvider"])


def _start_ray(address: str | None, num_cpus: int | None, object_store_mb: int | None):
    """``(ray, owned)``: join ``address`` or start a local instance (owned: shut down after)."""
    import ray

    if ray.is_initialized():
        return ray, False
    if address:
        ray.init(address=address, log_to_driver=False)
        return ray, False
    ray.init(num_cpus=num_cpus or os.cpu_count(), include_dashboard=False, log_to_driver=False, logging_level=logging.WARNING,
             object_store_memory=(object_store_mb or 256) * 2 ** 20,
             runtime_env={"env_vars": {"TF_CPP_MIN_LOG_LEVEL": "2"}})
    return ray, True


def ray_rows(files: list[PhotoFile], out_dir: str | os.PathLike, *, model: str, precision: str | None = None,
             address: str | None = None, num_cpus: int | None = None, detect_actors: int | None = None,
             embed_cpus: int | None = None, batch_size: int = CHUNK, object_store_mb: int | None = None,
             progress: bool = True) -> list[str]:
    """Run the Ray Data job over ``files`` and write Parquet shards to ``out_dir`` (local path or a
    pyarrow filesystem URI). Returns the shard paths. ``detect_actors`` (default: CPUs - embed
    CPUs, at least 1) actors of 1 CPU detect; one pool of ``embed_cpus``-CPU actors embeds
    (default: half the CPUs, at least 1). ``progress``: Ray Data's progress bars (or, when stdout
    is not a terminal, its progress log lines)."""
    ray, owned = _start_ray(address, num_cpus, object_store_mb)
    try:
        cpus = int(ray.cluster_resources().get("CPU", 1))
        embed_cpus = embed_cpus or max(1, cpus // 2)
        detect_actors = detect_actors or max(1, cpus - embed_cpus)
        # one item = one chunk of photos, cut as the local engine cuts them: the same photos meet in
        # one batched detector call, so both engines find bit-identical faces
        chunks = [files[i:i + batch_size] for i in range(0, len(files), batch_size)]
        items = [{"paths": [f.path for f in c], "sizes": [f.size for f in c], "mtimes": [f.mtime_ns for f in c]}
                 for c in chunks]  # one type per column: Arrow stores them natively
        ctx = ray.data.DataContext.get_current()
        shown, ctx.enable_progress_bars = ctx.enable_progress_bars, bool(progress)
        ds = ray.data.from_items(items, override_num_blocks=len(chunks))
        ds = ds.map_batches(DetectAlign, fn_constructor_kwargs={"model": model}, batch_size=1,
                            batch_format="pandas", num_cpus=1,
                            compute=ray.data.ActorPoolStrategy(size=detect_actors))
        ds = ds.map_batches(Embed, fn_constructor_kwargs={"precision": precision, "threads": embed_cpus},
                            batch_size=4 * batch_size, batch_format="pandas", num_cpus=embed_cpus,
                            compute=ray.data.ActorPoolStrategy(size=max(1, (cpus - detect_actors) // embed_cpus)))
        try:
            ds.write_parquet(str(out_dir))
        finally:
            ctx.enable_progress_bars = shown
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
    result as :func:`facekit.scan.index_folder`. ``root`` may be a local folder or a pyarrow
    filesystem URI (``s3://bucket/photos``). ``shards``: a folder or URI under which this run's
    Parquet shards go, in a new ``run-*`` subfolder that is kept (default ``$FACEKIT_SHARDS``, else
    a temporary folder removed after ingestion; on a multi-node cluster it must be storage every
    node can write, e.g. ``s3://bucket/facekit-shards``). ``keep_rows``: also return the rows."""
    from .embed import Embedder

    t0 = time.perf_counter()
    files = list_photos(root)
    model = (Embedder(precision=precision) if precision else Embedder()).fingerprint
    todo = todo_photos(store, files, model)
    report = IndexReport(photos=len(files), cached=len(files) - len(todo), engine="ray")
    rows: list[dict] = []
    if todo:
        with tempfile.TemporaryDirectory(prefix="facekit-shards-") as tmp:
            shards = shards or os.environ.get("FACEKIT_SHARDS")
            out = f"{str(shards).rstrip('/')}/run-{time.strftime('%Y%m%d-%H%M%S')}-{os.getpid()}" if shards else tmp
            ray_rows(todo, out, model=model, precision=precision, address=address, num_cpus=num_cpus,
                     progress=progress, **job)
            rows = read_shards(out)
        t = time.perf_counter()
        ingest_rows(store, rows, report)
        report.stage_s["store"] = time.perf_counter() - t
    report.seconds = time.perf_counter() - t0
    return (report, rows) if keep_rows else report
