"""A small CNN that learns face embeddings on a CPU with :func:`facekit.training.triplet.triplet_loss`.

Taught in notebook 03 (which also writes its training step out with ``tf.GradientTape``).
:func:`make_embedding_cnn` builds the network; :class:`TripletNet` trains it on ``P x K``
batches (:class:`facekit.training.triplet.PKSampler`) with online mining and logs the loss, the active
fraction, the mean in-batch distance and held-out verification accuracy. Also importable from
``facekit.training.triplet`` (re-exported). TensorFlow is imported on first use only.
"""

from __future__ import annotations

import numpy as np

from facekit.training.triplet import (DEFAULT_MARGIN, PKSampler, VerificationPairs, check_strategy, make_pairs,
    pairwise_squared_distances, triplet_loss, verification_accuracy)

__all__ = ["make_embedding_cnn", "TripletNet"]

# --- the model --------------------------------------------------------------------------------

def make_embedding_cnn(input_shape: tuple[int, int, int] = (32, 32, 1), dim: int = 64, width: int = 16,
                       convs: tuple[int, ...] = (1, 1, 1), random_state: int | None = 0):
    """A small CNN mapping face crops to L2-normalised embeddings, float32 ``(N, dim)``.

    Conv blocks of ``width``, 2x, 4x, ... filters (``convs[i]`` 3x3 convolutions with batch norm
    and ReLU, then a 2x2 max-pool), a dense layer to ``dim`` and unit normalisation -- about
    0.1 M weights for 32x32 inputs, trainable in minutes on 2 CPU cores. Inputs are per-image standardised floats (see
    :meth:`TripletNet.preprocess`). Initial weights depend only on ``random_state``.
    Taught in notebook 03.
    """
    import keras
    from keras import layers

    seed = 0 if random_state is None else int(random_state)
    n = iter(range(1000))

    def init():
        return keras.initializers.HeNormal(seed=seed * 1000 + next(n))

    x = inp = keras.Input(input_shape)
    for b, n_conv in enumerate(convs):
        for _ in range(n_conv):
            x = layers.Conv2D(width * 2 ** b, 3, padding="same", use_bias=False, kernel_initializer=init())(x)
            x = layers.BatchNormalization()(x)
            x = layers.ReLU()(x)
        x = layers.MaxPooling2D(2)(x)
    x = layers.Flatten()(x)
    x = layers.Dense(dim, kernel_initializer=keras.initializers.GlorotNormal(seed=seed * 1000 + next(n)))(x)
    out = layers.UnitNormalization()(x)
    return keras.Model(inp, out, name="triplet_cnn")


class TripletNet:
    """Train :func:`make_embedding_cnn` with :func:`triplet_loss` on ``P x K`` batches.

    scikit-learn style: ``fit(X, y)`` then ``transform(X)``. ``steps=0`` builds the untrained
    (randomly initialised) network: the same starting point as a trained one with the same
    ``random_state``, hence the "before" of a before/after comparison.

    Parameters
    ----------
    strategy : mining strategy, one of :data:`STRATEGIES` (default FaceNet's ``"semihard"``).
    margin : alpha, squared-L2 units (default 0.2).
    steps : optimiser steps (batches).
    p, k : identities per batch and images per identity (default 16 x 4 = 64 faces).
    learning_rate : Adam's step size, or SGD's when ``optimizer="sgd"``.
    dim, width, convs : embedding size, CNN width and convolutions per block (see
        :func:`make_embedding_cnn`).
    augment : random horizontal flips and shifts of up to 2 px (cheap, reduces over-fitting).
    eval_every : with validation data, measure verification accuracy every that many steps.
    warm_start : when fitting again, continue from the current weights (e.g. switch to
        ``strategy="batch_hard"`` after some semi-hard training) instead of starting afresh.
    random_state : seeds the weights, batches and augmentation.

    After ``fit``: ``model_`` (Keras), ``history_`` dict of float arrays: ``step``, ``loss``,
    ``active_fraction``, ``mean_distance`` (mean pairwise squared distance within the batch; 0 =
    collapsed) per step, and ``eval_step``, ``val_accuracy`` when validation data was given.
    Taught in notebook 03.
    """

    def __init__(self, strategy: str = "semihard", margin: float = DEFAULT_MARGIN, steps: int = 1000,
                 p: int = 16, k: int = 4, learning_rate: float = 1e-3, optimizer: str = "adam",
                 dim: int = 64, width: int = 16, convs: tuple[int, ...] = (1, 1, 1), augment: bool = True, eval_every: int = 100,
                 warm_start: bool = False, random_state: int | None = 0, progress: bool = True):
        self.strategy = strategy
        self.margin = margin
        self.steps = steps
        self.p, self.k = p, k
        self.learning_rate = learning_rate
        self.optimizer = optimizer
        self.dim, self.width, self.convs = dim, width, tuple(convs)
        self.augment = augment
        self.eval_every = eval_every
        self.warm_start = warm_start
        self.random_state = random_state
        self.progress = progress

    @staticmethod
    def preprocess(images: np.ndarray) -> np.ndarray:
        """uint8 ``(N, H, W, C)`` -> float32, each image standardised to mean 0, std 1.

        Removes global brightness and contrast, which say nothing about identity.
        """
        x = np.asarray(images, np.float32)
        if x.ndim != 4:
            raise ValueError(f"expected images (N, H, W, C), got shape {x.shape}")
        mean = x.mean(axis=(1, 2, 3), keepdims=True)
        std = x.std(axis=(1, 2, 3), keepdims=True)
        return (x - mean) / np.maximum(std, 1.0)

    def _augment(self, x: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        flip = rng.random(len(x)) < 0.5
        x = np.where(flip[:, None, None, None], x[:, :, ::-1], x)
        pad = np.pad(x, ((0, 0), (2, 2), (2, 2), (0, 0)), mode="edge")
        dy, dx = rng.integers(0, 5, size=(2, len(x)))
        h, w = x.shape[1:3]
        return np.stack([pad[i, dy[i]:dy[i] + h, dx[i]:dx[i] + w] for i in range(len(x))])

    def fit(self, X: np.ndarray, y, X_val: np.ndarray | None = None, y_val=None,
            val_pairs: VerificationPairs | None = None) -> "TripletNet":
        """Train on images ``X`` uint8 (N, H, W, C) with identity labels ``y`` (N,).

        With ``X_val``/``y_val`` (other identities), held-out verification accuracy on
        ``val_pairs`` (default: :func:`make_pairs` of ``y_val``) is logged at step 0, every
        ``eval_every`` steps and at the end.
        """
        import keras
        import tensorflow as tf

        check_strategy(self.strategy)  # fail before any work on a typo
        X = np.asarray(X)
        if X.ndim != 4:
            raise ValueError(f"X must be images (N, H, W, C), got shape {X.shape}")
        _, y_int = np.unique(np.asarray(y), return_inverse=True)
        if len(X) != len(y_int):
            raise ValueError(f"X has {len(X)} images but y has {len(y_int)} labels")
        if not (self.warm_start and hasattr(self, "model_")):
            self.model_ = make_embedding_cnn(X.shape[1:], self.dim, self.width, self.convs, self.random_state)
        hist = {k: [] for k in ("step", "loss", "active_fraction", "mean_distance", "eval_step", "val_accuracy")}
        self.history_ = hist
        if X_val is not None:
            if y_val is None and val_pairs is None:
                raise ValueError("give y_val (or val_pairs) with X_val")
            val_pairs = make_pairs(y_val, random_state=self.random_state) if val_pairs is None else val_pairs
            Xv = self.preprocess(X_val)

        def evaluate(step):
            if X_val is not None:
                hist["eval_step"].append(step)
                hist["val_accuracy"].append(verification_accuracy(self._embed(Xv), val_pairs))

        evaluate(0)
        if self.steps > 0:
            opt = (keras.optimizers.SGD(self.learning_rate, momentum=0.9) if self.optimizer == "sgd"
                   else keras.optimizers.Adam(self.learning_rate))
            model, margin, strategy = self.model_, float(self.margin), check_strategy(self.strategy)

            @tf.function(reduce_retracing=True)
            def train_step(xb, yb):
                with tf.GradientTape() as tape:
                    emb = model(xb, training=True)
                    loss, active = triplet_loss(emb, yb, margin, strategy, normalize=False)
                grads = tape.gradient(loss, model.trainable_variables)
                opt.apply_gradients(zip(grads, model.trainable_variables))
                d = pairwise_squared_distances(emb)
                n = tf.cast(tf.shape(emb)[0], tf.float32)
                return loss, active, tf.reduce_sum(d) / (n * (n - 1.0))

            rng = np.random.default_rng(self.random_state)
            sampler = PKSampler(y_int, self.p, self.k, random_state=rng)
            Xp = self.preprocess(X)
            it = range(1, self.steps + 1)
            if self.progress:
                from tqdm.auto import tqdm

                it = tqdm(it, desc=f"triplet/{self.strategy}", unit="step")
            for step in it:
                idx = sampler.sample()
                xb = self._augment(Xp[idx], rng) if self.augment else Xp[idx]
                loss, active, md = train_step(tf.constant(xb), tf.constant(y_int[idx], tf.int32))
                hist["step"].append(step)
                hist["loss"].append(float(loss))
                hist["active_fraction"].append(float(active))
                hist["mean_distance"].append(float(md))
                if self.eval_every and step % self.eval_every == 0 and step != self.steps:
                    evaluate(step)
            evaluate(self.steps)
        self.history_ = {k: np.asarray(v, float) for k, v in hist.items()}
        return self

    def _embed(self, Xp: np.ndarray, batch_size: int = 512) -> np.ndarray:
        out = [self.model_(Xp[i:i + batch_size], training=False).numpy() for i in range(0, len(Xp), batch_size)]
        return np.concatenate(out).astype(np.float32) if out else np.zeros((0, self.dim), np.float32)

    def transform(self, X: np.ndarray) -> np.ndarray:
        """Embed images uint8 ``(N, H, W, C)`` -> L2-normalised float32 ``(N, dim)``."""
        if not hasattr(self, "model_"):
            raise RuntimeError("TripletNet is not fitted yet: call fit(X, y) first (steps=0 for "
                               "the untrained network)")
        X = np.asarray(X)
        if X.shape[1:] != tuple(self.model_.input_shape[1:]):
            raise ValueError(f"images have shape {X.shape[1:]}, the model takes {self.model_.input_shape[1:]}")
        return self._embed(self.preprocess(X))

    def score(self, X: np.ndarray, y, pairs: VerificationPairs | None = None) -> float:
        """Verification accuracy on balanced pairs of ``(X, y)`` (identities unseen in training)."""
        pairs = make_pairs(y, random_state=self.random_state) if pairs is None else pairs
        return verification_accuracy(self.transform(X), pairs)
