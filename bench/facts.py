"""The one source of the figures the notebooks, the README and docstrings quote: ``bench/facts.json``.

Every bench script ends by printing one JSON line of figures and then calling::

    from facts import record
    record("embed", res)          # bench/NAME.py's last JSON line, under this machine

which stores those figures in ``bench/facts.json`` under ``benches[NAME][RUN]``, with the machine
(CPU model, family/model numbers, core count), the date, the command line and the git commit. RUN
is the machine's id (``machine_id()``, e.g. ``amd-f25-m17``), followed by the command's arguments
when it had any (``amd-f25-m17 --view1``), so a partial or variant run never replaces a full one,
and a run on another machine never replaces this machine's: speed figures are comparable only
within one machine. ``FACEKIT_FACTS=0`` turns recording off (e.g. for a quick try).

Runs seeded by hand (before this file existed) keep the same shape; their ``source`` says where the
figures were taken from (a session's note, a commit) and their machine is named in ``machines``.

``tests/test_quoted_numbers.py`` checks every quoted figure against this file, and the book's
benchmarks page (``book/build.py``) is generated from it: ``python bench/facts.py markdown``.
"""

from __future__ import annotations

import datetime
import json
import os
import platform
import re
import subprocess
import sys
import tempfile
from pathlib import Path

FACTS = Path(__file__).resolve().with_name("facts.json")
FORMAT = 1

__all__ = ["FACTS", "load", "fact", "run_of", "record", "machine_id", "machine_info", "markdown"]


def _cpuinfo() -> dict[str, str]:
    info: dict[str, str] = {}
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if ":" in line:
                k, v = (s.strip() for s in line.split(":", 1))
                info.setdefault(k, v)  # the first processor's
    except OSError:
        pass
    return info


def machine_info() -> dict:
    """This machine: CPU model name, vendor/family/model numbers, CPUs this process may use, the
    int8-relevant instruction sets."""
    ci = _cpuinfo()
    flags = set(ci.get("flags", "").split())
    try:
        cpus = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        cpus = os.cpu_count() or 0
    isa = [f for f in ("avx2", "avx512f", "avx512_vnni", "avx_vnni", "avx512_bf16", "amx_int8") if f in flags]
    return {"cpu": ci.get("model name") or platform.processor() or platform.machine(),
            "vendor": ci.get("vendor_id", ""), "family": ci.get("cpu family", ""), "model": ci.get("model", ""),
            "cpus": cpus, "isa": isa}


def machine_id(info: dict | None = None) -> str:
    """A short, stable id of this kind of CPU: vendor, family and model numbers (``amd-f25-m17``:
    AMD Zen 4; ``intel-f6-m167``...). Two runs with the same id are on the same kind of machine."""
    info = info or machine_info()
    vendor = {"AuthenticAMD": "amd", "GenuineIntel": "intel"}.get(info.get("vendor", ""), "")
    if vendor and info.get("family") and info.get("model"):
        return f"{vendor}-f{info['family']}-m{info['model']}"
    return re.sub(r"[^a-z0-9]+", "-", str(info.get("cpu", "unknown")).lower()).strip("-") or "unknown"


def load(path: str | os.PathLike = FACTS) -> dict:
    """The facts file as a dict: ``{"format", "about", "machines": {id: {...}}, "benches": {name:
    {run: {"machine", "date", "command", "source", "figures": {...}}}}}``."""
    data = json.loads(Path(path).read_text())
    if data.get("format") != FORMAT:
        raise ValueError(f"{path}: facts format {data.get('format')!r}, expected {FORMAT}")
    return data


def run_of(bench: str, run: str, data: dict | None = None) -> dict:
    """One recorded run (KeyError names what is missing)."""
    data = data or load()
    try:
        return data["benches"][bench][run]
    except KeyError:
        raise KeyError(f"bench/facts.json has no run {run!r} of bench {bench!r}") from None


def fact(bench: str, run: str, key: str, data: dict | None = None):
    """One figure: ``fact("quant", "amd-f25-m17", "embed_speedup")``. A key with ``/`` reaches into
    nested figures (``"stranger_accept_default/31"``; keys themselves may contain dots)."""
    value = run_of(bench, run, data)["figures"]
    for part in key.split("/"):
        try:
            value = value[part]
        except (KeyError, TypeError):
            raise KeyError(f"bench/facts.json: run {run!r} of {bench!r} has no figure {key!r}") from None
    return value


def _git_commit() -> str | None:
    try:
        out = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=FACTS.parent, capture_output=True,
                             text=True, timeout=10)
        return out.stdout.strip() or None
    except (OSError, subprocess.SubprocessError):
        return None


def _plain(x):
    """JSON-able copy of a bench's figures (numpy scalars and tuples included)."""
    if isinstance(x, dict):
        return {str(k): _plain(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [_plain(v) for v in x]
    if hasattr(x, "item") and callable(x.item):
        return x.item()
    return x


def record(bench: str, figures: dict, *, run: str | None = None, source: str | None = None,
           path: str | os.PathLike = FACTS) -> str | None:
    """Store ``figures`` (a bench's last JSON line) as run ``run`` of ``bench`` (default: this
    machine's id, plus the command's arguments if any). Returns the run id (None when
    ``FACEKIT_FACTS=0``). The file is rewritten atomically; other runs are kept."""
    if os.environ.get("FACEKIT_FACTS", "1") == "0":
        return None
    info = machine_info()
    mid = machine_id(info)
    args = " ".join(sys.argv[1:])
    # the script that ran (bench/identify.py records as "identify-dlib128" with --model dlib128)
    script = Path(sys.argv[0]).stem if sys.argv and sys.argv[0].endswith(".py") else bench
    run = run or (f"{mid} {args}" if args else mid)
    path = Path(path)
    data = load(path) if path.exists() else {"format": FORMAT, "machines": {}, "benches": {}}
    data.setdefault("machines", {}).setdefault(mid, {**info, "name": info["cpu"]})
    data.setdefault("benches", {}).setdefault(bench, {})[run] = {
        "machine": mid,
        "date": datetime.date.today().isoformat(),
        "command": f"./run.sh bench {script} {args}".strip(),
        "commit": _git_commit(),
        "source": source or f"recorded by bench/{script}.py (bench/facts.py record) at the end of its run",
        "figures": _plain(figures),
    }
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".facts-", suffix=".json")
    with os.fdopen(fd, "w") as f:
        json.dump(data, f, indent=1, ensure_ascii=False)
        f.write("\n")
    os.replace(tmp, path)
    print(f"[facts] {bench}: figures recorded in {path.name} as run {run!r}", file=sys.stderr)
    return run


def _fmt(v) -> str:
    if isinstance(v, float):
        return f"{v:.4g}" if abs(v) < 1e5 else f"{v:,.0f}"
    if isinstance(v, (dict, list)):
        return json.dumps(v, ensure_ascii=False)[:200]
    return str(v)


def markdown(data: dict | None = None) -> str:
    """The benchmarks page of the book: every bench's recorded runs, each with its machine, date,
    command and source, and its figures (generated from the facts file, never typed)."""
    data = data or load()
    machines = data.get("machines", {})
    out = ["# Benchmarks: the measured figures", "",
           data.get("about", ""), "",
           "Figures are comparable only within one run, or at least one machine: each run names its CPU. "
           "Every figure the notebooks and the README quote is one of these, checked by "
           "`tests/test_quoted_numbers.py`. The commands and targets are in the README's Benchmarks table.", "",
           "## Machines", "", "| id | CPU | notes |", "|---|---|---|"]
    for mid, m in machines.items():
        out.append(f"| `{mid}` | {m.get('name') or m.get('cpu', '')} | {m.get('notes', '')} |")
    for bench, runs in data.get("benches", {}).items():
        out += ["", f"## `{bench}`", ""]
        if bench in data.get("bench_notes", {}):
            out += [data["bench_notes"][bench], ""]
        for run, r in runs.items():
            m = machines.get(r.get("machine"), {})
            out += [f"### {run}", "",
                    f"*{m.get('name') or r.get('machine')}; {r.get('date', '')}; `{r.get('command', '')}`"
                    + (f"; commit `{r['commit']}`" if r.get("commit") else "") + "*", "",
                    r.get("source", ""), ""]
            if r.get("note"):
                out += [r["note"], ""]
            out += ["| figure | value |", "|---|---|"]
            for k, v in r.get("figures", {}).items():
                out.append(f"| `{k}` | {_fmt(v)} |")
    return "\n".join(out) + "\n"


if __name__ == "__main__":
    if sys.argv[1:2] == ["markdown"]:
        sys.stdout.write(markdown())
    elif sys.argv[1:2] == ["machine"]:
        print(machine_id(), json.dumps(machine_info()))
    else:
        print("usage: python bench/facts.py markdown | machine", file=sys.stderr)
        raise SystemExit(2)
