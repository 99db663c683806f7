"""Build the facekit book: the notebook series, executed, as a static HTML site in ``_build/html``.

    ./run.sh book            # small mode (SMALL = True: minutes), what CI builds
    ./run.sh book --full     # full mode: the published figures (LFW caches make reruns fast)
    ./run.sh book --reuse DIR   # use notebooks already executed into DIR (e.g. by the tests)

Steps: (1) execute every notebook of the series headless with tests/notebook_runner.py into
``_build/executed`` (or reuse executed copies that are newer than their sources and of the same
mode; the notebook tests write them there); (2) copy them with the front page and the Sphinx
configuration into ``_build/book_src``, replacing each widget by a static picture of the state
it was drawn in (its ``Image`` PNGs and its controls' values: widget JavaScript would need a CDN,
and the book must read offline); (3) ``sphinx-build`` (MyST-NB, sphinx-book-theme) into
``_build/html``, front page ``_build/html/index.html``. Notebooks that fail to run stop the build
with the failing cell. Every figure of the executed notebooks appears in the book
(tests/test_book.py checks that in a real browser). The book also has a benchmarks page,
generated from ``bench/facts.json`` (the one source of the figures the text quotes; see
``bench/facts.py``), never typed by hand.
"""

from __future__ import annotations

import argparse
import base64
import html
import json
import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

import nbformat

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))
from notebook_runner import NOTEBOOKS, run_notebook, series  # noqa: E402

BUILD = ROOT / "_build"
EXECUTED = BUILD / "executed"
SRC = BUILD / "book_src"
HTML = BUILD / "html"
#: the book's reference pages (Markdown under book/pages/), after the notebooks
PAGES = sorted((ROOT / "book" / "pages").glob("*.md"))
WIDGET_VIEW = "application/vnd.jupyter.widget-view+json"
WIDGET_STATE = "application/vnd.jupyter.widget-state+json"


def mode_of(nb: nbformat.NotebookNode) -> str | None:
    """"small" or "full": the mode an executed notebook was run in (None if not recorded)."""
    for c in nb.cells:
        if "injected-parameters" in c.get("metadata", {}).get("tags", []):
            return "small" if "SMALL = True" in c.source else "full"
    return None


def fresh(executed: Path, source: Path, mode: str) -> bool:
    """An executed copy is reusable when it is newer than its source and ran in ``mode``."""
    if not executed.is_file() or executed.stat().st_mtime < source.stat().st_mtime:
        return False
    return mode_of(nbformat.read(executed, as_version=4)) == mode


def execute(paths: list[Path], mode: str, out: Path, timeout: int) -> None:
    for p in paths:
        t0 = time.perf_counter()
        print(f"[book] executing {p.name} ({mode} mode) ...", flush=True)
        run_notebook(p, {"SMALL": mode == "small"}, timeout=timeout, save_to=out)
        print(f"[book]   {p.name}: {time.perf_counter() - t0:.0f} s", flush=True)


def _widget_states(nb: nbformat.NotebookNode) -> dict:
    return nb.metadata.get("widgets", {}).get(WIDGET_STATE, {}).get("state", {})


def _widget_png(model: dict) -> bytes | None:
    for buf in model.get("buffers", []):
        if buf.get("path") == ["value"]:
            return base64.b64decode(buf["data"])
    value = model.get("state", {}).get("value")
    return base64.b64decode(value) if isinstance(value, str) and model["state"].get("format") == "png" else None


def _walk(states: dict, model_id: str, pngs: list, controls: list, texts: list) -> None:
    """Collect, depth first, the PNGs of Image widgets, "description: value" of controls and the
    text of HTML/Label widgets (e.g. a finished progress bar's caption)."""
    model = states.get(model_id)
    if model is None:
        return
    state = model.get("state", {})
    name = model.get("model_name", "")
    if name == "ImageModel":
        png = _widget_png(model)
        if png:
            pngs.append(png)
    elif name in ("HTMLModel", "LabelModel", "HTMLMathModel") and isinstance(state.get("value"), str):
        text = re.sub(r"<[^>]+>", "", html.unescape(state["value"])).strip()
        if text:
            texts.append(text)
    elif "description" in state and "value" in state and not isinstance(state["value"], (dict, list)):
        label = state.get("description") or name.replace("Model", "")
        value = state["value"]
        if name == "SelectionSliderModel" or name == "DropdownModel":
            idx = state.get("index")
            labels = state.get("_options_labels") or []
            value = labels[idx] if isinstance(idx, int) and idx < len(labels) else value
        controls.append(f"{label}: {value}")
    for child in state.get("children", []):
        if isinstance(child, str) and child.startswith("IPY_MODEL_"):
            _walk(states, child[len("IPY_MODEL_"):], pngs, controls, texts)


def staticise_widgets(nb: nbformat.NotebookNode) -> int:
    """Replace each widget output by its drawn picture(s) and a line naming its controls'
    values; returns how many widget outputs were replaced. Outputs without stored state keep
    their text fallback."""
    states = _widget_states(nb)
    replaced = 0
    for cell in nb.cells:
        if cell.cell_type != "code":
            continue
        outputs = []
        for out in cell.get("outputs", []):
            view = out.get("data", {}).get(WIDGET_VIEW) if out.get("output_type") in ("display_data", "execute_result") else None
            if not view:
                outputs.append(out)
                continue
            pngs, controls, texts = [], [], []
            _walk(states, view["model_id"], pngs, controls, texts)
            if not pngs and texts:  # a progress bar (tqdm) or a message: its final text
                outputs.append(nbformat.v4.new_output("stream", name="stdout", text=" ".join(texts) + "\n"))
                replaced += 1
                continue
            note = "Interactive widget, shown as drawn when the notebook ran" + \
                   (f" ({'; '.join(controls)})" if controls else "") + ". Run the notebook to use it."
            outputs.append(nbformat.v4.new_output("display_data", data={"text/markdown": f"*{note}*"}))
            for png in pngs:
                outputs.append(nbformat.v4.new_output(
                    "display_data", data={"image/png": base64.b64encode(png).decode(), "text/plain": "<widget image>"}))
            replaced += 1
        cell.outputs = outputs
    nb.metadata.pop("widgets", None)
    return replaced


def figure_count(nb: nbformat.NotebookNode) -> int:
    """Image outputs (figures, widget pictures) of a notebook: what the book must show."""
    return sum(1 for c in nb.cells if c.cell_type == "code" for o in c.get("outputs", [])
               if any(k.startswith("image/") for k in o.get("data", {})))


def front_page(paths: list[Path], mode: str) -> str:
    titles = []
    for p in paths:
        nb = nbformat.read(p, as_version=4)
        titles.append(nb.cells[0].source.splitlines()[0].lstrip("# ").strip())
    chapters = [p for p in paths if p.name[0].isdigit()]
    appendices = [p for p in paths if not p.name[0].isdigit()]
    rows = "\n".join(f"| [{t}]({p.name}) |" for p, t in zip(paths, titles))
    return f"""# facekit: FaceNet, step by step

A series of Jupyter notebooks that teaches face recognition with FaceNet-style embeddings, and the
`facekit` package they run on: detection and alignment (MTCNN), embeddings and verification,
triplet loss, identification with an "unknown" answer, clustering, live recognition, and
appendices on speed, hard light and responsible use.

This book shows every notebook **as executed** ({mode} mode, built {time.strftime("%Y-%m-%d")}),
with all outputs and figures, so it can be read without running anything. Interactive widgets are
shown as drawn when the notebook ran; open the notebooks in JupyterLab (`./run.sh lab`) to use
them. {"Small mode uses fewer photos and steps than the published figures quoted in the text." if mode == "small" else ""}

Before you recognise anyone's face, read [A3 · responsible use](A3_responsible_use.ipynb).

The measured figures the text quotes (speed, accuracy, each with its machine and command) are on the
[benchmarks page](benchmarks.md).

| notebook |
|---|
{rows}

```{{toctree}}
:caption: Chapters
:maxdepth: 1
:hidden:

{chr(10).join(p.stem for p in chapters)}
```

```{{toctree}}
:caption: Appendices
:maxdepth: 1
:hidden:

{chr(10).join(p.stem for p in appendices)}
```

```{{toctree}}
:caption: Reference
:maxdepth: 1
:hidden:

{chr(10).join([*(q.stem for q in PAGES), "benchmarks"])}
```
"""


def benchmarks_page() -> str:
    """The benchmarks page (MyST markdown), generated from bench/facts.json by bench/facts.py."""
    import importlib.util

    spec = importlib.util.spec_from_file_location("facekit_bench_facts", ROOT / "bench" / "facts.py")
    facts = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(facts)
    return facts.markdown()


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--full", action="store_true", help="execute in full mode (SMALL = False)")
    ap.add_argument("--reuse", type=Path, default=EXECUTED,
                    help="folder of executed notebooks to reuse when fresh (default _build/executed)")
    ap.add_argument("--execute", action="store_true", help="execute every notebook, even fresh ones")
    ap.add_argument("--timeout", type=int, default=1800, help="per-cell timeout in seconds")
    args = ap.parse_args(argv)
    mode = "full" if args.full else "small"
    sources = series(NOTEBOOKS)
    EXECUTED.mkdir(parents=True, exist_ok=True)
    todo = []
    for p in sources:
        reused = args.reuse / p.name
        if not args.execute and fresh(reused, p, mode):
            if reused.resolve() != (EXECUTED / p.name).resolve():
                shutil.copy2(reused, EXECUTED / p.name)
            print(f"[book] reusing executed {p.name} ({mode} mode)", flush=True)
        else:
            todo.append(p)
    execute(todo, mode, EXECUTED, args.timeout)

    if SRC.exists():
        shutil.rmtree(SRC)
    SRC.mkdir(parents=True)
    shutil.copy2(ROOT / "book" / "conf.py", SRC / "conf.py")
    manifest = {}
    for p in sources:
        nb = nbformat.read(EXECUTED / p.name, as_version=4)
        errors = [o for c in nb.cells if c.cell_type == "code" for o in c.get("outputs", [])
                  if o.get("output_type") == "error"]
        if errors:
            raise SystemExit(f"{p.name}: {len(errors)} cell(s) failed when executed; fix them before building the book")
        widgets = staticise_widgets(nb)
        nbformat.write(nb, SRC / p.name)
        manifest[p.stem] = {"figures": figure_count(nb), "widgets": widgets, "mode": mode}
    (SRC / "index.md").write_text(front_page(sources, mode))
    for page in PAGES:
        shutil.copy2(page, SRC / page.name)
    sys.path.insert(0, str(ROOT / "book"))
    from layers import draw  # the architecture page's picture, drawn from pyproject's layers contract

    draw(SRC / "layers.png")
    (SRC / "benchmarks.md").write_text(benchmarks_page())
    (BUILD / "book_manifest.json").write_text(json.dumps(manifest, indent=1))
    if HTML.exists():
        shutil.rmtree(HTML)
    cmd = [sys.executable, "-m", "sphinx", "-b", "html", "-q", "-d", str(BUILD / "doctrees"), str(SRC), str(HTML)]
    print("[book]", " ".join(cmd), flush=True)
    subprocess.run(cmd, check=True, env=dict(os.environ, PYTHONWARNINGS="ignore"))
    print(f"[book] {len(sources)} notebooks -> {HTML / 'index.html'}", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
