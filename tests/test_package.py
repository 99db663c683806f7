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


def test_environment_yml_derives_from_requirements():
    env = (ROOT / "environment.yml").read_text()
    assert "- -r requirements.txt" in env and "- -e ." in env and "python=3.11" in env
    reqs = [l.split("==")[0] for l in (ROOT / "requirements.txt").read_text().splitlines()
            if l.strip() and not l.startswith("#")]
    for needed in ("tensorflow-cpu", "keras-facenet", "mtcnn", "opencv-python-headless", "jupyterlab",
                   "scikit-learn", "ipywidgets", "umap-learn", "anywidget", "matplotlib"):
        assert needed in reqs, needed
