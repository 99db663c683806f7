"""Frames in and out, without any widget: JPEG bytes, OpenCV video sources, video files (notebook 06).

- :func:`decode_jpeg` / :func:`encode_jpeg`: what the browser camera sends and the loop shows.
- :func:`as_frame`: any image-like input -> RGB ``uint8 (H, W, 3)``, or a ``ValueError`` saying
  what is wrong with it (the live loop turns that into a skipped frame, never a crash).
- :class:`VideoSource`: a video file, a camera index or a stream URL read by OpenCV on the
  machine running the kernel. Live sources keep only the newest frame (older ones are dropped).
- :func:`write_video`: frames to ``.mp4``/``.avi`` (OpenCV) or ``.y4m`` (Chromium's fake camera).

Headless use (scripts, servers) imports only this module: no anywidget, no ipywidgets.
"""

from __future__ import annotations

import os
import threading
import time
from pathlib import Path
from typing import Iterable, Iterator

import numpy as np

__all__ = ["decode_jpeg", "encode_jpeg", "as_frame", "VideoSource", "write_video", "write_y4m"]


def decode_jpeg(data: bytes | bytearray | memoryview) -> np.ndarray:
    """JPEG (or PNG) bytes -> RGB ``uint8 (H, W, 3)``; raises ``ValueError``
    (:class:`facekit.core.images.ImageLoadError`) on corrupt data, and on frames over
    :data:`facekit.core.images.MAX_FRAME_BYTES` bytes or :data:`facekit.core.images.MAX_FRAME_PIXELS` pixels, checked
    from the header before anything is decoded (a 140 KB PNG can hold 12000x12000 pixels).
    (What :class:`facekit.live.camera.CameraWidget` receives; notebook 06.)"""
    from facekit.core.images import decode_image_bytes

    return decode_image_bytes(data, name="frame")


def encode_jpeg(image: np.ndarray, quality: int = 85) -> bytes:
    """RGB ``uint8 (H, W, 3)`` -> JPEG bytes (what the browser camera sends; notebook 06)."""
    import cv2

    ok, buf = cv2.imencode(".jpg", cv2.cvtColor(np.ascontiguousarray(image), cv2.COLOR_RGB2BGR),
                           [cv2.IMWRITE_JPEG_QUALITY, int(quality)])
    if not ok:
        raise ValueError("JPEG encoding failed")
    return buf.tobytes()


def as_frame(frame) -> np.ndarray:
    """A frame as RGB ``uint8 (H, W, 3)`` (gray and RGBA accepted); ``ValueError`` naming the
    problem for ``None``, an empty array, a batch or a frame under 8 px. Notebook 06."""
    from facekit.core.images import as_rgb

    if frame is None:
        raise ValueError("no frame (None): the camera or video returned nothing")
    arr = np.asarray(frame)
    if arr.size == 0:
        raise ValueError(f"empty frame of shape {arr.shape}")
    img = as_rgb(arr)
    if min(img.shape[:2]) < 8:
        raise ValueError(f"frame of {img.shape[1]}x{img.shape[0]} px is too small")
    return img


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
