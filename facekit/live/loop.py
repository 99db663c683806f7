"""Running live recognition on a source and looking at it: :func:`run_source`, :func:`annotate`,
:func:`stage_costs` (notebook 06).

Everything here drives a :class:`~facekit.live.LiveRecognizer` through its public methods only.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass

import numpy as np

from facekit.detection.align import align_face
from facekit.core.constants import UNKNOWN
from facekit.live.recognizer import LiveRecognizer
from facekit.live.results import PENDING, FrameResult
from facekit.live.tracking import FlowTracker
from facekit.live.video import VideoSource, as_frame, encode_jpeg

__all__ = ["stage_costs", "annotate", "run_source", "SourceSummary"]


def stage_costs(frame: np.ndarray, recognizer: LiveRecognizer | None = None, repeat: int = 3) -> dict[str, float]:
    """Median milliseconds of each step of the loop on one frame (why tracking pays off).

    Keys: ``full detection`` (MTCNN at full resolution, min face 20 px: the naive loop),
    ``scan`` (downscaled, as :class:`LiveRecognizer` scans), ``refine`` (R-Net + O-Net on the
    found boxes), ``optical flow`` (:class:`FlowTracker` carrying the boxes one frame, grey copy
    included), ``embed 1 face`` (align + FaceNet). Taught in notebook 06.
    """
    import cv2

    rec = recognizer or LiveRecognizer()
    img = as_frame(frame)
    det, emb = rec.detector, rec.embedder

    def timed(fn) -> float:
        fn()  # warm-up (graph tracing)
        out = []
        for _ in range(max(1, repeat)):
            t0 = time.perf_counter()
            fn()
            out.append((time.perf_counter() - t0) * 1000.0)
        return float(np.median(out))

    faces = det.detect(img, min_face_size=20)
    scale, min_face = rec.scan_scale()
    small = cv2.resize(img, None, fx=scale, fy=scale, interpolation=cv2.INTER_AREA) if scale < 1 else img
    costs = {"full detection": timed(lambda: det.detect(img, min_face_size=20)),
             "scan": timed(lambda: det.detect(small, min_face_size=min_face))}
    if faces:
        costs["refine"] = timed(lambda: det.refine(img, [f.box for f in faces]))
        probe = LiveRecognizer(rec.identifier, detector=det, embedder=emb, min_face_size=rec.min_face_size,
                               tracker=FlowTracker())
        probe.process(img)  # a scan: the probe's tracker now follows the faces
        costs["optical flow"] = timed(lambda: probe.tracker.follow(img))
        costs["embed 1 face"] = timed(lambda: emb.embed(align_face(img, faces[0])[None]))
    return costs


# --- drawing and server-side sources ---------------------------------------------------------

_COLORS = {"known": (40, 200, 60), "unknown": (230, 60, 40), "pending": (240, 200, 0)}


def annotate(frame: np.ndarray, result: FrameResult, thickness: int = 2) -> np.ndarray:
    """A copy of ``frame`` with each face's box and name drawn (green known, red unknown, yellow
    not yet embedded), plus the latency. RGB ``uint8``. Taught in notebook 06."""
    import cv2

    out = np.ascontiguousarray(as_frame(frame).copy())
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
    """Run ``recognizer`` on a server-side source: a :class:`~facekit.live.video.VideoSource`, or
    anything :class:`~facekit.live.video.VideoSource` opens (video file path, camera index, stream
    URL), or an iterable of RGB frames.

    With ``display`` an image widget shows the annotated frames as they are processed (about 10
    updates a second). ``snapshots`` annotated frames, evenly spread, are kept for plotting.
    Taught in notebook 06.
    """
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
