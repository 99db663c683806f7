"""Package hygiene: no work at import time; one environment description."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_import_does_no_work():
    code = ("import sys, facekit\n"
            "names = [getattr(facekit, n) for n in facekit.__all__]\n"
            "heavy = [m for m in ('tensorflow', 'keras', 'mtcnn', 'cv2', 'umap', 'matplotlib') if m in sys.modules]\n"
            "print(len(names), heavy)\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    n, heavy = out.split(" ", 1)
    assert int(n) >= 20 and heavy.strip() == "[]", out


def test_flat_functions_survive_submodule_imports(tmp_path):
    """``fk.embed`` / ``fk.verify`` stay callable after ``from facekit.embedding.embedder import ...`` (Python
    then sets the package attribute to the submodule), and the modules keep their contents."""
    code = ("import numpy as np, facekit as fk\n"
            "from facekit.embedding.embedder import Embedder\n"
            "from facekit.recognition.verify import sq_l2\n"
            "import facekit.embedding.embedder as fe\n"
            "crops = np.random.default_rng(0).integers(0, 256, (2, 160, 160, 3), dtype=np.uint8)\n"
            "e = fk.embed(crops)\n"
            "same, d = fk.verify(e[0], e[1])\n"
            "print(e.shape, d > 0, abs(d - float(sq_l2(e[:1], e[1:])[0])) < 1e-6, same == (d < fk.thresholds('facenet128').verify),\n"
            "      fk.verify(e[0], e[1], threshold=d + 1e-6)[0], fk.verify(e[0], e[1], threshold=d)[0],\n"
            "      fe.Embedder is Embedder, callable(fe.onnx_path))\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.split("\n")[-2] == "(2, 128) True True True True False True True", out.stdout


def test_environment_yml_derives_from_requirements():
    env = (ROOT / "environment.yml").read_text()
    assert "- -r requirements.txt" in env and "- -e ." in env and "python=3.11" in env
    reqs = [l.split("==")[0] for l in (ROOT / "requirements.txt").read_text().splitlines()
            if l.strip() and not l.startswith("#")]
    for needed in ("tensorflow-cpu", "keras-facenet", "mtcnn", "opencv-python-headless", "jupyterlab",
                   "scikit-learn", "ipywidgets", "umap-learn", "anywidget", "matplotlib"):
        assert needed in reqs, needed
