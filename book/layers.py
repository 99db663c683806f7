"""Draw facekit's layers (the import-linter contract in pyproject.toml) with the modules of each
subpackage, for the book's architecture page: ``python book/layers.py OUT.png``.

The picture is made from the code (pyproject's ``layers`` list and the files under facekit/), so it
cannot drift from what tests/test_layers.py enforces."""

from __future__ import annotations

import sys
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def layers() -> list[list[str]]:
    """The contract's layers, lowest first; each a list of sibling packages (``facekit.x``)."""
    conf = tomllib.loads((ROOT / "pyproject.toml").read_text())
    contract = next(c for c in conf["tool"]["importlinter"]["contracts"] if c["type"] == "layers")
    return [[s.strip() for s in layer.replace(":", "|").split("|")] for layer in reversed(contract["layers"])]


def modules(package: str) -> list[str]:
    """Module names of ``facekit.x`` (a subpackage's files, or the module itself)."""
    path = ROOT / Path(*package.split("."))
    if path.is_dir():
        return sorted(".".join(p.relative_to(path).with_suffix("").parts) for p in path.rglob("*.py")
                      if p.stem != "__init__")
    return [path.name]


def draw(out: Path) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.patches import FancyBboxPatch

    rows = layers()
    fig, ax = plt.subplots(figsize=(11, 0.95 * len(rows) + 0.6))
    ax.set_xlim(0, 11)
    ax.set_ylim(-0.2, len(rows) + 0.1)
    ax.axis("off")
    colours = plt.get_cmap("tab20")
    for level, siblings in enumerate(rows):
        y = level
        width = 9.4 / len(siblings)
        for k, pkg in enumerate(siblings):
            x = 1.4 + k * width
            ax.add_patch(FancyBboxPatch((x + 0.05, y + 0.08), width - 0.1, 0.74, boxstyle="round,pad=0.02",
                                        fc=colours(level % 20), ec="0.3", lw=0.8))
            name = pkg.split(".", 1)[1] + ("/" if (ROOT / Path(*pkg.split("."))).is_dir() else ".py")
            mods = ", ".join(modules(pkg))
            ax.text(x + 0.15, y + 0.6, name, fontsize=10, weight="bold", va="center")
            ax.text(x + 0.15, y + 0.3, mods, fontsize=7, va="center", wrap=True)
        ax.text(0.05, y + 0.45, f"layer {level}", fontsize=9, va="center", color="0.3")
    ax.annotate("", xy=(1.1, 0.1), xytext=(1.1, len(rows) - 0.2),
                arrowprops=dict(arrowstyle="->", color="0.3", lw=1.2))
    ax.text(0.75, len(rows) / 2, "imports go down", rotation=90, va="center", ha="center", fontsize=8, color="0.3")
    ax.set_title("facekit's layers: a module imports only from its own subpackage or a lower layer", fontsize=11)
    fig.tight_layout()
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=130)
    plt.close(fig)
    return out


if __name__ == "__main__":
    print(draw(Path(sys.argv[1] if len(sys.argv) > 1 else "layers.png")))
