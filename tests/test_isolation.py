"""The test session's own state (issue 27): a temporary FACEKIT_HOME that links only verified files
of the user's cache, and a face store inside it; nothing of the user's is read or written."""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path

import conftest


def test_facekit_home_is_the_sessions_own():
    from facekit.core.cache import cache_dir

    home = cache_dir()
    assert home == Path(os.environ["FACEKIT_HOME"]) == Path(os.environ["FACEKIT_TEST_HOME"])
    assert home.name.startswith("facekit-test-home-") and home.parent == Path(tempfile.gettempdir())
    assert conftest.USER_CACHE is not None and home.resolve() != conftest.USER_CACHE.resolve()
    assert Path(os.environ["FACEKIT_STORE"]).is_relative_to(home)


def test_only_verified_files_are_linked_and_no_folder():
    from facekit.core.cache import H5_SHA256, SDIST_FILE, SDIST_SHA256, cache_dir, sha256sum
    from facekit.embedding.facenet import compiled_key, onnx_path

    home = cache_dir()
    links = sorted(str(p.relative_to(home)) for p in home.rglob("*") if p.is_symlink())
    assert links == sorted(conftest.LINKED)
    allowed = {f"downloads/{SDIST_FILE}": SDIST_SHA256, "models/facenet_keras_128.h5": H5_SHA256}
    for rel in links:
        p = home / rel
        assert p.resolve().is_file(), f"{rel}: a linked folder would let tests write into the user's cache"
        if rel in allowed:
            assert sha256sum(p) == allowed[rel], rel
        elif rel.endswith(".onnx"):
            m = json.loads(p.with_suffix(".json").read_text())
            assert rel == f"compiled/{onnx_path(build=False).name}" and m["key"] == compiled_key()
            assert sha256sum(p) == m["sha256"], rel
        else:
            assert rel == f"compiled/{onnx_path(build=False).with_suffix('.json').name}", rel
    # everything else in it (sample photos, int8 models, LFW caches) was made by this session
    assert not any(p.is_symlink() for p in home.rglob("*") if str(p.relative_to(home)) not in links)


def test_a_child_process_gets_the_same_home(tmp_path):
    import subprocess
    import sys

    code = "from facekit.core.cache import cache_dir; print(cache_dir())"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.stdout.strip() == os.environ["FACEKIT_HOME"], out.stderr[-1000:]
