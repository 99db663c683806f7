"""MTCNN's P-, R- and O-Net in TensorFlow: the reference path (``Detector(backend="tensorflow")``).

Taught in notebook 01, which shows the Keras layers. :func:`mtcnn_stages` builds mtcnn's own Keras
models (``mtcnn.MTCNN().stages``, weights from the wheel); :func:`compiled_networks` rebuilds each as
plain TensorFlow ops, traced once into a ``tf.function`` with a relaxed input signature (P-Net
``(None, None, None, 3)``, R-Net ``(None, 24, 24, 3)``, O-Net ``(None, 48, 48, 3)``), so no
pyramid level or image size retraces. Importing this module imports nothing; calling it imports
TensorFlow (5 s): the default detector runs the same weights in ONNX Runtime instead
(:mod:`facekit.detection.onnxnets`).
"""

from __future__ import annotations

import numpy as np

__all__ = ["mtcnn_model", "compiled_networks"]


def mtcnn_model():
    """A new ``mtcnn.MTCNN`` (its three Keras networks in ``.stages``; imports TensorFlow)."""
    from mtcnn import MTCNN

    return MTCNN()


def compiled_networks(models) -> tuple:
    """``(pnet, rnet, onet)``: mtcnn's three Keras ``models`` each traced once into a
    ``tf.function`` of plain TensorFlow ops (float32 NHWC images normalised to [-1, 1])."""
    import tensorflow as tf

    return tuple(tf.function(_plain_net(m, steps, heads), input_signature=[tf.TensorSpec(shape, tf.float32)])
                 for m, (steps, heads), shape in zip(models, _NET_LAYERS, _NET_INPUTS))


# mtcnn 1.0's P-, R- and O-Net: the layers their call() runs, in order, then the output heads
_NET_LAYERS = (
    ("conv1 prelu1 maxpool1 conv2 prelu2 conv3 prelu3".split(), ["conv4_1", "conv4_2"]),
    ("conv1 prelu1 maxpool1 conv2 prelu2 maxpool2 conv3 prelu3 permute flatten fc4 prelu4".split(),
     ["fc5_1", "fc5_2"]),
    ("conv1 prelu1 maxpool1 conv2 prelu2 maxpool2 conv3 prelu3 maxpool3 conv4 prelu4 permute flatten fc5 "
     "prelu5".split(), ["fc6_1", "fc6_2", "fc6_3"]),
)
_NET_INPUTS = ((None, None, None, 3), (None, 24, 24, 3), (None, 48, 48, 3))


def _plain_net(model, steps: list[str], heads: list[str]):
    """``model`` (an mtcnn Keras network) as plain TensorFlow ops with the same weights.

    Same arithmetic as the Keras layers without the Keras layer machinery: conv + bias (fused by
    grappler) and PReLU as ``max(x, 0) + alpha * min(x, 0)`` (equal bit for bit to Keras'
    ``relu(x) - alpha * relu(-x)``, one op fewer; mtcnn's alphas range from -1.3 to 1.3, so the
    cheaper ``max(x, alpha * x)`` would not be equal). Falls back to calling the Keras model
    when a layer is not of a known kind.
    """
    import keras
    import tensorflow as tf

    L = keras.layers
    ops = []
    try:
        for name in steps + heads:
            layer = getattr(model, name)
            if type(layer) is L.Conv2D or type(layer) is L.Dense:
                act = layer.activation.__name__
                if act not in ("linear", "softmax") or (isinstance(layer, L.Conv2D) and (
                        tuple(layer.dilation_rate) != (1, 1) or layer.data_format != "channels_last")):
                    raise NotImplementedError(name)
                w = tf.constant(np.asarray(layer.kernel, np.float32))
                b = tf.constant(np.asarray(layer.bias, np.float32))
                if isinstance(layer, L.Conv2D):
                    ops.append(("conv", (w, b, (1, *layer.strides, 1), layer.padding.upper(), act)))
                else:
                    ops.append(("dense", (w, b, act)))
            elif isinstance(layer, L.PReLU):
                alpha = np.asarray(layer.alpha, np.float32)
                ops.append(("prelu", tf.constant(alpha)))
            elif isinstance(layer, L.MaxPooling2D):
                ops.append(("maxpool", (layer.pool_size, layer.strides, layer.padding.upper())))
            elif isinstance(layer, L.Permute):
                ops.append(("permute", (0, *layer.dims)))
            elif isinstance(layer, L.Flatten):
                ops.append(("flatten", None))
            else:
                raise NotImplementedError(name)
    except (AttributeError, NotImplementedError):
        return lambda x: model(x)

    def run(x):
        outs = []
        for i, (kind, a) in enumerate(ops):
            inp = x
            if kind == "conv":
                y = tf.nn.bias_add(tf.nn.conv2d(inp, a[0], a[2], a[3]), a[1])
                y = tf.nn.softmax(y) if a[4] == "softmax" else y
            elif kind == "dense":
                y = tf.nn.bias_add(tf.matmul(inp, a[0]), a[1])
                y = tf.nn.softmax(y) if a[2] == "softmax" else y
            elif kind == "prelu":
                y = tf.maximum(inp, 0.0) + a * tf.minimum(inp, 0.0)
            elif kind == "maxpool":
                y = tf.nn.max_pool2d(inp, a[0], a[1], a[2])
            elif kind == "permute":
                y = tf.transpose(inp, a)
            else:  # flatten
                y = tf.reshape(inp, [tf.shape(inp)[0], -1])
            if i >= len(steps):
                outs.append(y)  # heads all read the trunk's output
            else:
                x = y
        return outs

    return run


