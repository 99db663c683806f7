"""Issue #24: ``pip install facekit`` (no extras) is a working runtime without TensorFlow.

A fresh virtual environment in a temporary folder (``python -m venv``), ``pip install`` of a copy of
this project (pip may use its cache), then ``facekit fetch``, ``detect``, ``enrol``, ``identify`` and
``index --engine local`` on the sample photos, with ``FACEKIT_HOME`` in a temporary folder whose
``downloads/`` links the cached sdist (nothing is downloaded twice). TensorFlow, Keras and Ray must
not be installed there. Takes ~2-4 min (mostly pip), so it is marked slow.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

import facekit

pytestmark = pytest.mark.slow

SRC = Path(facekit.__file__).resolve().parents[1]  # the facekit under test (a scratch copy too)


def _run(cmd: list[str], env: dict, timeout: float = 900, ok=(0,)) -> subprocess.CompletedProcess:
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, env=env)
    assert r.returncode in ok, f"{' '.join(cmd)}\nstdout: {r.stdout[-3000:]}\nstderr: {r.stderr[-3000:]}"
    return r


def _du_mb(path: Path) -> float:
    return sum(f.stat().st_size for f in path.rglob("*") if f.is_file() and not f.is_symlink()) / 2 ** 20


def test_runtime_install_runs_the_commands_without_tensorflow(tmp_path):
    from facekit.core.cache import SDIST_FILE, cache_dir, fetch_sdist

    sdist = fetch_sdist()  # the session's cached sdist (linked from the user's cache)
    project = tmp_path / "project"  # a clean copy: pip's in-tree build must not write into the repository
    shutil.copytree(SRC / "facekit", project / "facekit", ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
    for f in ("pyproject.toml", "README.md"):
        shutil.copy(SRC / f, project / f)
    venv = tmp_path / "venv"
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV", "FACEKIT_STORE")}
    t0 = time.perf_counter()
    _run([sys.executable, "-m", "venv", str(venv)], env)
    py, fk = str(venv / "bin" / "python"), str(venv / "bin" / "facekit")
    _run([py, "-m", "pip", "install", "-q", str(project)], env)
    install_s = time.perf_counter() - t0

    names = {d["name"].lower().replace("_", "-") for d in json.loads(
        _run([py, "-m", "pip", "list", "--format", "json"], env).stdout)}
    assert {"onnxruntime", "faiss-cpu"} <= names
    assert not names & {"tensorflow", "tensorflow-cpu", "keras", "keras-facenet", "ray", "jupyterlab"}, names

    home = tmp_path / "home"
    (home / "downloads").mkdir(parents=True)
    (home / "downloads" / SDIST_FILE).symlink_to(sdist.resolve())
    env["FACEKIT_HOME"] = str(home)
    store = ["--store", str(tmp_path / "faces.sqlite3")]
    t1 = time.perf_counter()
    _run([fk, "fetch"], env)
    celeb = home / "data" / "5-celebrity-faces"
    photo = sorted((celeb / "val" / "madonna").glob("*.jpg"))[0]
    got = json.loads(_run([fk, "detect", str(photo), "--json"], env).stdout)
    assert got["rows"] and got["rows"][0]["confidence"] > 0.9
    for name, who in (("madonna", "madonna"), ("elton", "elton_john")):  # exit 3: a photo had no face
        _run([fk, "enrol", name, str(celeb / "train" / who), *store], env, ok=(0, 3))
    got = json.loads(_run([fk, "identify", str(photo), "--json", *store], env).stdout)
    assert got["rows"][0]["name"] == "madonna", got
    got = json.loads(_run([fk, "index", str(celeb / "val"), "--engine", "local", "--json", "-q", *store], env).stdout)
    assert got["rows"][0]["indexed"] == 25, got
    commands_s = time.perf_counter() - t1
    r = subprocess.run([py, "-c", "import tensorflow"], capture_output=True, text=True, env=env)
    assert r.returncode != 0, "TensorFlow must not be importable in the runtime install"
    size = _du_mb(venv)
    print(f"runtime install: pip {install_s:.0f} s, commands {commands_s:.0f} s, {size:.0f} MB")
    assert size < 1200, f"the runtime install takes {size:.0f} MB"
    assert cache_dir() != home
