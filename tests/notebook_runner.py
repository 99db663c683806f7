"""Execute a notebook headless, papermill-style: override values of its `parameters` cell.

Used by tests/test_notebooks.py and bench/notebooks.py. The notebook must have exactly one code
cell tagged ``parameters``; a cell with the overrides is inserted right after it (tagged
``injected-parameters``), so the notebook's own defaults stay visible to readers.
"""

from __future__ import annotations

import os
import time
from pathlib import Path

import nbformat
from nbclient import NotebookClient

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOKS = ROOT / "notebooks"


def inject_parameters(nb: nbformat.NotebookNode, params: dict) -> nbformat.NotebookNode:
    """Insert a cell assigning ``params`` after the cell tagged ``parameters`` (required)."""
    idx = [i for i, c in enumerate(nb.cells)
           if c.cell_type == "code" and "parameters" in c.get("metadata", {}).get("tags", [])]
    if len(idx) != 1:
        raise ValueError(f"expected exactly one code cell tagged 'parameters', found {len(idx)}")
    src = "# Parameters injected by the test runner\n" + "\n".join(f"{k} = {v!r}" for k, v in params.items())
    cell = nbformat.v4.new_code_cell(src, metadata={"tags": ["injected-parameters"]})
    nb.cells.insert(idx[0] + 1, cell)
    return nb


def run_notebook(path: str | os.PathLike, params: dict | None = None, timeout: int = 600,
                 kernel_name: str = "python3") -> tuple[nbformat.NotebookNode, float]:
    """Execute ``path`` top to bottom in its folder; a failing cell raises CellExecutionError.

    Returns the executed notebook and its wall time in seconds.
    """
    path = Path(path)
    nb = nbformat.read(path, as_version=4)
    if params:
        inject_parameters(nb, params)
    client = NotebookClient(nb, timeout=timeout, kernel_name=kernel_name,
                            resources={"metadata": {"path": str(path.parent)}})
    t0 = time.perf_counter()
    client.execute()
    return nb, time.perf_counter() - t0
