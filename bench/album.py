"""End-to-end photo indexing, photos/s (load -> detect -> align -> embed -> committed to the store):
facekit's local engine, its Ray engine and the naive loop, in the same run (issue 15).

    .venv/bin/python bench/album.py [--lfw 2000] [--large 100] [--skip-ray] [--skip-naive]

Photo sets (fixed, seed 0):

- LFW: ``--lfw`` photos (default 2,000) drawn with seed 0 from all 13,233 LFW funneled photos
  (250x250 JPEGs; ``$SCIKIT_LEARN_DATA``), symlinked into a temporary tree ``person/photo.jpg``;
- large: ``--large`` JPEGs (default 100) of 4032x3024 (12.2 MP, quality 90), each a 2x2 mosaic of
  four of the 118 "5 Celebrity Faces" sample photos (``facekit.core.cache.celebrity_dir()``),
  chosen with seed 0 and upscaled to fill their quarter (a phone photo's size, with 4 large
  faces), written to a temporary folder.

Engines, each into a fresh face store in a temporary folder (one transaction per photo):

- local: ``facekit.album.scan.run_local`` (draft-mode JPEG decoding, batched detection, chunked
  embedding with ONNX Runtime, file reading on threads). Models are loaded and warmed before the
  clock starts (as a long-running indexer would have them);
- ray: ``facekit.album.ray.index_folder_ray`` on a local Ray instance with all CPUs. The instance is
  started before the clock (like the local engine's model loading), with the detached actors
  Ray Data starts on an instance's first job (stats, autoscaling coordinator, actor locations;
  timed separately as ``ray_data_start_s``); the job's own actors start, import facekit (no
  TensorFlow since issue #24: detection runs in ONNX Runtime) and load their models inside the
  timed run (that is part of every Ray job). ``ray_actor_start_s``: after the timed jobs, the
  median of 3 lone actors (1 CPU each, one after the other) from ``.remote()`` to ready, each
  building the fused job's actor (:class:`facekit.album.ray.DetectEmbed`) with both models loaded;
  ``ray_actor_init_s`` the part of it inside the actor (facekit's imports and models; the rest is
  Ray's worker process start: each lone actor waits for a new worker, the worst case);
  ``ray_actor_start_prestarted_s``: on a fresh instance, one actor per CPU started at once (as
  the job's pool), until all are ready: they take the idle workers Ray starts when the driver
  connects, as a job on a fresh instance does; ``ray_actor_imports_tf`` whether any imported
  TensorFlow or Keras;
- naive: the loop people write first: PIL load, ``mtcnn.MTCNN().detect_faces`` on the full image,
  crop each box, resize to 160x160, Keras ``predict`` on one face at a time (prewhitened), then
  the faces committed to a store the same way. It is slow, so it is timed on a fixed sub-sample:
  the first ``--naive-lfw`` (default 100) LFW photos and the first ``--naive-large`` (default 10)
  large JPEGs of the sets above, each capped at ``--naive-max-s`` seconds (the rate is over the
  photos done by then);
- reindex: the local engine again over the same, unchanged LFW folder and store.

Prints the figures, then ONE JSON line: local_speedup_lfw (target >= 4), local_speedup_large
(>= 4), ray_over_local (LFW set; >= 0.95), ray_over_local_large (>= 0.9), ray_actor_start_s
(<= 1.0), reindex_photos_per_s (>= 1000) and the raw photos/s
figures (local_lfw, local_large, ray_lfw, ray_large, naive_lfw, naive_large, reindex_large),
plus the photo counts and the CPU count. Sizes: on 2 quiet cores the full run takes ~10-15 min.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import numpy as np

LARGE_W, LARGE_H = 4032, 3024  # 12.2 MP


def lfw_subset(dest: Path, n: int, seed: int) -> Path:
    """Symlink ``n`` LFW photos (seed-fixed draw from all of them) into ``dest/person/photo.jpg``."""
    from facekit.data.lfw import lfw_home

    everything = sorted((lfw_home() / "lfw_funneled").glob("*/*.jpg"))
    if n > len(everything):
        raise SystemExit(f"--lfw {n}: LFW has only {len(everything)} photos")
    pick = sorted(np.random.default_rng(seed).choice(len(everything), n, replace=False))
    for i in pick:
        p = everything[i]
        (dest / p.parent.name).mkdir(parents=True, exist_ok=True)
        (dest / p.parent.name / p.name).symlink_to(p)
    return dest


def large_jpegs(dest: Path, n: int, seed: int) -> Path:
    """``n`` 4032x3024 JPEGs, each a 2x2 mosaic of sample photos upscaled to fill a quarter."""
    from PIL import Image, ImageOps
    from tqdm.auto import tqdm

    from facekit.core.cache import celebrity_dir

    samples = sorted(celebrity_dir().rglob("*.jpg"))
    rng = np.random.default_rng(seed)
    dest.mkdir(parents=True, exist_ok=True)
    qw, qh = LARGE_W // 2, LARGE_H // 2
    for k in tqdm(range(n), desc="making 12 MP JPEGs", unit="photo"):
        canvas = Image.new("RGB", (LARGE_W, LARGE_H))
        for j, i in enumerate(rng.choice(len(samples), 4, replace=False)):
            with Image.open(samples[i]) as im:
                tile = ImageOps.fit(ImageOps.exif_transpose(im).convert("RGB"), (qw, qh), Image.Resampling.BICUBIC)
            canvas.paste(tile, ((j % 2) * qw, (j // 2) * qh))
        canvas.save(dest / f"large_{k:04d}.jpg", quality=90)
    return dest


def naive_loop(files: list[str], store, max_s: float) -> tuple[int, float, int]:
    """The naive pipeline over ``files`` until done or ``max_s`` seconds: ``(photos, seconds, faces)``."""
    import cv2
    from mtcnn import MTCNN
    from PIL import Image

    from facekit.embedding.embedder import get_embedder, prewhiten
    from facekit.store.db import FaceRecord

    detector = MTCNN()
    model = get_embedder("facenet128").keras_model  # the Keras model, loaded once (not timed)
    fp = "naive/" + get_embedder("facenet128").fingerprint
    detector.detect_faces(np.zeros((160, 160, 3), np.uint8))  # warm both up
    model.predict(prewhiten(np.zeros((1, 160, 160, 3), np.uint8)), verbose=0)
    t0, done, faces = time.perf_counter(), 0, 0
    for path in files:
        img = np.asarray(Image.open(path).convert("RGB"))
        records = []
        for det in detector.detect_faces(img):
            x, y, w, h = (int(v) for v in det["box"])
            crop = img[max(0, y):y + h, max(0, x):x + w]
            if crop.size == 0:
                continue
            crop = cv2.resize(crop, (160, 160), interpolation=cv2.INTER_AREA)
            e = np.asarray(model.predict(prewhiten(crop[None]), verbose=0)[0], np.float32)
            kp = det["keypoints"]
            lm = np.array([kp[k] for k in ("left_eye", "right_eye", "nose", "mouth_left", "mouth_right")], np.float32)
            records.append(FaceRecord(np.array([x, y, x + w, y + h], np.float32), lm,
                                      float(min(max(det["confidence"], 0.0), 1.0)), e / np.linalg.norm(e)))
        st = os.stat(path)
        store.put_photo(path, st.st_size, st.st_mtime_ns, f"naive-{done}", fp, records)
        done += 1
        faces += len(records)
        if time.perf_counter() - t0 > max_s:
            break
    return done, time.perf_counter() - t0, faces


def probe_class(ray):
    """A 1-CPU Ray actor that builds the fused job's actor with both models loaded and reports how
    long that took inside its process, and whether TensorFlow or Keras got imported."""

    @ray.remote(num_cpus=1)
    class Probe:
        def __init__(self, model: str, out_dir: str):
            t = time.perf_counter()
            from facekit.album.ray import DetectEmbed

            self.actor = DetectEmbed(model, out_dir, threads=1)
            self.actor.det.networks()  # both models loaded and checked, as before a first chunk
            self.actor.embedder.emb.warmup()
            self.init_s = time.perf_counter() - t

        def report(self) -> tuple[float, bool]:
            return self.init_s, any(m.split(".")[0] in ("tensorflow", "keras") for m in sys.modules)

    return Probe


def actor_starts(ray, out_dir: Path, model: str, n: int = 3) -> tuple[list[float], list[float], bool]:
    """For ``n`` lone actors started one after the other (1 CPU each) that build the fused job's
    actor with both models loaded: seconds from ``.remote()`` to ready, seconds of the actor's own
    start (facekit's imports and models, inside its process), and whether any imported TensorFlow
    or Keras. The rest of the first figure is Ray's: a worker process (Python, ``import ray``,
    registration; 0.1 s when Ray has an idle one started, 1.3-2 s when not). Each actor is killed
    before the next starts, and Ray does not start a replacement idle worker, so each of these
    waits for a new worker process: the worst case."""
    Probe = probe_class(ray)
    starts, inits, seen = [], [], False
    for _ in range(n):
        t = time.perf_counter()
        a = Probe.remote(model, str(out_dir))
        init_s, banned = ray.get(a.report.remote())
        starts.append(time.perf_counter() - t)
        inits.append(init_s)
        seen |= banned
        ray.kill(a)
    return starts, inits, seen


def pool_start(ray, out_dir: Path, model: str, n: int) -> float:
    """Seconds until ``n`` actors started at once (one per CPU, as the job's pool) are all ready,
    on an instance where Ray has started its idle workers (one per CPU when the driver connects):
    what a job on a fresh instance sees."""
    Probe = probe_class(ray)
    t = time.perf_counter()
    actors = [Probe.remote(model, str(out_dir)) for _ in range(n)]
    ray.get([a.report.remote() for a in actors])
    dt = time.perf_counter() - t
    for a in actors:
        ray.kill(a)
    return dt


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--lfw", type=int, default=2000, help="LFW photos (fixed draw, seed 0)")
    ap.add_argument("--large", type=int, default=100, help="12 MP JPEGs made from the sample photos")
    ap.add_argument("--naive-lfw", type=int, default=100, help="LFW photos the naive loop is timed on")
    ap.add_argument("--naive-large", type=int, default=10, help="large JPEGs the naive loop is timed on")
    ap.add_argument("--naive-max-s", type=float, default=240.0, help="time cap per naive set (seconds)")
    ap.add_argument("--skip-ray", action="store_true")
    ap.add_argument("--skip-naive", action="store_true")
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()

    from facekit.detection.detector import get_detector
    from facekit.embedding.embedder import get_embedder
    from facekit.core.threads import cpu_count
    from facekit.album.scan import list_photos, run_local
    from facekit.store.db import FaceStore

    cpus = cpu_count()
    fig: dict = {"cpus": cpus, "lfw_photos": args.lfw, "large_photos": args.large}
    with tempfile.TemporaryDirectory(prefix="facekit-bench-album-") as tmp:
        tmp = Path(tmp)
        sets = {"lfw": lfw_subset(tmp / "lfw", args.lfw, args.seed), "large": large_jpegs(tmp / "large", args.large, args.seed)}
        embedder, detector = get_embedder(), get_detector()
        warm = tmp / "warm"
        warm.mkdir()
        for p in sorted(sets["lfw"].glob("*/*.jpg"))[:2] + sorted(sets["large"].glob("*.jpg"))[:1]:
            (warm / p.name).symlink_to(p)
        run_local(warm, FaceStore(tmp / "warm.sqlite3"), embedder=embedder, detector=detector, progress=False)

        stores = {}
        for name, root in sets.items():
            stores[name] = FaceStore(tmp / f"local-{name}.sqlite3")
            rep, _ = run_local(root, stores[name], embedder=embedder, detector=detector, progress=True)
            assert rep.indexed == rep.photos and not rep.failed, rep.to_dict()
            fig[f"local_{name}"] = rep.photos_per_s
            print(f"local  {name:5s}: {rep.photos} photos, {rep.faces} faces in {rep.seconds:.1f} s = "
                  f"{rep.photos_per_s:.2f} photos/s  stages {({k: round(v, 1) for k, v in rep.stage_s.items()})}",
                  flush=True)
        for name, root in sets.items():
            rep, _ = run_local(root, stores[name], embedder=embedder, detector=detector, progress=False)
            assert rep.cached == rep.photos and rep.indexed == 0, rep.to_dict()
            fig["reindex_photos_per_s" if name == "lfw" else "reindex_large"] = rep.photos_per_s
            print(f"reindex {name:5s}: {rep.photos} unchanged photos in {rep.seconds:.3f} s = "
                  f"{rep.photos_per_s:.0f} photos/s", flush=True)

        if not args.skip_ray:
            import ray

            from facekit.album.ray import index_folder_ray

            def start_ray():  # no runtime_env: see facekit.album.ray._start_ray
                ray.init(num_cpus=cpus, include_dashboard=False, log_to_driver=False, logging_level="WARNING",
                         object_store_memory=512 * 2 ** 20)

            start_ray()
            # Ray Data's own detached actors (stats, autoscaling coordinator, actor locations) start
            # with the first Ray Data job on an instance and then live as long as it does: part of
            # the running instance, like the daemons. Start them before the clock, and say how long
            t = time.perf_counter()
            ray.data.range(2, override_num_blocks=1).map_batches(lambda b: b).materialize()
            fig["ray_data_start_s"] = time.perf_counter() - t
            print(f"Ray Data's system actors started in {fig['ray_data_start_s']:.1f} s (before the clock)", flush=True)
            try:
                for name, root in sets.items():
                    rep = index_folder_ray(root, FaceStore(tmp / f"ray-{name}.sqlite3"), progress=False)
                    assert rep.indexed == rep.photos and not rep.failed, rep.to_dict()
                    fig[f"ray_{name}"] = rep.photos_per_s
                    print(f"ray    {name:5s}: {rep.photos} photos, {rep.faces} faces in {rep.seconds:.1f} s = "
                          f"{rep.photos_per_s:.2f} photos/s (actor start included)", flush=True)
                starts, inits, tf_seen = actor_starts(ray, tmp / "actor-shards", embedder.fingerprint)
                fig["ray_actor_start_s"], fig["ray_actor_init_s"] = float(np.median(starts)), float(np.median(inits))
                fig["ray_actor_imports_tf"] = tf_seen
                print(f"a lone DetectEmbed actor is ready in {', '.join(f'{v:.2f}' for v in starts)} s, of which its "
                      f"own start (imports, models) {', '.join(f'{v:.2f}' for v in inits)} s "
                      f"(TensorFlow imported: {tf_seen})", flush=True)
            finally:
                ray.shutdown()
            # the job's own actors on a fresh instance: Ray's idle workers are ready for them
            start_ray()
            try:
                time.sleep(3.0)  # the idle workers Ray starts when the driver connects
                fig["ray_actor_start_prestarted_s"] = pool_start(ray, tmp / "pool-shards", embedder.fingerprint, cpus)
                print(f"{cpus} DetectEmbed actors started at once on a fresh instance are ready in "
                      f"{fig['ray_actor_start_prestarted_s']:.2f} s", flush=True)
            finally:
                ray.shutdown()

        if not args.skip_naive:
            for name, root, n in (("lfw", sets["lfw"], args.naive_lfw), ("large", sets["large"], args.naive_large)):
                files = [f.path for f in list_photos(root)][:n]
                done, secs, faces = naive_loop(files, FaceStore(tmp / f"naive-{name}.sqlite3"), args.naive_max_s)
                fig[f"naive_{name}"] = done / secs
                fig[f"naive_{name}_photos"] = done
                print(f"naive  {name:5s}: {done} photos, {faces} faces in {secs:.1f} s = {done / secs:.2f} photos/s",
                      flush=True)

    ratio = lambda a, b: round(fig[a] / fig[b], 3) if a in fig and b in fig and fig[b] > 0 else None
    out = {"local_speedup_lfw": ratio("local_lfw", "naive_lfw"), "local_speedup_large": ratio("local_large", "naive_large"),
           "ray_over_local": ratio("ray_lfw", "local_lfw"), "ray_over_local_large": ratio("ray_large", "local_large"),
           "ray_actor_start_s": round(fig["ray_actor_start_s"], 2) if "ray_actor_start_s" in fig else None,
           "ray_actor_init_s": round(fig["ray_actor_init_s"], 2) if "ray_actor_init_s" in fig else None,
           "reindex_photos_per_s": round(fig["reindex_photos_per_s"], 1)}
    out |= {k: (round(v, 3) if isinstance(v, float) else v) for k, v in fig.items() if k not in out}
    print(json.dumps(out))
    from facts import record  # noqa: E402 - bench/facts.json: the one source of the figures the text quotes
    record("album", out)


if __name__ == "__main__":
    main()
