"""Two models, one decision: the backend of fused registry entries such as
``"facenet128+dlib128"`` (issue #23; taught in the appendix on two models).

A fused embedding is the concatenation of the parts' unit embeddings, each weighted by
``1/sqrt(its own verify threshold)``, then scaled to unit length. So the squared L2 distance of two
fused embeddings is a fixed weighted sum of the parts' squared distances::

    d = (d_a / t_a + d_b / t_b) / (1 / t_a + 1 / t_b)

each distance measured in units of its own model's threshold. Verification, identification, the
SVM, FAISS, clustering and the store work on it unchanged. The crop is the parts' crops stacked on
the channel axis (:data:`facekit.detection.align.CROPS`): FaceNet's 160 px crop, then dlib's chip.
"""

from __future__ import annotations

import numpy as np

from facekit.models.registry import model_spec, thresholds

__all__ = ["parts", "weights", "make", "fingerprint"]


def parts(spec) -> tuple[str, ...]:
    """The registry names of the fused models, e.g. ``("facenet128", "dlib128")`` (from ``spec.key``)."""
    names = tuple(spec.key.split("+"))
    for n in names:
        model_spec(n)  # an unknown part is an error naming the choices
    return names


def weights(spec) -> np.ndarray:
    """Each part's weight, ``1/sqrt(verify threshold)`` (float64, one per part)."""
    return np.array([1.0 / np.sqrt(thresholds(n).verify) for n in parts(spec)])


def _views(x: np.ndarray, names: tuple[str, ...]) -> list[np.ndarray]:
    """Each part's crops out of the stacked ``(N, 160, 160, 3 * parts)`` array."""
    out = []
    for i, n in enumerate(names):
        side = model_spec(n).input_size
        out.append(np.ascontiguousarray(x[:, :side, :side, 3 * i:3 * i + 3]))
    return out


def make(spec, precision: str = "fp32", threads: int | None = None):
    """The Embedder's hook: ``fn(uint8 (N, 160, 160, 6)) -> float32 (N, sum of dims)``."""
    from facekit.embedding.embedder import Embedder

    names, w = parts(spec), weights(spec)
    embedders = [Embedder(n, threads=threads, **({"precision": precision} if n.startswith("facenet") else {}))
                 for n in names]

    def fn(x: np.ndarray) -> np.ndarray:
        return np.concatenate([wi * e.embed(v) for wi, e, v in zip(w, embedders, _views(x, names))], axis=1)

    return fn


def fingerprint(spec, precision: str = "fp32") -> str:
    """The parts' fingerprints joined with ``+``, and the weights (they change the embedding)."""
    from facekit.embedding.embedder import Embedder

    fps = [Embedder(n, **({"precision": precision} if n.startswith("facenet") else {})).fingerprint
           for n in parts(spec)]
    return f"{spec.name}/" + "+".join(fp.replace("/", ":") for fp in fps) + "/w" + ",".join(f"{v:.4f}" for v in weights(spec))
