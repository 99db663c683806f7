"""dlib's face chips and 5-point shape predictor, reimplemented in numpy (no dlib needed at run time).

* :func:`face_chip` = ``dlib.get_face_chip(img, shape, size, padding)``: ``get_face_chip_details``
  (a similarity transform from dlib's 5-point template to the landmarks) then
  ``extract_image_chip`` (bilinear, truncated to uint8, black outside the image, and a 2x image
  pyramid first when the chip shrinks the face more than 2x).
* :class:`ShapePredictor5` = ``dlib.shape_predictor(shape_predictor_5_face_landmarks.dat)``:
  15 cascades x 500 depth-4 regression trees on grey pixels ``(r+g+b)//3`` (dlib's
  get_pixel_intensity), returns dlib's integer landmarks (rounded with floor(x+0.5)).
* :func:`mtcnn_chip`: the same kind of chip from MTCNN's 5 points (eye centres, nose tip, mouth
  corners) mapped onto the matching points of dlib's 68-point mean face (MTCNN_TEMPLATE).

dlib's 5 landmarks: 0,1 = outer/inner corner of the eye on the image's right; 2,3 = outer/inner
corner of the eye on the image's left; 4 = bottom of the nose. Coordinates are (x, y) pixels.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np

# get_face_chip_details: where the 5 landmarks go, in a unit square before padding
DLIB5_TEMPLATE = np.array([
    [0.8595674595992, 0.2134981538014], [0.6460604764104, 0.2289674387677],
    [0.1205750620789, 0.2137274526848], [0.3340850613712, 0.2290642403242],
    [0.4901123135679, 0.6277975316475]])
# get_face_chip_details: mean positions of the 68-point landmarks 17..67 (same unit square)
MEAN_FACE_X = np.array([
    0.000213256, 0.0752622, 0.18113, 0.29077, 0.393397, 0.586856, 0.689483, 0.799124,
    0.904991, 0.98004, 0.490127, 0.490127, 0.490127, 0.490127, 0.36688, 0.426036,
    0.490127, 0.554217, 0.613373, 0.121737, 0.187122, 0.265825, 0.334606, 0.260918,
    0.182743, 0.645647, 0.714428, 0.793132, 0.858516, 0.79751, 0.719335, 0.254149,
    0.340985, 0.428858, 0.490127, 0.551395, 0.639268, 0.726104, 0.642159, 0.556721,
    0.490127, 0.423532, 0.338094, 0.290379, 0.428096, 0.490127, 0.552157, 0.689874,
    0.553364, 0.490127, 0.42689])
MEAN_FACE_Y = np.array([
    0.106454, 0.038915, 0.0187482, 0.0344891, 0.0773906, 0.0773906, 0.0344891,
    0.0187482, 0.038915, 0.106454, 0.203352, 0.307009, 0.409805, 0.515625, 0.587326,
    0.609345, 0.628106, 0.609345, 0.587326, 0.216423, 0.178758, 0.179852, 0.231733,
    0.245099, 0.244077, 0.231733, 0.179852, 0.178758, 0.216423, 0.244077, 0.245099,
    0.780233, 0.745405, 0.727388, 0.742578, 0.727388, 0.745405, 0.780233, 0.864805,
    0.902192, 0.909281, 0.902192, 0.864805, 0.784792, 0.778746, 0.785343, 0.778746,
    0.784792, 0.824182, 0.831803, 0.824182])


def _mean_face(idx: list[int]) -> np.ndarray:
    i = np.asarray(idx) - 17
    return np.array([MEAN_FACE_X[i].mean(), MEAN_FACE_Y[i].mean()])


# MTCNN order: image-left eye centre (68-pt 36..41), image-right eye centre (42..47),
# nose tip (30), image-left mouth corner (48), image-right mouth corner (54)
MTCNN_TEMPLATE = np.stack([_mean_face(list(range(36, 42))), _mean_face(list(range(42, 48))),
                           _mean_face([30]), _mean_face([48]), _mean_face([54])])


# ------------------------------------------------------------------ geometry (dlib's, in float64)


def similarity_transform(src: np.ndarray, dst: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Least-squares similarity (Umeyama, as dlib's find_similarity_transform): dst ~ M @ src + t."""
    src, dst = np.asarray(src, np.float64), np.asarray(dst, np.float64)
    mf, mt = src.mean(0), dst.mean(0)
    sigma = ((src - mf) ** 2).sum(1).mean()
    cov = (dst - mt).T @ (src - mf) / len(src)
    u, d, vt = np.linalg.svd(cov)
    s = np.eye(2)
    det = np.linalg.det(cov)
    if det < 0 or (det == 0 and np.linalg.det(u) * np.linalg.det(vt) < 0):
        s[1, 1] = -1  # numpy sorts d descending: flip the smaller singular direction, like dlib
    r = u @ s @ vt
    c = float(np.trace(np.diag(d) @ s) / sigma) if sigma != 0 else 1.0
    m = c * r
    return m, mt - m @ mf


def _affine3(src: np.ndarray, dst: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """dlib's find_affine_transform: dst ~ M @ src + t via Q * pinv(P)."""
    p = np.vstack([np.asarray(src, np.float64).T, np.ones(len(src))])
    m = np.asarray(dst, np.float64).T @ np.linalg.pinv(p)
    return m[:, :2], m[:, 2]


def _rect_down(r: tuple[float, ...]) -> tuple[float, ...]:
    """pyramid_down<2>::rect_down on a drectangle (l, t, r, b)."""
    return (r[0] / 2 - 1.25, r[1] / 2 - 0.75, r[2] / 2 - 1.25, r[3] / 2 - 0.75)


def _area(r: tuple[float, ...]) -> float:
    """drectangle::area(): width and height are inclusive (r - l + 1)."""
    if r[1] > r[3] or r[0] > r[2]:
        return 0.0
    return (r[2] - r[0] + 1) * (r[3] - r[1] + 1)


def _rotate(center: np.ndarray, p: np.ndarray, angle: float) -> np.ndarray:
    c, s = math.cos(angle), math.sin(angle)
    q = p - center
    return np.array([c * q[0] - s * q[1], s * q[0] + c * q[1]]) + center


def chip_details(chip_pts: np.ndarray, img_pts: np.ndarray, size: int) -> tuple[tuple[float, ...], float]:
    """dlib's chip_details(chip_points, img_points, chip_dims(size,size)): (drect l,t,r,b, angle)."""
    m, t = similarity_transform(chip_pts, img_pts)
    p = m @ np.array([1.0, 0.0])
    angle, scale = math.atan2(p[1], p[0]), math.hypot(p[0], p[1])
    cx, cy = m @ np.array([size / 2.0, size / 2.0]) + t
    half = (size * scale - 1) / 2  # centered_drect: (width - 1) / 2 each side
    return (cx - half, cy - half, cx + half, cy + half), angle


def _pyr_down(img: np.ndarray) -> np.ndarray:
    """pyramid_down<2> on an RGB uint8 image: [1 4 6 4 1]^2 / 256 filter, every other pixel."""
    nr, nc = img.shape[:2]
    if nr <= 8 or nc <= 8:
        return img[:0, :0]
    oc, orow = (nc - 3) // 2, (nr - 3) // 2
    x = img.astype(np.uint32)
    tmp = sum(w * x[:, j : j + 2 * oc : 2] for j, w in enumerate((1, 4, 6, 4, 1)))
    out = sum(w * tmp[j : j + 2 * orow : 2] for j, w in enumerate((1, 4, 6, 4, 1)))
    return (out // 256).astype(np.uint8)


def _bilinear(src: np.ndarray, m: np.ndarray, t: np.ndarray, size: int) -> np.ndarray:
    """transform_image with interpolate_bilinear: chip pixel (c,r) samples src at M@(c,r)+t."""
    if src.shape[0] < 2 or src.shape[1] < 2:  # nothing to interpolate from: all background
        return np.zeros((size, size, 3), np.uint8)
    cc, rr = np.meshgrid(np.arange(size, dtype=np.float64), np.arange(size, dtype=np.float64))
    x = (m[0, 0] * cc + m[0, 1] * rr) + t[0]
    y = (m[1, 0] * cc + m[1, 1] * rr) + t[1]
    left, top = np.floor(x), np.floor(y)
    ok = (left >= 0) & (top >= 0) & (left + 1 < src.shape[1]) & (top + 1 < src.shape[0])
    li, ti = np.where(ok, left, 0).astype(np.intp), np.where(ok, top, 0).astype(np.intp)
    lr, tb = (x - left)[..., None], (y - top)[..., None]
    s = src.astype(np.float64)
    tl, tr, bl, br = s[ti, li], s[ti, li + 1], s[ti + 1, li], s[ti + 1, li + 1]
    val = (1 - tb) * ((1 - lr) * tl + lr * tr) + tb * ((1 - lr) * bl + lr * br)
    out = np.clip(val, 0, 255).astype(np.uint8)  # assign_pixel(uchar, double) truncates
    out[~ok] = 0  # black_background
    return out


def extract_chip(image: np.ndarray, rect: tuple[float, ...], angle: float, size: int) -> np.ndarray:
    """dlib's extract_image_chip for a square chip: RGB uint8 (H,W,3) -> (size,size,3) uint8."""
    img = np.ascontiguousarray(image)
    if img.ndim != 3 or img.shape[2] != 3 or img.dtype != np.uint8:
        raise ValueError(f"image must be uint8 (H,W,3) RGB, got {img.dtype} {img.shape}")
    nr, nc = img.shape[:2]
    if angle == 0 and rect[2] - rect[0] + 1 == size and rect[3] - rect[1] + 1 == size:
        x0, y0 = (math.floor(v + 0.5) for v in rect[:2])  # basic_extract_image_chip: plain copy
        out = np.zeros((size, size, 3), np.uint8)
        ys, xs = slice(max(y0, 0), min(y0 + size, nr)), slice(max(x0, 0), min(x0 + size, nc))
        out[ys.start - y0 : ys.stop - y0, xs.start - x0 : xs.stop - x0] = img[ys, xs]
        return out
    depth, grow, r = 0, 2.0, _rect_down(rect)
    while _area(r) > size * size:
        r, depth, grow = _rect_down(r), depth + 1, grow * 2 + 2
    cen = np.array([(rect[0] + rect[2]) / 2, (rect[1] + rect[3]) / 2])
    corners = np.array([_rotate(cen, np.array(p), angle) for p in
                        ((rect[0], rect[1]), (rect[2], rect[1]), (rect[0], rect[3]), (rect[2], rect[3]))])
    lo = np.maximum(corners.min(0) - grow, 0)
    hi = np.minimum(corners.max(0) + grow, [nc - 1, nr - 1])
    bl, bt, br, bb = (math.floor(v + 0.5) for v in (lo[0], lo[1], hi[0], hi[1]))
    sub = img[max(bt, 0) : bb + 1, max(bl, 0) : br + 1]
    levels = []
    for _ in range(depth):
        levels.append(_pyr_down(levels[-1] if levels else sub))
    level, r = -1, (rect[0] - bl, rect[1] - bt, rect[2] - bl, rect[3] - bt)
    while _area(_rect_down(r)) > size * size:
        level, r = level + 1, _rect_down(r)
    c2 = np.array([(r[0] + r[2]) / 2, (r[1] + r[3]) / 2])
    to = [_rotate(c2, np.array(p), angle) for p in ((r[0], r[1]), (r[2], r[1]), (r[0], r[3]))]
    m, t = _affine3(np.array([[0, 0], [size - 1, 0], [0, size - 1]], np.float64), np.array(to))
    return _bilinear(sub if level < 0 else levels[level], m, t, size)


def face_chip(image: np.ndarray, landmarks5: np.ndarray, size: int = 150, padding: float = 0.25) -> np.ndarray:
    """``dlib.get_face_chip`` for dlib's 5 landmarks (5,2) x,y px: RGB uint8 (size,size,3)."""
    pts = np.asarray(landmarks5, np.float64).reshape(5, 2)
    chip_pts = (padding + DLIB5_TEMPLATE) / (2 * padding + 1) * size
    rect, angle = chip_details(chip_pts, pts, size)
    return extract_chip(image, rect, angle, size)


def mtcnn_chip(image: np.ndarray, mtcnn_landmarks5: np.ndarray, size: int = 150,
               padding: float = 0.25) -> np.ndarray:
    """A dlib-style chip from MTCNN's 5 points (left eye, right eye, nose, mouth left, mouth right;
    "left" = image left; (5,2) x,y px): similarity onto MTCNN_TEMPLATE, then dlib's extraction."""
    pts = np.asarray(mtcnn_landmarks5, np.float64).reshape(5, 2)
    chip_pts = (padding + MTCNN_TEMPLATE) / (2 * padding + 1) * size
    rect, angle = chip_details(chip_pts, pts, size)
    return extract_chip(image, rect, angle, size)


# ------------------------------------------------------------------ the 5-point shape predictor


class _Reader:
    """The few pieces of dlib's serialisation a shape_predictor needs (see dlib/serialize.h)."""

    def __init__(self, data: bytes) -> None:
        self.b, self.pos = data, 0

    def int(self) -> int:
        ctl = self.b[self.pos]
        n = ctl & 0x0F
        v = int.from_bytes(self.b[self.pos + 1 : self.pos + 1 + n], "little")
        self.pos += 1 + n
        return -v if ctl & 0x80 else v

    def floats(self, count: int) -> list[float]:
        """``count`` float_details (int64 mantissa, int16 exponent) pairs."""
        out = []
        for _ in range(count):
            out.append(math.ldexp(self.int(), self.int()))
        return out

    def matrix(self) -> np.ndarray:
        nr, nc = abs(self.int()), abs(self.int())  # negative sizes = dlib's newer format
        return np.array(self.floats(nr * nc), np.float32)


def _round_like_dlib(v: np.ndarray) -> np.ndarray:
    """dlib's point(dpoint) rounding, floor(v + 0.5), of ``v = origin + f*size`` computed exactly.

    dlib maps through find_affine_transform (an SVD pseudo-inverse); numpy's pinv differs in the
    last bits and flips exact .5 ties (cascade 0 samples x = l + 0.75*w, a tie whenever
    w % 4 == 2). The exact value rounded half up matched dlib on 2000 random boxes."""
    return np.floor(np.asarray(v, np.float64) + 0.5)


class ShapePredictor5:
    """numpy version of ``dlib.shape_predictor`` for a (5-point) shape_predictor .dat file."""

    def __init__(self, path: str | Path) -> None:
        rd = _Reader(Path(path).read_bytes())
        if rd.int() != 1:
            raise ValueError("not a dlib shape_predictor (version != 1)")
        self.initial_shape = rd.matrix()  # (2*parts,) float32, normalised to the box
        idx, thresh, leaves = [], [], []
        for _ in range(rd.int()):  # cascades
            ci, ct, cl = [], [], []
            for _ in range(rd.int()):  # trees
                n = rd.int()
                spl = [(rd.int(), rd.int(), rd.floats(1)[0]) for _ in range(n)]
                ci.append([(a, b) for a, b, _ in spl])
                ct.append([t for _, _, t in spl])
                cl.append([rd.matrix() for _ in range(rd.int())])
            idx.append(np.array(ci, np.intp))  # (trees, splits, 2)
            thresh.append(np.array(ct, np.float32))  # (trees, splits)
            leaves.append(np.array(cl, np.float32))  # (trees, leaves, 2*parts)
        self.split_idx, self.split_thresh, self.leaf_values = idx, thresh, leaves
        self.anchor_idx = [np.array([rd.int() for _ in range(rd.int())], np.intp) for _ in range(rd.int())]
        self.deltas = []
        for _ in range(rd.int()):
            n = rd.int()
            self.deltas.append(np.array(rd.floats(2 * n), np.float32).reshape(n, 2))
        if rd.pos != len(rd.b):
            raise ValueError(f"{len(rd.b) - rd.pos} unread bytes at the end of {path}")

    @property
    def num_parts(self) -> int:
        return self.initial_shape.size // 2

    def __call__(self, image: np.ndarray, box: tuple[float, float, float, float],
                 subpixel: bool = False) -> np.ndarray:
        """Landmarks (parts,2) float64 x,y px for ``box`` = (x1,y1,x2,y2) inclusive, like
        ``dlib.rectangle(x1,y1,x2,y2)``; dlib rounds them to integers (``subpixel`` keeps floats)."""
        img = np.asarray(image)
        if img.ndim == 3:  # dlib's get_pixel_intensity(rgb_pixel): (r+g+b)/3 truncated
            grey = (img[..., :3].astype(np.uint32).sum(-1) // 3).astype(np.float32)
        else:
            grey = img.astype(np.float32)
        nr, nc = grey.shape
        x1, y1, x2, y2 = (float(v) for v in box)
        shape = self.initial_shape.copy()
        ref = self.initial_shape.reshape(-1, 2)
        for it in range(len(self.split_idx)):
            cur = shape.reshape(-1, 2)
            tf = similarity_transform(ref, cur)[0].astype(np.float32)
            d, a = self.deltas[it], cur[self.anchor_idx[it]]
            px = (tf[0, 0] * d[:, 0] + tf[0, 1] * d[:, 1]) + a[:, 0]  # float32, as dlib
            py = (tf[1, 0] * d[:, 0] + tf[1, 1] * d[:, 1]) + a[:, 1]
            px, py = px.astype(np.float64), py.astype(np.float64)  # exact: 24-bit f times an integer
            ix, iy = _round_like_dlib(x1 + px * (x2 - x1)), _round_like_dlib(y1 + py * (y2 - y1))
            inside = (ix >= 0) & (iy >= 0) & (ix < nc) & (iy < nr)
            fv = np.zeros(len(d), np.float32)
            fv[inside] = grey[iy[inside].astype(np.intp), ix[inside].astype(np.intp)]
            sidx, sth = self.split_idx[it], self.split_thresh[it]
            ntree, nsplit = sth.shape
            node = np.zeros(ntree, np.intp)
            trees = np.arange(ntree)
            while (node < nsplit).any():  # full binary trees: all leaves at the same depth
                i1, i2 = sidx[trees, node, 0], sidx[trees, node, 1]
                node = np.where(fv[i1] - fv[i2] > sth[trees, node], 2 * node + 1, 2 * node + 2)
            upd = self.leaf_values[it][trees, node - nsplit]
            shape = np.cumsum(np.vstack([shape[None], upd]), axis=0, dtype=np.float32)[-1]
        cur = shape.reshape(-1, 2).astype(np.float64)
        out = np.stack([x1 + cur[:, 0] * (x2 - x1), y1 + cur[:, 1] * (y2 - y1)], axis=1)
        return out if subpixel else _round_like_dlib(out)
