"""Hard light: photometric transforms that mimic users' photos, and the levers that fight them.

Taught in notebook A2 (``notebooks/A2_hard_light.ipynb``); measured by ``bench/robust.py``.

LFW's press photos are frontal, colour and well exposed. Users' photos are lit from one side by a
window, scanned from black-and-white prints, taken by low-resolution cameras, over- or
under-exposed, or compressed hard. Two halves:

**Transforms** (deterministic: every random choice comes from a generator seeded by ``seed`` and
the image's ``key``, so a benchmark is the same on every run and machine). All take and return RGB
``uint8 (H, W, 3)``; ``box`` is the face box ``(x1, y1, x2, y2)`` in pixels (``None``: the whole
image) so that shading and resolution are defined relative to the face, not the frame:

- :func:`shade`: one-sided light; pixel values times a gain that falls linearly (``"left"``,
  ``"right"``, ``"top"``, ``"bottom"``: 1 at that edge of the face box, ``low`` at the opposite
  edge, constant beyond) or radially (``"radial"``: 1 at a point on the box border, ``low`` one box
  diagonal away) from 1 down to ``low`` (0.1-0.2 in the benchmark). The gain multiplies the stored
  8-bit values (what a dark side looks like in the file), not linear light.
- :func:`to_gray`: ITU-R BT.601 luma copied to the three channels (a scanned black-and-white print).
- :func:`gamma`: ``255 * (x / 255) ** g``; 0.4 washes out (over-exposure), 2.5 crushes (under-exposure).
- :func:`low_resolution`: the frame shrunk until the face box is ``face_px`` wide (24-40 in the
  benchmark), then enlarged back (area down, bilinear up): a CCTV-like face.
- :func:`jpeg`: JPEG encoding at ``quality`` (10: blocky, colour-bled).
- :func:`photometric_transform` picks the parameters of a named transform (:data:`TRANSFORMS`) from
  the seeded generator; ``"mix"`` applies two different ones of the above in a fixed order.

**Levers** (options of :func:`facekit.faces.extract_faces`):

- :func:`normalize`: photometric normalisation, ``"clahe"`` (:func:`clahe_luminance`: contrast-
  limited adaptive histogram equalisation of the L channel of CIE Lab, colour kept) or
  ``"tan_triggs"`` (:func:`tan_triggs`: gamma 0.2, difference of Gaussians, two-stage contrast
  equalisation, tanh squashing; Tan & Triggs 2010; grey out), before FaceNet's standardisation
  and/or before detection;
- :func:`crop_ops` + :func:`apply_crop_op` + :func:`fuse_unit`: which crops of a face are embedded
  (plain, normalised, grey) and how their embeddings become one: the mean of the unit vectors,
  renormalised (equal weights; a squared-L2 distance stays in [0, 4]).
"""

from __future__ import annotations

import hashlib

import numpy as np

from facekit.core.images import as_rgb

__all__ = [
    "TRANSFORMS", "SHADE_DIRECTIONS", "NORMALIZATIONS", "photometric_transform", "transform_rng",
    "shade", "to_gray", "gamma", "low_resolution", "jpeg", "normalize", "clahe_luminance", "tan_triggs",
    "tan_triggs_float", "is_gray", "crop_ops", "apply_crop_op", "fuse_unit", "HARSH_TRANSFORMS", "half_shadow",
]

#: Named transforms of :func:`photometric_transform` (the benchmark's columns).
TRANSFORMS = ("shade", "gray", "gamma_0.4", "gamma_2.5", "lowres", "jpeg10", "mix")
#: harsher transforms (bench/models.py): light from one side that leaves half the face in deep
#: shadow; an old grey photo at low resolution (face 20-28 px wide)
HARSH_TRANSFORMS = ("half_shadow", "gray_lowres")
SHADE_DIRECTIONS = ("left", "right", "top", "bottom", "radial")
#: ``normalize=`` values of the pipeline (None: none).
NORMALIZATIONS = (None, "clahe", "tan_triggs")
_MIX_PARTS = ("shade", "gamma", "gray", "lowres", "jpeg10")  # also the order they are applied in


def _box(image: np.ndarray, box) -> tuple[float, float, float, float]:
    h, w = image.shape[:2]
    if box is None:
        return 0.0, 0.0, float(w), float(h)
    x1, y1, x2, y2 = (float(v) for v in box)
    if not (x2 > x1 and y2 > y1):
        raise ValueError(f"face box must be (x1, y1, x2, y2) with x2 > x1, y2 > y1; got {box}")
    return x1, y1, x2, y2


def shade(image: np.ndarray, direction: str = "left", low: float = 0.15, box=None,
          angle: float = 0.0) -> np.ndarray:
    """One-sided light: RGB uint8 (H, W, 3) times a gain map from 1 down to ``low`` across the face.

    ``direction``: ``"left"`` (light from the image's left: gain 1 at the box's left edge, ``low``
    at its right edge), ``"right"``, ``"top"``, ``"bottom"``, or ``"radial"`` (light at the point of
    the box border at ``angle`` radians from the box centre, 0 = right, pi/2 = down; gain 1 there,
    falling linearly to ``low`` one box diagonal away). Gain is constant outside the ramp.
    """
    if direction not in SHADE_DIRECTIONS:
        raise ValueError(f"direction must be one of {SHADE_DIRECTIONS}, got {direction!r}")
    if not 0.0 <= low <= 1.0:
        raise ValueError(f"low must be a gain in [0, 1], got {low}")
    img = as_rgb(image)
    x1, y1, x2, y2 = _box(img, box)
    h, w = img.shape[:2]
    ys, xs = np.mgrid[0:h, 0:w].astype(np.float32) + 0.5
    if direction == "radial":
        cx, cy, rx, ry = (x1 + x2) / 2, (y1 + y2) / 2, (x2 - x1) / 2, (y2 - y1) / 2
        px, py = cx + rx * np.cos(angle), cy + ry * np.sin(angle)
        t = np.hypot(xs - px, ys - py) / np.hypot(x2 - x1, y2 - y1)
    else:
        t = {"left": (xs - x1) / (x2 - x1), "right": (x2 - xs) / (x2 - x1),
             "top": (ys - y1) / (y2 - y1), "bottom": (y2 - ys) / (y2 - y1)}[direction]
    gain = 1.0 - (1.0 - low) * np.clip(t, 0.0, 1.0)
    return np.clip(img * gain[:, :, None] + 0.5, 0, 255).astype(np.uint8)


def half_shadow(image: np.ndarray, side: str = "left", depth: float = 0.06, edge: float = 0.12, box=None) -> np.ndarray:
    """Hard side light: the half of the face box away from the light (``side`` is where the light
    comes from, ``"left"`` or ``"right"`` of the image) darkened to gain ``depth``, with a soft edge
    ``edge`` box-widths wide at the nose line, and everything beyond that side of the face too."""
    if side not in ("left", "right"):
        raise ValueError(f"side must be 'left' or 'right', got {side!r}")
    img = as_rgb(image)
    x1, _, x2, _ = _box(img, box)
    xs = np.arange(img.shape[1], dtype=np.float32) + 0.5
    t = ((xs - (x1 + x2) / 2) / ((x2 - x1) * edge)) + 0.5  # 0 -> 1 across the soft edge at the centre line
    t = np.clip(t if side == "left" else 1.0 - t, 0.0, 1.0)
    gain = 1.0 - (1.0 - depth) * t
    return np.clip(img * gain[None, :, None] + 0.5, 0, 255).astype(np.uint8)


def to_gray(image: np.ndarray) -> np.ndarray:
    """Grey copy, RGB uint8 (H, W, 3): BT.601 luma (``cv2.COLOR_RGB2GRAY``) in all three channels."""
    import cv2

    g = cv2.cvtColor(as_rgb(image), cv2.COLOR_RGB2GRAY)
    return np.ascontiguousarray(np.repeat(g[:, :, None], 3, axis=2))


def gamma(image: np.ndarray, g: float) -> np.ndarray:
    """``255 * (x / 255) ** g`` per channel (lookup table), RGB uint8. g < 1 brightens, g > 1 darkens."""
    if g <= 0:
        raise ValueError(f"gamma must be > 0, got {g}")
    lut = np.clip(255.0 * (np.arange(256) / 255.0) ** g + 0.5, 0, 255).astype(np.uint8)
    return lut[as_rgb(image)]


def low_resolution(image: np.ndarray, face_px: float = 32, box=None) -> np.ndarray:
    """Shrink the frame so the face box is ``face_px`` pixels wide (``cv2.INTER_AREA``), then enlarge
    it back to (H, W) (``cv2.INTER_LINEAR``). No-op when the face is already that small."""
    import cv2

    img = as_rgb(image)
    x1, _, x2, _ = _box(img, box)
    s = float(face_px) / (x2 - x1)
    if s >= 1.0:
        return img.copy()
    h, w = img.shape[:2]
    small = cv2.resize(img, (max(1, round(w * s)), max(1, round(h * s))), interpolation=cv2.INTER_AREA)
    return cv2.resize(small, (w, h), interpolation=cv2.INTER_LINEAR)


def jpeg(image: np.ndarray, quality: int = 10) -> np.ndarray:
    """Encode and decode as JPEG at ``quality`` (1-100; OpenCV's encoder, 4:2:0 chroma), RGB uint8."""
    import cv2

    if not 1 <= int(quality) <= 100:
        raise ValueError(f"JPEG quality must be in 1..100, got {quality}")
    ok, buf = cv2.imencode(".jpg", cv2.cvtColor(as_rgb(image), cv2.COLOR_RGB2BGR),
                           [cv2.IMWRITE_JPEG_QUALITY, int(quality)])
    if not ok:
        raise RuntimeError("OpenCV could not JPEG-encode the image")
    return cv2.cvtColor(cv2.imdecode(buf, cv2.IMREAD_COLOR), cv2.COLOR_BGR2RGB)


def transform_rng(name: str, seed: int = 0, key: str = "") -> np.random.Generator:
    """The generator behind one transform of one image: seeded by SHA-256 of ``seed``, ``name``
    and ``key`` (e.g. ``"Person/Person_0001.jpg"``), so every image gets its own, reproducible draw."""
    digest = hashlib.sha256(f"{int(seed)}|{name}|{key}".encode()).digest()
    return np.random.default_rng(int.from_bytes(digest[:8], "little"))


def _draw(part: str, rng: np.random.Generator) -> dict:
    """Random parameters of one transform family."""
    if part == "shade":
        return dict(direction=str(rng.choice(SHADE_DIRECTIONS)), low=float(rng.uniform(0.1, 0.2)),
                    angle=float(rng.uniform(0.0, 2.0 * np.pi)))
    if part == "gamma":
        return dict(g=float(rng.choice([0.4, 2.5])))
    if part == "lowres":
        return dict(face_px=int(rng.integers(24, 41)))
    return {}


def _apply(part: str, img: np.ndarray, params: dict, box) -> np.ndarray:
    if part == "shade":
        return shade(img, box=box, **params)
    if part == "gamma":
        return gamma(img, **params)
    if part == "gray":
        return to_gray(img)
    if part == "lowres":
        return low_resolution(img, box=box, **params)
    if part == "jpeg10":
        return jpeg(img, 10)
    if part == "half_shadow":
        return half_shadow(img, box=box, **params)
    raise ValueError(part)


def photometric_transform(image: np.ndarray, name: str, *, seed: int = 0, key: str = "", box=None,
                          return_params: bool = False):
    """Apply the named transform (:data:`TRANSFORMS`, or ``"none"``) to RGB uint8 (H, W, 3).

    Parameters drawn from :func:`transform_rng` (``name``, ``seed``, ``key``): ``"shade"`` a
    direction from :data:`SHADE_DIRECTIONS`, ``low`` in [0.1, 0.2] and (radial) an angle;
    ``"gamma_0.4"`` / ``"gamma_2.5"`` fixed; ``"lowres"`` a face width of 24-40 px; ``"jpeg10"``
    quality 10; ``"gray"`` none; ``"mix"`` two different families of shade, gamma (0.4 or 2.5),
    gray, lowres, jpeg10, applied in that order. With ``return_params`` returns ``(image, params)``
    (params: ``{family: parameters}``), e.g. to caption a figure.
    """
    img = as_rgb(image)
    rng = transform_rng(name, seed, key)
    if name == "none":
        steps = []
    elif name in ("shade", "lowres"):
        steps = [(name, _draw(name, rng))]
    elif name == "gray":
        steps = [("gray", {})]
    elif name.startswith("gamma_") and name in TRANSFORMS:
        steps = [("gamma", dict(g=float(name.split("_")[1])))]
    elif name == "jpeg10":
        steps = [("jpeg10", {})]
    elif name == "mix":
        pick = set(rng.choice(len(_MIX_PARTS), size=2, replace=False).tolist())
        steps = [(p, _draw(p, rng)) for i, p in enumerate(_MIX_PARTS) if i in pick]
    elif name == "half_shadow":
        steps = [("half_shadow", dict(side=str(rng.choice(["left", "right"])), depth=float(rng.uniform(0.04, 0.08))))]
    elif name == "gray_lowres":
        steps = [("gray", {}), ("lowres", dict(face_px=int(rng.integers(20, 29))))]
    else:
        raise ValueError(f"unknown transform {name!r}; choose one of {('none',) + TRANSFORMS + HARSH_TRANSFORMS}")
    out = img
    for part, params in steps:
        out = _apply(part, out, params, box)
    out = np.ascontiguousarray(out)
    return (out, dict(steps)) if return_params else out


# --- levers ------------------------------------------------------------------------------------

def clahe_luminance(image: np.ndarray, clip_limit: float = 2.0, grid: int = 8) -> np.ndarray:
    """CLAHE on the lightness of CIE Lab (``cv2.createCLAHE(clip_limit, (grid, grid))``), colour
    kept: RGB uint8 (H, W, 3) -> RGB uint8. Evens out one-sided light and exposure locally while
    limiting how much noise it amplifies (``clip_limit``: histogram clip, in multiples of the mean
    bin). Defaults are OpenCV's usual 2.0 and 8x8 tiles (20 px tiles on a 160 crop)."""
    import cv2

    lab = cv2.cvtColor(as_rgb(image), cv2.COLOR_RGB2LAB)
    lab[:, :, 0] = cv2.createCLAHE(clipLimit=float(clip_limit), tileGridSize=(int(grid), int(grid))).apply(
        np.ascontiguousarray(lab[:, :, 0]))
    return cv2.cvtColor(lab, cv2.COLOR_LAB2RGB)


def tan_triggs_float(gray: np.ndarray, gamma: float = 0.2, sigma0: float = 1.0, sigma1: float = 2.0,
                     alpha: float = 0.1, tau: float = 10.0) -> np.ndarray:
    """The Tan-Triggs chain on a grey image (H, W) (any real dtype, 0-255): float32 (H, W) in
    [-tau, tau].

    1. gamma: ``I ** gamma`` (compresses the dynamic range, keeps local contrast);
    2. difference of Gaussians ``G(sigma0) - G(sigma1)`` (band-pass: removes shading gradients,
       and fine noise); ``cv2.GaussianBlur`` with a 4-sigma radius, mirrored borders
       (``BORDER_REFLECT_101``; = ``scipy.ndimage.gaussian_filter(mode="mirror")``); values below
       1e-6 (rounding noise in flat regions) set to 0;
    3. contrast equalisation: ``I / mean(|I| ** alpha) ** (1 / alpha)``, then
       ``I / mean(min(tau, |I|) ** alpha) ** (1 / alpha)``;
    4. ``tau * tanh(I / tau)`` (squashes the extremes).
    """
    import cv2

    x = np.asarray(gray, np.float64)
    if x.ndim != 2:
        raise ValueError(f"tan_triggs_float takes one grey image (H, W), got shape {x.shape}")
    x = np.power(np.maximum(x, 0.0), gamma)

    def blur(s: float) -> np.ndarray:
        k = 2 * int(4.0 * s + 0.5) + 1
        return cv2.GaussianBlur(x, (k, k), sigmaX=s, sigmaY=s, borderType=cv2.BORDER_REFLECT_101)

    x = blur(sigma0) - blur(sigma1)
    # flat regions: the DoG is 0 up to rounding (1e-16..1e-7 depending on the library), and with
    # alpha = 0.1 that noise would weigh in the equalisation (1e-7 ** 0.1 = 0.2): make it exactly 0
    x[np.abs(x) < 1e-6] = 0.0
    x = x / max(float(np.mean(np.abs(x) ** alpha)) ** (1.0 / alpha), 1e-12)
    x = x / max(float(np.mean(np.minimum(tau, np.abs(x)) ** alpha)) ** (1.0 / alpha), 1e-12)
    return (tau * np.tanh(x / tau)).astype(np.float32)


def tan_triggs(image: np.ndarray, **kw) -> np.ndarray:
    """:func:`tan_triggs_float` of the BT.601 grey of ``image``, mapped linearly from [-tau, tau] to
    [0, 255]: RGB uint8 (H, W, 3), grey. ``kw``: the chain's parameters (defaults: the paper's)."""
    import cv2

    tau = float(kw.get("tau", 10.0))
    g = cv2.cvtColor(as_rgb(image), cv2.COLOR_RGB2GRAY)
    y = tan_triggs_float(g, **kw)
    u8 = np.clip((y / tau + 1.0) * 127.5 + 0.5, 0, 255).astype(np.uint8)
    return np.ascontiguousarray(np.repeat(u8[:, :, None], 3, axis=2))


def normalize(image: np.ndarray, method: str | None) -> np.ndarray:
    """Photometric normalisation by name (:data:`NORMALIZATIONS`): RGB uint8 (H, W, 3) in and out;
    ``None`` returns the image unchanged."""
    if method is None:
        return as_rgb(image)
    if method == "clahe":
        return clahe_luminance(image)
    if method == "tan_triggs":
        return tan_triggs(image)
    raise ValueError(f"normalize must be one of {NORMALIZATIONS}, got {method!r}")


def is_gray(image: np.ndarray, tol: int = 2) -> bool:
    """True when the three channels agree to ``tol`` levels everywhere (a grey photo in RGB,
    JPEG chroma noise allowed)."""
    img = as_rgb(image).astype(np.int16)
    return bool(np.abs(img[..., 0] - img[..., 1]).max() <= tol and np.abs(img[..., 1] - img[..., 2]).max() <= tol)


def crop_ops(normalize: str | None = None, fuse: bool = False, gray_consistent: bool | str = False) -> tuple[str, ...]:
    """Which crops of a face get embedded, as op names for :func:`apply_crop_op`; their embeddings
    are then fused by :func:`fuse_unit`.

    - ``normalize`` only: ``(normalize,)`` (the normalised crop replaces the plain one);
    - ``fuse=True``: ``("plain", normalize)`` (needs ``normalize``);
    - ``gray_consistent=True`` (or ``"fuse"``): each of those plus its grey copy (``"gray"``,
      ``"gray+clahe"``, ...): a grey photo's grey copy is itself, so a colour and a grey photo of
      one person share half their embedding; ``"gray"``: grey copies only (colour ignored).
    """
    if normalize not in NORMALIZATIONS:
        raise ValueError(f"normalize must be one of {NORMALIZATIONS}, got {normalize!r}")
    if fuse and normalize is None:
        raise ValueError("fuse=True fuses the plain and the normalised crop: also set normalize='clahe' or 'tan_triggs'")
    if gray_consistent not in (False, True, "fuse", "gray"):
        raise ValueError(f"gray_consistent must be False, True/'fuse' or 'gray', got {gray_consistent!r}")
    base = ("plain", normalize) if fuse else (normalize or "plain",)
    if not gray_consistent:
        return base
    gray = tuple("gray" if b == "plain" else f"gray+{b}" for b in base)
    return gray if gray_consistent == "gray" else base + gray


def apply_crop_op(crops: np.ndarray, op: str) -> np.ndarray:
    """Crops uint8 (N, S, S, 3) -> the same shape after ``op``: ``"plain"`` (unchanged), a
    normalisation (``"clahe"``, ``"tan_triggs"``), ``"gray"``, or ``"gray+<normalisation>"``."""
    x = np.asarray(crops)
    if op == "plain":
        return x
    parts = op.split("+")
    gray_first = parts[0] == "gray"
    norm = parts[1] if gray_first and len(parts) == 2 else (None if gray_first else op)
    if norm not in NORMALIZATIONS or (not gray_first and "+" in op):
        raise ValueError(f"unknown crop op {op!r}")
    out = []
    for c in x:
        c = to_gray(c) if gray_first else c
        out.append(normalize(c, norm))
    return np.stack(out) if out else x.copy()


def fuse_unit(embeddings: list[np.ndarray]) -> np.ndarray:
    """Mean of unit embeddings (each float (N, D)), renormalised: float32 (N, D), unit rows. One
    input is returned as float32 unchanged."""
    if not embeddings:
        raise ValueError("nothing to fuse")
    if len(embeddings) == 1:
        return np.asarray(embeddings[0], np.float32)
    m = np.mean([np.asarray(e, np.float64) for e in embeddings], axis=0)
    n = np.linalg.norm(m, axis=1, keepdims=True)
    return (m / np.maximum(n, 1e-12)).astype(np.float32)
