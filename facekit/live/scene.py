"""A synthetic video of sample-set people with ground-truth boxes: :class:`DemoScene` (notebook 06).

Used by the notebook, the tests and ``bench/live.py``: photos of 1-3 people move and zoom over a
background, each entering and leaving at its own time, so every frame's right answer is known
(:meth:`DemoScene.truth`) and a run can be scored (:meth:`DemoScene.score`).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Iterable, Iterator, Sequence

import numpy as np

from facekit.detection.detector import Detector, get_detector
from facekit.core.constants import UNKNOWN
from facekit.live.geometry import iou_matrix
from facekit.live.results import FrameResult

__all__ = ["DemoScene", "make_demo_scene"]


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

        from facekit.live.video import write_video

        return write_video(Path(path), iter(self), fps or self.fps, (self.width, self.height))


def _make_sprite(name: str, path, detector: Detector, context: float = 1.8) -> _Sprite | None:
    """Cut a square of ``context`` x the face size around the largest face of a photo."""
    import cv2

    from facekit.core.images import load_image

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
    from facekit.core.cache import celebrity_dir

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
