"""Live recognition: detect -> align -> embed -> identify on a stream of frames, with tracking.

Taught in notebook 06. Running MTCNN and FaceNet on every face of every frame is far too slow for
live video on a CPU (a few frames per second), so :class:`LiveRecognizer` does the expensive work
only when it is needed:

- **Tracking.** Between detections each face's box is carried to the next frame by sparse optical
  flow (Lucas-Kanade on a few corner points inside the box; about a millisecond). Detections are
  matched to the carried boxes by IoU, so a face keeps its identity (its *track*) across frames.
- **Detection** comes in two kinds. A *scan* (MTCNN on the whole frame, to find new faces) runs
  every ``scan_every`` frames, on a *downscaled* copy: MTCNN keeps its native 20-pixel minimum
  face on a frame shrunk so that the smallest face looked for becomes ~20 px (``min_face_size``,
  or half the smallest tracked face when faces are large). A *refine* (only MTCNN's R-Net and
  O-Net on the tracked boxes, no image pyramid: a fraction of a scan's cost) runs every
  ``detect_every`` frames and when a face cannot be followed, to correct drift and give fresh
  landmarks for alignment.
- **Embedding** happens when a track is new and then every ``reembed_every`` frames; the track's
  name comes from the mean of its last ``memory`` embeddings, so one blurry frame does not flip a
  name. A face whose embeddings never come within the threshold of the gallery stays ``unknown``.

Bad frames (``None``, empty, black, corrupt JPEG, another size) never raise: the result carries a
message and the loop goes on. :func:`make_demo_scene` renders a synthetic video of sample-set
people with ground-truth boxes (used by the notebook, the tests and ``bench/live.py``).
"""

from __future__ import annotations

import math
import threading
import time
from collections import deque
from dataclasses import dataclass, field
from typing import Iterable, Iterator, Sequence

import numpy as np

from .align import align_face
from .detect import Detector, Face, get_detector
from .embed import Embedder, get_embedder
from .identify import UNKNOWN, FaceIdentifier

__all__ = [
    "LiveRecognizer", "LiveFace", "FrameResult", "Track", "PENDING", "UNKNOWN",
    "iou", "iou_matrix", "refine_faces", "stage_costs", "annotate", "run_source", "SourceSummary",
    "DemoScene", "make_demo_scene", "decode_jpeg", "encode_jpeg",
]

PENDING = "..."      # a face seen but not embedded yet
DETECT_MIN_FACE = 20.0  # MTCNN's native minimum face (pixels of the frame it runs on)


# --- geometry --------------------------------------------------------------------------------

def iou(a: np.ndarray, b: np.ndarray) -> float:
    """Intersection over union of two ``(x1, y1, x2, y2)`` boxes (0 when disjoint)."""
    return float(iou_matrix(np.asarray(a, np.float64)[None], np.asarray(b, np.float64)[None])[0, 0])


def iou_matrix(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Pairwise IoU of boxes ``a (N, 4)`` and ``b (M, 4)`` -> float64 ``(N, M)``."""
    a = np.asarray(a, np.float64).reshape(-1, 4)
    b = np.asarray(b, np.float64).reshape(-1, 4)
    x1 = np.maximum(a[:, None, 0], b[None, :, 0])
    y1 = np.maximum(a[:, None, 1], b[None, :, 1])
    x2 = np.minimum(a[:, None, 2], b[None, :, 2])
    y2 = np.minimum(a[:, None, 3], b[None, :, 3])
    inter = np.clip(x2 - x1, 0, None) * np.clip(y2 - y1, 0, None)
    area_a = np.clip(a[:, 2] - a[:, 0], 0, None) * np.clip(a[:, 3] - a[:, 1], 0, None)
    area_b = np.clip(b[:, 2] - b[:, 0], 0, None) * np.clip(b[:, 3] - b[:, 1], 0, None)
    union = area_a[:, None] + area_b[None, :] - inter
    return np.where(union > 0, inter / np.maximum(union, 1e-12), 0.0)


# --- JPEG ------------------------------------------------------------------------------------

def decode_jpeg(data: bytes | bytearray | memoryview) -> np.ndarray:
    """JPEG (or PNG) bytes -> RGB ``uint8 (H, W, 3)``; raises ``ValueError`` on corrupt data.
    (What :class:`facekit.camera.CameraWidget` receives; notebook 06.)"""
    import cv2

    buf = np.frombuffer(data, np.uint8)
    img = cv2.imdecode(buf, cv2.IMREAD_COLOR) if buf.size else None
    if img is None:
        raise ValueError(f"could not decode the frame ({buf.size} bytes): corrupt or not a JPEG/PNG")
    return cv2.cvtColor(img, cv2.COLOR_BGR2RGB)


def encode_jpeg(image: np.ndarray, quality: int = 85) -> bytes:
    """RGB ``uint8 (H, W, 3)`` -> JPEG bytes (what the browser camera sends; notebook 06)."""
    import cv2

    ok, buf = cv2.imencode(".jpg", cv2.cvtColor(np.ascontiguousarray(image), cv2.COLOR_RGB2BGR),
                           [cv2.IMWRITE_JPEG_QUALITY, int(quality)])
    if not ok:
        raise ValueError("JPEG encoding failed")
    return buf.tobytes()


# --- results ---------------------------------------------------------------------------------

@dataclass(frozen=True)
class LiveFace:
    """One face in a processed frame.

    box: float32 (4,) ``x1, y1, x2, y2`` in frame pixels; name: a gallery name, ``"unknown"`` or
    ``"..."`` (not embedded yet); distance: squared L2 from the track's mean embedding to the
    nearest gallery embedding (nan before the first embedding); detected: the box comes from a
    detection on this frame (else it was carried by optical flow).
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
    """What :meth:`LiveRecognizer.process` returns for one frame (small, JSON-friendly).

    latency_ms: wall time from the call to the labelled result (decode included for JPEGs).
    detected / embedded: whether the detector ran, how many faces were embedded.
    message: empty, or what happened (bad frame, enrolment progress, ...).
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


@dataclass
class Track:
    """A face followed across frames (internal state of :class:`LiveRecognizer`)."""

    id: int
    box: np.ndarray          # float32 (4,) frame pixels
    landmarks: np.ndarray    # float32 (5, 2)
    confidence: float
    embeddings: deque = field(default_factory=deque)
    name: str = PENDING
    distance: float = float("nan")
    misses: int = 0          # consecutive detections that did not find it
    last_embed: int = -10**9  # frame index of the last embedding
    detected: bool = True    # box from a detection on the current frame
    flow_ok: bool = True
    _ident_key: tuple = ()

    def face(self) -> Face:
        return Face(box=self.box.astype(np.float32), landmarks=self.landmarks.astype(np.float32),
                    confidence=self.confidence)

    @property
    def width(self) -> float:
        return float(self.box[2] - self.box[0])


# --- the recogniser --------------------------------------------------------------------------

class LiveRecognizer:
    """Recognise faces on a stream of frames, tracking them so each face is embedded rarely.

    Taught in notebook 06. ``process(frame)`` / ``process_jpeg(bytes)`` -> :class:`FrameResult`.

    Parameters
    ----------
    identifier : a fitted :class:`facekit.identify.FaceIdentifier` (the gallery of notebook 04),
        or None to start with an empty gallery (every face "unknown" until someone enrols).
    threshold : squared-L2 distance above which a face is "unknown"; None uses the identifier's.
    min_face_size : smallest face (frame pixels) looked for by the scanning detections (default
        40: webcam faces are large; use 20 for a far-away camera).
    detect_every : refine the tracked faces every N frames (default 3); frames in between only
        carry the boxes by optical flow (a few milliseconds).
    scan_every : scan the whole frame for new faces every N frames (default 10, i.e. a new face
        is picked up within 2/3 s at 15 fps); with no face tracked, every ``detect_every``
        frames, and on the frame after a face was lost.
    full_scan_every : every N-th scan looks for faces down to ``min_face_size`` even when the
        tracked faces are large (the others look for faces >= half the smallest tracked one).
    reembed_every : embed a tracked face again after N frames (default 45), so a wrong early
        name is corrected and a face that turned towards the camera gets a better embedding.
    memory : the name of a track comes from the mean of its last ``memory`` embeddings (5).
    max_embed_per_frame : at most this many faces are embedded per frame (bounds the latency
        when many faces appear at once; the others are embedded on the next detections).
    iou_threshold : a detection continues a track when their boxes overlap at least this much
        (intersection over union, default 0.3).
    max_misses : a track survives this many detections that miss it (default 2: a blink of
        occlusion or motion blur does not lose the name).
    gallery_path : where :meth:`enroll` saves the gallery (``FaceIdentifier.save``; no pickle).
    """

    def __init__(self, identifier=None, *, threshold: float | None = None, min_face_size: float = 40,
                 detect_every: int = 3, scan_every: int = 10, reembed_every: int = 45, memory: int = 5,
                 iou_threshold: float = 0.3, max_misses: int = 2, max_embed_per_frame: int = 3,
                 full_scan_every: int = 2, gallery_path=None, detector: Detector | None = None,
                 embedder: Embedder | None = None):
        counts = dict(detect_every=detect_every, scan_every=scan_every, full_scan_every=full_scan_every,
                      reembed_every=reembed_every, memory=memory, max_embed_per_frame=max_embed_per_frame)
        bad = {k: v for k, v in counts.items() if int(v) < 1}
        if bad:
            raise ValueError(f"these must be >= 1: {bad}")
        self.identifier = identifier
        self._threshold = None if threshold is None else float(threshold)
        self.min_face_size = float(min_face_size)
        self.detect_every = int(detect_every)
        self.scan_every = int(scan_every)
        self.reembed_every = int(reembed_every)
        self.memory = int(memory)
        self.iou_threshold = float(iou_threshold)
        self.max_misses = int(max_misses)
        self.max_embed_per_frame = int(max_embed_per_frame)
        self.full_scan_every = int(full_scan_every)
        self.gallery_path = gallery_path
        self._detector = detector
        self._embedder = embedder
        self._lock = threading.RLock()
        self._version = 0  # bumped when the gallery or the threshold changes
        self._enrol: dict | None = None
        self.reset()

    # -- configuration ------------------------------------------------------------------------
    @property
    def detector(self) -> Detector:
        if self._detector is None:
            self._detector = get_detector()
        return self._detector

    @property
    def embedder(self) -> Embedder:
        if self._embedder is None:
            self._embedder = get_embedder()
        return self._embedder

    @property
    def threshold(self) -> float | None:
        """The "unknown" threshold in use (squared L2); None when neither side sets one."""
        if self._threshold is not None:
            return self._threshold
        return _identifier_threshold(self.identifier)

    @threshold.setter
    def threshold(self, value: float | None) -> None:
        with self._lock:
            self._threshold = None if value is None else float(value)
            self._version += 1

    @property
    def names(self) -> list[str]:
        """Names in the gallery."""
        return [] if self.identifier is None else list(self.identifier.names)

    def set_identifier(self, identifier) -> None:
        """Swap the gallery; faces on screen are re-identified from their stored embeddings."""
        with self._lock:
            self.identifier = identifier
            self._version += 1

    def reset(self) -> None:
        """Forget all tracks and counters (e.g. when the source changes)."""
        with getattr(self, "_lock", threading.RLock()):
            self.tracks: list[Track] = []
            self._next_id = 1
            self._frame_index = 0
            self._since_detect = 10**9
            self._since_scan = 10**9
            self._scans = 0
            self._prev_gray: np.ndarray | None = None
            self._shape: tuple[int, int] | None = None
            self.stats = {"frames": 0, "bad_frames": 0, "scans": 0, "refines": 0, "embedded": 0, "errors": 0,
                          "last_error": ""}

    # -- enrolment ----------------------------------------------------------------------------
    def start_enrollment(self, name: str, shots: int = 5, every: int = 2) -> None:
        """Enrol ``name`` from the next frames: the largest face of every ``every``-th frame with a
        face is embedded until ``shots`` are collected, then :meth:`enroll` is called, so the
        person is recognised on the very next frame. Progress shows in ``FrameResult.message``."""
        name = _check_name(name)
        if shots < 1:
            raise ValueError(f"shots must be >= 1, got {shots}")
        with self._lock:
            self._enrol = {"name": name, "shots": int(shots), "every": max(1, int(every)),
                           "embs": [], "seen": 0}

    def cancel_enrollment(self) -> None:
        with self._lock:
            self._enrol = None

    @property
    def enrolling(self) -> str | None:
        """Name being enrolled, or None."""
        return None if self._enrol is None else self._enrol["name"]

    def enroll(self, embeddings: np.ndarray, name: str):
        """Add ``embeddings (N, d)`` of ``name`` to the gallery (a new person or more shots) and save
        it to ``gallery_path`` when set. Returns the identifier."""
        name = _check_name(name)
        embs = np.asarray(embeddings, np.float32)
        if embs.ndim != 2 or len(embs) == 0:
            raise ValueError(f"need embeddings of shape (N, d) with N >= 1, got {embs.shape}")
        with self._lock:
            if self.identifier is None:
                self.identifier = FaceIdentifier(threshold=self._threshold).fit(embs, [name] * len(embs))
            else:
                self.identifier.enroll(embs, name)
            self._version += 1
            if self.gallery_path is not None:
                self.identifier.save(self.gallery_path)
            return self.identifier

    def enroll_frames(self, frames: Iterable[np.ndarray], name: str) -> int:
        """Enrol ``name`` from the largest face of each frame (e.g. webcam shots); returns how many
        frames had a face. Raises ``ValueError`` if none had."""
        crops = []
        for frame in frames:
            img = _as_frame(frame)
            faces = self.detector.detect(img, min_face_size=min(self.min_face_size, 40))
            if faces:
                crops.append(align_face(img, max(faces, key=lambda f: f.area)))
        if not crops:
            raise ValueError(f"no face found in the frames given to enrol {name!r}: "
                             "look at the camera, with your face well lit and at least 40 px wide")
        self.enroll(self.embedder.embed(np.stack(crops)), name)
        return len(crops)

    # -- the loop -----------------------------------------------------------------------------
    def process_jpeg(self, data: bytes | bytearray | memoryview) -> FrameResult:
        """Decode a JPEG frame (the browser camera's format) and :meth:`process` it. A corrupt
        buffer gives a result with ``ok=False`` and a message, never an exception."""
        t0 = time.perf_counter()
        try:
            frame = decode_jpeg(data)
        except Exception as exc:  # noqa: BLE001 - a bad frame must not stop the loop
            return self._bad_frame(str(exc), t0)
        return self.process(frame, _t0=t0)

    def process(self, frame: np.ndarray, *, _t0: float | None = None) -> FrameResult:
        """Recognise the faces of one RGB frame (any size; gray/RGBA accepted).

        Never raises for bad input: ``None``, empty or malformed arrays give ``ok=False`` and a
        message; a frame of another size than the last one restarts tracking.
        """
        t0 = time.perf_counter() if _t0 is None else _t0
        try:
            img = _as_frame(frame)
        except Exception as exc:  # noqa: BLE001
            return self._bad_frame(str(exc), t0)
        with self._lock:
            try:
                return self._process(img, t0)
            except Exception as exc:  # noqa: BLE001 - never crash the live loop
                self.stats["errors"] += 1
                self.stats["last_error"] = f"{type(exc).__name__}: {exc}"
                self.tracks = []
                self._prev_gray = None
                self._since_detect = self._since_scan = 10**9
                return FrameResult(self._next_index(), img.shape[1], img.shape[0], [],
                                   _ms(t0), ok=False, message=f"error, tracking restarted: "
                                   f"{type(exc).__name__}: {exc}")

    def _next_index(self) -> int:
        i = self._frame_index
        self._frame_index += 1
        return i

    def _bad_frame(self, reason: str, t0: float) -> FrameResult:
        with self._lock:
            self.stats["bad_frames"] += 1
            self.stats["frames"] += 1
            return FrameResult(self._next_index(), 0, 0, [], _ms(t0), ok=False,
                               message=f"bad frame skipped: {reason}")

    def _process(self, img: np.ndarray, t0: float) -> FrameResult:
        import cv2

        index = self._next_index()
        self.stats["frames"] += 1
        h, w = img.shape[:2]
        message = ""
        if self._shape is not None and self._shape != (h, w):
            self.tracks = []
            self._prev_gray = None
            self._since_detect = self._since_scan = 10**9
            message = f"frame size changed to {w}x{h}: tracking restarted"
        self._shape = (h, w)

        # 1. carry the boxes to this frame (optical flow on a small gray copy)
        fs = min(1.0, 320.0 / max(h, w))
        gray = cv2.cvtColor(img, cv2.COLOR_RGB2GRAY)
        if fs < 1.0:
            gray = cv2.resize(gray, (max(1, round(w * fs)), max(1, round(h * fs))), interpolation=cv2.INTER_AREA)
        lost = False
        for t in self.tracks:
            t.detected = False
        if self.tracks and self._prev_gray is not None:
            lost = self._flow(self._prev_gray, gray, fs, (w, h))
        self._prev_gray = gray

        # 2. detect when due (or needed): a full scan finds new faces, a refine re-detects the
        #    tracked ones (cheap); enrolment wants fresh landmarks on every frame
        self._since_detect += 1
        self._since_scan += 1
        enrolling = self._enrol is not None
        scanned = self._since_scan >= self.scan_every or (
            not self.tracks and (enrolling or self._since_detect >= self.detect_every))
        refined = not scanned and bool(self.tracks) and (
            lost or enrolling or self._since_detect >= self.detect_every)
        if scanned:
            self._scan(img)
        elif refined:
            self._refine(img)
        detected = scanned or refined

        # 3. embed new / stale tracks that were just detected; enrolment shots
        embedded = 0
        if detected:
            embedded = self._embed(img, index, scanned)
            if enrolling:
                message = self._enrol_step(img, index) or message
        # 4. names from the mean embedding of each track
        for t in self.tracks:
            self._identify(t)
        faces = [LiveFace(t.id, t.box.copy(), t.name, t.distance, t.detected) for t in self.tracks]
        return FrameResult(index, w, h, faces, _ms(t0), detected=detected, embedded=embedded,
                           message=message)

    def _flow(self, prev: np.ndarray, gray: np.ndarray, fs: float, size: tuple[int, int]) -> bool:
        """Move each track's box by the median optical flow of corners inside it. Returns True if a
        track could not be followed (a detection is then run on this frame)."""
        import cv2

        pts, owner = [], []
        for k, t in enumerate(self.tracks):
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
            for k, t in enumerate(self.tracks):
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
        for t in self.tracks:
            cx, cy = (t.box[0] + t.box[2]) / 2, (t.box[1] + t.box[3]) / 2
            if not (0 <= cx < w and 0 <= cy < h):
                continue  # left the frame
            if not t.flow_ok:
                lost = True
            keep.append(t)
        if len(keep) != len(self.tracks):
            lost = True
        self.tracks = keep
        return lost

    def _scan(self, img: np.ndarray) -> None:
        """Full MTCNN detection on a downscaled copy; detections matched to tracks by IoU, the
        unmatched ones start new tracks."""
        import cv2

        h, w = img.shape[:2]
        self._since_detect = self._since_scan = 0
        self._scans += 1
        self.stats["scans"] += 1
        smallest = self.min_face_size
        if self.tracks and self._scans % self.full_scan_every:
            # faces are large: look for faces at least half the smallest tracked one
            smallest = max(smallest, 0.5 * min(t.width for t in self.tracks))
        if self._enrol is not None:
            smallest = min(smallest, 40.0)
        scale = min(1.0, DETECT_MIN_FACE / smallest)
        small = img if scale >= 1.0 else cv2.resize(
            img, (max(1, round(w * scale)), max(1, round(h * scale))), interpolation=cv2.INTER_AREA)
        faces = self.detector.detect(small, min_face_size=min(DETECT_MIN_FACE, smallest))
        if scale < 1.0:
            faces = [f.scaled(1.0 / scale) for f in faces]
        boxes = np.array([f.box for f in faces], np.float64).reshape(-1, 4)
        tboxes = np.array([t.box for t in self.tracks], np.float64).reshape(-1, 4)
        pairs = _greedy_match(iou_matrix(tboxes, boxes), self.iou_threshold)
        used_d = set()
        matched = {}
        for ti, di in pairs:
            matched[ti] = faces[di]
            used_d.add(di)
        self._update_tracks(matched)
        for di, f in enumerate(faces):
            if di in used_d:
                continue
            if self.tracks and iou_matrix(np.array([t.box for t in self.tracks]), f.box[None]).max() >= self.iou_threshold:
                continue  # a duplicate of a face already tracked
            self.tracks.append(Track(self._next_id, f.box.copy(), f.landmarks.copy(), f.confidence,
                                     embeddings=deque(maxlen=self.memory)))
            self._next_id += 1

    def _refine(self, img: np.ndarray) -> None:
        """Re-detect the tracked faces only: MTCNN's R-Net and O-Net on the carried boxes (no
        P-Net pyramid), which gives fresh boxes and landmarks for a fraction of a scan's cost."""
        faces = refine_faces(self.detector, img, [t.box for t in self.tracks])
        if faces is None:  # this detector cannot refine: scan instead
            self._scan(img)
            return
        self._since_detect = 0
        self.stats["refines"] += 1
        matched = {}
        for ti, (t, f) in enumerate(zip(self.tracks, faces)):
            if f is not None and iou(t.box, f.box) >= self.iou_threshold:
                matched[ti] = f
        self._update_tracks(matched)

    def _update_tracks(self, matched: dict) -> None:
        """Apply detections ``{track index: Face}``; unmatched tracks count a miss and are dropped
        after ``max_misses``; tracks that now cover the same face are merged (the older kept)."""
        keep = []
        for i, t in enumerate(self.tracks):
            f = matched.get(i)
            if f is not None:
                t.box, t.landmarks, t.confidence = f.box.copy(), f.landmarks.copy(), f.confidence
                t.misses, t.detected, t.flow_ok = 0, True, True
            else:
                t.misses += 1
                if t.misses > self.max_misses or not t.flow_ok:
                    # lost (fast motion, a cut, occlusion): scan on the next frame to find it again
                    self._since_scan = max(self._since_scan, self.scan_every - 1)
                    continue
            keep.append(t)
        out: list[Track] = []
        for t in sorted(keep, key=lambda t: t.id):
            if out and iou_matrix(np.array([o.box for o in out]), t.box[None]).max() > 0.6:
                continue
            out.append(t)
        self.tracks = out

    def _embed(self, img: np.ndarray, index: int, scanned: bool) -> int:
        """Embed the just-detected tracks that need it: every new track (up to
        ``max_embed_per_frame``), and one stale track per frame -- not on scan frames, so the
        cost of re-embedding is spread over cheap frames."""
        fresh = [t for t in self.tracks if t.detected]
        due = [t for t in fresh if not t.embeddings][: self.max_embed_per_frame]
        if not scanned and len(due) < self.max_embed_per_frame:
            stale = [t for t in fresh if t.embeddings and index - t.last_embed >= self.reembed_every]
            due += sorted(stale, key=lambda t: t.last_embed)[:1]
        if not due:
            return 0
        crops = np.stack([align_face(img, t.face()) for t in due])
        embs = self.embedder.embed(crops)
        for t, e in zip(due, embs):
            t.embeddings.append(e)
            t.last_embed = index
        self.stats["embedded"] += len(due)
        return len(due)

    def _enrol_step(self, img: np.ndarray, index: int) -> str:
        e = self._enrol
        detected = [t for t in self.tracks if t.detected]
        if not detected:
            return f"enrolling {e['name']}: no face in view ({len(e['embs'])}/{e['shots']} shots)"
        e["seen"] += 1
        if (e["seen"] - 1) % e["every"] == 0:
            t = max(detected, key=lambda t: t.width)
            if t.last_embed == index:  # embedded on this frame already
                e["embs"].append(t.embeddings[-1])
            else:
                e["embs"].append(self.embedder.embed(align_face(img, t.face())[None])[0])
        if len(e["embs"]) < e["shots"]:
            return f"enrolling {e['name']}: {len(e['embs'])}/{e['shots']} shots"
        self._enrol = None
        self.enroll(np.stack(e["embs"]), e["name"])
        saved = f", gallery saved to {self.gallery_path}" if self.gallery_path is not None else ""
        return f"enrolled {e['name']} ({e['shots']} shots){saved}"

    def _identify(self, t: Track) -> None:
        if not t.embeddings:
            t.name, t.distance = PENDING, float("nan")
            return
        key = (self._version, t.last_embed, len(t.embeddings))
        if key == t._ident_key:
            return
        t._ident_key = key
        if self.identifier is None or not self.names:
            t.name, t.distance = UNKNOWN, float("nan")
            return
        mean = np.mean(np.stack(t.embeddings), axis=0)
        mean = (mean / max(float(np.linalg.norm(mean)), 1e-12)).astype(np.float32)
        name, dist = _nearest(self.identifier, mean[None], self.threshold)
        t.name, t.distance = name, dist


# --- helpers ---------------------------------------------------------------------------------

def _greedy_match(m: np.ndarray, threshold: float) -> list[tuple[int, int]]:
    """Pairs (row, col) of an IoU matrix, highest overlap first, each row/col used once."""
    pairs, used_r, used_c = [], set(), set()
    if m.size:
        for flat in np.argsort(-m, axis=None):
            r, c = np.unravel_index(flat, m.shape)
            if m[r, c] < threshold:
                break
            if r in used_r or c in used_c:
                continue
            used_r.add(r)
            used_c.add(c)
            pairs.append((int(r), int(c)))
    return pairs


def refine_faces(detector: Detector, image: np.ndarray, boxes) -> list[Face | None] | None:
    """Re-detect faces near known boxes with MTCNN's last two stages only (R-Net, O-Net).

    Returns one :class:`Face` or None (no face there any more) per box, in frame pixels, or
    None when ``detector`` offers no way to do it (then scan instead). Uses
    ``detector.refine(image, boxes)`` when the detector has one, else its R-Net and O-Net
    (``detector.compiled_nets()``, the traced networks of a fast :class:`Detector`, or the eager
    Keras models of ``detector.mtcnn``) with mtcnn's own box arithmetic, as mtcnn's R-Net and
    O-Net stages do. Taught in notebook 06 (tracking).
    """
    fn = getattr(detector, "refine", None)
    if callable(fn):
        return fn(image, boxes)
    try:
        if callable(getattr(detector, "compiled_nets", None)):
            _, rnet, onet = detector.compiled_nets()  # traced once by the detector: ~10x eager speed
        else:
            rnet, onet = detector.mtcnn.stages[1]._model, detector.mtcnn.stages[2]._model
        from mtcnn.utils.bboxes import (adjust_bboxes, pick_matches, replace_confidence, resize_to_square,
                                        smart_nms_from_bboxes)
        from mtcnn.utils.images import extract_patches
        from mtcnn.utils.landmarks import adjust_landmarks
    except (AttributeError, IndexError, TypeError, ImportError):
        return None
    import contextlib

    import tensorflow as tf

    b = np.asarray(boxes, np.float64).reshape(-1, 4)
    if not len(b):
        return []
    img = np.asarray(image)
    h, w = img.shape[:2]
    centre = (b[:, :2] + b[:, 2:]) / 2
    side = (b[:, 2:] - b[:, :2]).max(axis=1) * 1.15  # a little wider: the face moved since
    rows = np.column_stack([np.zeros(len(b)), centre - side[:, None] / 2, centre + side[:, None] / 2,
                            np.ones(len(b))])
    x = tf.convert_to_tensor(((img.astype(np.float32) - 127.5) / 128.0)[None])
    th = getattr(detector, "thresholds", (0.6, 0.7, 0.7))
    lock = getattr(detector, "_lock", None) or contextlib.nullcontext()
    with lock:
        # R-Net (as mtcnn's StageRNet): re-score and regress the boxes at 24x24
        off, scores = rnet(extract_patches(x, rows, expected_size=(24, 24)))
        rows = replace_confidence(rows, scores)
        rows = adjust_bboxes(rows, off)
        rows = pick_matches(rows, score_threshold=th[1])
        if len(rows):
            rows = smart_nms_from_bboxes(rows, threshold=0.7, method="union", initial_sort=True)
            rows = resize_to_square(rows)
        if len(rows):
            # O-Net (as mtcnn's StageONet): 48x48, final box, five landmarks
            off, lms, scores = onet(extract_patches(x, rows, expected_size=(48, 48)))
            lms = adjust_landmarks(lms, rows)
            rows = replace_confidence(rows, scores)
            rows = adjust_bboxes(rows, off)
            rows = np.concatenate([rows, lms], axis=-1)
            rows = pick_matches(rows, scores_column=5, score_threshold=th[2])
            if len(rows):
                rows = smart_nms_from_bboxes(rows, threshold=0.7, method="min", initial_sort=True)
    out = np.asarray(rows, np.float64)
    out = out.reshape(-1, 16) if out.size and out.shape[-1] == 16 else np.empty((0, 16))
    faces = []
    for r in out:
        box = np.array([np.clip(r[1], 0, w - 1), np.clip(r[2], 0, h - 1), np.clip(r[3], 0, w - 1),
                        np.clip(r[4], 0, h - 1)], np.float32)
        faces.append(Face(box=box, landmarks=r[6:16].reshape(2, 5).T.astype(np.float32).copy(),
                          confidence=float(r[5])))
    result: list[Face | None] = [None] * len(b)
    fb = np.array([f.box for f in faces], np.float64).reshape(-1, 4)
    for bi, fi in _greedy_match(iou_matrix(b, fb), 0.2):
        result[bi] = faces[fi]
    return result


def _ms(t0: float) -> float:
    return (time.perf_counter() - t0) * 1000.0


def _check_name(name: str) -> str:
    name = str(name).strip()
    if not name or name in (UNKNOWN, PENDING):
        raise ValueError(f"enrolment needs a person's name (not empty, not {UNKNOWN!r}); got {name!r}")
    return name


def _as_frame(frame) -> np.ndarray:
    from .io import as_rgb

    if frame is None:
        raise ValueError("no frame (None): the camera or video returned nothing")
    arr = np.asarray(frame)
    if arr.size == 0:
        raise ValueError(f"empty frame of shape {arr.shape}")
    img = as_rgb(arr)
    if min(img.shape[:2]) < 8:
        raise ValueError(f"frame of {img.shape[1]}x{img.shape[0]} px is too small")
    return img


def _identifier_threshold(identifier) -> float | None:
    if identifier is None:
        return None
    v = getattr(identifier, "threshold_", None)
    if v is None:
        v = getattr(identifier, "threshold", None)
    return None if v is None else float(v)


def _nearest(identifier, embeddings: np.ndarray, threshold: float | None) -> tuple[str, float]:
    """Name and score of one embedding; ``threshold`` (None: the identifier's) decides "unknown".

    The identifier's closed-set name is asked for (``reject=False``), so the threshold can be
    moved live (the widget's slider) without refitting anything.
    """
    labels, scores = identifier.predict_scores(embeddings, reject=False)
    name, score = str(labels[0]), float(scores[0])
    th = _identifier_threshold(identifier) if threshold is None else threshold
    if th is not None and not score <= th:
        name = UNKNOWN
    return name, score


def stage_costs(frame: np.ndarray, recognizer: LiveRecognizer | None = None, repeat: int = 3) -> dict[str, float]:
    """Median milliseconds of each step of the loop on one frame (why tracking pays off).

    Keys: ``full detection`` (MTCNN at full resolution, min face 20 px: the naive loop),
    ``scan`` (downscaled, as :class:`LiveRecognizer` scans), ``refine`` (R-Net + O-Net on the
    found boxes), ``optical flow`` (carrying the boxes one frame), ``embed 1 face`` (align +
    FaceNet). Taught in notebook 06.
    """
    import cv2

    rec = recognizer or LiveRecognizer()
    img = _as_frame(frame)
    det, emb = rec.detector, rec.embedder

    def timed(fn) -> float:
        fn()  # warm-up (graph tracing)
        out = []
        for _ in range(max(1, repeat)):
            t0 = time.perf_counter()
            fn()
            out.append(_ms(t0))
        return float(np.median(out))

    faces = det.detect(img, min_face_size=20)
    scale = min(1.0, DETECT_MIN_FACE / rec.min_face_size)
    small = cv2.resize(img, None, fx=scale, fy=scale, interpolation=cv2.INTER_AREA) if scale < 1 else img
    costs = {"full detection": timed(lambda: det.detect(img, min_face_size=20)),
             "scan": timed(lambda: det.detect(small, min_face_size=DETECT_MIN_FACE))}
    if faces:
        costs["refine"] = timed(lambda: refine_faces(det, img, [f.box for f in faces]))
        probe = LiveRecognizer(rec.identifier, detector=det, embedder=emb)
        probe.process(img)
        costs["optical flow"] = timed(lambda: probe._flow(probe._prev_gray, probe._prev_gray, min(
            1.0, 320.0 / max(img.shape[:2])), (img.shape[1], img.shape[0])))
        costs["embed 1 face"] = timed(lambda: emb.embed(align_face(img, faces[0])[None]))
    return costs


# --- drawing and server-side sources ---------------------------------------------------------

_COLORS = {"known": (40, 200, 60), "unknown": (230, 60, 40), "pending": (240, 200, 0)}


def annotate(frame: np.ndarray, result: FrameResult, thickness: int = 2) -> np.ndarray:
    """A copy of ``frame`` with each face's box and name drawn (green known, red unknown, yellow
    not yet embedded), plus the latency. RGB ``uint8``. Taught in notebook 06."""
    import cv2

    out = np.ascontiguousarray(_as_frame(frame).copy())
    for f in result.faces:
        kind = "pending" if f.name == PENDING else "unknown" if f.name == UNKNOWN else "known"
        col = _COLORS[kind]
        x1, y1, x2, y2 = (int(round(v)) for v in f.box)
        cv2.rectangle(out, (x1, y1), (x2, y2), col, thickness)
        label = f.name if not math.isfinite(f.distance) else f"{f.name} {f.distance:.2f}"
        (tw, th), _ = cv2.getTextSize(label, cv2.FONT_HERSHEY_SIMPLEX, 0.5, 1)
        ty = max(y1, th + 6)
        cv2.rectangle(out, (x1, ty - th - 6), (x1 + tw + 4, ty), col, -1)
        cv2.putText(out, label, (x1 + 2, ty - 4), cv2.FONT_HERSHEY_SIMPLEX, 0.5, (0, 0, 0), 1, cv2.LINE_AA)
    cv2.putText(out, f"{result.latency_ms:.0f} ms", (6, out.shape[0] - 8), cv2.FONT_HERSHEY_SIMPLEX,
                0.5, (255, 255, 255), 1, cv2.LINE_AA)
    return out


@dataclass
class SourceSummary:
    """What :func:`run_source` measured: frames processed, fps, latencies (ms), names seen
    (counts over frames), the results, and a few annotated frames (``snapshots``)."""

    frames: int
    seconds: float
    latencies_ms: np.ndarray
    names: dict
    results: list
    snapshots: list
    bad_frames: int = 0

    @property
    def fps(self) -> float:
        return self.frames / self.seconds if self.seconds > 0 else 0.0

    @property
    def p95_latency_ms(self) -> float:
        return float(np.percentile(self.latencies_ms, 95)) if len(self.latencies_ms) else float("nan")

    def __str__(self) -> str:
        names = ", ".join(f"{k}: {v}" for k, v in sorted(self.names.items(), key=lambda kv: -kv[1]))
        return (f"{self.frames} frames in {self.seconds:.1f} s = {self.fps:.1f} fps; latency p95 "
                f"{self.p95_latency_ms:.0f} ms; bad frames {self.bad_frames}; names (frames): {names}")


def run_source(recognizer: LiveRecognizer, source, *, max_frames: int | None = None,
               display: bool = True, snapshots: int = 6, progress: bool = True,
               keep_results: bool = True) -> SourceSummary:
    """Run ``recognizer`` on a server-side source: a :class:`facekit.camera.VideoSource`, or
    anything :class:`~facekit.camera.VideoSource` opens (video file path, camera index, stream
    URL), or an iterable of RGB frames.

    With ``display`` an image widget shows the annotated frames as they are processed (about 10
    updates a second). ``snapshots`` annotated frames, evenly spread, are kept for plotting.
    Taught in notebook 06.
    """
    from .camera import VideoSource

    own = not isinstance(source, VideoSource) and isinstance(source, (str, int)) or hasattr(source, "__fspath__")
    src = VideoSource(source) if own else source
    total = max_frames
    if total is None and hasattr(src, "__len__"):
        try:
            total = len(src)
        except TypeError:
            total = None
    view = label = None
    if display:
        import ipywidgets as widgets
        from IPython.display import display as show

        view = widgets.Image(format="jpeg", layout=widgets.Layout(max_width="640px"))
        label = widgets.Label("starting...")
        show(widgets.VBox([view, label]))
    snap_at = set()
    if total and snapshots:
        snap_at = {int(round(x)) for x in np.linspace(0, total - 1, snapshots + 2)[1:-1]}
    results, shots, lat, names = [], [], [], {}
    bad = 0
    bar = None
    if progress:
        from tqdm.auto import tqdm

        bar = tqdm(total=total, desc="live", unit="frame")
    last_view = 0.0
    t_start = time.perf_counter()
    n = 0
    try:
        for frame in src:
            if max_frames is not None and n >= max_frames:
                break
            r = recognizer.process(frame)
            n += 1
            lat.append(r.latency_ms)
            bad += not r.ok
            for nm in set(r.names):
                names[nm] = names.get(nm, 0) + 1
            if keep_results:
                results.append(r)
            want_snap = (n - 1) in snap_at
            now = time.perf_counter()
            if want_snap or (view is not None and now - last_view > 0.1):
                ann = annotate(frame, r) if r.ok else None
                if want_snap and ann is not None:
                    shots.append((n - 1, ann))
                if view is not None and ann is not None:
                    view.value = encode_jpeg(ann, 80)
                    label.value = f"frame {n}: {r.latency_ms:.0f} ms, {', '.join(r.names) or 'no face'}"
                    last_view = now
            if bar is not None:
                bar.update(1)
    finally:
        if bar is not None:
            bar.close()
        if own:
            src.close()
    seconds = time.perf_counter() - t_start
    summary = SourceSummary(n, seconds, np.asarray(lat), names, results, shots, bad)
    if label is not None:
        label.value = str(summary)
    return summary


# --- a synthetic scene of sample-set people ---------------------------------------------------

@dataclass
class _Sprite:
    name: str
    image: np.ndarray      # RGB uint8 (s, s, 3): a square cut around the face
    face_box: np.ndarray   # float (4,) face box in sprite pixels
    alpha: np.ndarray      # float32 (s, s, 1) feathered elliptical mask


@dataclass
class _Actor:
    sprite: _Sprite
    start: int
    end: int
    lane: tuple[float, float]  # centre x range
    face_px: float              # mean face width in frame pixels
    phase: np.ndarray


class DemoScene:
    """A synthetic video: photos of sample-set people moving and zooming over a background.

    ``frame(i)`` renders RGB ``uint8 (H, W, 3)``; ``truth(i)`` is the list of ``(name, box)`` of
    the faces visible in frame i (box in frame pixels). Iterable and indexable; ``write(path)``
    saves an ``.mp4``/``.avi`` (OpenCV) or ``.y4m`` (the raw format Chromium's fake camera reads).
    Taught in notebook 06 (and used by bench/live.py and the tests).
    """

    def __init__(self, actors: list[_Actor], n_frames: int, size: tuple[int, int], fps: float, seed: int):
        self.actors = actors
        self.n_frames = int(n_frames)
        self.width, self.height = size
        self.fps = float(fps)
        rng = np.random.default_rng(seed)
        yy, xx = np.mgrid[0:self.height, 0:self.width].astype(np.float32)
        base = np.stack([60 + 60 * xx / self.width, 80 + 40 * yy / self.height,
                         110 - 30 * xx / self.width], axis=2)
        noise = rng.normal(0, 6, (self.height // 8 + 1, self.width // 8 + 1, 3)).astype(np.float32)
        import cv2

        noise = cv2.resize(noise, (self.width, self.height), interpolation=cv2.INTER_CUBIC)
        self.background = np.clip(base + noise, 0, 255).astype(np.uint8)

    def __len__(self) -> int:
        return self.n_frames

    @property
    def names(self) -> list[str]:
        return sorted({a.sprite.name for a in self.actors})

    def _placement(self, a: _Actor, i: int) -> tuple[float, float, float]:
        t = i / self.fps
        p = a.phase
        lo, hi = a.lane
        cx = (lo + hi) / 2 + (hi - lo) / 2 * 0.6 * math.sin(2 * math.pi * t / p[0] + p[1])
        cy = self.height * (0.5 + 0.12 * math.sin(2 * math.pi * t / p[2] + p[3]))
        face = a.face_px * (1.0 + 0.2 * math.sin(2 * math.pi * t / p[4] + p[5]))
        return cx, cy, face

    def truth(self, i: int) -> list[tuple[str, np.ndarray]]:
        out = []
        for a in self.actors:
            if a.start <= i < a.end:
                cx, cy, face = self._placement(a, i)
                s = face / (a.sprite.face_box[2] - a.sprite.face_box[0])
                fb = a.sprite.face_box
                fcx, fcy = (fb[0] + fb[2]) / 2, (fb[1] + fb[3]) / 2
                box = np.array([cx + (fb[0] - fcx) * s, cy + (fb[1] - fcy) * s,
                                cx + (fb[2] - fcx) * s, cy + (fb[3] - fcy) * s], np.float32)
                out.append((a.sprite.name, box))
        return out

    def frame(self, i: int) -> np.ndarray:
        import cv2

        img = self.background.astype(np.float32)
        for a in self.actors:
            if not a.start <= i < a.end:
                continue
            cx, cy, face = self._placement(a, i)
            sp = a.sprite
            s = face / (sp.face_box[2] - sp.face_box[0])
            side = max(2, int(round(sp.image.shape[0] * s)))
            im = cv2.resize(sp.image, (side, side), interpolation=cv2.INTER_AREA).astype(np.float32)
            al = cv2.resize(sp.alpha, (side, side), interpolation=cv2.INTER_LINEAR)[..., None]
            fb = sp.face_box * s
            x0 = int(round(cx - (fb[0] + fb[2]) / 2))
            y0 = int(round(cy - (fb[1] + fb[3]) / 2))
            xa, ya = max(0, x0), max(0, y0)
            xb, yb = min(self.width, x0 + side), min(self.height, y0 + side)
            if xb <= xa or yb <= ya:
                continue
            sub = (slice(ya - y0, yb - y0), slice(xa - x0, xb - x0))
            region = img[ya:yb, xa:xb]
            img[ya:yb, xa:xb] = region * (1 - al[sub]) + im[sub] * al[sub]
        return np.clip(img + 0.5, 0, 255).astype(np.uint8)

    def __getitem__(self, i: int) -> np.ndarray:
        if not -self.n_frames <= i < self.n_frames:
            raise IndexError(i)
        return self.frame(i % self.n_frames)

    def __iter__(self) -> Iterator[np.ndarray]:
        for i in range(self.n_frames):
            yield self.frame(i)

    def score(self, results: Sequence[FrameResult], enrolled: Iterable[str], min_iou: float = 0.3) -> dict:
        """How well ``results`` (one per frame, in order) named this scene's faces.

        A visible face is named right when a result face overlapping it (IoU >= ``min_iou``) has
        its name -- or ``"unknown"`` for a person not in ``enrolled``. Returns ``correct_rate``
        (frames with an enrolled face where *every* enrolled face is named right),
        ``face_correct_rate`` (per enrolled face), ``unknown_rate`` (strangers called unknown;
        nan without strangers), and the counts.
        """
        enrolled = set(enrolled)
        frames_ok = frames = faces_ok = faces = strangers = strangers_ok = 0
        for i, r in enumerate(results):
            truth = self.truth(i)
            if not truth:
                continue
            boxes = np.array([f.box for f in r.faces], np.float64).reshape(-1, 4)
            m = iou_matrix(np.array([b for _, b in truth]), boxes)
            frame_ok, any_known = True, False
            for k, (name, _) in enumerate(truth):
                j = int(np.argmax(m[k])) if m.shape[1] else -1
                got = r.faces[j].name if j >= 0 and m[k, j] >= min_iou else None
                if name in enrolled:
                    any_known = True
                    faces += 1
                    faces_ok += got == name
                    frame_ok &= got == name
                else:
                    strangers += 1
                    strangers_ok += got == UNKNOWN
            if any_known:
                frames += 1
                frames_ok += frame_ok
        nan = float("nan")
        return {"correct_rate": frames_ok / frames if frames else nan, "frames_with_enrolled": frames,
                "face_correct_rate": faces_ok / faces if faces else nan, "enrolled_faces": faces,
                "unknown_rate": strangers_ok / strangers if strangers else nan, "stranger_faces": strangers}

    def write(self, path, fps: float | None = None):
        """Save the scene as a video file; ``.y4m`` is written as raw I420 (YUV4MPEG2)."""
        from pathlib import Path

        from .camera import write_video

        return write_video(Path(path), iter(self), fps or self.fps, (self.width, self.height))


def _make_sprite(name: str, path, detector: Detector, context: float = 1.8) -> _Sprite | None:
    """Cut a square of ``context`` x the face size around the largest face of a photo."""
    import cv2

    from .io import load_image

    img = load_image(path)
    faces = detector.detect(img)
    if not faces:
        return None
    f = max(faces, key=lambda f: f.area)
    x1, y1, x2, y2 = (float(v) for v in f.box)
    side = int(round(max(x2 - x1, y2 - y1) * context))
    cx, cy = (x1 + x2) / 2, (y1 + y2) / 2
    ox, oy = int(round(cx - side / 2)), int(round(cy - side / 2))
    pad = side
    padded = cv2.copyMakeBorder(img, pad, pad, pad, pad, cv2.BORDER_REPLICATE)
    cut = padded[oy + pad: oy + pad + side, ox + pad: ox + pad + side]
    if cut.shape[:2] != (side, side):
        return None
    yy, xx = np.mgrid[0:side, 0:side].astype(np.float32)
    r = np.sqrt(((xx - side / 2) / (side / 2)) ** 2 + ((yy - side / 2) / (side / 2)) ** 2)
    alpha = np.clip((1.0 - r) / 0.25, 0, 1).astype(np.float32)
    return _Sprite(name, np.ascontiguousarray(cut), np.array([x1 - ox, y1 - oy, x2 - ox, y2 - oy]), alpha)


def make_demo_scene(people: Sequence[str] | None = None, *, split: str = "val", n_frames: int = 300,
                    size: tuple[int, int] = (640, 480), fps: float = 15.0,
                    face_px: float | Sequence[float] = 80.0, enter_exit: bool = True,
                    photos: dict | None = None, seed: int = 0, detector: Detector | None = None) -> DemoScene:
    """A :class:`DemoScene` of 1-3 sample-set people (their ``split`` photos), each in its own
    lane, entering and leaving at different times (so some frames hold 1, 2 or 3 faces, and
    the first and last few frames none). Taught in notebook 06.

    people : sample-set names (default: the first 3 in alphabetical order); ``photos`` may map a
        name to an explicit image path instead (e.g. an LFW stranger).
    face_px : mean face width in pixels (faces zoom +-20% around it), or one per person.
    enter_exit : people enter and leave at different times (default); False: everyone is
        visible in every frame (e.g. a looping fake webcam).
    """
    from .registry import celebrity_dir

    rng = np.random.default_rng(seed)
    det = detector or get_detector()
    photos = dict(photos or {})
    if people is None:
        people = sorted(p.name for p in (celebrity_dir() / split).iterdir() if p.is_dir())[:3]
    people = list(people)
    if not 1 <= len(people) <= 3:
        raise ValueError(f"a demo scene holds 1 to 3 people, got {len(people)}")
    sprites = []
    for name in people:
        if name in photos:
            cands = [photos[name]]
        else:
            folder = celebrity_dir() / split / name
            if not folder.is_dir():
                raise ValueError(f"{name!r} is not in the sample set's {split} split ({folder})")
            cands = sorted(folder.glob("*.jpg"))
            rng.shuffle(cands)
        sprite = None
        for c in cands:
            sprite = _make_sprite(name, c, det)
            if sprite is not None:
                break
        if sprite is None:
            raise ValueError(f"no photo of {name!r} with a detectable face")
        sprites.append(sprite)
    k = len(sprites)
    w, h = size
    sizes = [float(face_px)] * k if np.isscalar(face_px) else [float(v) for v in face_px]
    if len(sizes) != k:
        raise ValueError(f"face_px has {len(sizes)} sizes for {k} people")
    actors = []
    for i, (sp, fpx) in enumerate(zip(sprites, sizes)):
        lane = (w * i / k + fpx * 0.7, w * (i + 1) / k - fpx * 0.7)
        if lane[1] < lane[0]:
            lane = ((lane[0] + lane[1]) / 2,) * 2
        start, end = 0, n_frames
        if enter_exit:
            start = int(round(n_frames * (0.03 + 0.12 * i)))
            end = int(round(n_frames * (0.97 - 0.08 * i)))
        phase = np.array([rng.uniform(4, 7), rng.uniform(0, 6.3), rng.uniform(3, 6), rng.uniform(0, 6.3),
                          rng.uniform(5, 9), rng.uniform(0, 6.3)])
        actors.append(_Actor(sp, start, end, lane, fpx, phase))
    return DemoScene(actors, n_frames, size, fps, seed)
