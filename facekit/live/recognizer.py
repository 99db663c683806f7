"""Live recognition: detect -> align -> embed -> identify on a stream of frames (notebook 06).

Running MTCNN and FaceNet on every face of every frame is far too slow for live video on a CPU
(a few frames per second), so :class:`LiveRecognizer` does the expensive work only when needed:

- **Tracking** (a :class:`~facekit.live.tracking.Tracker`; by default optical flow, about a
  millisecond) carries each face's box between detections and keeps its identity (its *track*).
- **Detection** comes in two kinds. A *scan* (MTCNN on the whole frame, to find new faces) runs
  every ``scan_every`` frames, on a *downscaled* copy: MTCNN keeps its native 20-pixel minimum
  face on a frame shrunk so that the smallest face looked for becomes ~20 px (``min_face_size``,
  or half the smallest tracked face when faces are large). A *refine*
  (:meth:`facekit.detection.detector.Detector.refine`: R-Net and O-Net on the tracked boxes, no image
  pyramid, a fraction of a scan's cost) runs every ``detect_every`` frames and when the tracker
  cannot follow a face, to correct drift and give fresh landmarks for alignment.
- **Embedding** happens when a track is new and then every ``reembed_every`` frames; the track's
  name comes from the mean of its last ``memory`` embeddings, so one blurry frame does not flip a
  name. A face whose embeddings never come within the threshold of the gallery stays ``unknown``.

Bad frames (``None``, empty, black, corrupt JPEG, another size) never raise: the result carries a
message and the loop goes on.
"""

from __future__ import annotations

import threading
import time
from typing import Iterable

import numpy as np

from facekit.detection.align import align_face, align_for
from facekit.detection.detector import Detector, get_detector
from facekit.embedding.embedder import Embedder, get_embedder
from facekit.models.registry import spec_name
from facekit.recognition.identify import FaceIdentifier, check_same_model
from facekit.core.names import check_name
from facekit.live.naming import TrackName, gallery_threshold
from facekit.live.results import FrameResult, LiveFace
from facekit.live.tracking import FlowTracker, Track, Tracker
from facekit.live.video import as_frame, decode_jpeg

__all__ = ["LiveRecognizer", "DETECT_MIN_FACE"]

DETECT_MIN_FACE = 20.0  # MTCNN's native minimum face (pixels of the frame it runs on)


class LiveRecognizer:
    """Recognise faces on a stream of frames, tracking them so each face is embedded rarely.

    Taught in notebook 06. ``process(frame)`` / ``process_jpeg(bytes)`` -> :class:`FrameResult`.

    Parameters
    ----------
    identifier : a fitted :class:`facekit.recognition.identify.FaceIdentifier` (the gallery of notebook 04),
        or None to start with an empty gallery (every face "unknown" until someone enrols).
    threshold : squared-L2 distance above which a face is "unknown"; None uses the identifier's,
        or without an identifier the model's calibrated one
        (``facekit.models.registry.model_spec(model).thresholds.unknown``, 0.8 for facenet128).
    min_face_size : smallest face (frame pixels) looked for by the scanning detections (default
        40: webcam faces are large; use 20 for a far-away camera).
    detect_every : refine the tracked faces every N frames (default 3); frames in between only
        carry the boxes with the tracker (a few milliseconds).
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
    iou_threshold, max_misses : of the default :class:`~facekit.live.tracking.FlowTracker`
        (ignored when ``tracker`` is given).
    store : a :class:`facekit.store.db.FaceStore`: every enrolment is also added to it, in one
        transaction, the moment it happens (the same store notebooks 04-07 and the ``facekit``
        command use), so a webcam enrolment survives the kernel. Recommended.
    gallery_path : (older way) a gallery ``.npz`` that :meth:`enrol` keeps up to date. An existing
        file is never overwritten with less: with ``identifier=None`` it is loaded and enrolments
        are added to it; with another identifier it is refused (pass
        ``FaceIdentifier.load(path)``). Two kernels sharing one file would still race: use ``store``.
    tracker : any :class:`~facekit.live.tracking.Tracker` (default: a new ``FlowTracker``).
    """

    def __init__(self, identifier=None, *, threshold: float | None = None, min_face_size: float = 40,
                 detect_every: int = 3, scan_every: int = 10, reembed_every: int = 45, memory: int = 5,
                 iou_threshold: float = 0.3, max_misses: int = 2, max_embed_per_frame: int = 3,
                 full_scan_every: int = 2, gallery_path=None, detector: Detector | None = None,
                 embedder: Embedder | None = None, tracker: Tracker | None = None, store=None):
        counts = dict(detect_every=detect_every, scan_every=scan_every, full_scan_every=full_scan_every,
                      reembed_every=reembed_every, memory=memory, max_embed_per_frame=max_embed_per_frame)
        bad = {k: v for k, v in counts.items() if int(v) < 1}
        if bad:
            raise ValueError(f"these must be >= 1: {bad}")
        if gallery_path is not None and FaceIdentifier.npz_path(gallery_path).exists():
            if identifier is not None:
                raise ValueError(f"{FaceIdentifier.npz_path(gallery_path)} already holds a gallery; enrolments would "
                                 "replace it with this identifier's people. Fix: pass "
                                 "identifier=FaceIdentifier.load(path) to add to it, another gallery_path, or use store=")
            identifier = FaceIdentifier.load(gallery_path)
        self.identifier = identifier
        self.store = store
        self._threshold = None if threshold is None else float(threshold)
        self.min_face_size = float(min_face_size)
        self.detect_every = int(detect_every)
        self.scan_every = int(scan_every)
        self.reembed_every = int(reembed_every)
        self.memory = int(memory)
        self.max_embed_per_frame = int(max_embed_per_frame)
        self.full_scan_every = int(full_scan_every)
        self.gallery_path = gallery_path
        self.tracker: Tracker = tracker if tracker is not None else FlowTracker(
            iou_threshold=iou_threshold, max_misses=max_misses)
        self._detector = detector
        self._embedder = embedder
        check_same_model(identifier, embedder, "LiveRecognizer")
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
        """The embedder (default: the one of the identifier's model, else facenet128's)."""
        if self._embedder is None:
            model = getattr(self.identifier, "model", None)
            self._embedder = get_embedder(spec_name(model))
        return self._embedder

    def _crop(self, img: np.ndarray, face) -> np.ndarray:  # the model's crop (FaceNet's, or dlib's chip)
        kind = self.embedder.spec.crop
        return align_face(img, face) if kind == "facenet" else align_for(kind, img, [face])[0]

    @property
    def threshold(self) -> float:
        """The "unknown" threshold in use (squared L2): the one set here, else the identifier's,
        else the embedding model's calibrated one (error for a model nobody calibrated)."""
        if self._threshold is not None:
            return self._threshold
        own = gallery_threshold(self.identifier)
        if own is not None:
            return own
        return float(self.embedder.thresholds.unknown)  # the model's own (int8 has its own); no model load

    @threshold.setter
    def threshold(self, value: float | None) -> None:
        with self._lock:
            self._threshold = None if value is None else float(value)
            self._version += 1

    @property
    def names(self) -> list[str]:
        """Names in the gallery."""
        return [] if self.identifier is None else list(self.identifier.names)

    @property
    def tracks(self) -> list[Track]:
        """The faces tracked now (the tracker's view; read only)."""
        return list(self.tracker.tracks)

    def set_identifier(self, identifier) -> None:
        """Swap the gallery; faces on screen are re-identified from their stored embeddings."""
        check_same_model(identifier, self._embedder, "LiveRecognizer")
        with self._lock:
            self.identifier = identifier
            self._version += 1

    def reset(self) -> None:
        """Forget all tracks and counters (e.g. when the source changes)."""
        with self._lock:
            self.tracker.reset()
            self._ids: dict[int, TrackName] = {}  # what is known of each track id
            self._frame_index = 0
            self._restart()
            self._scans = 0
            self._shape: tuple[int, int] | None = None
            self.stats = {"frames": 0, "bad_frames": 0, "scans": 0, "refines": 0, "embedded": 0, "errors": 0,
                          "last_error": ""}

    def _restart(self) -> None:
        """Drop the tracks; detect on the next frame."""
        self.tracker.reset()
        self._ids = {}
        self._since_detect = self._since_scan = 10**9

    # -- enrolment ----------------------------------------------------------------------------
    def start_enrolment(self, name: str, shots: int = 5, every: int = 2, *, consent: str | None = None) -> None:
        """Enrol ``name`` from the next frames: the largest face of every ``every``-th frame with a
        face is embedded until ``shots`` are collected, then :meth:`enrol` is called, so the
        person is recognised on the very next frame. Progress shows in ``FrameResult.message``.
        ``consent``: the note stored with the person in ``store`` (the widget asks for consent
        before the first shot; see notebook A3)."""
        name = _check_name(name)
        if shots < 1:
            raise ValueError(f"shots must be >= 1, got {shots}")
        with self._lock:
            self._enrol = {"name": name, "shots": int(shots), "every": max(1, int(every)),
                           "embs": [], "seen": 0, "consent": consent}

    def cancel_enrolment(self) -> None:
        """Stop an enrolment started by :meth:`start_enrolment` (nothing is added)."""
        with self._lock:
            self._enrol = None

    @property
    def enrolling(self) -> str | None:
        """Name being enrolled, or None."""
        return None if self._enrol is None else self._enrol["name"]

    def enrol(self, embeddings: np.ndarray, name: str, *, consent: str | None = None):
        """Add ``embeddings (N, d)`` of ``name`` to the gallery (a new person or more shots); also to
        ``store`` (one transaction, source "camera") and ``gallery_path`` when set. Returns the
        identifier. A bad name or bad values raise ``ValueError`` before anything is changed."""
        name = _check_name(name)
        embs = np.asarray(embeddings, np.float32)
        if embs.ndim != 2 or len(embs) == 0:
            raise ValueError(f"need embeddings of shape (N, d) with N >= 1, got {embs.shape}")
        if not np.isfinite(embs).all():
            raise ValueError(f"the embeddings of {name!r} hold NaN or inf; nothing was enrolled")
        with self._lock:
            if self.store is not None:  # first: if the store refuses, the gallery stays as it was
                self.store.add_faces(name, embs, model=self.embedder, sources="camera", consent=consent)
            if self.identifier is None:
                self.identifier = FaceIdentifier(threshold=self._threshold, model=self.embedder.fingerprint).fit(
                    embs, [name] * len(embs))
            else:
                self.identifier.enroll(embs, name)
            self._version += 1
            if self.gallery_path is not None:
                self.identifier.save(self.gallery_path)
            return self.identifier

    def enrol_frames(self, frames: Iterable[np.ndarray], name: str) -> int:
        """Enrol ``name`` from the largest face of each frame (e.g. webcam shots); returns how many
        frames had a face. Raises ``ValueError`` if none had."""
        crops = []
        for frame in frames:
            img = as_frame(frame)
            faces = self.detector.detect(img, min_face_size=min(self.min_face_size, 40))
            if faces:
                crops.append(self._crop(img, max(faces, key=lambda f: f.area)))
        if not crops:
            raise ValueError(f"no face found in the frames given to enrol {name!r}: "
                             "look at the camera, with your face well lit and at least 40 px wide")
        self.enrol(self.embedder.embed(np.stack(crops)), name)
        return len(crops)

    # the American spellings, public before the API settled on "enrol"
    start_enrollment = start_enrolment
    cancel_enrollment = cancel_enrolment
    enroll = enrol
    enroll_frames = enrol_frames

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
            img = as_frame(frame)
        except Exception as exc:  # noqa: BLE001
            return self._bad_frame(str(exc), t0)
        with self._lock:
            try:
                return self._process(img, t0)
            except Exception as exc:  # noqa: BLE001 - never crash the live loop
                self.stats["errors"] += 1
                self.stats["last_error"] = f"{type(exc).__name__}: {exc}"
                self._restart()
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
        index = self._next_index()
        self.stats["frames"] += 1
        h, w = img.shape[:2]
        message = ""
        if self._shape is not None and self._shape != (h, w):
            self._restart()
            message = f"frame size changed to {w}x{h}: tracking restarted"
        self._shape = (h, w)

        # 1. the tracker carries the boxes to this frame
        lost = self.tracker.follow(img)

        # 2. detect when due (or needed): a full scan finds new faces, a refine re-detects the
        #    tracked ones (cheap); enrolment wants fresh landmarks on every frame
        self._since_detect += 1
        self._since_scan += 1
        enrolling = self._enrol is not None
        tracked = bool(self.tracker.tracks)
        scanned = self._since_scan >= self.scan_every or (
            not tracked and (enrolling or self._since_detect >= self.detect_every))
        refined = not scanned and tracked and (lost or enrolling or self._since_detect >= self.detect_every)
        if refined and not self._refine(img):
            scanned, refined = True, False  # a detector that cannot refine: scan instead
        if scanned:
            self._scan(img)
        detected = scanned or refined

        # 3. embed new / stale tracks that were just detected; enrolment shots
        tracks = list(self.tracker.tracks)
        live = {t.id for t in tracks}
        self._ids = {k: v for k, v in self._ids.items() if k in live}
        for t in tracks:
            if t.id not in self._ids:
                self._ids[t.id] = TrackName.empty(self.memory)
        embedded = 0
        if detected:
            embedded = self._embed(img, tracks, index, scanned)
            if enrolling:
                message = self._enrol_step(img, tracks, index) or message
        # 4. names from the mean embedding of each track
        faces = []
        for t in tracks:
            ident = self._ids[t.id]
            ident.update(self.identifier, self.threshold, self._version)
            faces.append(LiveFace(t.id, np.array(t.box, np.float32), ident.name, ident.distance, bool(t.detected)))
        return FrameResult(index, w, h, faces, _ms(t0), detected=detected, embedded=embedded,
                           message=message)

    def scan_scale(self, width: float | None = None) -> tuple[float, float]:
        """``(scale, min_face)`` of a scan: the frame is resized by ``scale`` so that the smallest
        face looked for (``width`` px, default ``min_face_size``) becomes MTCNN's native 20 px,
        and ``min_face`` is the detector's minimum face on that copy."""
        smallest = self.min_face_size if width is None else float(width)
        return min(1.0, DETECT_MIN_FACE / smallest), min(DETECT_MIN_FACE, smallest)

    def _scan(self, img: np.ndarray) -> None:
        """Full MTCNN detection on a downscaled copy, handed to the tracker."""
        import cv2

        h, w = img.shape[:2]
        self._since_detect = self._since_scan = 0
        self._scans += 1
        self.stats["scans"] += 1
        tracks = self.tracker.tracks
        smallest = self.min_face_size
        if tracks and self._scans % self.full_scan_every:
            # faces are large: look for faces at least half the smallest tracked one
            smallest = max(smallest, 0.5 * min(t.width for t in tracks))
        if self._enrol is not None:
            smallest = min(smallest, 40.0)
        scale, min_face = self.scan_scale(smallest)
        small = img if scale >= 1.0 else cv2.resize(
            img, (max(1, round(w * scale)), max(1, round(h * scale))), interpolation=cv2.INTER_AREA)
        faces = self.detector.detect(small, min_face_size=min_face)
        if scale < 1.0:
            faces = [f.scaled(1.0 / scale) for f in faces]
        if self.tracker.update(faces):
            self._since_scan = max(self._since_scan, self.scan_every - 1)  # lost one: scan next frame

    def _refine(self, img: np.ndarray) -> bool:
        """Re-detect the tracked faces only (:meth:`Detector.refine`: R-Net and O-Net on the
        tracked boxes, no P-Net pyramid): fresh boxes and landmarks for a fraction of a scan.
        Returns False when the detector cannot refine (then the caller scans)."""
        boxes = [np.asarray(t.box, np.float32) for t in self.tracker.tracks]
        refine = getattr(self.detector, "refine", None)
        if not callable(refine):
            return False
        faces = refine(img, boxes)
        self._since_detect = 0
        self.stats["refines"] += 1
        if self.tracker.update(faces, per_track=True):
            self._since_scan = max(self._since_scan, self.scan_every - 1)  # lost one: scan next frame
        return True

    def _embed(self, img: np.ndarray, tracks: list[Track], index: int, scanned: bool) -> int:
        """Embed the just-detected tracks that need it: every new track (up to
        ``max_embed_per_frame``), and one stale track per frame -- not on scan frames, so the
        cost of re-embedding is spread over cheap frames."""
        fresh = [t for t in tracks if t.detected]
        due = [t for t in fresh if not self._ids[t.id].embeddings][: self.max_embed_per_frame]
        if not scanned and len(due) < self.max_embed_per_frame:
            stale = [t for t in fresh if self._ids[t.id].embeddings
                     and index - self._ids[t.id].last_embed >= self.reembed_every]
            due += sorted(stale, key=lambda t: self._ids[t.id].last_embed)[:1]
        if not due:
            return 0
        crops = np.stack([self._crop(img, t.face()) for t in due])
        embs = self.embedder.embed(crops)
        for t, e in zip(due, embs):
            self._ids[t.id].add(e, index)
        self.stats["embedded"] += len(due)
        return len(due)

    def _enrol_step(self, img: np.ndarray, tracks: list[Track], index: int) -> str:
        e = self._enrol
        detected = [t for t in tracks if t.detected]
        if not detected:
            return f"enrolling {e['name']}: no face in view ({len(e['embs'])}/{e['shots']} shots)"
        e["seen"] += 1
        if (e["seen"] - 1) % e["every"] == 0:
            t = max(detected, key=lambda t: t.width)
            ident = self._ids[t.id]
            if ident.last_embed == index:  # embedded on this frame already
                e["embs"].append(ident.embeddings[-1])
            else:
                e["embs"].append(self.embedder.embed(self._crop(img, t.face())[None])[0])
        if len(e["embs"]) < e["shots"]:
            return f"enrolling {e['name']}: {len(e['embs'])}/{e['shots']} shots"
        self._enrol = None
        self.enrol(np.stack(e["embs"]), e["name"], consent=e.get("consent"))
        saved = f", gallery saved to {self.gallery_path}" if self.gallery_path is not None else ""
        return f"enrolled {e['name']} ({e['shots']} shots){saved}"


# --- helpers ---------------------------------------------------------------------------------

def _ms(t0: float) -> float:
    return (time.perf_counter() - t0) * 1000.0


def _check_name(name: str) -> str:
    """The one name check of :func:`facekit.core.names.check_name` (no path parts, control characters,
    reserved words such as "unknown"; a length cap), for names typed into the webcam form."""
    return check_name(name)
