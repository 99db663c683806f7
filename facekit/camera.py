"""Frame sources for live recognition: the browser's webcam (a widget) and OpenCV (server side).

Taught in notebook 06.

- :class:`CameraWidget` (anywidget): the browser captures the webcam with ``getUserMedia`` -- so
  it works when the kernel runs on another machine -- and sends JPEG frames to Python as binary
  buffers of custom messages. At most one frame is in flight per view: the browser sends the next
  frame only when Python has answered the previous one, and a frame that arrives while Python is
  busy (another view, a slow kernel) is dropped with a ``dropped`` answer, never queued. Results
  come back as small JSON (boxes, names, distances) drawn on a canvas over the live video, so the
  video stays smooth whatever the recognition rate. The widget shows processed fps and latency,
  a start/stop button, the "unknown" threshold, an enrolment form, and clear messages when the
  camera permission is denied, there is no camera, or the page is not a secure context.
- :class:`VideoSource`: a video file, a camera index or a stream URL read by OpenCV on the
  machine running the kernel. Live sources keep only the newest frame (older ones are dropped).
- :func:`write_video`: frames to ``.mp4``/``.avi`` (OpenCV) or ``.y4m`` (Chromium's fake camera).
"""

from __future__ import annotations

import os
import threading
import time
from pathlib import Path
from typing import Iterable, Iterator

import anywidget
import numpy as np
import traitlets

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
        ``start_enrollment(name, shots)``, the widget's slider and enrolment form drive them.
    threaded : process frames in a worker thread (default True) so the kernel stays responsive
        and frames arriving while a frame is being processed are dropped at once. ``False``
        processes in the message handler (simpler, for debugging).

    Synced traits: ``running`` (camera on), ``threshold``, ``width`` (capture width in pixels,
    default 640), ``jpeg_quality`` (0-1), ``max_fps`` (frames sent per second at most),
    ``mirror`` (selfie view), ``shots`` (enrolment shots), ``status`` (Python -> page line),
    ``error`` (page -> Python: the camera error shown, empty when fine), ``names`` (gallery).
    ``stats``: frames received / processed / dropped / failed, and the last processing time.
    """

    _esm = _STATIC / "camera.js"
    _css = _STATIC / "camera.css"

    running = traitlets.Bool(False).tag(sync=True)
    threshold = traitlets.Float(1.0).tag(sync=True)
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
        thr = getattr(recognizer, "threshold", None)
        if thr is not None and "threshold" not in kwargs:
            self.threshold = float(thr)
        self._sync_names()
        self.on_msg(self._on_custom)

    # -- messages from the page ---------------------------------------------------------------
    @traitlets.observe("threshold")
    def _threshold_changed(self, change) -> None:
        rec = getattr(self, "recognizer", None)
        if rec is not None and hasattr(rec, "threshold"):
            rec.threshold = float(change["new"])

    def _on_custom(self, _widget, content: dict, buffers: list) -> None:
        kind = content.get("type") if isinstance(content, dict) else None
        if kind == "frame":
            data = bytes(buffers[0]) if buffers else b""
            self.offer_frame(data, content)
        elif kind == "enroll":
            self._enroll(content.get("name", ""), content.get("shots", self.shots))

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

    def _enroll(self, name: str, shots) -> None:
        start = getattr(self.recognizer, "start_enrollment", None)
        if start is None:
            self.status = "this recogniser cannot enrol people"
            return
        try:
            start(str(name), int(shots))
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


class VideoSource:
    """Frames (RGB ``uint8``) from OpenCV: a video file, a camera index, or a stream URL.

    Taught in notebook 06. ``source``: a path (``.mp4``, ``.avi``, ...), an ``int`` camera index
    (``0`` is the first USB camera of the machine running the *kernel*, not the browser's), or a
    URL (``rtsp://``, ``http://``...). Files are read frame by frame; live sources (cameras,
    streams) are read by a thread that keeps only the newest frame, so a slow recogniser always
    gets the current picture (``dropped`` counts the frames it never saw).
    """

    def __init__(self, source, *, live: bool | None = None, width: int | None = None,
                 height: int | None = None):
        import cv2

        if isinstance(source, str) and source.isdigit():
            source = int(source)
        is_url = isinstance(source, str) and "://" in source
        if not isinstance(source, int) and not is_url:
            path = Path(os.fspath(source))
            if not path.is_file():
                raise FileNotFoundError(f"{path}: no such video file. Fix: check the path, or pass a "
                                        "camera index (0) or a stream URL")
            source = str(path)
        self.source = source
        self.live = (isinstance(source, int) or is_url) if live is None else bool(live)
        self._cap = cv2.VideoCapture(source)
        if not self._cap.isOpened():
            what = f"camera {source}" if isinstance(source, int) else f"{source!r}"
            fix = ("no camera at that index, or another program uses it; on a remote kernel use "
                   "the browser CameraWidget instead") if isinstance(source, int) else \
                  "check the URL/file and that OpenCV's FFmpeg can read its format"
            raise OSError(f"could not open {what}. Fix: {fix}")
        if width:
            self._cap.set(cv2.CAP_PROP_FRAME_WIDTH, width)
        if height:
            self._cap.set(cv2.CAP_PROP_FRAME_HEIGHT, height)
        self.dropped = 0
        self._latest: np.ndarray | None = None
        self._seq = 0
        self._taken = 0
        self._cond = threading.Condition()
        self._stop = False
        self._eof = False
        self._reader = None
        if self.live:
            self._reader = threading.Thread(target=self._read_loop, name="facekit-video", daemon=True)
            self._reader.start()

    @property
    def fps(self) -> float:
        import cv2

        return float(self._cap.get(cv2.CAP_PROP_FPS) or 0.0)

    def __len__(self) -> int:
        import cv2

        n = int(self._cap.get(cv2.CAP_PROP_FRAME_COUNT) or 0)
        if self.live or n <= 0:
            raise TypeError("a live source has no length")
        return n

    def _grab(self) -> np.ndarray | None:
        import cv2

        ok, bgr = self._cap.read()
        if not ok or bgr is None:
            return None
        return cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)

    def _read_loop(self) -> None:
        while not self._stop:
            frame = self._grab()
            with self._cond:
                if frame is None:
                    self._eof = True
                    self._cond.notify_all()
                    return
                if self._latest is not None and self._taken < self._seq:
                    self.dropped += 1  # never read: replaced by a newer frame
                self._latest = frame
                self._seq += 1
                self._cond.notify_all()

    def read(self, timeout: float = 5.0) -> np.ndarray | None:
        """The next frame (files) or the newest frame not yet returned (live); None at the end."""
        if not self.live:
            return self._grab()
        with self._cond:
            end = time.monotonic() + timeout
            while self._taken >= self._seq and not self._eof:
                left = end - time.monotonic()
                if left <= 0:
                    return None
                self._cond.wait(left)
            if self._taken >= self._seq:
                return None
            self._taken = self._seq
            return self._latest

    def __iter__(self) -> Iterator[np.ndarray]:
        while True:
            frame = self.read()
            if frame is None:
                return
            yield frame

    def close(self) -> None:
        self._stop = True
        if self._reader is not None:
            self._reader.join(timeout=2.0)
        self._cap.release()

    def __enter__(self) -> "VideoSource":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def write_y4m(path: str | os.PathLike, frames: Iterable[np.ndarray], fps: float = 15.0) -> Path:
    """Write RGB frames (all the same even size) as raw YUV4MPEG2 I420 -- the format Chromium's
    ``--use-file-for-fake-video-capture`` plays as a fake webcam (tests of notebook 06)."""
    import cv2

    path = Path(path)
    n = 0
    with open(path, "wb") as f:
        for frame in frames:
            h, w = frame.shape[:2]
            if n == 0:
                if w % 2 or h % 2:
                    raise ValueError(f"y4m I420 needs an even frame size, got {w}x{h}")
                size = (w, h)
                f.write(f"YUV4MPEG2 W{w} H{h} F{int(round(fps * 1000))}:1000 Ip A1:1 C420jpeg\n".encode())
            elif (w, h) != size:
                raise ValueError(f"frame {n} is {w}x{h}, the first was {size[0]}x{size[1]}")
            f.write(b"FRAME\n")
            f.write(cv2.cvtColor(np.ascontiguousarray(frame), cv2.COLOR_RGB2YUV_I420).tobytes())
            n += 1
    if n == 0:
        raise ValueError("no frames to write")
    return path


def write_video(path: str | os.PathLike, frames: Iterable[np.ndarray], fps: float = 15.0,
                size: tuple[int, int] | None = None) -> Path:
    """Write RGB frames to ``path``: ``.y4m`` raw (see :func:`write_y4m`), ``.avi`` (MJPG) or
    ``.mp4`` (mp4v) through OpenCV. Returns the path. Used in notebook 06."""
    import cv2

    path = Path(path)
    if path.suffix.lower() == ".y4m":
        return write_y4m(path, frames, fps)
    fourcc = {".avi": "MJPG", ".mp4": "mp4v", ".m4v": "mp4v", ".mov": "mp4v"}.get(path.suffix.lower())
    if fourcc is None:
        raise ValueError(f"{path}: unsupported video extension; use .mp4, .avi or .y4m")
    writer = None
    n = 0
    try:
        for frame in frames:
            h, w = frame.shape[:2]
            if writer is None:
                size = size or (w, h)
                writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*fourcc), float(fps), size)
                if not writer.isOpened():
                    raise OSError(f"OpenCV cannot write {path} with codec {fourcc}")
            if (w, h) != tuple(size):
                frame = cv2.resize(frame, tuple(size))
            writer.write(cv2.cvtColor(np.ascontiguousarray(frame), cv2.COLOR_RGB2BGR))
            n += 1
    finally:
        if writer is not None:
            writer.release()
    if n == 0:
        raise ValueError("no frames to write")
    return path
