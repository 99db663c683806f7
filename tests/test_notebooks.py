"""Every notebook runs top to bottom headless in small mode; all follow the series skeleton and
are committed with outputs stripped."""

from __future__ import annotations

import json
import os
from pathlib import Path

import nbformat
import pytest

from notebook_runner import NOTEBOOKS, run_notebook

PATHS = sorted(NOTEBOOKS.glob("[0-9][0-9]_*.ipynb"))
IDS = [p.stem for p in PATHS]


def test_series_is_there():
    assert len(PATHS) >= 1
    numbers = [p.name[:2] for p in PATHS]
    assert numbers == sorted(numbers) and len(set(numbers)) == len(numbers)


@pytest.mark.parametrize("path", PATHS, ids=IDS)
def test_outputs_stripped_in_git(path):
    nb = json.loads(path.read_text())
    dirty = [i for i, c in enumerate(nb["cells"]) if c["cell_type"] == "code"
             and (c.get("outputs") or c.get("execution_count") is not None)]
    assert not dirty, f"{path.name}: cells {dirty} have outputs; strip them before committing"


@pytest.mark.parametrize("path", PATHS, ids=IDS)
def test_skeleton(path):
    nb = nbformat.read(path, as_version=4)
    first = nb.cells[0]
    assert first.cell_type == "markdown" and first.source.lstrip().startswith("# "), "title first"
    params = [c for c in nb.cells if "parameters" in c.metadata.get("tags", [])]
    assert len(params) == 1 and params[0].cell_type == "code" and "SMALL" in params[0].source
    md = "\n".join(c.source.lower() for c in nb.cells if c.cell_type == "markdown")
    for heading in ("goal", "summary", "exercises"):
        assert heading in md, f"{path.name}: no '{heading}' section"
    assert "import facekit" in "\n".join(c.source for c in nb.cells) or \
        "from facekit" in "\n".join(c.source for c in nb.cells)


@pytest.mark.notebook
@pytest.mark.parametrize("path", PATHS, ids=IDS)
def test_runs_headless_in_small_mode(path):
    nb, seconds = run_notebook(path, {"SMALL": True}, timeout=900)
    errors = [o for c in nb.cells if c.cell_type == "code" for o in c.get("outputs", [])
              if o.get("output_type") == "error"]
    assert not errors
    print(f"{path.name}: {seconds:.1f} s")
