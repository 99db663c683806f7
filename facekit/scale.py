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
2. ``from_items(chunks of paths)`` -> ``map_batches(DetectEmbed)`` in an actor pool of one actor
   per CPU (``actor_cpus=1``): each actor reads a chunk's bytes (local paths or any pyarrow
   filesystem URI: ``s3://``, ``gs://``, ``hdfs://``), hashes, decodes (JPEG draft mode), detects
   (batched), aligns and embeds the crops with the ONNX model, ONNX Runtime's intra-op threads
   equal to the actor's CPUs and TensorFlow's pools sized to them (:func:`limit_tf_threads`);
3. Parquet shards of rows (:data:`facekit.scan.ROW_COLUMNS`: path, content hash, box,
   landmarks, embedding, model fingerprint), written by :class:`ShardWriter` actors that take no
   CPU, so they run while the actors hold every CPU;
4. the driver ingests the shards into the store (:func:`facekit.scan.ingest_rows`).

Why one fused actor (measured on 2 quiet cores with ``bench/album.py``, 2,000 LFW photos): in the
two-stage layout (``fuse=False``: ``DetectAlign`` actors, then an ``Embed`` pool fed the crops)
each stage gets a fixed share of the cores, and the embed stage, 2/3 of the work, bottlenecks its
share while the other idles: 0.60x the local engine. Fused actors keep every core busy on
whichever stage its chunk is in and ship no crops between processes. Why :class:`ShardWriter`
actors and not Ray Data's ``write_parquet``: its write tasks ran in extra worker processes that
Ray, past its soft limit of one idle worker per CPU, kills when idle, so every few blocks a fresh
worker booted and imported pyarrow on the actors' cores (a CPU timeline showed 25 % of the two
cores lost): 0.67x with it, 0.77-0.85x in two runs (0.66-0.72x on 12 MP JPEGs) with the writer
actors. What is left is start-up: each actor imports TensorFlow (~4.5 s of CPU) and loads both models inside the
job. On a cluster start-up is paid once per actor; ``fuse=False`` stays for when embedding should
get other resources than detection.

Stages call the same functions as the local engine, so both produce the same rows (embeddings
equal to ~1e-6, tested to 1e-5 in tests/test_scale.py).
"""

from __future__ import annotations

import logging
import os
import tempfile
import time

import numpy as np

from .scan import (
    CHUNK,
    IndexReport,
    PhotoFile,
    detect_align,
    ingest_rows,
    list_photos,
    load,
    photo_rows,
    todo_photos,
)

__all__ = ["DetectAlign", "DetectEmbed", "Embed", "ShardWriter", "index_folder_ray", "ray_rows", "read_shards"]

CROP = 160


def limit_tf_threads(threads: int) -> None:
    """Size TensorFlow's thread pools for an actor of ``threads`` CPUs: ``threads`` inter-op
    threads and ``max(2, threads)`` intra-op threads. Left at their default each pool has one
    thread per core of the node, in every actor. Not 1 intra-op thread: TensorFlow's kernels then
    take a single-threaded path whose MTCNN landmarks differ from the threaded path's by ~1e-5 px
    (measured; 2, 3 and 4 threads agree bit for bit), enough to move a crop pixel and an embedding
    by 2e-5, so the rows would no longer equal the local engine's. Takes effect only before
    TensorFlow runs its first op in this process (a fresh actor); later it is a no-op."""
    import tensorflow as tf

    try:
        tf.config.threading.set_intra_op_parallelism_threads(max(2, int(threads)))
        tf.config.threading.set_inter_op_parallelism_threads(max(1, int(threads)))
    except RuntimeError:  # TensorFlow already initialised here (e.g. the class used in the driver)
        pass


class DetectAlign:
    """Ray actor: photo paths in, one row per face (crop included) out. Loads the detector once;
    TensorFlow's thread pools are sized to ``threads``, the actor's CPUs (:func:`limit_tf_threads`)."""

    def __init__(self, model: str, max_side: int | None = 1280, threads: int = 1):
        from .detect import Detector

        limit_tf_threads(threads)
        self.det = Detector(max_side=max_side)
        self.model = model

    def photos(self, batch) -> list[tuple[PhotoFile, str, str | None, list, np.ndarray]]:
        """``(photo, sha256, error, faces, crops)`` of each photo of the batch's chunks: read, hash,
        decode, detect (one batched call per chunk, as the local engine cuts them), align."""
        out = []
        for ps, ss, ms in zip(batch["paths"], batch["sizes"], batch["mtimes"]):
            files = [PhotoFile(str(p), int(s), int(m)) for p, s, m in zip(ps, ss, ms)]
            got = [load(f.path, self.det.max_side) for f in files]
            ok = [i for i, g in enumerate(got) if g[3] is None]
            found = dict(zip(ok, detect_align([got[i][0] for i in ok], [got[i][1] for i in ok], self.det)))
            none = ([], np.zeros((0, CROP, CROP, 3), np.uint8))
            out += [(f, sha, err, *found.get(i, none)) for i, (f, (_, _, sha, err)) in enumerate(zip(files, got))]
        return out

    def __call__(self, batch):
        import pandas as pd

        rows = []
        for f, sha, err, faces, crops in self.photos(batch):
            rs = photo_rows(f, sha, faces, np.zeros((len(faces), 1), np.float32), self.model, err)
            for r, c in zip(rs, crops if faces else [None] * len(rs)):
                r["crop"] = None if c is None else c.tobytes()
                r["embedding"] = None
            rows += rs
        return pd.DataFrame(rows)


class DetectEmbed(DetectAlign):
    """Ray actor of the fused job: photo paths in, finished rows out (read, hash, decode, detect,
    align, then embed the chunk's crops in the same process: no crop leaves the actor). ONNX
    Runtime's intra-op threads equal ``threads`` (the actor's CPUs); TensorFlow's pools are sized
    to them (:func:`limit_tf_threads`)."""

    def __init__(self, model: str, precision: str | None, threads: int = 1, max_side: int | None = 1280):
        super().__init__(model, max_side, threads)
        self.embedder = Embed(precision, threads)

    def __call__(self, batch):
        import pandas as pd

        got = self.photos(batch)
        crops = [c for *_, c in got if len(c)]
        emb = self.embedder.embed(np.concatenate(crops)) if crops else None
        rows, k = [], 0
        for f, sha, err, faces, _ in got:
            rows += photo_rows(f, sha, faces, None if emb is None else emb[k:k + len(faces)], self.model, err)
            k += len(faces)
        return pd.DataFrame(rows)


class Embed:
    """Ray actor: embeds the ``crop`` of each face row with the ONNX model; drops the crop.

    ONNX Runtime's intra-op threads equal ``threads`` (the actor's CPUs): left at its default, each
    actor's session would start one thread per core of the node and the pool would oversubscribe
    it. :class:`facekit.embed.Embedder` has no thread option, so on its ONNX Runtime backend the
    actor opens the same cached model file (:func:`facekit.embed.onnx_path`, or
    :func:`facekit.quant.int8_model_path` for int8; both checked against their manifests when
    loaded) in a session with ``threads`` intra-op threads (:func:`facekit.compiled.ort_session`);
    other backends go through the Embedder."""

    def __init__(self, precision: str | None, threads: int):
        from .compiled import ort_session
        from .embed import Embedder

        self.threads = max(1, int(threads))
        self.emb = Embedder(**({"precision": precision} if precision else {}))
        self.session = None
        if self.emb.backend == "onnxruntime":
            if self.emb.precision == "int8":
                from .quant import int8_model_path

                path = int8_model_path(self.emb.model_name)
            else:
                from .compiled import onnx_path

                path = onnx_path(self.emb.model_name)
            self.session = ort_session(path, threads=self.threads)

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


class ShardWriter:
    """Ray actor: writes each batch of rows it is given as one Parquet shard under ``out_dir`` (a
    local folder or a pyarrow filesystem URI) and returns ``(shard, rows)``. An actor, not Ray
    Data's ``write_parquet`` tasks: those need worker processes beyond the actors', which Ray
    keeps only up to its soft limit (one per CPU) and kills when idle, so every few blocks a new
    worker booted and imported pyarrow on the actors' cores (measured: 25 % of 2 cores lost)."""

    def __init__(self, out_dir: str):
        import pyarrow.fs as pafs

        if "://" in out_dir:
            self.fs, self.root = pafs.FileSystem.from_uri(out_dir)
            self.shown = out_dir.rstrip("/")  # what the shard paths are reported as (with the scheme)
        else:
            self.fs, self.root = pafs.LocalFileSystem(), os.path.abspath(out_dir)
            self.shown = self.root
        self.fs.create_dir(self.root, recursive=True)

    def __call__(self, batch):
        import uuid

        import pandas as pd
        import pyarrow as pa
        import pyarrow.parquet as pq

        name = f"{uuid.uuid4().hex}.parquet"
        pq.write_table(pa.Table.from_pandas(batch, preserve_index=False), f"{self.root}/{name}", filesystem=self.fs)
        return pd.DataFrame({"shard": [f"{self.shown}/{name}"], "rows": [len(batch)]})


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
             address: str | None = None, num_cpus: int | None = None, fuse: bool = True, actor_cpus: int = 1,
             detect_actors: int | None = None, embed_cpus: int | None = None, batch_size: int = CHUNK,
             object_store_mb: int | None = None, progress: bool = True) -> list[str]:
    """Run the Ray Data job over ``files`` and write Parquet shards to ``out_dir`` (local path or a
    pyarrow filesystem URI). Returns the shard paths.

    ``fuse`` (default): one pool of :class:`DetectEmbed` actors of ``actor_cpus`` CPUs each
    (CPUs // actor_cpus of them) does every stage of a chunk. ``fuse=False``: the two-stage
    layout, ``detect_actors`` :class:`DetectAlign` actors of 1 CPU (default: CPUs - embed CPUs,
    at least 1) then a pool of :class:`Embed` actors of ``embed_cpus`` CPUs (default: half the
    CPUs, at least 1). ``progress``: Ray Data's progress bars (or, when stdout is not a terminal,
    its progress log lines)."""
    ray, owned = _start_ray(address, num_cpus, object_store_mb)
    try:
        cpus = int(ray.cluster_resources().get("CPU", 1))
        # one item = one chunk of photos, cut as the local engine cuts them: the same photos meet in
        # one batched detector call, so both engines find bit-identical faces
        chunks = [files[i:i + batch_size] for i in range(0, len(files), batch_size)]
        items = [{"paths": [f.path for f in c], "sizes": [f.size for f in c], "mtimes": [f.mtime_ns for f in c]}
                 for c in chunks]  # one type per column: Arrow stores them natively
        ctx = ray.data.DataContext.get_current()
        shown, ctx.enable_progress_bars = ctx.enable_progress_bars, bool(progress)
        ds = ray.data.from_items(items, override_num_blocks=len(chunks))
        pool = ray.data.ActorPoolStrategy
        if fuse:
            actor_cpus = max(1, min(int(actor_cpus), cpus))
            actors = max(1, cpus // actor_cpus)
            ds = ds.map_batches(DetectEmbed, fn_constructor_kwargs={"model": model, "precision": precision,
                                                                   "threads": actor_cpus},
                                batch_size=1, batch_format="pandas", num_cpus=actor_cpus, compute=pool(size=actors))
        else:
            embed_cpus = embed_cpus or max(1, cpus // 2)
            detect_actors = detect_actors or max(1, cpus - embed_cpus)
            ds = ds.map_batches(DetectAlign, fn_constructor_kwargs={"model": model}, batch_size=1,
                                batch_format="pandas", num_cpus=1, compute=pool(size=detect_actors))
            embed_actors = max(1, (cpus - detect_actors) // embed_cpus)
            ds = ds.map_batches(Embed, fn_constructor_kwargs={"precision": precision, "threads": embed_cpus},
                                batch_size=4 * batch_size, batch_format="pandas", num_cpus=embed_cpus,
                                compute=pool(size=embed_actors))
            actors = detect_actors + embed_actors
        try:
            # the writers take no CPU of their own, so they run while the actors hold every CPU
            ds = ds.map_batches(ShardWriter, fn_constructor_kwargs={"out_dir": str(out_dir)}, batch_size=None,
                                batch_format="pandas", num_cpus=0, compute=pool(size=max(1, actors // 8)))
            shards = sorted(ds.to_pandas()["shard"].tolist())
        finally:
            ctx.enable_progress_bars = shown
    finally:
        if owned:
            ray.shutdown()
    return shards


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
