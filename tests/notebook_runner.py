"""Execute a notebook headless, papermill-style: override values of its `parameters` cell.

Used by tests/test_notebooks.py, bench/notebooks.py and the book build (book/build.py). The
notebook must have exactly one code cell tagged ``parameters``; a cell with the overrides is
inserted right after it (tagged ``injected-parameters``), so the notebook's own defaults stay
visible to readers.

The kernel never touches the user's face store: ``FACEKIT_STORE`` is set, in the kernel's
environment only, to a file in a fresh temporary folder (unless the caller passes its own
``env``). When ``$FACEKIT_EXECUTED_DIR`` is set (or ``save_to`` is given), the executed notebook,
outputs and widget state included, is written there, so the book can reuse what the tests ran.
"""

from __future__ import annotations

import os
import shutil
import tempfile
import time
from pathlib import Path

import nbformat
from nbclient import NotebookClient

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOKS = ROOT / "notebooks"
#: The series in reading order: numbered chapters, then the appendices (A1, A2, ...).
SERIES_GLOBS = ("[0-9][0-9]_*.ipynb", "A[0-9]_*.ipynb")


def series(folder: str | os.PathLike = NOTEBOOKS) -> list[Path]:
    """The notebooks of the series in reading order (chapters 01.., then appendices A1..)."""
    folder = Path(folder)
    return [p for g in SERIES_GLOBS for p in sorted(folder.glob(g))]


def uses_lfw(path: str | os.PathLike) -> bool:
    """Whether the notebook's code reads LFW (its tests then need the ``lfw_home_dir`` fixture)."""
    nb = nbformat.read(path, as_version=4)
    return any("lfw" in c.source.lower() for c in nb.cells if c.cell_type == "code")


def code_mtime(folders=(ROOT / "facekit",)) -> float:
    """The newest modification time of any file under ``folders`` (the code the notebooks run)."""
    return max(p.stat().st_mtime for d in folders for p in Path(d).rglob("*")
               if p.is_file() and "__pycache__" not in p.parts)


def fresh_executed(src: str | os.PathLike, dst: str | os.PathLike, since: float | None = None) -> list[str]:
    """Copy into ``dst`` the executed notebooks of ``src`` written after ``since`` (default: the
    newest change under ``facekit/``), keeping their times; return their names. An executed
    notebook older than the code it ran is stale: the book must not reuse it."""
    import shutil

    since = code_mtime() if since is None else since
    Path(dst).mkdir(parents=True, exist_ok=True)
    kept = []
    for nb in sorted(Path(src).glob("*.ipynb")):
        if nb.stat().st_mtime > since:
            shutil.copy2(nb, Path(dst) / nb.name)
            kept.append(nb.name)
    return kept


def inject_parameters(nb: nbformat.NotebookNode, params: dict) -> nbformat.NotebookNode:
    """Insert a cell assigning ``params`` after the cell tagged ``parameters`` (required)."""
    idx = [i for i, c in enumerate(nb.cells)
           if c.cell_type == "code" and "parameters" in c.get("metadata", {}).get("tags", [])]
    if len(idx) != 1:
        raise ValueError(f"expected exactly one code cell tagged 'parameters', found {len(idx)}")
    src = "# Parameters injected by the test runner\n" + "\n".join(f"{k} = {v!r}" for k, v in params.items())
    cell = nbformat.v4.new_code_cell(src, metadata={"tags": ["injected-parameters", "remove-cell"]})
    nb.cells.insert(idx[0] + 1, cell)
    return nb


def run_notebook(path: str | os.PathLike, params: dict | None = None, timeout: int = 600,
                 kernel_name: str = "python3", env: dict | None = None,
                 save_to: str | os.PathLike | None = None) -> tuple[nbformat.NotebookNode, float]:
    """Execute ``path`` top to bottom in its folder; a failing cell raises CellExecutionError.

    env: extra environment variables for the kernel (default: ``FACEKIT_STORE`` = a temporary
    file, so tests never read or write the user's face store). save_to: folder to write the
    executed notebook into (default ``$FACEKIT_EXECUTED_DIR``, if set), widget state included.
    Returns the executed notebook and its wall time in seconds.
    """
    path = Path(path)
    nb = nbformat.read(path, as_version=4)
    if params:
        inject_parameters(nb, params)
    store_dir = None
    if env is None:  # a store of its own, removed after the run (it holds the notebook's enrolments)
        store_dir = tempfile.mkdtemp(prefix="facekit-nb-store-")
        env = {"FACEKIT_STORE": str(Path(store_dir) / "faces.sqlite3")}
    km_env = dict(os.environ)
    km_env.update(env)
    client = NotebookClient(nb, timeout=timeout, kernel_name=kernel_name, store_widget_state=True,
                            resources={"metadata": {"path": str(path.parent)}})
    t0 = time.perf_counter()
    try:
        client.execute(env=km_env)
    finally:
        if store_dir is not None:
            shutil.rmtree(store_dir, ignore_errors=True)
    seconds = time.perf_counter() - t0
    save_to = save_to or os.environ.get("FACEKIT_EXECUTED_DIR")
    if save_to:
        Path(save_to).mkdir(parents=True, exist_ok=True)
        nbformat.write(nb, Path(save_to) / path.name)
    return nb, seconds
