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

The cascade itself is written once, in :mod:`facekit.detection.cascade`, and takes the three networks as
arguments. Backends (``Detector(backend=...)``; ``$FACEKIT_DETECTOR`` sets the default):

- ``"onnxruntime"`` (the default): mtcnn's P-, R- and O-Net rebuilt from the weights in the mtcnn
  wheel as float32 ONNX graphs (:mod:`facekit.detection.onnxnets`), the pyramid and patches in
  numpy/OpenCV. Detecting imports neither TensorFlow nor Keras: ``facekit detect photo.jpg`` runs
  in ~0.4 s, against ~4.4 s with TensorFlow (``bench/startup.py``).
- ``"tensorflow"``: mtcnn's Keras networks rebuilt as plain TensorFlow ops, each traced once into a
  ``tf.function`` (:mod:`facekit.detection.tfnets`), the pyramid and patches with ``tf.image`` as
  mtcnn does (``fast=False``: mtcnn's eager Keras models, each layer dispatched from Python: the
  reference). The cascade run this way with mtcnn's own pyramid equals
  ``mtcnn.MTCNN().detect_faces`` (tested), and the ONNX backend equals it within 0.5 px and 1e-3
  in confidence (``tests/test_tf_free.py``, ``bench/detect.py``).

``Detector(networks=...)`` takes any other three callables (e.g. int8 ONNX networks).
"""

from __future__ import annotations

import os
import threading
from dataclasses import dataclass
from typing import Sequence

import numpy as np

from facekit.core.boxes import match_boxes
from facekit.core.images import as_rgb

__all__ = ["Face", "Detector", "detect_faces", "get_detector", "scale_pyramid", "LANDMARK_NAMES", "match_boxes",
           "RETRY_THRESHOLDS", "largest_face", "subject_face", "BACKENDS", "default_backend"]

#: where the networks run: ONNX Runtime (default; no TensorFlow) or TensorFlow (the reference)
BACKENDS = ("onnxruntime", "tensorflow")


def default_backend() -> str:
    """``$FACEKIT_DETECTOR`` ("onnxruntime" or "tensorflow"), else "onnxruntime"."""
    name = os.environ.get("FACEKIT_DETECTOR") or "onnxruntime"
    if name not in BACKENDS:
        raise ValueError(f"FACEKIT_DETECTOR must be one of {BACKENDS}, got {name!r}")
    return name

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
    min_face_size : smallest face to find, in pixels of the input image (default 20: the
        reference MTCNN code's default (facenet's ``align_dataset_mtcnn``, mtcnn); the paper
        itself states none; raise it for speed when faces are large, e.g. webcam selfies).
    thresholds : P-Net, R-Net, O-Net score thresholds (default 0.6, 0.7, 0.7 as in facenet's
        align code).
    scale_factor : pyramid step (default 0.709 = 1/sqrt(2), the reference code's).
    max_side : photos whose longer side exceeds this are detected on a downscaled copy (default
        1280 px); boxes and landmarks are returned in full-resolution pixels.
    backend : ``"onnxruntime"`` (default, ``$FACEKIT_DETECTOR`` overrides it: float32 ONNX
        networks, no TensorFlow import) or ``"tensorflow"`` (mtcnn's networks and ``tf.image``:
        the reference).
    fast : TensorFlow backend only: run the networks as traced ``tf.function`` objects (default
        True: same results, several times faster); False runs mtcnn's eager Keras models (the
        reference) and, when ``backend`` is not given, selects the TensorFlow backend.
    networks : three callables to use instead (:class:`facekit.detection.cascade.Networks`), e.g. int8
        ONNX networks; ``backend`` and ``fast`` are then ignored.
    threads : ONNX Runtime intra-op threads per network (default: one per core; a Ray actor passes
        its CPUs so that a pool of actors does not oversubscribe the node).

    Thread safety: a Detector holds no per-call state, and the cascade none at all; two detectors
    (or two threads sharing one) can detect at the same time.
    """

    def __init__(self, min_face_size: float = 20, thresholds: tuple[float, float, float] = (0.6, 0.7, 0.7),
                 scale_factor: float = 0.709, max_side: int | None = 1280, fast: bool = True,
                 networks: Sequence | None = None, backend: str | None = None, threads: int | None = None):
        mfs = float(min_face_size)
        if not np.isfinite(mfs) or mfs <= 0:
            raise ValueError(f"min_face_size must be a finite number of pixels > 0, got {min_face_size!r}")
        th = tuple(float(t) for t in thresholds)
        if len(th) != 3 or not all(0.0 <= t <= 1.0 for t in th):
            raise ValueError(f"thresholds must be three scores in [0, 1] (P-Net, R-Net, O-Net), got {thresholds!r}")
        self.min_face_size = mfs
        self.thresholds = th
        self.scale_factor = float(scale_factor)
        self.max_side = max_side
        self.fast = bool(fast)
        backend = backend or ("tensorflow" if not self.fast else default_backend())
        if backend not in BACKENDS:
            raise ValueError(f"unknown detector backend {backend!r}; choose one of {BACKENDS}")
        self.backend = backend
        self.threads = threads
        self._mtcnn = None
        self._nets = None
        self._tf_nets = None
        self._custom = None
        if networks is not None:
            from facekit.detection.cascade import Networks

            if not isinstance(networks, Networks) and (
                    len(networks) != 3 or not all(callable(n) for n in networks)):
                raise TypeError("networks must be three callables (pnet, rnet, onet); see facekit.detection.cascade.Networks")
            self._custom = Networks(*networks)
        self._lock = threading.Lock()

    # -- model ---------------------------------------------------------------------------
    @property
    def mtcnn(self):
        """The underlying ``mtcnn.MTCNN`` (built lazily, once per Detector; imports TensorFlow)."""
        if self._mtcnn is None:
            with self._lock:
                if self._mtcnn is None:
                    from facekit.detection.tfnets import mtcnn_model

                    self._mtcnn = mtcnn_model()
        return self._mtcnn

    def networks(self):
        """The three networks the cascade runs (:class:`facekit.detection.cascade.Networks`): the ones
        given, else the ONNX Runtime ones (``backend="onnxruntime"``), else the compiled TensorFlow
        ones (``fast``), else mtcnn's eager Keras models."""
        from facekit.detection.cascade import Networks

        if self._custom is not None:
            return self._custom
        if self.backend == "onnxruntime":
            if self._nets is None:
                from facekit.detection.onnxnets import fp32_networks

                self._nets = fp32_networks(self.threads)
            return self._nets
        if self.fast:
            return Networks(*self.compiled_nets(), images="tensorflow")
        return Networks(*(stage.model for stage in self.mtcnn.stages), images="tensorflow")

    def compiled_nets(self):
        """``(pnet, rnet, onet)``: this detector's mtcnn networks, each traced once into a
        ``tf.function`` (float32 NHWC images normalised to [-1, 1]; built on first use; imports
        TensorFlow whatever the backend: the reference the tests compare with)."""
        if self._tf_nets is None:
            models = [stage.model for stage in self.mtcnn.stages]
            with self._lock:
                if self._tf_nets is None:
                    from facekit.detection.tfnets import compiled_networks

                    self._tf_nets = compiled_networks(models)
        return self._tf_nets

    # -- detection -----------------------------------------------------------------------
    def detect(self, image: np.ndarray, *, min_face_size: float | None = None,
               thresholds: tuple[float, float, float] | None = None) -> list[Face]:
        """Faces in one image (any of: (H,W) gray, (H,W,3) RGB, (H,W,4) RGBA; uint8/uint16/float).

        Returns faces sorted by confidence, highest first; ``[]`` when there is none.
        """
        from facekit.detection.cascade import run_cascade

        img, factor = self.working_image(image)
        mfs = float(self.min_face_size if min_face_size is None else min_face_size)
        if not np.isfinite(mfs) or mfs <= 0:
            raise ValueError(f"min_face_size must be a finite number of pixels > 0, got {min_face_size!r}")
        th = self.thresholds if thresholds is None else tuple(float(t) for t in thresholds)
        scales = scale_pyramid(img.shape[0], img.shape[1], mfs * factor, self.scale_factor)
        if len(scales) == 0:
            return []
        faces = [Face.from_mtcnn_row(r) for r in run_cascade(img, self.networks(), scales, th)]
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
        """Faces in several images: one list per image, each sorted by confidence.

        Images of the same size (not over ``max_side``) go through the cascade together: P-Net
        once per pyramid level for the whole batch, R-Net and O-Net once for every candidate
        (per-call overhead dominates for small photos such as LFW's 250x250). Others are detected
        one by one. Same faces as :meth:`detect` (tested). Used by :func:`facekit.teach.lfw.detect_lfw`.
        """
        from facekit.detection.cascade import run_cascade

        imgs = [as_rgb(im) for im in images]
        if not imgs:
            return []
        h, w = imgs[0].shape[:2]
        if any(im.shape[:2] != (h, w) for im in imgs) or (self.max_side and max(h, w) > self.max_side):
            return [self.detect(im) for im in imgs]
        scales = scale_pyramid(h, w, self.min_face_size, self.scale_factor)
        if len(scales) == 0:
            return [[] for _ in imgs]
        rows = run_cascade(np.stack(imgs), self.networks(), scales, self.thresholds)
        res: list[list[Face]] = [[] for _ in imgs]
        for r in rows:
            res[int(r[0])].append(Face.from_mtcnn_row(r))
        return [sorted(f, key=lambda x: -x.confidence) for f in res]

    def refine(self, image: np.ndarray, boxes) -> list[Face | None]:
        """Re-detect faces near known ``boxes`` (K, 4) with R-Net and O-Net only (no pyramid).

        Returns one :class:`Face` (or None: no face there any more) per box, in pixels of
        ``image``; each face is matched to at most one box (IoU >= 0.2). Several times cheaper
        than :meth:`detect`: the live loop follows faces this way between full scans (notebook 06).
        """
        from facekit.detection.cascade import refine_rows

        img = as_rgb(image)
        b = np.asarray(boxes, np.float64).reshape(-1, 4)
        if not len(b):
            return []
        faces = [Face.from_mtcnn_row(r) for r in refine_rows(img, self.networks(), b, self.thresholds)]
        out: list[Face | None] = [None] * len(b)
        for bi, fi in match_boxes(b, np.array([f.box for f in faces], np.float64).reshape(-1, 4), 0.2):
            out[bi] = faces[fi]
        return out


_default: Detector | None = None
_default_lock = threading.Lock()


#: laxer P-/R-Net thresholds (same O-Net) for a second try on a photo that should hold a face:
#: MTCNN's R-Net sometimes drops a clear face (one with sunglasses in the sample set) that O-Net
#: scores at 0.99; O-Net's threshold, the one that rejects non-faces, stays as it was
RETRY_THRESHOLDS = (0.5, 0.5, 0.7)


def largest_face(faces: list[Face]) -> Face | None:
    """The face with the largest box area (the photo's subject, usually), or None."""
    return max(faces, key=lambda f: f.area) if faces else None


def subject_face(detector: Detector, image: np.ndarray, *, min_face_size: float | None = None,
                 retry_thresholds: tuple[float, float, float] | None = RETRY_THRESHOLDS) -> Face | None:
    """The labelled face of a photo of one person (notebook 04): its largest face, found at the
    detector's thresholds or, failing that, once more at ``retry_thresholds`` (None: no retry)."""
    found = detector.detect(image, min_face_size=min_face_size)
    if not found and retry_thresholds is not None:
        found = detector.detect(image, min_face_size=min_face_size, thresholds=retry_thresholds)
    return largest_face(found)


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
