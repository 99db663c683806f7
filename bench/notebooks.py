"""Time to execute every notebook of the series in small mode (as the tests do).

Run: .venv/bin/python bench/notebooks.py [NN ...]   (e.g. `01 02` for a subset)
Prints each notebook's wall time as it finishes; last line: JSON with `total_s` and one
`<notebook stem>_s` figure per notebook. Target: total <= 8 min on the 2-core machine.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
from notebook_runner import NOTEBOOKS, run_notebook  # noqa: E402


def main(argv: list[str]) -> None:
    paths = sorted(NOTEBOOKS.glob("[0-9][0-9]_*.ipynb"))
    if argv:
        paths = [p for p in paths if p.name[:2] in argv]
    res: dict[str, float] = {}
    for p in paths:
        _, seconds = run_notebook(p, {"SMALL": True}, timeout=1800)
        res[f"{p.stem}_s"] = round(seconds, 1)
        print(f"{p.name}: {seconds:.1f} s", flush=True)
    res = {"total_s": round(sum(res.values()), 1), **res}
    print(json.dumps(res))
    from facts import record  # noqa: E402 - bench/facts.json: the one source of the figures the text quotes
    record("notebooks", res)


if __name__ == "__main__":
    main(sys.argv[1:])
