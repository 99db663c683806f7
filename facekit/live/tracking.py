"""Tracking for live recognition: the :class:`Tracker` seam and the optical-flow tracker (notebook 06).

A tracker keeps the faces of a video apart from frame to frame, so that a face keeps its identity
(its *track id*) and :class:`~facekit.live.LiveRecognizer` embeds it only now and then. The
recogniser decides *when* the detector runs (its cadence); the tracker decides *which* track a
detection belongs to and where each face is on the frames in between. Neither reaches into the
other: they talk only through the four members of :class:`Tracker`.

What happens on each frame, in this order::

    lost = tracker.follow(frame)          # every frame: carry the boxes to this frame
    boxes = [t.box for t in tracker.tracks]
    # the recogniser now runs the detector, or not (its cadence; ``lost`` asks for a re-detection):
    #   a scan: every face of the frame        -> tracker.update(faces)
    #   a refine: detector.refine(frame, boxes) -> tracker.update(faces, per_track=True)
    lost_one = tracker.update(...)        # True: a track was lost; the recogniser scans next frame
    tracker.tracks                        # read to embed and name the faces

:class:`FlowTracker` (the default) carries each box by sparse optical flow and matches detections
to tracks by IoU. To try another tracker (a Kalman filter, a re-identification model, a detector
on every frame), write a class with these members and pass it as ``LiveRecognizer(tracker=...)``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol, Sequence, runtime_checkable

import numpy as np

from facekit.detection.detector import Face
from facekit.live.geometry import greedy_match, iou, iou_matrix

__all__ = ["Track", "Tracker", "FlowTracker"]


@dataclass
class Track:
    """A face followed across frames, as a tracker reports it.

    id: stable while the tracker follows the face (the recogniser keys its embeddings and name on
    it; a new id is a new person to it). box: float32 (4,) frame pixels; landmarks: float32 (5, 2)
    frame pixels (used to align the face for embedding); confidence: of the last detection;
    detected: the box comes from a detection on the current frame (only such tracks are
    embedded, since carried landmarks drift).
    """

    id: int
    box: np.ndarray
    landmarks: np.ndarray
    confidence: float
    detected: bool = True

    def face(self) -> Face:
        """The track as a :class:`facekit.detection.detector.Face` (what :func:`facekit.detection.align.align_face` takes)."""
        return Face(box=np.asarray(self.box, np.float32), landmarks=np.asarray(self.landmarks, np.float32),
                    confidence=float(self.confidence))

    @property
    def width(self) -> float:
        return float(self.box[2] - self.box[0])


@runtime_checkable
class Tracker(Protocol):
    """What :class:`~facekit.live.LiveRecognizer` needs from a tracker (the seam; notebook 06).

    The recogniser calls, for every frame it processes, :meth:`follow` once, then :meth:`update`
    at most once (only on frames where it ran the detector), then reads :attr:`tracks`. It calls
    :meth:`reset` when the video changes (another frame size, an error). It never touches the
    tracker's other attributes, and the tracker never touches the recogniser.
    """

    @property
    def tracks(self) -> Sequence[Track]:
        """The faces followed now, oldest first. The recogniser reads them; it does not change them."""
        ...

    def follow(self, frame: np.ndarray) -> bool:
        """Carry the tracks to ``frame`` (RGB uint8 (H, W, 3), the same size as the previous
        frame), marking them ``detected=False``. Returns True when a track could not be followed:
        the recogniser then re-detects the tracked faces on this very frame."""
        ...

    def update(self, faces: Sequence[Face | None], *, per_track: bool = False) -> bool:
        """Apply the detections made on the current frame (``faces`` in frame pixels).

        ``per_track=False`` (a scan): ``faces`` are every face found on the whole frame, in any
        order; match them to the tracks and start a track for each new face.
        ``per_track=True`` (a refine): ``faces[i]`` is the re-detection near ``tracks[i]`` (the
        boxes the recogniser gave :meth:`facekit.detection.detector.Detector.refine`), None where no face
        was found; never starts a track.
        Matched tracks get the detection's box and landmarks and ``detected=True``. Returns True
        when a track was lost (dropped): the recogniser then scans the next frame to find it again.
        """
        ...

    def reset(self) -> None:
        """Forget every track (the next frame starts from nothing)."""
        ...


@dataclass
class _FlowTrack(Track):
    misses: int = 0       # consecutive detections that did not find it
    flow_ok: bool = True  # the last optical-flow step followed it


class FlowTracker:
    """Today's tracker: sparse optical flow between detections, IoU to match detections.

    Between detections each box is moved by the median Lucas-Kanade flow of a few corners inside
    it (and scaled by their spread), on a grey copy of the frame at most ``flow_size`` px wide: about
    a millisecond. A forward-backward check rejects bad points; a face with fewer than 3 good
    points, or too small to hold any, cannot be followed (``follow`` returns True).

    iou_threshold : a detection continues a track when their boxes overlap at least this much
        (default 0.3).
    max_misses : a track survives this many detections that miss it (default 2: a blink of
        occlusion or motion blur does not lose the name).
    flow_size : the longer side of the grey copy the flow runs on (default 320 px).
    """

    def __init__(self, *, iou_threshold: float = 0.3, max_misses: int = 2, flow_size: int = 320):
        self.iou_threshold = float(iou_threshold)
        self.max_misses = int(max_misses)
        self.flow_size = int(flow_size)
        self.reset()

    @property
    def tracks(self) -> list[_FlowTrack]:
        return self._tracks

    def reset(self) -> None:
        self._tracks: list[_FlowTrack] = []
        self._next_id = 1
        self._prev: np.ndarray | None = None  # grey copy of the previous frame

    # -- between detections -------------------------------------------------------------------
    def follow(self, frame: np.ndarray) -> bool:
        import cv2

        h, w = frame.shape[:2]
        fs = min(1.0, self.flow_size / max(h, w))
        gray = cv2.cvtColor(frame, cv2.COLOR_RGB2GRAY)
        if fs < 1.0:
            gray = cv2.resize(gray, (max(1, round(w * fs)), max(1, round(h * fs))), interpolation=cv2.INTER_AREA)
        for t in self._tracks:
            t.detected = False
        lost = False
        if self._tracks and self._prev is not None and self._prev.shape == gray.shape:
            lost = self._flow(self._prev, gray, fs, (w, h))
        self._prev = gray
        return lost

    def _flow(self, prev: np.ndarray, gray: np.ndarray, fs: float, size: tuple[int, int]) -> bool:
        """Move each track's box by the median optical flow of corners inside it. Returns True if a
        track could not be followed."""
        import cv2

        pts, owner = [], []
        for k, t in enumerate(self._tracks):
            x1, y1, x2, y2 = t.box * fs
            mx, my = 0.15 * (x2 - x1), 0.15 * (y2 - y1)
            ix1, iy1 = int(max(0, x1 + mx)), int(max(0, y1 + my))
            ix2, iy2 = int(min(prev.shape[1], x2 - mx)), int(min(prev.shape[0], y2 - my))
            if ix2 - ix1 < 4 or iy2 - iy1 < 4:
                t.flow_ok = False
                continue
            c = cv2.goodFeaturesToTrack(prev[iy1:iy2, ix1:ix2], maxCorners=24, qualityLevel=0.01, minDistance=2)
            if c is None or len(c) < 3:
                t.flow_ok = False
                continue
            c = c.reshape(-1, 2) + np.array([ix1, iy1], np.float32)
            pts.append(c)
            owner += [k] * len(c)
        if pts:
            p0 = np.concatenate(pts).astype(np.float32).reshape(-1, 1, 2)
            lk = dict(winSize=(15, 15), maxLevel=2,
                      criteria=(cv2.TERM_CRITERIA_EPS | cv2.TERM_CRITERIA_COUNT, 10, 0.03))
            p1, st1, _ = cv2.calcOpticalFlowPyrLK(prev, gray, p0, None, **lk)
            p0r, st2, _ = cv2.calcOpticalFlowPyrLK(gray, prev, p1, None, **lk)  # forward-backward check
            fb = np.linalg.norm((p0 - p0r).reshape(-1, 2), axis=1)
            good = (st1.ravel() == 1) & (st2.ravel() == 1) & (fb < 1.0)
            owner_arr = np.asarray(owner)
            a, b = p0.reshape(-1, 2), p1.reshape(-1, 2)
            for k, t in enumerate(self._tracks):
                sel = good & (owner_arr == k)
                if not np.any(owner_arr == k):
                    continue
                if sel.sum() < 3:
                    t.flow_ok = False
                    continue
                pa, pb = a[sel], b[sel]
                d = np.median(pb - pa, axis=0)
                ca, cb = np.median(pa, axis=0), np.median(pb, axis=0)
                ra = np.linalg.norm(pa - ca, axis=1)
                rb = np.linalg.norm(pb - cb, axis=1)
                ok = ra > 1.0
                s = float(np.clip(np.median(rb[ok] / ra[ok]), 0.8, 1.25)) if ok.sum() >= 3 else 1.0
                centre = (t.box[:2] + t.box[2:]) / 2.0
                new_centre = centre + d / fs
                half = (t.box[2:] - t.box[:2]) / 2.0 * s
                t.box = np.concatenate([new_centre - half, new_centre + half]).astype(np.float32)
                t.landmarks = ((t.landmarks - centre) * s + new_centre).astype(np.float32)
                t.flow_ok = True
        w, h = size
        lost = False
        keep = []
        for t in self._tracks:
            cx, cy = (t.box[0] + t.box[2]) / 2, (t.box[1] + t.box[3]) / 2
            if not (0 <= cx < w and 0 <= cy < h):
                continue  # left the frame
            if not t.flow_ok:
                lost = True
            keep.append(t)
        if len(keep) != len(self._tracks):
            lost = True
        self._tracks = keep
        return lost

    # -- on detections ------------------------------------------------------------------------
    def update(self, faces: Sequence[Face | None], *, per_track: bool = False) -> bool:
        if per_track:
            if len(faces) != len(self._tracks):
                raise ValueError(f"a refine gives one face (or None) per track: got {len(faces)} for "
                                 f"{len(self._tracks)} tracks")
            matched = {i: f for i, (t, f) in enumerate(zip(self._tracks, faces))
                       if f is not None and iou(t.box, f.box) >= self.iou_threshold}
            return self._apply(matched)
        faces = [f for f in faces if f is not None]
        boxes = np.array([f.box for f in faces], np.float64).reshape(-1, 4)
        tboxes = np.array([t.box for t in self._tracks], np.float64).reshape(-1, 4)
        pairs = greedy_match(iou_matrix(tboxes, boxes), self.iou_threshold)
        lost = self._apply({ti: faces[di] for ti, di in pairs})
        used = {di for _, di in pairs}
        for di, f in enumerate(faces):
            if di in used:
                continue
            if self._tracks and iou_matrix(np.array([t.box for t in self._tracks]),
                                           f.box[None]).max() >= self.iou_threshold:
                continue  # a duplicate of a face already tracked
            self._tracks.append(_FlowTrack(self._next_id, f.box.copy(), f.landmarks.copy(), f.confidence))
            self._next_id += 1
        return lost

    def _apply(self, matched: dict[int, Face]) -> bool:
        """Apply detections ``{track index: Face}``; unmatched tracks count a miss and are dropped
        after ``max_misses`` (or at once when the flow lost them); tracks that now cover the same
        face are merged (the older kept). Returns True when a track was dropped."""
        keep, lost = [], False
        for i, t in enumerate(self._tracks):
            f = matched.get(i)
            if f is not None:
                t.box, t.landmarks, t.confidence = f.box.copy(), f.landmarks.copy(), f.confidence
                t.misses, t.detected, t.flow_ok = 0, True, True
            else:
                t.misses += 1
                if t.misses > self.max_misses or not t.flow_ok:
                    lost = True  # fast motion, a cut, occlusion
                    continue
            keep.append(t)
        out: list[_FlowTrack] = []
        for t in sorted(keep, key=lambda t: t.id):
            if out and iou_matrix(np.array([o.box for o in out]), t.box[None]).max() > 0.6:
                continue
            out.append(t)
        self._tracks = out
        return lost
