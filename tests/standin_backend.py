"""A stand-in embedding backend for tests/test_models.py: the whole of what adding a model takes
besides its registry entry (issue #28). Deterministic and tiny: a fixed random projection of a
24x24 grey thumbnail of the crop to 16 dimensions (the Embedder normalises the rows)."""

from __future__ import annotations

import numpy as np


def make(spec, precision: str = "fp32", threads: int | None = None):
    """``fn(uint8 (N, S, S, 3)) -> float32 (N, spec.dim)`` for ``spec.input_size`` S."""
    import cv2

    proj = np.random.default_rng(0).normal(size=(24 * 24, spec.dim)).astype(np.float32)

    def fn(crops: np.ndarray) -> np.ndarray:
        grey = [cv2.resize(cv2.cvtColor(c, cv2.COLOR_RGB2GRAY), (24, 24), interpolation=cv2.INTER_AREA) for c in crops]
        x = np.stack(grey).reshape(len(crops), -1).astype(np.float32)
        x -= x.mean(axis=1, keepdims=True)
        return x @ proj

    return fn


def fingerprint(spec, precision: str = "fp32") -> str:
    return f"{spec.name}/standin-v1/{precision}"
