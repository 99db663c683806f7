"""On-disk caches of LFW work: MTCNN detections and embeddings, one row per image.

Used by :mod:`facekit.teach.lfw.pipeline` (notebook 02 and the benchmarks). A table is an ``.npz``
(``names``, ``rows``) beside a JSON of the settings that produced it; the file name holds a hash
of those settings (detector settings; model fingerprint + crop geometry) and of the code that
computes the rows (:func:`code_key`: the detection, alignment, embedding and LFW-pipeline modules,
docstrings and comments left out), so a changed model, setting or code path never reads a stale row. Writes merge with what another process wrote meanwhile, under a
file lock, then replace the file atomically.
"""

from __future__ import annotations

import ast
import functools
import hashlib
import json
import os
import sys
import threading
import zipfile
from pathlib import Path

import numpy as np

from facekit.core.files import file_lock

__all__ = ["RowTable", "settings_key", "lfw_cache_dir", "rel_key", "code_key", "PIPELINE_MODULES"]

#: the modules whose code decides an LFW cache row (detections, crops, embeddings); their code is
#: part of every cache key, so a benchmark's cache made by older code is never reused after a change
PIPELINE_MODULES = ("core/images.py", "detection/*.py", "embedding/*.py", "runtime/*.py", "data/lfw.py",
                    "teach/lfw/pipeline.py", "teach/lfw/cache.py", "faces.py")


def _code_of(path: Path) -> str:
    """A module's code without docstrings and comments (``ast.dump``): editing prose keeps the key."""
    tree = ast.parse(path.read_text())
    for node in ast.walk(tree):
        body = getattr(node, "body", None)
        if (isinstance(body, list) and body and isinstance(body[0], ast.Expr)
                and isinstance(getattr(body[0], "value", None), ast.Constant) and isinstance(body[0].value.value, str)):
            body[0] = ast.Pass()
    return ast.dump(tree)


@functools.lru_cache(maxsize=8)
def code_key(paths: tuple[str | os.PathLike, ...] | None = None) -> str:
    """Short hash of the code of ``paths`` (default :data:`PIPELINE_MODULES` under facekit/)."""
    root = Path(__file__).resolve().parents[2]
    files = [Path(p) for p in paths] if paths is not None else [f for m in PIPELINE_MODULES for f in sorted(root.glob(m))]
    h = hashlib.sha1()
    for f in files:
        h.update(_code_of(f).encode())
    return h.hexdigest()[:12]


def settings_key(settings: dict) -> str:
    """Short stable hash of a settings dict and of the pipeline's code (:func:`code_key`): the
    file-name part of a cache table."""
    return hashlib.sha1(json.dumps({**settings, "code": code_key()}, sort_keys=True).encode()).hexdigest()[:12]


def lfw_cache_dir() -> Path:
    """``facekit.core.cache.cache_dir()/lfw`` (created)."""
    from facekit.core.cache import cache_dir

    d = cache_dir() / "lfw"
    d.mkdir(parents=True, exist_ok=True)
    return d


def rel_key(path: str) -> str:
    """LFW path -> ``Person/Person_0001.jpg`` (cache keys independent of where LFW lives)."""
    p = Path(path)
    return f"{p.parent.name}/{p.name}"


class RowTable:
    """An on-disk ``{name: row}`` table (npz) that grows as rows are added; writes are atomic."""

    def __init__(self, path: Path | None, settings: dict):
        self.path = path  # None: in memory only
        self.settings = settings
        self.rows: dict[str, np.ndarray] = {}
        self.load()

    def load(self) -> None:
        """Add the rows on disk that are not in memory (the dict object itself is kept). A damaged
        file is reported and recomputed, never trusted."""
        if self.path is None or not self.path.is_file():
            return
        try:
            with np.load(self.path, allow_pickle=False) as z:
                for n, r in zip(z["names"].tolist(), z["rows"]):
                    self.rows.setdefault(n, r)
        except (OSError, ValueError, KeyError, EOFError, zipfile.BadZipFile) as exc:
            print(f"facekit: ignoring damaged LFW cache {self.path} ({type(exc).__name__}: {exc}); "
                  "its rows will be recomputed", file=sys.stderr)

    def save(self) -> None:
        """Write all rows, merged with what another process wrote meanwhile (under a file lock,
        so two processes embedding LFW at once never drop each other's rows)."""
        if self.path is None:
            return
        with file_lock(self.path.with_suffix(".lock")):
            self.load()
            names = sorted(self.rows)
            tmp = self.path.with_suffix(f".{os.getpid()}-{threading.get_ident()}.tmp.npz")
            np.savez(tmp, names=np.asarray(names, dtype=str), rows=np.stack([self.rows[n] for n in names]))
            os.replace(tmp, self.path)
            self.path.with_suffix(".json").write_text(json.dumps(self.settings, indent=1))
