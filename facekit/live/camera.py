"""The browser's webcam as a widget for live recognition (notebook 06).

Taught in notebook 06. (Server-side frames -- :class:`VideoSource`, :func:`write_video`,
:func:`write_y4m` -- live in :mod:`facekit.live.video`, which imports no widget library; they are
re-exported here for compatibility.)

- :class:`CameraWidget` (anywidget): the browser captures the webcam with ``getUserMedia`` -- so
  it works when the kernel runs on another machine -- and sends JPEG frames to Python as binary
  buffers of custom messages. At most one frame is in flight per view: the browser sends the next
  frame only when Python has answered the previous one, and a frame that arrives while Python is
  busy (another view, a slow kernel) is dropped with a ``dropped`` answer, never queued. Results
  come back as small JSON (boxes, names, distances) drawn on a canvas over the live video, so the
  video stays smooth whatever the recognition rate. The widget shows processed fps and latency,
  a start/stop button, the "unknown" threshold, an enrolment form, and clear messages when the
  camera permission is denied, there is no camera, or the page is not a secure context.
"""

from __future__ import annotations

import threading
import time
from pathlib import Path

import anywidget
import traitlets

from facekit.live.video import VideoSource, write_video, write_y4m

__all__ = ["CameraWidget", "VideoSource", "write_video", "write_y4m"]

_STATIC = Path(__file__).parent / "static"


class CameraWidget(anywidget.AnyWidget):
    """Webcam in the browser -> ``recognizer`` in Python -> boxes and names over the video.

    Taught in notebook 06.

    Parameters
    ----------
    recognizer : anything with ``process_jpeg(bytes) -> result`` where ``result.to_json()`` is a
        dict with ``width``, ``height`` and ``faces`` (each ``box``, ``name``, ``distance``) --
        e.g. a :class:`facekit.live.LiveRecognizer`. If it has ``threshold``, ``names`` and
        ``start_enrolment(name, shots)`` (or the older ``start_enrollment``), the widget's slider
        and enrolment form drive them; the slider starts at the recogniser's threshold.
    threaded : process frames in a worker thread (default True) so the kernel stays responsive
        and frames arriving while a frame is being processed are dropped at once. ``False``
        processes in the message handler (simpler, for debugging).

    Synced traits: ``running`` (camera on), ``threshold`` (default: the recogniser's, else the
    model's calibrated "unknown" threshold), ``width`` (capture width in pixels,
    default 640), ``jpeg_quality`` (0-1), ``max_fps`` (frames sent per second at most),
    ``mirror`` (selfie view), ``shots`` (enrolment shots), ``status`` (Python -> page line),
    ``error`` (page -> Python: the camera error shown, empty when fine), ``names`` (gallery).
    ``stats``: frames received / processed / dropped / failed, and the last processing time.
    """

    _esm = _STATIC / "camera.js"
    _css = _STATIC / "camera.css"

    running = traitlets.Bool(False).tag(sync=True)
    threshold = traitlets.Float().tag(sync=True)  # default: _default_threshold
    threshold_max = traitlets.Float(2.0).tag(sync=True)
    width = traitlets.Int(640).tag(sync=True)
    jpeg_quality = traitlets.Float(0.8).tag(sync=True)
    max_fps = traitlets.Float(30.0).tag(sync=True)
    mirror = traitlets.Bool(True).tag(sync=True)
    shots = traitlets.Int(5).tag(sync=True)
    status = traitlets.Unicode("").tag(sync=True)
    error = traitlets.Unicode("").tag(sync=True)
    names = traitlets.List(traitlets.Unicode()).tag(sync=True)

    def __init__(self, recognizer=None, *, threaded: bool = True, **kwargs):
        self.recognizer = recognizer  # before the traits: the threshold observer uses it
        super().__init__(**kwargs)
        self.threaded = bool(threaded)
        self.stats = {"received": 0, "processed": 0, "dropped": 0, "failed": 0, "last_ms": 0.0,
                      "max_pending": 0}
        self.last_result: dict | None = None
        self._busy = threading.Lock()   # held while a frame is processed
        self._wake = threading.Condition()
        self._pending: tuple[dict, bytes] | None = None  # at most ONE frame, being handed over
        self._closed = False
        self._worker: threading.Thread | None = None
        self._sync_names()
        self.on_msg(self._on_custom)

    @traitlets.default("threshold")
    def _default_threshold(self) -> float:
        """The slider starts where the recogniser is (not a value of the widget's own)."""
        thr = getattr(getattr(self, "recognizer", None), "threshold", None)
        if thr is None:
            from facekit.models.registry import model_spec

            thr = model_spec().require_thresholds().unknown
        return float(thr)

    # -- messages from the page ---------------------------------------------------------------
    @traitlets.observe("threshold")
    def _threshold_changed(self, change) -> None:
        rec = getattr(self, "recognizer", None)
        if rec is not None and hasattr(rec, "threshold") and rec.threshold != float(change["new"]):
            rec.threshold = float(change["new"])

    def _on_custom(self, _widget, content: dict, buffers: list) -> None:
        kind = content.get("type") if isinstance(content, dict) else None
        if kind == "frame":
            data = bytes(buffers[0]) if buffers else b""
            self.offer_frame(data, content)
        elif kind in ("enrol", "enroll"):  # the page sends "enroll"
            self._enrol(content.get("name", ""), content.get("shots", self.shots), content.get("consent"))

    def offer_frame(self, data: bytes, meta: dict | None = None) -> bool:
        """Hand one JPEG frame to the recogniser. Returns False (and answers ``dropped``) when a
        frame is already being processed: frames are dropped, never queued."""
        meta = dict(meta or {})
        self.stats["received"] += 1
        if not self.threaded:
            self._run_one(meta, data)
            return True
        with self._wake:
            if self._pending is not None or self._busy.locked():
                self.stats["dropped"] += 1
                self._reply({"type": "dropped", "id": meta.get("id"), "view": meta.get("view")})
                return False
            self._pending = (meta, data)
            self.stats["max_pending"] = max(self.stats["max_pending"], 1)
            self._wake.notify()
        self._ensure_worker()
        return True

    def _ensure_worker(self) -> None:
        if self._worker is None or not self._worker.is_alive():
            self._worker = threading.Thread(target=self._loop, name="facekit-camera", daemon=True)
            self._worker.start()

    def _loop(self) -> None:
        while True:
            with self._wake:
                while self._pending is None and not self._closed:
                    self._wake.wait(1.0)
                if self._closed:
                    return
                self._busy.acquire()  # taken before the slot is freed: no frame slips in
                meta, data = self._pending
                self._pending = None
            try:
                self._run_one(meta, data)
            finally:
                with self._wake:
                    self._busy.release()
                    self._wake.notify_all()  # wakes wait_idle()

    def _run_one(self, meta: dict, data: bytes) -> None:
        t0 = time.perf_counter()
        reply = {"type": "result", "id": meta.get("id"), "view": meta.get("view")}
        try:
            if self.recognizer is None:
                raise RuntimeError("no recogniser attached (CameraWidget(recognizer=...))")
            result = self.recognizer.process_jpeg(data)
            out = result.to_json() if hasattr(result, "to_json") else dict(result)
            reply.update(out)
            if not out.get("ok", True):
                self.stats["failed"] += 1
        except Exception as exc:  # noqa: BLE001 - the page must always get an answer
            self.stats["failed"] += 1
            reply.update({"faces": [], "ok": False, "message": f"{type(exc).__name__}: {exc}"})
        ms = (time.perf_counter() - t0) * 1000.0
        reply["server_ms"] = round(ms, 1)
        self.stats["processed"] += 1
        self.stats["last_ms"] = ms
        self.last_result = reply
        self._sync_names()
        self._reply(reply)

    def _reply(self, content: dict) -> None:
        try:
            self.send(content)
        except Exception:  # noqa: BLE001 - a closed comm must not kill the worker
            pass

    def _enrol(self, name: str, shots, consent=None) -> None:
        if not (isinstance(consent, str) and consent.strip()):
            # the page asks before the first shot; a message without it is refused here too
            self.status = "cannot enrol: tick the consent box first (the person agrees to have their face stored)"
            return
        start = getattr(self.recognizer, "start_enrolment", None)
        if start is None:
            self.status = "this recogniser cannot enrol people"
            return
        try:
            start(str(name), int(shots), consent=consent.strip()[:500])
        except (ValueError, TypeError) as exc:
            self.status = f"cannot enrol: {exc}"
            return
        self.status = f"enrolling {str(name).strip()}: look at the camera"

    def _sync_names(self) -> None:
        names = getattr(self.recognizer, "names", None)
        if names is not None:
            names = sorted(str(n) for n in names)
            if names != list(self.names):
                self.names = names

    # -- life cycle -------------------------------------------------------------------------
    @property
    def pending(self) -> int:
        """Frames waiting to be processed (0 or 1; never grows)."""
        return 0 if self._pending is None else 1

    def wait_idle(self, timeout: float = 10.0) -> bool:
        """Block until no frame is pending or being processed (tests, notebooks)."""
        with self._wake:
            return self._wake.wait_for(lambda: self._pending is None and not self._busy.locked(), timeout)

    def close(self) -> None:
        with self._wake:
            self._closed = True
            self._wake.notify_all()
        super().close()
