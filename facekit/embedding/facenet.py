"""The compiled embedding network: building the Keras model, folding it, exporting it to ONNX
once into a verified cache, and the fingerprint that names what it computes.

Taught in appendix A1 (speed). :class:`facekit.embedding.embedder.Embedder` runs what this module builds;
:mod:`facekit.runtime.quant` quantises it. Files live in ``cache_dir()/compiled`` under names that carry
their key (source weights' sha256, export version, a hash of the folding/export code), each with a
JSON manifest checked on load (:func:`facekit.runtime.onnxgraph.cached_model`).
"""

from __future__ import annotations

import hashlib
from pathlib import Path


from facekit.core.cache import H5_SHA256, FetchError, cache_dir, model_path
from facekit.models.registry import MODELS
from facekit.runtime.sessions import ort_embed_fn

__all__ = [
    "EMBED_SIZE",
    "GivenModelMismatch",
    "build_keras_model",
    "compile_default",
    "compiled_key",
    "default_backend",
    "fingerprint",
    "onnx_path",
    "spec_of",
    "weights_sha256",
]

EMBED_SIZE = 160  # input side in pixels


class GivenModelMismatch(ValueError):
    """``Embedder(keras_model=...)`` got weights other than the registry model's."""


def build_keras_model(name: str):
    """Build the Keras model for registry entry ``name`` with its weights loaded."""
    spec = MODELS.get(name)
    if spec is None:
        raise ValueError(f"unknown model {name!r}; choose one of {sorted(MODELS)}")
    if spec.source == "sdist":
        import h5py
        from keras_facenet.inception_resnet_v1 import InceptionResNetV1

        path = model_path(name)
        model = InceptionResNetV1(input_shape=(EMBED_SIZE, EMBED_SIZE, 3), classes=spec.dim)
        with h5py.File(path, "r") as f:
            saved = {n.decode() if isinstance(n, bytes) else n for n in f["model_weights"].attrs["layer_names"]}
        missing = [l.name for l in model.layers if l.weights and l.name not in saved]
        if missing:
            raise RuntimeError(f"{path} lacks weights for layers {missing[:5]}... (wrong file?)")
        model.load_weights(str(path), by_name=True)
        return model
    # keras-facenet's own releases download from GitHub at run time.
    try:
        from keras_facenet import FaceNet

        return FaceNet(key=spec.key).model
    except Exception as exc:  # urllib errors, hash mismatch, ...
        raise FetchError(
            f"Model {name!r} ({spec.description}) downloads its weights from GitHub through "
            f"keras-facenet, which failed: {type(exc).__name__}: {exc}. "
            "Fix: connect to the internet once (the weights are then cached in ~/.keras-facenet), "
            "or use the offline default model 'facenet128'."
        ) from exc


def weights_sha256(model: str = "facenet128") -> str:
    """sha256 (hex) identifying ``model``'s source weights, known without loading anything: the
    registered hash of the h5 file for the sdist model; for keras-facenet downloads (whose file
    hash keras-facenet checks) the hash of the release name."""
    spec = spec_of(model)
    if spec.source == "sdist":
        return H5_SHA256
    return hashlib.sha256(f"keras-facenet:{spec.key}".encode()).hexdigest()


def fingerprint(model: str = "facenet128", precision: str = "fp32") -> str:
    """Identity of the embeddings ``model`` computes at ``precision`` ("fp32" or "int8"), e.g.
    ``"facenet128/6acdd8fb3a3f/onnx-v2/fp32"``: source weights, export version, precision.
    Stable across processes and backends (they agree to ~1e-6); stores and caches key on it."""
    from facekit.runtime.onnxgraph import EXPORT_VERSION

    if precision == "int8":
        from facekit.runtime.quant import PRECISION_TAG as tag
    elif precision == "fp32":
        tag = "fp32"
    else:
        raise ValueError(f"precision must be 'fp32' or 'int8' here, not {precision!r}")
    return f"{model}/{weights_sha256(model)[:12]}/onnx-v{EXPORT_VERSION}/{tag}"


def spec_of(model: str):
    if model not in MODELS:
        raise ValueError(f"unknown model {model!r}; choose one of {sorted(MODELS)}")
    return MODELS[model]


def _export_code() -> str:
    """Hash of the code that writes the compiled file: folding, ONNX export and the h5 reader."""
    from facekit.runtime import h5graph
    from facekit.runtime.onnxgraph import code_hash

    return code_hash(h5graph.__file__)


def compiled_key(model: str = "facenet128") -> dict:
    """What the compiled float32 model depends on: source weights, export version, code."""
    from facekit.runtime.onnxgraph import EXPORT_VERSION

    return {"model": model, "weights_sha256": weights_sha256(model), "export_version": EXPORT_VERSION,
            "code": _export_code(), "standardization": spec_of(model).standardization}


def onnx_path(model: str = "facenet128", build: bool = True, keras_model=None, rebuild: bool = False) -> Path:
    """Cached ONNX file of ``model``'s folded graph (:mod:`facekit.runtime.onnxgraph`), built on first
    use and stored under ``cache_dir()/compiled`` with a manifest
    (:func:`facekit.runtime.onnxgraph.cached_model`): its name carries the key (weights sha256,
    export version, code hash), and a file that fails its manifest is rebuilt. ``build=False``:
    only the path. The default model is built from its h5 file with h5py alone
    (:func:`facekit.runtime.h5graph.fold_h5_model`, ~3 s, no TensorFlow: the same bytes as from the
    Keras model); keras-facenet's downloads, or a given ``keras_model`` (an already loaded one),
    are folded from Keras (needs TensorFlow once)."""
    from facekit.runtime.onnxgraph import EXPORT_VERSION, cached_model

    spec = spec_of(model)
    stem = f"{model}-{weights_sha256(model)[:12]}-v"
    path = cache_dir() / "compiled" / f"{stem}{EXPORT_VERSION}-{_export_code()}.onnx"
    if not build:
        return path

    def export() -> bytes:
        from facekit.runtime.onnxgraph import export_onnx

        if keras_model is None and spec.source == "sdist":
            from facekit.runtime.h5graph import fold_h5_model

            graph = fold_h5_model(model_path(model))
        else:
            from facekit.runtime.fastgraph import fold_keras_model

            graph = fold_keras_model(keras_model if keras_model is not None else build_keras_model(model))
        return export_onnx(graph, (EMBED_SIZE, EMBED_SIZE), spec.standardization)

    cached_model(path, compiled_key(model), export, ort_embed_fn, rebuild=rebuild, prune=f"{stem}*[0-9a-f].onnx")
    for legacy in path.parent.glob(f"{model}-{spec.key}-v*.onnx"):  # facekit <= export v1's names
        legacy.unlink(missing_ok=True)
    return path


def compile_default() -> Path | None:
    """Build (once) and return the default model's compiled ONNX file, or ``None`` when ONNX
    Runtime is not installed (the TensorFlow backend is used then). Called by
    ``python -m facekit fetch`` so that a new process embeds without TensorFlow."""
    if default_backend() != "onnxruntime":
        return None
    return onnx_path()


def default_backend() -> str:
    """"onnxruntime" when it is installed (the default backend), else "tensorflow"."""
    try:
        import onnxruntime  # noqa: F401
    except ImportError:
        return "tensorflow"
    return "onnxruntime"
