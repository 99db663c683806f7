"""What live recognition returns for a frame: :class:`LiveFace` and :class:`FrameResult` (notebook 06).

Small and JSON-friendly on purpose: the camera widget sends ``FrameResult.to_json()`` to the
browser for every frame.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

__all__ = ["PENDING", "LiveFace", "FrameResult"]

PENDING = "..."  # the name of a face seen but not embedded yet


@dataclass(frozen=True)
class LiveFace:
    """One face in a processed frame.

    box: float32 (4,) ``x1, y1, x2, y2`` in frame pixels; name: a gallery name, ``"unknown"`` or
    ``"..."`` (not embedded yet); distance: squared L2 from the track's mean embedding to the
    nearest gallery embedding (nan before the first embedding); detected: the box comes from a
    detection on this frame (else the tracker carried it).
    """

    track_id: int
    box: np.ndarray
    name: str
    distance: float
    detected: bool

    def to_dict(self) -> dict:
        d = None if not math.isfinite(self.distance) else round(float(self.distance), 3)
        return {"id": int(self.track_id), "box": [round(float(v), 1) for v in self.box],
                "name": self.name, "distance": d, "detected": bool(self.detected)}


@dataclass
class FrameResult:
    """What :meth:`facekit.live.LiveRecognizer.process` returns for one frame.

    latency_ms: wall time from the call to the labelled result (decode included for JPEGs).
    detected / embedded: whether the detector ran, how many faces were embedded.
    message: empty, or what happened (bad frame, enrolment progress, ...).
    ok: False for a frame that could not be processed (the message says why).
    """

    index: int
    width: int
    height: int
    faces: list[LiveFace]
    latency_ms: float
    detected: bool = False
    embedded: int = 0
    message: str = ""
    ok: bool = True

    @property
    def names(self) -> list[str]:
        return [f.name for f in self.faces]

    def to_json(self) -> dict:
        """A plain dict (what the camera widget sends to the browser)."""
        return {"index": self.index, "width": self.width, "height": self.height,
                "faces": [f.to_dict() for f in self.faces], "latency_ms": round(self.latency_ms, 1),
                "detected": self.detected, "embedded": self.embedded, "message": self.message,
                "ok": self.ok}
