"""A large gallery across runs: ``facekit identify`` trains its FAISS index once, then reloads it.

Run: ``.venv/bin/python bench/gallery_reload.py [--faces 1000000]`` (take the bench lock first).

A real :class:`facekit.store.db.FaceStore` (in a temporary folder) is filled with ``--faces`` unit
embeddings with person structure (people of 1-100 faces: centres plus per-face noise; the search
quality bench with LFW-matched statistics is ``bench/gallery.py``; here only time matters). Then
:func:`facekit.store.index_file.gallery_from_store`, as ``facekit identify`` calls it, three times:

- ``first_run_s``: nothing saved yet: read the store, train the index, save it;
- ``later_run_s``: the store unchanged: load the saved index and check it against the store
  (every id's vector and name, :meth:`facekit.store.index.GalleryIndex.sync`);
- ``after_enrol_s``: one person enrolled since: load, add the new faces, save again.

Prints the figures, then ONE JSON line (``first_run_s``, ``later_run_s``, ``after_enrol_s``,
``speedup`` = first / later, ``file_gb``, ``same_top1``: share of 200 queries whose nearest face
the reloaded index finds as the fresh one did).
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import numpy as np


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--faces", type=int, default=1_000_000)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()

    from facekit.store.index_file import gallery_from_store, gallery_path
    from facekit.store.db import FaceStore

    rng = np.random.default_rng(args.seed)
    with tempfile.TemporaryDirectory(prefix="facekit-bench-reload-") as tmp:
        store = FaceStore(Path(tmp) / "faces.sqlite3")
        t, done, person = time.perf_counter(), 0, 0
        while done < args.faces:
            n = min(int(rng.integers(1, 101)), args.faces - done)
            x = rng.normal(size=128).astype(np.float32) + 0.45 * rng.normal(size=(n, 128)).astype(np.float32)
            store.add_faces(f"person{person:07d}", x / np.linalg.norm(x, axis=1, keepdims=True), model="m")
            done, person = done + n, person + 1
        print(f"store: {done:,} faces of {person:,} people, filled in {time.perf_counter() - t:.1f} s", flush=True)
        path = gallery_path(store, "m")  # facekit's cache; removed at the end (the store is temporary)
        fig: dict = {"faces": done}
        try:
            t = time.perf_counter()
            first = gallery_from_store(store, "m")
            fig["first_run_s"] = round(time.perf_counter() - t, 2)
            t = time.perf_counter()
            later = gallery_from_store(store, "m")
            fig["later_run_s"] = round(time.perf_counter() - t, 2)
            newcomer = rng.normal(size=(5, 128)).astype(np.float32)
            newcomer /= np.linalg.norm(newcomer, axis=1, keepdims=True)
            store.add_faces("newcomer", newcomer, model="m")
            t = time.perf_counter()
            after = gallery_from_store(store, "m")
            fig["after_enrol_s"] = round(time.perf_counter() - t, 2)
            q = store.embeddings("m")[0][:: max(1, done // 200)][:200]
            fig["same_top1"] = float(np.mean(first.search(q, 1)[1][:, 0] == later.search(q, 1)[1][:, 0]))
            assert after.identify(newcomer, 0.8)[0] == ["newcomer"] * 5
            fig.update(kind=later.kind, index=later.description, file_gb=round(path.stat().st_size / 2 ** 30, 3),
                       speedup=round(fig["first_run_s"] / fig["later_run_s"], 1))
        finally:
            path.unlink(missing_ok=True)
        for k in ("first_run_s", "later_run_s", "after_enrol_s"):
            print(f"{k:14s} {fig[k]:8.2f} s")
    print(json.dumps(fig))
    from facts import record  # noqa: E402 - bench/facts.json: the one source of the figures the text quotes
    record("gallery_reload", fig)


if __name__ == "__main__":
    main()
