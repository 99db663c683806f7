"""Turning files (and odd arrays) into the one image convention: RGB ``uint8`` ``(H, W, 3)``.

Taught in notebook 01. This is the only place where files become arrays, so EXIF orientation,
colour modes, bit depth and broken files are handled once, with errors that name the file and
the fix.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

__all__ = ["ImageLoadError", "load_image", "as_rgb", "IMAGE_SUFFIXES"]

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".gif", ".tif", ".tiff", ".webp")


class ImageLoadError(ValueError):
    """An image file could not be turned into an RGB array; the message says why and what to do."""

    def __init__(self, path: str | os.PathLike | None, reason: str, fix: str):
        self.path = None if path is None else str(path)
        self.reason = reason
        self.fix = fix
        where = f"{self.path}: " if self.path else ""
        super().__init__(f"{where}{reason}. Fix: {fix}")


def _to_uint8(arr: np.ndarray) -> np.ndarray:
    if arr.dtype == np.uint8:
        return arr
    if arr.dtype == np.bool_:
        return arr.astype(np.uint8) * 255
    if np.issubdtype(arr.dtype, np.floating):
        hi = float(np.nanmax(arr)) if arr.size else 0.0
        scale = 255.0 if hi <= 1.0 + 1e-6 else 1.0  # floats in [0, 1] or [0, 255]
        return np.clip(np.nan_to_num(arr) * scale + 0.5, 0, 255).astype(np.uint8)
    if np.issubdtype(arr.dtype, np.integer):
        hi = int(arr.max()) if arr.size else 0
        if hi > 255:  # 16-bit (or wider) data: keep the top 8 bits of its range
            bits = max(8, int(np.ceil(np.log2(hi + 1))))
            bits = 16 if bits <= 16 else bits
            return (arr.astype(np.uint64) >> (bits - 8)).astype(np.uint8)
        return np.clip(arr, 0, 255).astype(np.uint8)
    raise TypeError(f"unsupported image dtype {arr.dtype}")


def as_rgb(image: np.ndarray, *, name: str | None = None) -> np.ndarray:
    """Coerce an array to RGB ``uint8 (H, W, 3)``, C-contiguous.

    Accepts grayscale ``(H, W)`` or ``(H, W, 1)``, RGBA ``(H, W, 4)`` (alpha dropped onto
    white), and uint16/float data. ``name`` only labels errors.
    """
    arr = np.asarray(image)
    if arr.ndim == 2:
        arr = arr[:, :, None]
    if arr.ndim != 3 or arr.shape[2] not in (1, 3, 4) or arr.shape[0] == 0 or arr.shape[1] == 0:
        raise ImageLoadError(name, f"expected an image array (H, W), (H, W, 3) or (H, W, 4), "
                                   f"got shape {arr.shape}", "pass one RGB image, not a batch")
    arr = _to_uint8(arr)
    if arr.shape[2] == 1:
        arr = np.repeat(arr, 3, axis=2)
    elif arr.shape[2] == 4:
        alpha = arr[:, :, 3:4].astype(np.float32) / 255.0
        arr = (arr[:, :, :3].astype(np.float32) * alpha + 255.0 * (1 - alpha) + 0.5).astype(np.uint8)
    return np.ascontiguousarray(arr)


def load_image(path: str | os.PathLike) -> np.ndarray:
    """Read an image file as upright RGB ``uint8 (H, W, 3)``.

    - EXIF orientation is applied (phone photos come out upright before detection).
    - Grayscale, palette, RGBA/LA (composited on white), CMYK and 16-bit files become RGB 8-bit.
    - Missing, empty, truncated, corrupt or non-image files raise :class:`ImageLoadError`
      naming the file and the fix.
    """
    from PIL import Image, ImageOps, UnidentifiedImageError

    p = Path(path)
    if not p.exists():
        raise ImageLoadError(p, "file not found", "check the path (relative paths start from "
                             f"the current folder, {os.getcwd()})")
    if p.is_dir():
        raise ImageLoadError(p, "is a folder, not an image", "use facekit.datasets.load_folder for folders")
    if p.stat().st_size == 0:
        raise ImageLoadError(p, "file is empty (0 bytes)", "copy the photo again or delete the file")
    try:
        with Image.open(p) as im:
            im.load()  # forces decoding: raises on truncated / corrupt data
            im = ImageOps.exif_transpose(im)
            mode = im.mode
            if mode in ("I;16", "I;16B", "I;16L", "I;16N", "I"):
                arr = as_rgb(np.asarray(im), name=str(p))
            elif mode == "F":
                arr = as_rgb(np.asarray(im), name=str(p))
            elif mode in ("RGBA", "LA", "PA") or (mode == "P" and "transparency" in im.info):
                arr = as_rgb(np.asarray(im.convert("RGBA")), name=str(p))
            else:  # L, 1, P, CMYK, YCbCr, RGB, ...
                arr = np.asarray(im.convert("RGB"))
    except UnidentifiedImageError:
        raise ImageLoadError(p, "not an image file (or an unsupported format)",
                             "convert it to JPEG or PNG, or remove it from the folder") from None
    except (OSError, SyntaxError, ValueError) as exc:
        raise ImageLoadError(p, f"image data is truncated or corrupt ({exc})",
                             "re-export or re-download the photo, or remove it") from None
    except Image.DecompressionBombError as exc:
        raise ImageLoadError(p, f"image is implausibly large ({exc})",
                             "downscale it before loading") from None
    return np.ascontiguousarray(arr, dtype=np.uint8)
