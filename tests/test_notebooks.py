"""Every notebook of the series (chapters 01.. and appendices A1..) runs top to bottom headless in
small mode; all follow the series skeleton and are committed with outputs stripped."""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path

import nbformat
import pytest

from notebook_runner import NOTEBOOKS, fresh_executed, run_notebook, series, uses_lfw

PATHS = series()
IDS = [p.stem for p in PATHS]


def test_series_is_there():
    chapters = [p.name[:2] for p in PATHS if p.name[0].isdigit()]
    appendices = [p.name[:2] for p in PATHS if p.name[0] == "A"]
    assert chapters and appendices
    # chapters 01, 02, ... with no gap or duplicate; appendices A1, A2, ... after them, no duplicate
    assert chapters == [f"{i:02d}" for i in range(1, len(chapters) + 1)], chapters
    assert appendices == sorted(set(appendices)), appendices
    assert PATHS[:len(chapters)] == [p for p in PATHS if p.name[0].isdigit()], "chapters come first"
    assert not [p.name for p in NOTEBOOKS.glob("*.ipynb") if p not in PATHS], "a notebook outside the series"


@pytest.mark.notebook
def test_runner_isolates_the_face_store(tmp_path):
    """Notebooks run by the tests get FACEKIT_STORE = a fresh temporary file, never the user's store."""
    import nbformat
    nb = nbformat.v4.new_notebook(cells=[
        nbformat.v4.new_code_cell("SMALL = False", metadata={"tags": ["parameters"]}),
        nbformat.v4.new_code_cell("import os; print(os.environ.get('FACEKIT_STORE'))")])
    path = tmp_path / "probe.ipynb"
    nbformat.write(nb, path)
    out, _ = run_notebook(path, {"SMALL": True}, timeout=120)
    store = out.cells[-1].outputs[0]["text"].strip()
    assert store.endswith("faces.sqlite3") and "facekit-nb-store-" in store
    assert store != os.environ.get("FACEKIT_STORE") and not Path(store).exists()


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


def test_only_executed_notebooks_newer_than_the_code_are_reused(tmp_path):
    """The book reuses an executed notebook only when it is newer than every file of facekit/."""
    src, code = tmp_path / "executed", tmp_path / "facekit"
    src.mkdir()
    code.mkdir()
    (code / "x.py").write_text("X = 1\n")
    for name, age in (("old.ipynb", 100), ("new.ipynb", -100)):
        (src / name).write_text("{}")
        t = (code / "x.py").stat().st_mtime - age
        os.utime(src / name, (t, t))
    from notebook_runner import code_mtime

    since = code_mtime([code])
    assert fresh_executed(src, tmp_path / "keep", since) == ["new.ipynb"]
    assert [p.name for p in (tmp_path / "keep").iterdir()] == ["new.ipynb"]
    assert (tmp_path / "keep" / "new.ipynb").stat().st_mtime == (src / "new.ipynb").stat().st_mtime
    assert code_mtime() >= (NOTEBOOKS.parent / "facekit" / "__init__.py").stat().st_mtime


@pytest.mark.notebook
@pytest.mark.parametrize("path", PATHS, ids=IDS)
def test_runs_headless_in_small_mode(path, request):
    if uses_lfw(path):
        request.getfixturevalue("lfw_home_dir")  # LFW there (or a loud skip / a failure in CI)
    # executed copies go to _build/executed: the book build (tests/test_book.py) reuses them
    save_to = os.environ.get("FACEKIT_EXECUTED_DIR") or NOTEBOOKS.parent / "_build" / "executed"
    tmp = Path(tempfile.gettempdir())
    before = set(os.listdir(tmp))
    nb, seconds = run_notebook(path, {"SMALL": True}, timeout=900, save_to=save_to)
    errors = [o for c in nb.cells if c.cell_type == "code" for o in c.get("outputs", [])
              if o.get("output_type") == "error"]
    assert not errors
    # the notebooks' temporary folders (demo stores, album copies, videos) are gone with the kernel
    left = sorted(n for n in set(os.listdir(tmp)) - before if n.startswith(("facekit-nb", "a3-store-")))
    assert not left, f"{path.name} left {left} in {tmp}"
    print(f"{path.name}: {seconds:.1f} s")
