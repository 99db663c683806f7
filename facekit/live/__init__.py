"""Live recognition on video: track faces, detect and embed them rarely, name them (notebook 06).

One module per idea:

- :mod:`.recognizer` -- :class:`LiveRecognizer`: the per-frame loop, its cadence (when to scan,
  refine, embed), enrolment from the camera, naming.
- :mod:`.tracking` -- the :class:`Tracker` seam and :class:`FlowTracker` (optical flow + IoU),
  the default. Swap the tracker with ``LiveRecognizer(tracker=...)``.
- :mod:`.results` -- :class:`LiveFace`, :class:`FrameResult` (small, JSON-friendly).
- :mod:`.geometry` -- :func:`iou`, :func:`iou_matrix`, :func:`greedy_match`.
- :mod:`.loop` -- :func:`run_source`, :func:`annotate`, :func:`stage_costs`.
- :mod:`.video` -- JPEG bytes, :class:`VideoSource`, :func:`write_video` (no widget imports).
- :mod:`.scene` -- :class:`DemoScene`, :func:`make_demo_scene` (a synthetic video with truth).

The browser webcam widget is :class:`facekit.live.camera.CameraWidget`. Names are imported lazily
(PEP 562): ``import facekit.live`` loads neither TensorFlow nor any widget library.
"""

from __future__ import annotations

import importlib
import warnings

# name -> submodule that defines it
_EXPORTS = {
    "LiveRecognizer": "recognizer", "DETECT_MIN_FACE": "recognizer",
    "Tracker": "tracking", "FlowTracker": "tracking", "Track": "tracking",
    "LiveFace": "results", "FrameResult": "results", "PENDING": "results",
    "iou": "geometry", "iou_matrix": "geometry", "greedy_match": "geometry",
    "stage_costs": "loop", "annotate": "loop", "run_source": "loop", "SourceSummary": "loop",
    "decode_jpeg": "video", "encode_jpeg": "video", "as_frame": "video", "VideoSource": "video",
    "write_video": "video", "write_y4m": "video",
    "DemoScene": "scene", "make_demo_scene": "scene",
}

__all__ = sorted(_EXPORTS) + ["UNKNOWN", "refine_faces"]


def __getattr__(name: str):
    if name == "UNKNOWN":
        from facekit.core.constants import UNKNOWN

        return UNKNOWN
    mod = _EXPORTS.get(name)
    if mod is None:
        raise AttributeError(f"module 'facekit.live' has no attribute {name!r}")
    value = getattr(importlib.import_module(f".{mod}", __name__), name)
    globals()[name] = value
    return value


def __dir__():
    return __all__


def refine_faces(detector, image, boxes):
    """Deprecated: use ``detector.refine(image, boxes)`` (:meth:`facekit.detection.detector.Detector.refine`).

    Re-detects faces near known boxes with MTCNN's R-Net and O-Net: one
    :class:`~facekit.detection.detector.Face` or None per box, frame pixels. Notebook 06.
    """
    warnings.warn("facekit.live.refine_faces is deprecated; use Detector.refine(image, boxes)",
                  DeprecationWarning, stacklevel=2)
    return detector.refine(image, boxes)
