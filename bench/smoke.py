"""Smoke benchmark: cold start to the first embedding, and batched embedding speed.

Run: .venv/bin/python bench/smoke.py   (model already cached; ./run.sh setup does that)

cold_start_s   seconds from starting a new Python process to its first embedding (facekit
               import + compiled model load + first call), median of 3 processes; with the
               default ONNX Runtime backend TensorFlow is never imported
tf_import_s    the same for `import tensorflow` alone (what any TensorFlow-run model pays first)
faces_per_s    facekit embedding throughput on real sample crops at its default batch size
predict_faces_per_s   Keras `model.predict` on the same crops, batch 32 (baseline, same run)
Last line: one JSON object of the figures.
"""

from __future__ import annotations

import json
import statistics
import subprocess
import sys
import time

import numpy as np

CHILD = r"""
import time, numpy as np
t0 = float(__import__('sys').argv[1])
import facekit
e = facekit.embedding.embedder(np.zeros((1, 160, 160, 3), np.uint8))
print(time.time() - t0)
"""
TF_CHILD = r"""
import time
t0 = float(__import__('sys').argv[1])
import tensorflow
print(time.time() - t0)
"""


def spawn(code: str) -> float:
    out = subprocess.run([sys.executable, "-c", code, repr(time.time())], capture_output=True, text=True,
                         env={**__import__("os").environ, "TF_CPP_MIN_LOG_LEVEL": "3"}, check=True)
    return float(out.stdout.strip().splitlines()[-1])


def main() -> None:
    from facekit.core.cache import model_path

    model_path()  # make sure the model is cached: cold start means "cached, new process"
    cold, tfi = [], []
    for i in range(3):
        tfi.append(spawn(TF_CHILD))
        cold.append(spawn(CHILD))
        print(f"run {i}: import tensorflow {tfi[-1]:.2f} s, first embedding {cold[-1]:.2f} s", flush=True)

    from facekit.data.folders import load_celebrities
    from facekit.embedding.embedder import get_embedder

    crops = load_celebrities("val", progress=False, verbose=False, embed=False).crops
    crops = np.concatenate([crops] * 4)[:96]
    emb = get_embedder().warmup()
    model = emb.keras_model
    from facekit.embedding.embedder import prewhiten

    x = prewhiten(crops)
    model.predict(x[:32], batch_size=32, verbose=0)
    ours, base = [], []
    for _ in range(3):  # interleaved: the machine is shared and noisy
        t = time.perf_counter(); emb.embed(crops); ours.append(len(crops) / (time.perf_counter() - t))
        t = time.perf_counter(); model.predict(x, batch_size=32, verbose=0); base.append(len(crops) / (time.perf_counter() - t))
        print(f"facekit {ours[-1]:.1f} faces/s, model.predict {base[-1]:.1f} faces/s", flush=True)
    res = {
        "cold_start_s": round(statistics.median(cold), 2),
        "tf_import_s": round(statistics.median(tfi), 2),
        "cold_start_over_tf_import": round(statistics.median(cold) / statistics.median(tfi), 2),
        "faces_per_s": round(statistics.median(ours), 1),
        "predict_faces_per_s": round(statistics.median(base), 1),
        "speedup_vs_predict": round(statistics.median(ours) / statistics.median(base), 2),
    }
    print(json.dumps(res))
    from facts import record  # noqa: E402 - bench/facts.json: the one source of the figures the text quotes
    record("smoke", res)


if __name__ == "__main__":
    main()
