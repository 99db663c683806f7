"""Face detection with MTCNN (Zhang et al., 2016): boxes, five landmarks, confidence.

Taught in notebook 01. Box convention for all of facekit: ``(x1, y1, x2, y2)`` floats in pixels
of the image you passed, x to the right, y down. Landmarks: ``(5, 2)`` float32 ``(x, y)`` rows in
the order left eye, right eye, nose, mouth left, mouth right ("left" = image left).

Why not call ``mtcnn.MTCNN().detect_faces`` directly? mtcnn 1.0 builds its image pyramid from the
image size alone, so with ``min_face_size`` above ~30 the last pyramid levels fall below P-Net's
12x12 window and it raises ``ValueError: The convolution operation resulted in an empty output``
(seen for 40 and 80 on 640x480). facekit builds the pyramid so that every level is at least 12
pixels, accepts grayscale/RGBA arrays, returns ``[]`` for images too small to hold a face, and
detects on a downscaled copy of very large photos (boxes are mapped back to full resolution).

Speed (issue #7, ``bench/detect.py``): ``Detector(fast=True)`` (the default) runs the same three
networks with the same weights and mtcnn's own box arithmetic, but each network is rebuilt as
plain TensorFlow ops and traced once into a ``tf.function`` with a relaxed input signature
(P-Net ``(None, None, None, 3)``, R-Net ``(None, 24, 24, 3)``, O-Net ``(None, 48, 48, 3)``), so
no pyramid level or image size retraces, instead of mtcnn 1.0's eager Keras calls, which
dispatch every layer from Python again at every pyramid level. Results equal
``Detector(fast=False)`` (mtcnn's own ``detect_faces`` with facekit's pyramid) bit for bit on
the sample set (tested to 0.05 px).
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, field
from typing import Sequence

import numpy as np

from .io import as_rgb

__all__ = ["Face", "Detector", "detect_faces", "get_detector", "scale_pyramid", "LANDMARK_NAMES"]

LANDMARK_NAMES = ("left_eye", "right_eye", "nose", "mouth_left", "mouth_right")
PNET_WINDOW = 12  # P-Net's receptive field in pixels


@dataclass(frozen=True)
class Face:
    """One detected face.

    box: float32 (4,) ``x1, y1, x2, y2`` in pixels. landmarks: float32 (5, 2) ``(x, y)``, order
    :data:`LANDMARK_NAMES`. confidence: O-Net probability in [0, 1].
    """

    box: np.ndarray
    landmarks: np.ndarray
    confidence: float

    @property
    def width(self) -> float:
        return float(self.box[2] - self.box[0])

    @property
    def height(self) -> float:
        return float(self.box[3] - self.box[1])

    @property
    def area(self) -> float:
        return max(self.width, 0.0) * max(self.height, 0.0)

    def scaled(self, factor: float, offset: tuple[float, float] = (0.0, 0.0)) -> "Face":
        """This face in another image's pixels: ``p * factor + offset``."""
        off = np.asarray(offset, np.float32)
        return Face(
            box=(self.box * factor + np.tile(off, 2)).astype(np.float32),
            landmarks=(self.landmarks * factor + off).astype(np.float32),
            confidence=self.confidence,
        )

    @classmethod
    def from_mtcnn_row(cls, row: np.ndarray) -> "Face":
        """A face from one row of mtcnn's numpy output: image index, x1, y1, x2, y2, score, the
        five landmark x's, then the five y's (16 floats)."""
        r = np.asarray(row)
        return cls(box=np.asarray(r[1:5], np.float32),
                   landmarks=np.asarray(r[6:16], np.float32).reshape(2, 5).T.copy(), confidence=float(r[5]))

    def to_dict(self) -> dict:
        """JSON-friendly form (plain floats)."""
        return {"box": [float(v) for v in self.box],
                "landmarks": [[float(x), float(y)] for x, y in self.landmarks],
                "confidence": float(self.confidence)}


def scale_pyramid(height: int, width: int, min_face_size: float, scale_factor: float = 0.709) -> np.ndarray:
    """Scales of the P-Net image pyramid for an ``height x width`` image.

    The first scale maps a ``min_face_size`` face onto P-Net's 12-pixel window; each next one is
    ``scale_factor`` smaller; levels stop before the short side drops below 12 pixels (the bug in
    mtcnn 1.0's own pyramid). Empty when the image cannot hold a ``min_face_size`` face.
    """
    if min_face_size <= 0:
        raise ValueError(f"min_face_size must be > 0 pixels, got {min_face_size}")
    if not 0 < scale_factor < 1:
        raise ValueError(f"scale_factor must be in (0, 1), got {scale_factor}")
    first = PNET_WINDOW / float(min_face_size)
    min_dim = float(min(height, width))
    scales = []
    s = first
    while min_dim * s >= PNET_WINDOW and len(scales) < 64:
        scales.append(s)
        s *= scale_factor
    return np.asarray(scales, dtype=np.float64)


class Detector:
    """MTCNN face detector with facekit's conventions.

    Parameters
    ----------
    min_face_size : smallest face to find, in pixels of the input image (default 20, as in the
        MTCNN paper; raise it for speed when faces are large, e.g. webcam selfies).
    thresholds : P-Net, R-Net, O-Net score thresholds (default 0.6, 0.7, 0.7 as in the MTCNN
        paper/facenet's align code).
    scale_factor : pyramid step (default 0.709 = 1/sqrt(2), the paper's).
    max_side : photos whose longer side exceeds this are detected on a downscaled copy (default
        1280 px); boxes and landmarks are returned in full-resolution pixels.
    fast : run the networks as traced ``tf.function`` objects (default True: same results,
        several times faster); False calls ``mtcnn.MTCNN.detect_faces`` itself (the reference).
    """

    def __init__(self, min_face_size: float = 20, thresholds: tuple[float, float, float] = (0.6, 0.7, 0.7),
                 scale_factor: float = 0.709, max_side: int | None = 1280, fast: bool = True):
        self.min_face_size = float(min_face_size)
        self.thresholds = tuple(float(t) for t in thresholds)
        self.scale_factor = float(scale_factor)
        self.max_side = max_side
        self.fast = bool(fast)
        self._mtcnn = None
        self._nets = None
        self._lock = threading.Lock()

    # -- model ---------------------------------------------------------------------------
    @property
    def mtcnn(self):
        """The underlying ``mtcnn.MTCNN`` (built lazily, once per Detector)."""
        if self._mtcnn is None:
            with self._lock:
                if self._mtcnn is None:
                    self._mtcnn = _build_mtcnn()
        return self._mtcnn

    # -- detection -----------------------------------------------------------------------
    def detect(self, image: np.ndarray, *, min_face_size: float | None = None,
               thresholds: tuple[float, float, float] | None = None) -> list[Face]:
        """Faces in one image (any of: (H,W) gray, (H,W,3) RGB, (H,W,4) RGBA; uint8/uint16/float).

        Returns faces sorted by confidence, highest first; ``[]`` when there is none.
        """
        img, factor = self.working_image(image)
        mfs = float(self.min_face_size if min_face_size is None else min_face_size)
        th = self.thresholds if thresholds is None else tuple(float(t) for t in thresholds)
        scales = scale_pyramid(img.shape[0], img.shape[1], mfs * factor, self.scale_factor)
        if len(scales) == 0:
            return []
        faces = [Face.from_mtcnn_row(r) for r in self._run(img, scales, th)]
        if factor != 1.0:
            faces = [f.scaled(1.0 / factor) for f in faces]
        faces.sort(key=lambda f: -f.confidence)
        return faces

    def working_image(self, image: np.ndarray) -> tuple[np.ndarray, float]:
        """``(RGB image the networks see, factor)``: ``image`` as RGB uint8, downscaled by
        ``factor < 1`` when its longer side exceeds ``max_side`` (else ``factor == 1``)."""
        img = as_rgb(image)
        h, w = img.shape[:2]
        if not (self.max_side and max(h, w) > self.max_side):
            return img, 1.0
        import cv2

        factor = self.max_side / float(max(h, w))
        img = cv2.resize(img, (max(1, round(w * factor)), max(1, round(h * factor))), interpolation=cv2.INTER_AREA)
        return img, factor

    __call__ = detect

    def detect_batch(self, images: Sequence[np.ndarray]) -> list[list[Face]]:
        """Faces in several images of the SAME size: one list per image, each sorted by
        confidence. mtcnn runs every stage once for the whole batch (0.08 s instead of 0.55 s per
        250x250 LFW photo on 2 cores: per-call overhead dominates for small photos). Used by
        :func:`facekit.verify.detect_lfw` (notebook 02). Mixed sizes, photos over ``max_side``
        or an mtcnn failure fall back to :meth:`detect` per image (same faces, slower).
        """
        imgs = [as_rgb(im) for im in images]
        if not imgs:
            return []
        h, w = imgs[0].shape[:2]
        if any(im.shape[:2] != (h, w) for im in imgs) or (self.max_side and max(h, w) > self.max_side):
            return [self.detect(im) for im in imgs]
        scales = scale_pyramid(h, w, self.min_face_size, self.scale_factor)
        if len(scales) == 0:
            return [[] for _ in imgs]
        m, th = self.mtcnn, self.thresholds
        try:
            with self._lock:
                m.stages[0].facekit_scales = scales
                out = m.detect_faces(imgs, box_format="xyxy", output_type="numpy", threshold_pnet=th[0],
                                     threshold_rnet=th[1], threshold_onet=th[2])
            rows = np.asarray(out, dtype=np.float64).reshape(-1, 16)  # index, box, score, 5 x, 5 y
        except Exception:  # mtcnn's batched path is less travelled: never lose an image to it
            return [self.detect(im) for im in imgs]
        res: list[list[Face]] = [[] for _ in imgs]
        for r in rows:
            res[int(r[0])].append(Face.from_mtcnn_row(r))
        return [sorted(f, key=lambda x: -x.confidence) for f in res]

    def _run(self, img: np.ndarray, scales: np.ndarray, th: tuple[float, float, float]) -> np.ndarray:
        if self.fast:
            nets = self.compiled_nets()
            with self._lock:
                return _run_fast(nets, img, scales, th)
        m = self.mtcnn
        pnet = m.stages[0]
        pnet.facekit_scales = scales
        with self._lock:
            out = m.detect_faces(img, box_format="xyxy", output_type="numpy",
                                 threshold_pnet=th[0], threshold_rnet=th[1], threshold_onet=th[2])
        out = np.asarray(out, dtype=np.float64)
        if out.ndim != 2 or out.shape[0] == 0:
            return np.empty((0, 16))
        return out

    def compiled_nets(self):
        """``(pnet, rnet, onet)``: this detector's mtcnn networks, each traced once into a
        ``tf.function`` (float32 NHWC images normalised to [-1, 1]; built on first use)."""
        if self._nets is None:
            import tensorflow as tf

            models = [st._model for st in self.mtcnn.stages]
            with self._lock:
                if self._nets is None:
                    self._nets = tuple(
                        tf.function(_plain_net(m, steps, heads), input_signature=[tf.TensorSpec(shape, tf.float32)])
                        for m, (steps, heads), shape in zip(models, _NET_LAYERS, _NET_INPUTS))
        return self._nets


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


def _run_fast(nets, img: np.ndarray, scales: np.ndarray, th: tuple[float, float, float]) -> np.ndarray:
    """mtcnn 1.0's three stages for one image, in the same order with the same box arithmetic
    and NMS settings as its StagePNet/StageRNet/StageONet and ``fit_to_image`` post-processing,
    with compiled networks. Returns mtcnn's numpy rows (xyxy), ``(n, 16)`` float64."""
    import tensorflow as tf
    from mtcnn.utils.bboxes import (adjust_bboxes, generate_bounding_box, limit_bboxes, pick_matches,
                                    replace_confidence, resize_to_square, smart_nms_from_bboxes,
                                    upscale_bboxes)
    from mtcnn.utils.images import extract_patches, scale_images
    from mtcnn.utils.landmarks import adjust_landmarks

    pnet, rnet, onet = nets
    none = np.empty((0, 16))
    x = (img[None].astype(np.float32) - 127.5) / 128  # mtcnn's normalize_images
    per_scale = []
    for s in scales:  # P-Net over the pyramid
        reg, prob = pnet(scale_images(x, float(s)))
        b = upscale_bboxes(generate_bounding_box(reg, prob, th[0]), np.asarray([s]))
        if len(b):
            per_scale.append(smart_nms_from_bboxes(b, threshold=0.5, method="union", initial_sort=False))
    if not per_scale:
        return none
    rows = smart_nms_from_bboxes(np.concatenate(per_scale), threshold=0.7, method="union", initial_sort=True)
    rows = resize_to_square(rows)
    # R-Net on every candidate in one batch
    off, scores = rnet(tf.convert_to_tensor(extract_patches(x, rows, expected_size=(24, 24))))
    rows = pick_matches(adjust_bboxes(replace_confidence(rows, scores), off), score_threshold=th[1])
    if not len(rows):
        return none
    rows = resize_to_square(smart_nms_from_bboxes(rows, threshold=0.7, method="union", initial_sort=True))
    # O-Net: final boxes and landmarks
    off, lms, scores = onet(tf.convert_to_tensor(extract_patches(x, rows, expected_size=(48, 48))))
    lms = adjust_landmarks(lms, rows)
    rows = adjust_bboxes(replace_confidence(rows, scores), off)
    rows = pick_matches(np.concatenate([rows, lms], axis=-1), scores_column=5, score_threshold=th[2])
    if not len(rows):
        return none
    rows = smart_nms_from_bboxes(rows, threshold=0.7, method="min", initial_sort=True)
    rows = limit_bboxes(np.asarray(rows, np.float64), images_shapes=np.asarray([img.shape]), limit_landmarks=False)
    return np.asarray(rows, np.float64).reshape(-1, 16)


def _build_mtcnn():
    """An ``mtcnn.MTCNN`` whose P-Net uses :func:`scale_pyramid` (weights ship in the mtcnn wheel)."""
    from mtcnn import MTCNN
    from mtcnn.stages import StageONet, StagePNet, StageRNet
    import mtcnn.stages.stage_pnet as stage_pnet_mod

    class _PNet(StagePNet):
        facekit_scales: np.ndarray | None = None

        def __call__(self, images_normalized, images_oshapes, **kwargs):
            scales = self.facekit_scales
            orig = stage_pnet_mod.build_scale_pyramid
            # Swap in facekit's pyramid for this call only (mtcnn looks the name up per call).
            stage_pnet_mod.build_scale_pyramid = lambda *a, **k: scales
            try:
                return super().__call__(images_normalized, images_oshapes, **kwargs)
            finally:
                stage_pnet_mod.build_scale_pyramid = orig

    return MTCNN(stages=[_PNet(), StageRNet(), StageONet()])


_default: Detector | None = None
_default_lock = threading.Lock()


def get_detector() -> Detector:
    """The process-wide default :class:`Detector` (built on first use)."""
    global _default
    if _default is None:
        with _default_lock:
            if _default is None:
                _default = Detector()
    return _default


def detect_faces(image: np.ndarray, min_face_size: float = 20,
                 thresholds: tuple[float, float, float] = (0.6, 0.7, 0.7)) -> list[Face]:
    """Detect faces in an RGB image with the shared default detector. See :class:`Detector`."""
    return get_detector().detect(image, min_face_size=min_face_size, thresholds=thresholds)
