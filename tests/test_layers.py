"""The package's layers (issue #28): every import, including those inside functions, goes down or
sideways within a subpackage, never up; no import cycle; no module over 450 lines.

import-linter's contracts live in pyproject.toml ([tool.importlinter]); grimp reads every import
statement, inside functions too. A planted upward import in a copy of the package must fail them.
"""

from __future__ import annotations

import ast
import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PKG = ROOT / "facekit"
LINT = [sys.executable, "-c", "import sys; from importlinter.cli import lint_imports_command; "
        "sys.argv = ['lint-imports', '--no-cache']; lint_imports_command()"]


def _lint(cwd: Path) -> subprocess.CompletedProcess:
    env = {"PATH": "/usr/bin:/bin", "PYTHONPATH": str(cwd), "HOME": str(cwd)}
    return subprocess.run(LINT, cwd=cwd, capture_output=True, text=True, env=env, timeout=300)


def test_layers_contract_is_kept():
    r = _lint(ROOT)
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-2000:]
    assert "facekit layers KEPT" in r.stdout and "BROKEN" not in r.stdout


def test_a_planted_upward_import_breaks_the_contract(tmp_path):
    """The same check on a copy of the package with one upward import inside a function (the kind
    that never fails at import time): core -> recognition."""
    shutil.copytree(PKG, tmp_path / "facekit", ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copy(ROOT / "pyproject.toml", tmp_path / "pyproject.toml")
    victim = tmp_path / "facekit" / "core" / "boxes.py"
    victim.write_text(victim.read_text() + "\n\ndef _planted():\n    from facekit.recognition.verify import sq_l2\n"
                      "    return sq_l2\n")
    r = _lint(tmp_path)
    assert r.returncode != 0 and "facekit layers BROKEN" in r.stdout, r.stdout[-2000:]
    assert "facekit.core.boxes -> facekit.recognition.verify" in r.stdout


def _imports(path: Path, module: str) -> set[str]:
    """facekit modules imported anywhere in ``path`` (module level and inside functions)."""
    out = set()
    pkg = module if path.name == "__init__.py" else module.rsplit(".", 1)[0]
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            out |= {a.name for a in node.names if a.name.split(".")[0] == "facekit"}
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parts = pkg.split(".")
                base = ".".join(parts[: len(parts) - node.level + 1] + ([base] if base else []))
            if base.split(".")[0] == "facekit":
                out |= {f"{base}.{a.name}" for a in node.names} | {base}
    return out


def test_no_import_cycles_and_no_module_over_450_lines():
    mods = {}
    for p in PKG.rglob("*.py"):
        rel = p.relative_to(ROOT).with_suffix("").parts
        mods[".".join(rel[:-1] if rel[-1] == "__init__" else rel)] = p
    graph = {m: {i for i in _imports(p, m) if i in mods and i != m} for m, p in mods.items()}
    too_long = {m: n for m, p in mods.items() if (n := len(p.read_text().splitlines())) > 450}
    assert not too_long, too_long
    # Tarjan's strongly connected components: any component of 2+ modules is a cycle
    index, low, stack, on, cycles, counter = {}, {}, [], set(), [], [0]

    def visit(v):
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on.add(v)
        for w in graph[v]:
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                cycles.append(sorted(comp))

    sys.setrecursionlimit(10000)
    for v in graph:
        if v not in index:
            visit(v)
    assert not cycles, cycles
    # the package root's lazy flat API imports nothing eagerly; the subpackages import nothing upward
    assert len(graph) > 60
