"""``facekit index --engine ray``: the indexing pipeline of :mod:`facekit.album.scan` as a Ray Data job.

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
   (batched) with the ONNX Runtime MTCNN, aligns and embeds the crops with the ONNX model, ONNX
   Runtime's intra-op threads equal to the actor's CPUs (no TensorFlow in the actor), and
   writes the chunk's rows (:data:`facekit.store.records.ROW_FIELDS`: path, content hash, box, landmarks,
   embedding, model fingerprint) as one Parquet shard (:class:`Shards`); only the shard's name
   leaves the actor;
3. the driver commits each shard to the store as it arrives (:func:`facekit.album.scan.ingest_rows`,
   one transaction per photo), while the actors go on: Ctrl-C keeps what was committed.

Why one fused actor (measured on 2 quiet cores with ``bench/album.py``, 2,000 LFW photos): in the
two-stage layout (``fuse=False``: ``DetectAlign`` actors, then an ``Embed`` pool fed the crops)
each stage gets a fixed share of the cores, and the embed stage, 2/3 of the work, bottlenecks its
share while the other idles: 0.60x the local engine. Fused actors keep every core busy on
whichever stage its chunk is in and ship no crops between processes. Why the actors write their
own shards: Ray Data's ``write_parquet`` tasks ran in extra worker processes that Ray, past its
soft limit of one idle worker per CPU, kills when idle, so every few blocks a fresh worker booted
and imported pyarrow on the actors' cores (a CPU timeline showed 25 % of the two cores lost:
0.67x); separate writer actors fixed that (0.77-0.85x) but still cost a process start and a
pandas-Arrow round trip per chunk (4.6 s of CPU per 2,000 photos) and delayed the actors' start;
with the actors writing, 0.88-0.91x in two runs (0.79-0.81x on 12 MP JPEGs).
What was left was start-up: each actor imported Ray, TensorFlow and pyarrow (~5.5 s of CPU, 3.4 s
of it TensorFlow) and loaded both models inside the job; with the detector in ONNX Runtime (issue
#24) no actor imports TensorFlow. On a cluster start-up is paid once per actor; ``fuse=False``
stays for when embedding should get other resources than detection.

Stages call the same functions as the local engine, so both produce the same rows (embeddings
equal to ~1e-6, tested to 1e-5 in tests/test_scale.py).
"""

from __future__ import annotations

import contextlib
import logging
import os
import tempfile
import time
from collections.abc import Iterator

import numpy as np

from facekit.album.scan import (CHUNK, IndexReport, PhotoFile, detect_align, embedder_for, ingest_rows, list_photos,
                                load, todo_photos)
from facekit.detection.settings import DetectorSettings
from facekit.store.records import photo_rows, row_schema

__all__ = ["DetectAlign", "DetectEmbed", "Embed", "even_chunks", "Shards", "index_folder_ray", "ray_shards", "read_shard",
           "read_shards"]



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
    """Ray actor: photo paths in, one row per face (crop included) out. Loads the detector once,
    its ONNX Runtime sessions with ``threads`` intra-op threads, the actor's CPUs (with the
    TensorFlow detector, TensorFlow's pools are sized to them: :func:`limit_tf_threads`)."""

    def __init__(self, model: str, settings: DetectorSettings | None = None, threads: int = 1):
        import cv2

        cv2.setNumThreads(max(1, int(threads)))  # OpenCV's pool (resizes, warps) sized to the actor's CPUs too
        settings = settings or DetectorSettings()
        if settings.backend == "tensorflow":  # the default (ONNX Runtime) never imports TensorFlow
            limit_tf_threads(threads)
        self.det = settings.build(threads=threads)  # the driver's settings: both engines detect alike
        self.model = model
        from facekit.models.registry import model_spec

        spec = model_spec(model)  # the fingerprint names the model, whose crop the actor cuts
        self.crop, self.crop_shape = spec.crop, (spec.input_size, spec.input_size, spec.channels)

    def photos(self, batch) -> list[tuple[PhotoFile, str, str | None, list, np.ndarray]]:
        """``(photo, sha256, error, faces, crops)`` of each photo of the batch's chunks: read, hash,
        decode, detect (one batched call per chunk), align."""
        out = []
        for ps, ss, ms in zip(batch["paths"], batch["sizes"], batch["mtimes"]):
            files = [PhotoFile(str(p), int(s), int(m)) for p, s, m in zip(ps, ss, ms)]
            got = [load(f.path, self.det.max_side) for f in files]
            ok = [i for i, g in enumerate(got) if g[3] is None]
            found = dict(zip(ok, detect_align([got[i][0] for i in ok], [got[i][1] for i in ok], self.det, self.crop)))
            none = ([], np.zeros((0, *self.crop_shape), np.uint8))
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
    """Ray actor of the fused job: photo paths in, one Parquet shard per chunk out (read, hash,
    decode, detect, align, embed the chunk's crops, write its rows: nothing but the shard's name
    leaves the actor). ONNX Runtime's intra-op threads equal ``threads`` (the actor's CPUs), for
    the detector's networks and the embedder alike."""

    def __init__(self, model: str, out_dir: str, threads: int = 1, settings: DetectorSettings | None = None):
        super().__init__(model, settings, threads)
        self.embedder = Embed(model, threads)
        self.shards = Shards(out_dir)

    def __call__(self, batch) -> dict[str, np.ndarray]:
        got = self.photos(batch)
        crops = [c for *_, c in got if len(c)]
        emb = self.embedder.embed(np.concatenate(crops)) if crops else None
        rows, k = [], 0
        for f, sha, err, faces, _ in got:
            rows += photo_rows(f, sha, faces, None if emb is None else emb[k:k + len(faces)], self.model, err)
            k += len(faces)
        return self.shards.write(rows)


class Embed:
    """Ray actor: embeds the ``crop`` of each face row with the model of fingerprint ``model``;
    drops the crop. The embedder's intra-op threads equal ``threads`` (the actor's CPUs): left at
    ONNX Runtime's default, each actor's session would start one thread per core of the node and
    the pool would oversubscribe it."""

    def __init__(self, model: str, threads: int, out_dir: str | None = None):
        from facekit.embedding.embedder import Embedder
        from facekit.models.registry import spec_name

        self.threads = max(1, int(threads))
        self.emb = Embedder(spec_name(model), threads=self.threads)  # "facenet128-int8" for int8 fingerprints
        if self.emb.fingerprint != model:
            raise RuntimeError(f"this worker embeds {self.emb.fingerprint!r}, the driver asked for {model!r}. "
                               "Fix: install the same facekit and model files on every node")
        self.shards = Shards(out_dir) if out_dir else None

    def embed(self, crops: np.ndarray) -> np.ndarray:
        """uint8 crops (N, S, S, 3) -> float32 (N, d) unit embeddings."""
        return self.emb.embed(crops)

    def __call__(self, batch):
        """Rows with a ``crop`` (two-stage layout) in; with ``out_dir``: one shard written, its
        ``{"shard", "rows"}`` out; without: the rows with their embeddings, crops dropped."""
        has = batch["face"].to_numpy() >= 0
        emb = [None] * len(batch)
        if has.any():
            s = self.emb.spec
            crops = np.stack([np.frombuffer(c, np.uint8).reshape(s.input_size, s.input_size, s.channels)
                              for c in batch["crop"][has]])
            for i, e in zip(np.flatnonzero(has), self.embed(crops)):
                emb[i] = e.tolist()
        out = batch.drop(columns=["crop"])
        out["embedding"] = emb
        return self.shards.write(out) if self.shards else out


class Shards:
    """Where an actor writes its Parquet shards: ``out_dir``, a local folder or a pyarrow filesystem
    URI (``s3://bucket/run``). Each :meth:`write` is one new file with a fresh UUID name, so no
    shard is ever overwritten. The actor that finishes a chunk's rows writes them: no row crosses
    a process, and no extra worker process is needed (Ray Data's ``write_parquet`` tasks ran in
    workers beyond the actors', which Ray kills when idle past its soft limit of one per CPU; a
    CPU timeline showed reboots costing 25 % of 2 cores)."""

    def __init__(self, out_dir: str):
        import pyarrow.fs as pafs

        if "://" in out_dir:
            self.fs, self.root = pafs.FileSystem.from_uri(out_dir)
            self.shown = out_dir.rstrip("/")  # what the shard paths are reported as (with the scheme)
        else:
            self.fs, self.root = pafs.LocalFileSystem(), os.path.abspath(out_dir)
            self.shown = self.root
        self.fs.create_dir(self.root, recursive=True)
        self.schema = row_schema()

    def write(self, rows) -> dict[str, np.ndarray]:
        """Write ``rows`` (a list of row dicts, or a pandas DataFrame of them) as one shard;
        returns the one-row batch ``{"shard": [uri], "rows": [n]}``."""
        import uuid

        import pyarrow as pa
        import pyarrow.parquet as pq

        name = f"{uuid.uuid4().hex}.parquet"
        table = (pa.Table.from_pylist(rows, schema=self.schema) if isinstance(rows, list)
                 else pa.Table.from_pandas(rows, schema=self.schema, preserve_index=False))
        pq.write_table(table, f"{self.root}/{name}", filesystem=self.fs)
        return {"shard": np.array([f"{self.shown}/{name}"]), "rows": np.array([len(rows)])}


def read_shard(shard: str) -> list[dict]:
    """The rows of one Parquet shard (a local path or a pyarrow filesystem URI)."""
    import pyarrow.fs as pafs
    import pyarrow.parquet as pq

    fs, path = (pafs.FileSystem.from_uri(shard) if "://" in shard else (None, shard))
    return pq.read_table(path, filesystem=fs, schema=row_schema()).to_pylist()


@contextlib.contextmanager
def _log_level(name: str, level: int):
    """Ray's Python logger ``name`` at ``level`` for a while (a command prints only its own output
    and progress: without progress, Ray Data's execution notes are not the user's business)."""
    log = logging.getLogger(name)
    before = log.level
    log.setLevel(level)
    try:
        yield
    finally:
        log.setLevel(before)


def _start_ray(address: str | None, num_cpus: int | None, object_store_mb: int | None):
    """``(ray, owned)``: join ``address`` or start a local instance (owned: shut down after)."""
    import ray

    if ray.is_initialized():
        return ray, False
    if address:
        ray.init(address=address, log_to_driver=False)
        return ray, False
    from facekit.core.threads import cpu_count

    # no runtime_env: a job-level one (it used to quiet TensorFlow's logs) makes every actor wait for
    # a new worker set up through Ray's runtime-env agent (2.6 s per actor on 2 cores) instead of
    # taking one of the idle workers Ray keeps started (0.1-0.2 s); workers inherit this
    # process's environment anyway
    # logging ERROR: no notices of the local instance's set-up (token authentication) on the terminal
    ray.init(num_cpus=num_cpus or cpu_count(), include_dashboard=False, log_to_driver=False,
             logging_level=logging.ERROR, object_store_memory=(object_store_mb or 256) * 2 ** 20)
    return ray, True


def even_chunks(files: list, batch_size: int, workers: int) -> list[list]:
    """``files`` cut into chunks of at most ``batch_size``, as many as a multiple of ``workers``,
    their sizes at most one apart: every actor gets the same share, and none waits at the end for
    one that was handed the last full chunk (100 photos, 32 a chunk, 2 actors: 25+25+25+25, not
    32+32+32+4, where one actor did 64 photos and the other 36). The chunks do not change what is
    found: detection does not depend on the other photos of its batch (``test_cascade``)."""
    if not files:
        return []
    n = -(-len(files) // max(1, int(batch_size)))
    n = min(len(files), -(-n // max(1, int(workers))) * max(1, int(workers)))
    q, r = divmod(len(files), n)
    out, i = [], 0
    for k in range(n):
        out.append(files[i:i + q + (k < r)])
        i += q + (k < r)
    return out


def ray_shards(files: list[PhotoFile], out_dir: str | os.PathLike, *, model: str,
               settings: DetectorSettings | None = None, address: str | None = None, num_cpus: int | None = None, fuse: bool = True, actor_cpus: int = 1,
               detect_actors: int | None = None, embed_cpus: int | None = None, batch_size: int = CHUNK,
               object_store_mb: int | None = None, progress: bool = True) -> Iterator[str]:
    """Run the Ray Data job over ``files``, writing Parquet shards to ``out_dir`` (local path or a
    pyarrow filesystem URI); yields each shard's path as soon as it is written, so the caller can
    commit it while the job goes on. The Ray instance it started (no ``address``) is shut down
    when the generator finishes or is closed.

    ``fuse`` (default): one pool of :class:`DetectEmbed` actors of ``actor_cpus`` CPUs each
    (CPUs // actor_cpus of them, no more than there are chunks: an idle actor would only cost its
    start-up) does every stage of a chunk and writes its shard. ``fuse=False``:
    the two-stage layout, ``detect_actors`` :class:`DetectAlign` actors of 1 CPU (default: CPUs -
    embed CPUs, at least 1) then a pool of :class:`Embed` actors of ``embed_cpus`` CPUs (default:
    half the CPUs, at least 1) that embed and write. ``progress``: Ray Data's progress bars (or,
    when stdout is not a terminal, its progress log lines)."""
    ray, owned = _start_ray(address, num_cpus, object_store_mb)
    try:
        cpus = int(ray.cluster_resources().get("CPU", 1))
        # the actor layout, decided once: it sizes both the pools and the chunks
        actor_cpus = max(1, min(int(actor_cpus), cpus))
        embed_cpus = embed_cpus or max(1, cpus // 2)
        detect_actors = detect_actors or max(1, cpus - embed_cpus)
        chunks = even_chunks(files, batch_size, cpus // actor_cpus if fuse else detect_actors)
        items = [{"paths": [f.path for f in c], "sizes": [f.size for f in c], "mtimes": [f.mtime_ns for f in c]}
                 for c in chunks]  # one type per column: Arrow stores them natively
        ctx = ray.data.DataContext.get_current()
        shown, ctx.enable_progress_bars = ctx.enable_progress_bars, bool(progress)
        ds = ray.data.from_items(items, override_num_blocks=len(chunks))
        pool = ray.data.ActorPoolStrategy
        out = str(out_dir)
        if fuse:
            ds = ds.map_batches(DetectEmbed, fn_constructor_kwargs={"model": model, "settings": settings,
                                                                   "out_dir": out, "threads": actor_cpus},
                                batch_size=1, batch_format="pandas", num_cpus=actor_cpus,
                                compute=pool(size=max(1, min(cpus // actor_cpus, len(chunks)))))
        else:
            ds = ds.map_batches(DetectAlign, fn_constructor_kwargs={"model": model, "settings": settings}, batch_size=1,
                                batch_format="pandas", num_cpus=1, compute=pool(size=min(detect_actors, len(chunks))))
            ds = ds.map_batches(Embed, fn_constructor_kwargs={"model": model, "threads": embed_cpus, "out_dir": out},
                                batch_size=4 * batch_size, batch_format="pandas", num_cpus=embed_cpus,
                                compute=pool(size=max(1, (cpus - detect_actors) // embed_cpus)))
        try:
            with _log_level("ray.data", logging.INFO if progress else logging.ERROR):
                for batch in ds.iter_batches(batch_size=None, batch_format="numpy"):
                    yield from (str(s) for s in batch["shard"])
        finally:
            ctx.enable_progress_bars = shown
    finally:
        if owned:
            ray.shutdown()


def read_shards(out_dir: str | os.PathLike) -> list[dict]:
    """The rows of all the Parquet shards under ``out_dir`` (pyarrow; any pyarrow filesystem URI)."""
    import pyarrow.dataset as pads

    return pads.dataset(str(out_dir), format="parquet", schema=row_schema()).to_table().to_pylist()


def index_folder_ray(root: str | os.PathLike, store, *, address: str | None = None, num_cpus: int | None = None,
                     precision: str | None = None, shards: str | os.PathLike | None = None, progress: bool = True,
                     keep_rows: bool = False, settings: DetectorSettings | None = None, model: str | None = None,
                     **job) -> IndexReport | tuple[IndexReport, list[dict]]:
    """Index ``root`` into ``store`` with the Ray Data job (see the module docstring): same
    result as :func:`facekit.album.scan.index_folder`. ``root`` may be a local folder or a pyarrow
    filesystem URI (``s3://bucket/photos``). ``shards``: a folder or URI under which this run's
    Parquet shards go, in a new ``run-*`` subfolder that is kept (default ``$FACEKIT_SHARDS``, else
    a temporary folder removed after ingestion; on a multi-node cluster it must be storage every
    node can write, e.g. ``s3://bucket/facekit-shards``). ``keep_rows``: also return the rows.
    ``settings`` (:class:`~facekit.detection.settings.DetectorSettings`) and ``model`` / ``precision``
    as for the local engine: the workers rebuild the same detector and embedder."""
    t0 = time.perf_counter()
    problems: list[tuple[str, str]] = []  # link loops, unreadable folders, files gone mid-walk: reported
    files = list_photos(root, problems=problems)
    model = embedder_for(None, precision, model).fingerprint
    todo = todo_photos(store, files, model)
    report = IndexReport(photos=len(files), cached=len(files) - len(todo), engine="ray", failed=list(problems))
    rows: list[dict] = []
    if todo:
        with tempfile.TemporaryDirectory(prefix="facekit-shards-") as tmp:
            shards = shards or os.environ.get("FACEKIT_SHARDS")
            out = f"{str(shards).rstrip('/')}/run-{time.strftime('%Y%m%d-%H%M%S')}-{os.getpid()}" if shards else tmp
            stream = ray_shards(todo, out, model=model, settings=settings, address=address, num_cpus=num_cpus,
                                progress=progress, **job)
            try:
                for shard in stream:  # commit each shard as it arrives: Ctrl-C keeps what was committed
                    got = read_shard(shard)
                    t = time.perf_counter()
                    ingest_rows(store, got, report)
                    report.stage_s["store"] += time.perf_counter() - t
                    if keep_rows:
                        rows += got
            except KeyboardInterrupt:
                report.interrupted = True
            finally:
                stream.close()  # stops the job and shuts down the Ray instance it started
    report.seconds = time.perf_counter() - t0
    return (report, rows) if keep_rows else report
