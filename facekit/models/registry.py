"""The model registry: what each embedding model is (dimension, input, backend, alignment) and
the thresholds calibrated for it. Data only: nothing here loads a network.

Taught in notebooks 02 (verify), 04 (unknown) and 05 (cluster). Thresholds belong to the model that
made the embeddings: :func:`thresholds` is the one place every decision reads them from. Files and
downloads live in :mod:`facekit.core.cache`; how a model runs lives in its backend module under
:mod:`facekit.embedding`.
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = [
    "MODELS",
    "ModelSpec",
    "Thresholds",
    "model_spec",
    "thresholds",
]


@dataclass(frozen=True)
class Thresholds:
    """A model's calibrated decision thresholds, in squared L2 distance (the unit everywhere).

    They belong to one model: a different network (or the same one quantised) places faces
    differently on the sphere, so its cuts must be measured again, never borrowed.

    verify: "same person?" cut for one pair (notebook 02); unknown: "nobody I know" cut on the
        distance to the NEAREST gallery photo (notebook 04; smaller than ``verify`` because a
        minimum over many gallery photos is smaller than one pair's distance, so a stranger gets
        more chances to fall under it as the gallery grows); cluster: where agglomerative
        (average-linkage) clustering stops merging (notebook 05); where: how each was measured.
    """

    verify: float
    unknown: float
    cluster: float
    where: dict[str, str]

    def __post_init__(self):
        for k in ("verify", "unknown", "cluster"):
            v = getattr(self, k)
            if not (isinstance(v, (int, float)) and 0.0 < float(v) < 4.0):
                raise ValueError(f"threshold {k}={v!r} must be a finite squared L2 distance in (0, 4)")


@dataclass(frozen=True)
class ModelSpec:
    """What facekit knows about one embedding model (and the thresholds calibrated for it)."""

    name: str
    dim: int
    source: str  # "sdist" (offline-capable, default) or "keras-facenet" (downloads from GitHub)
    key: str  # keras-facenet key / release name
    standardization: str  # "per_image" (prewhitening) or "fixed" ((x-127.5)/128)
    description: str
    thresholds: Thresholds | None = None  # None: not calibrated; pass thresholds explicitly

    def require_thresholds(self) -> Thresholds:
        """:attr:`thresholds`, or a clear error for a model nobody has calibrated yet."""
        if self.thresholds is None:
            raise ValueError(
                f"model {self.name!r} has no calibrated thresholds, and facenet128's would be wrong for it. "
                "Fix: pass threshold=... explicitly, or measure them as bench/lfw.py (verify) and "
                "bench/identify.py (unknown, cluster) do, and add them to facekit.models.registry.MODELS.")
        return self.thresholds


FACENET128_THRESHOLDS = Thresholds(
    verify=1.22, unknown=0.8, cluster=1.15,
    where={
        "verify": "LFW View 2, 6,000 pairs: the 10-fold protocol's best single cut over all pairs with "
                  "facekit's default pipeline (bench/lfw.py); chosen on View 2 itself, so it is a "
                  "description of that data, not a held-out estimate (each fold's accuracy uses its own "
                  "training-fold cut)",
        "unknown": "LFW people with >= 20 photos, half enrolled and half strangers, nearest-gallery-photo "
                   "rule, chosen on calibration people and reported on held-out ones (bench/identify.py): "
                   "best balanced accuracy is 0.77-0.82 for personal galleries (3-10 people x 5-10 photos) "
                   "and 0.67 for 31 people x 10+ photos; at 0.8 strangers are accepted 0.1-0.6% (3-10 "
                   "people) and 2.6% (31 people)",
        "cluster": "average-linkage cut maximising mean ARI over LFW people with >= 20 photos (best 0.95) and "
                   "the 5 Celebrity Faces sample (best 1.4); bench/identify.py",
    })


FACENET128_INT8_THRESHOLDS = Thresholds(
    verify=1.207, unknown=0.8, cluster=1.15,
    where={
        "verify": "LFW View 2, 6,000 pairs, int8 embeddings (facekit.runtime.quant recipe int8-qdq2: first conv and "
                  "last linear layer in float32): the best single cut over all pairs, as for facenet128 "
                  "(1.207, 99.40% at it; float32 1.219, 99.40%); 10-fold accuracy 99.32% vs float32's 99.38%",
        "unknown": "measured as facenet128's (bench/quant.py repeats bench/identify.py's open-set choice on LFW "
                   "people with >= 20 photos for both precisions): int8 0.674 vs float32 0.669 in the same run, "
                   "a shift well inside the split-to-split spread, so facenet128's 0.8 is kept",
        "cluster": "best-ARI average-linkage cut on half the LFW people with >= 20 photos: 0.95 for both int8 and "
                   "float32 in the same run (bench/quant.py), so facenet128's 1.15 is kept",
    })
MODELS: dict[str, ModelSpec] = {
    "facenet128": ModelSpec(
        "facenet128", 128, "sdist", "20170512-110547", "per_image",
        "Inception-ResNet-v1, 128-D, MS-Celeb-1M (20170512-110547). Default; fetched with pip.",
        FACENET128_THRESHOLDS,
    ),
    "facenet128-int8": ModelSpec(
        "facenet128-int8", 128, "sdist", "20170512-110547", "per_image",
        "facenet128 quantised to int8 (facekit.runtime.quant; same as Embedder('facenet128', precision='int8')): "
        "faster on CPUs with VNNI/AMX, its own thresholds.",
        FACENET128_INT8_THRESHOLDS,
    ),
    "facenet512": ModelSpec(
        "facenet512", 512, "keras-facenet", "20180402-114759", "fixed",
        "Inception-ResNet-v1, 512-D, VGGFace2 (20180402-114759). Downloads from GitHub (needs internet).",
    ),
    "facenet512-casia": ModelSpec(
        "facenet512-casia", 512, "keras-facenet", "20180408-102900", "fixed",
        "Inception-ResNet-v1, 512-D, CASIA-WebFace (20180408-102900). Downloads from GitHub (needs internet).",
    ),
}


def model_spec(name: str = "facenet128") -> ModelSpec:
    """The registered :class:`ModelSpec` of ``name`` (clear error for an unknown name)."""
    try:
        return MODELS[name]
    except KeyError:
        raise ValueError(f"unknown model {name!r}; choose one of {sorted(MODELS)}") from None


def thresholds(name: str = "facenet128") -> Thresholds:
    """Calibrated thresholds of ``name`` (error if the model has none: never borrow another's)."""
    return model_spec(name).require_thresholds()
