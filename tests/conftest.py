"""Shared fixtures: the real model and the real sample images, loaded once per test session."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import numpy as np
import pytest

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(Path(__file__).resolve().parent))  # tests/ helpers (notebook_runner)
IN_CI = os.environ.get("CI", "").lower() in ("1", "true", "yes")


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
def lfw_home_dir() -> Path:
    """LFW in scikit-learn's layout (via SCIKIT_LEARN_DATA). Skips when absent, except in CI."""
    from facekit.data.lfw import lfw_home

    try:
        return lfw_home(download_if_missing=not IN_CI and os.environ.get("FACEKIT_NO_DOWNLOAD") != "1")
    except FileNotFoundError as exc:
        if IN_CI:
            pytest.fail(f"LFW must be available in CI: {exc}")
        pytest.skip(f"LFW not available here and not downloadable: {exc}")


@pytest.fixture()
def rng():
    return np.random.default_rng(0)


def pytest_collection_modifyitems(session, config, items):
    """Run the book test last: it reuses the notebooks tests/test_notebooks.py executed."""
    items.sort(key=lambda item: item.nodeid.startswith("tests/test_book.py") or "/test_book.py" in item.nodeid)
