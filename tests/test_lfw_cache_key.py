"""LFW caches are keyed by the code that computes them (issue #28): a change in that code cannot
reuse a cache made before it, while editing a docstring or comment keeps the key."""

from __future__ import annotations

from pathlib import Path

from facekit.teach.lfw.cache import PIPELINE_MODULES, code_key, settings_key

ROOT = Path(__file__).resolve().parents[1] / "facekit"


def test_code_key_follows_code_not_prose(tmp_path):
    src = (ROOT / "detection" / "align.py").read_text()
    same = tmp_path / "prose.py"
    same.write_text(src.replace('"""', '"""Edited prose. ', 1) + "\n# a new comment\n")
    changed = tmp_path / "code.py"
    changed.write_text(src + "\n_X = 1\n")
    key = code_key((str(ROOT / "detection" / "align.py"),))
    assert code_key((str(same),)) == key
    assert code_key((str(changed),)) != key


def test_every_pipeline_module_is_hashed_and_settings_key_includes_it():
    files = [f for m in PIPELINE_MODULES for f in ROOT.glob(m)]
    names = {f.relative_to(ROOT).as_posix() for f in files}
    assert {"detection/cascade.py", "detection/detector.py", "embedding/embedder.py", "teach/lfw/pipeline.py"} <= names
    assert code_key() == code_key(tuple(str(f) for m in PIPELINE_MODULES for f in sorted(ROOT.glob(m))))
    assert settings_key({"a": 1}) != settings_key({"a": 2})
