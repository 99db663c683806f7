"""The book (./run.sh book): built in small mode from the series, then read in a real headless
Chromium over HTTP: every page loads, no cell output is an error, every figure is there and drawn.

The build reuses notebooks that tests/test_notebooks.py already executed into _build/executed
when they are newer than their sources and than every file of facekit/ (the code they ran), so in
a full test run it costs the Sphinx build only; run alone, or after facekit/ changed, it executes
the series itself (a few minutes).
"""

from __future__ import annotations

import json
import subprocess
import sys

import nbformat
import pytest

from browser_utils import ROOT, serve_directory
from notebook_runner import fresh_executed, series

pytestmark = [pytest.mark.browser, pytest.mark.slow, pytest.mark.notebook]

BUILD = ROOT / "_build"
HTML = BUILD / "html"


@pytest.fixture(scope="module")
def book(lfw_home_dir, tmp_path_factory):
    """Build the book in small mode (reusing executed notebooks newer than facekit/); returns the
    manifest."""
    reuse = tmp_path_factory.mktemp("executed")
    kept = fresh_executed(BUILD / "executed", reuse)
    print(f"book: reusing {len(kept)} executed notebook(s) newer than facekit/: {kept}")
    proc = subprocess.run([sys.executable, str(ROOT / "book" / "build.py"), "--reuse", str(reuse)], cwd=ROOT,
                          capture_output=True, text=True, timeout=3000)
    assert proc.returncode == 0, f"book build failed:\n{proc.stdout[-4000:]}\n{proc.stderr[-4000:]}"
    manifest = json.loads((BUILD / "book_manifest.json").read_text())
    return manifest


def test_book_has_every_notebook_and_a_front_page(book):
    names = [p.stem for p in series()]
    assert list(book) == names
    assert (HTML / "index.html").is_file()
    for n in names:
        assert (HTML / f"{n}.html").is_file(), n
        nb = nbformat.read(BUILD / "executed" / f"{n}.ipynb", as_version=4)
        errors = [o for c in nb.cells if c.cell_type == "code" for o in c.get("outputs", [])
                  if o.get("output_type") == "error"]
        assert not errors, f"{n}: error outputs in the executed notebook"
    index = (HTML / "index.html").read_text()
    for n in names:
        assert f'href="{n}.html"' in index, f"the front page does not link {n}"


def test_every_page_loads_in_chromium_with_its_figures(book, chromium):
    from playwright.sync_api import sync_playwright

    problems = []
    with serve_directory(HTML) as port, sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=chromium, headless=True,
                                     args=["--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage"])
        page = browser.new_page()
        failed = []
        page.on("requestfailed", lambda r: failed.append(r.url))
        for name in ["index", *book]:
            failed.clear()
            resp = page.goto(f"http://127.0.0.1:{port}/{name}.html", wait_until="load")
            if resp is None or resp.status != 200:
                problems.append(f"{name}: HTTP {resp and resp.status}")
                continue
            title = page.title()
            local_failures = [u for u in failed if u.startswith(f"http://127.0.0.1:{port}/")]
            if local_failures:
                problems.append(f"{name}: files of the book did not load: {local_failures[:3]}")
            if name == "index":
                assert "facekit" in title
                continue
            info = page.evaluate("""() => {
                const main = document.querySelector('main') || document.body;
                const imgs = [...main.querySelectorAll('.cell_output img, .output img')];
                return {
                  n: imgs.length,
                  broken: imgs.filter(i => !(i.complete && i.naturalWidth > 0)).map(i => i.src.slice(-60)),
                  errors: main.querySelectorAll('.output.traceback, .output.error, .ansi-red-intense-fg').length,
                  cells: main.querySelectorAll('.cell').length,
                  h1: (main.querySelector('h1') || {}).textContent || '',
                };
            }""")
            want = book[name]["figures"]
            if info["n"] != want:
                problems.append(f"{name}: {info['n']} images in the page, {want} figures in the executed notebook")
            if info["broken"]:
                problems.append(f"{name}: images that did not load: {info['broken'][:3]}")
            if info["errors"]:
                problems.append(f"{name}: {info['errors']} error outputs shown")
            if not info["cells"] or not info["h1"].strip():
                problems.append(f"{name}: no cells or no title rendered")
        browser.close()
    assert not problems, "\n".join(problems)
