"""Turning files (and odd arrays) into the one image convention: RGB ``uint8`` ``(H, W, 3)``.

Taught in notebook 01. This is the only place where files become arrays, so EXIF orientation,
colour modes, bit depth and broken files are handled once, with errors that name the file and
the fix.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

__all__ = ["ImageLoadError", "load_image", "load_image_scaled", "decode_image", "as_rgb", "check_image_bytes",
           "decode_image_bytes", "IMAGE_SUFFIXES", "MAX_PIXELS", "MAX_DECODED_PIXELS", "MAX_FILE_BYTES",
           "MAX_FRAME_BYTES", "MAX_FRAME_PIXELS"]

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".gif", ".tif", ".tiff", ".webp")
#: Largest photo accepted (pixels): 200 MP (the largest phone sensors give ~200 MP). Checked from
#: the file's header BEFORE decoding, so a decompression bomb (a few KB that would decode to
#: gigabytes) is refused without the memory being spent. facekit lifts Pillow's own cap
#: (``PIL.Image.MAX_IMAGE_PIXELS``, 89 MP warning / 179 MP error) to this limit, since it checks
#: every file itself.
MAX_PIXELS = 200_000_000
#: Photos with more pixels than this are decoded at reduced size (by 2, 4 or 8 per side) so the
#: array holds at most 50 MP (150 MB RGB). JPEGs are decoded straight at that size (the decoder's
#: draft mode), so a baseline JPEG of any size up to MAX_PIXELS takes at most ~9 bytes per decoded
#: pixel at the peak: under 500 MB (a progressive JPEG also holds its coefficients, ~3 bytes per
#: pixel of the file: under 1.1 GB at MAX_PIXELS). Other formats are decoded whole, then reduced:
#: ~6-9 bytes per pixel of the file, bounded by MAX_PIXELS. :func:`load_image_scaled` says by how
#: much a photo was reduced.
MAX_DECODED_PIXELS = 50_000_000
MAX_FILE_BYTES = 512 * 2**20  # 512 MiB: no photo is larger
#: Caps for camera frames from a browser (JPEG/PNG bytes): 8 MiB and 16 MP (4096 x 4096).
MAX_FRAME_BYTES = 8 * 2**20
MAX_FRAME_PIXELS = 4096 * 4096


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
    white), and uint16/float data. ``name`` only labels errors. A path, bytes or a list of images
    is refused with an error naming the right call.
    """
    if isinstance(image, (str, os.PathLike)):
        raise TypeError(f"expected an image array, got the path {str(image)!r}. Fix: load_image(path) reads a "
                        "file (facekit.extract_faces(path) takes a path too)")
    if isinstance(image, (bytes, bytearray, memoryview)):
        raise TypeError("expected an image array, got encoded bytes. Fix: decode_image_bytes(data)")
    if isinstance(image, (list, tuple)) and image and (isinstance(image[0], (str, os.PathLike)) or
                                                       (isinstance(image[0], np.ndarray) and image[0].ndim >= 2)):
        raise TypeError(f"expected one image, got a {type(image).__name__} of {len(image)}. Fix: call it once per "
                        "image, e.g. [extract_faces(im) for im in images]")
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


#: Above 16 MP, a file decoded in full (not a JPEG: those decode at reduced size) that claims more
#: than this many pixels per byte of file is a decompression bomb: deflate, PNG's compression,
#: cannot reach ~1032:1, and real images store far more (photos 0.1-3 bytes per pixel, a scan
#: with text ~0.05); a 140 KB PNG of 12000x12000 grey pixels stores 0.001.
BOMB_PIXELS_PER_BYTE = 1000


def _check_pixels(w: int, h: int, max_pixels: int, name, n_bytes: int | None = None) -> None:
    if w <= 0 or h <= 0 or w * h > max_pixels:
        raise ImageLoadError(name, f"image of {w}x{h} = {w * h / 1e6:.1f} MP exceeds the {max_pixels / 1e6:g} MP "
                                   "limit (or is a decompression bomb)",
                             "downscale it first, or raise max_pixels if you trust the file")
    if n_bytes and w * h > 2**24 and w * h > BOMB_PIXELS_PER_BYTE * n_bytes:
        raise ImageLoadError(name, f"a decompression bomb: {n_bytes} bytes claim {w}x{h} pixels "
                                   f"({w * h * 3 / 2**30:.1f} GiB decoded)",
                             "do not open files from untrusted sources; re-export the photo")


def _lift_pillow_cap(max_pixels: int) -> None:
    """Pillow refuses images over 2 x ``Image.MAX_IMAGE_PIXELS`` (179 MP by default) and warns
    above it; facekit checks pixels itself (:func:`_check_pixels`), so the cap is lifted to its own."""
    from PIL import Image

    if Image.MAX_IMAGE_PIXELS is not None and Image.MAX_IMAGE_PIXELS < max_pixels:
        Image.MAX_IMAGE_PIXELS = int(max_pixels)


def _reduction(w: int, h: int, max_decoded: int | None) -> int:
    """The power of two (1, 2, 4, 8, ...) by which a ``w`` x ``h`` image is reduced per side so
    that it holds at most ``max_decoded`` pixels."""
    k = 1
    while max_decoded and (w // k) * (h // k) > max_decoded:
        k *= 2
    return k


def decode_image(fh, name, *, n_bytes: int | None = None, max_pixels: int = MAX_PIXELS,
                 max_decoded_pixels: int | None = MAX_DECODED_PIXELS, max_side: int | None = None
                 ) -> tuple[np.ndarray, float]:
    """Decode an open image file (or ``io.BytesIO``) to upright RGB ``uint8 (H, W, 3)`` and
    ``scale``: full-resolution pixels per decoded pixel (1.0 unless it was reduced).

    Refused (:class:`ImageLoadError`), from the header before decoding: more than ``max_pixels``;
    a file decoded in full that claims a decompression bomb's pixels per byte. Reduced: to at most
    ``max_decoded_pixels`` (see :data:`MAX_DECODED_PIXELS`), and JPEGs whose longer side exceeds
    2 x ``max_side`` to about ``max_side`` (JPEG draft mode, the size detection works at)."""
    from PIL import Image, ImageOps, UnidentifiedImageError

    _lift_pillow_cap(max_pixels)
    try:
        with Image.open(fh) as im:
            w, h = full = im.size
            jpeg = im.format == "JPEG"
            _check_pixels(w, h, max_pixels, name, None if jpeg else n_bytes)  # header only: nothing decoded
            k = _reduction(w, h, max_decoded_pixels)
            if jpeg and max_side and max(full) > 2 * max_side:
                k = max(k, min(8, 2 ** int(np.log2(max(full) / float(max_side)))))
            if jpeg and k > 1:  # decoded straight at 1/2, 1/4 or 1/8 of the size
                im.draft("RGB", (-(-w // min(k, 8)), -(-h // min(k, 8))))
            im.load()  # forces decoding: raises on truncated / corrupt data
            if max_decoded_pixels and im.size[0] * im.size[1] > max_decoded_pixels:  # not a JPEG, or draft fell short
                im = im.reduce(_reduction(im.size[0], im.size[1], max_decoded_pixels))
            decoded = im.size
            ImageOps.exif_transpose(im, in_place=True)  # no copy of an upright photo
            mode = im.mode  # each branch makes as few full-size copies as it can (memory bound)
            if mode in ("I;16", "I;16B", "I;16L", "I;16N", "I", "F", "L"):
                arr = as_rgb(np.asarray(im), name=str(name))
            elif mode in ("RGBA", "LA", "PA") or (mode == "P" and "transparency" in im.info):
                arr = as_rgb(np.asarray(im.convert("RGBA")), name=str(name))
            elif mode == "RGB":
                arr = np.asarray(im)
            else:  # 1, P, CMYK, YCbCr, ...
                arr = np.asarray(im.convert("RGB"))
    except ImageLoadError:
        raise
    except UnidentifiedImageError:
        raise ImageLoadError(name, "not an image file (or an unsupported format)",
                             "convert it to JPEG or PNG, or remove it from the folder") from None
    except Image.DecompressionBombError as exc:
        raise ImageLoadError(name, f"image is implausibly large, a decompression bomb ({exc})",
                             "downscale it before loading") from None
    except MemoryError:
        raise ImageLoadError(name, "not enough memory to decode it", "downscale it first") from None
    except (OSError, SyntaxError, ValueError) as exc:
        raise ImageLoadError(name, f"image data is truncated or corrupt ({exc})",
                             "re-export or re-download the photo, or remove it") from None
    return np.ascontiguousarray(arr, dtype=np.uint8), float(full[0]) / float(decoded[0])


def load_image(path: str | os.PathLike, *, max_pixels: int = MAX_PIXELS,
               max_bytes: int = MAX_FILE_BYTES) -> np.ndarray:
    """Read an image file as upright RGB ``uint8 (H, W, 3)``.

    - EXIF orientation is applied (phone photos come out upright before detection).
    - Grayscale, palette, RGBA/LA (composited on white), CMYK and 16-bit files become RGB 8-bit.
    - Photos over :data:`MAX_DECODED_PIXELS` (50 MP) come back reduced by 2, 4 or 8 per side,
      decoded in bounded memory (:func:`load_image_scaled` also returns the factor).
    - Missing, empty, unreadable (permissions), truncated, corrupt or non-image files raise
      :class:`ImageLoadError` naming the file and the fix; so do files over ``max_bytes`` and
      images over ``max_pixels`` (checked from the header, before decoding: decompression bombs).
    """
    return load_image_scaled(path, max_pixels=max_pixels, max_bytes=max_bytes)[0]


def load_image_scaled(path: str | os.PathLike, *, max_pixels: int = MAX_PIXELS, max_bytes: int = MAX_FILE_BYTES,
                      max_decoded_pixels: int | None = MAX_DECODED_PIXELS) -> tuple[np.ndarray, float]:
    """:func:`load_image` and ``scale``, the full-resolution pixels per returned pixel (1.0, or
    2, 4, 8 for a photo over ``max_decoded_pixels``; None decodes at full size)."""
    if isinstance(path, np.ndarray):
        raise TypeError(f"load_image reads a file, but got an image array {path.shape}. Fix: pass the array "
                        "directly (facekit.extract_faces(image), detector.detect(image)); as_rgb(image) converts it")
    if isinstance(path, (list, tuple)):
        raise TypeError(f"load_image reads one file, not a {type(path).__name__} of {len(path)}. Fix: "
                        "[load_image(p) for p in paths]")
    if not isinstance(path, (str, os.PathLike)):
        raise TypeError(f"load_image takes a file path (str or Path), got {type(path).__name__}. Fix: "
                        "decode_image_bytes(data) for bytes")
    p = Path(path)
    try:
        st = p.stat()
    except FileNotFoundError:
        raise ImageLoadError(p, "file not found", "check the path (relative paths start from "
                             f"the current folder, {os.getcwd()})") from None
    except PermissionError:
        raise ImageLoadError(p, "permission denied (cannot reach the file)",
                             "make its folder readable to you (chmod u+rx)") from None
    except OSError as exc:  # a symbolic-link loop (ELOOP), a name too long, ...
        raise ImageLoadError(p, f"cannot reach the file ({exc.strerror or exc})",
                             "check the path; remove or correct a symbolic link that loops") from None
    if p.is_dir():
        raise ImageLoadError(p, "is a folder, not an image", "use facekit.data.folders.load_folder for folders")
    if st.st_size == 0:
        raise ImageLoadError(p, "file is empty (0 bytes)", "copy the photo again or delete the file")
    if st.st_size > max_bytes:
        raise ImageLoadError(p, f"file is {st.st_size / 2**20:.0f} MiB, over the {max_bytes / 2**20:.0f} MiB limit",
                             "downscale or re-encode it, or raise max_bytes if you trust the file")
    try:
        fh = open(p, "rb")
    except PermissionError:
        raise ImageLoadError(p, "permission denied (the file is not readable by you)",
                             "make it readable (chmod u+r) or copy it somewhere you own") from None
    except OSError as exc:
        raise ImageLoadError(p, f"cannot open the file ({exc.strerror})", "check the disk and the path") from None
    with fh:
        return decode_image(fh, p, n_bytes=st.st_size, max_pixels=max_pixels, max_decoded_pixels=max_decoded_pixels)


def check_image_bytes(data: bytes | bytearray | memoryview, *, max_bytes: int = MAX_FRAME_BYTES,
                      max_pixels: int = MAX_FRAME_PIXELS, name: str = "frame") -> tuple[int, int]:
    """``(width, height)`` of encoded image bytes (JPEG/PNG/...) from the header alone, after
    refusing more than ``max_bytes`` bytes or ``max_pixels`` pixels with :class:`ImageLoadError`:
    call it before decoding anything a browser or a network sent (notebook 06's frames)."""
    import io as _io

    from PIL import Image, UnidentifiedImageError

    if not isinstance(data, (bytes, bytearray, memoryview)):
        raise TypeError(f"check_image_bytes / decode_image_bytes take encoded image bytes, got "
                        f"{type(data).__name__}. Fix: load_image(path) reads a file; an array is an image already")
    n = len(memoryview(data).cast("B")) if not isinstance(data, (bytes, bytearray)) else len(data)
    if n == 0:
        raise ImageLoadError(name, "no image data (0 bytes)", "send a JPEG or PNG frame")
    if n > max_bytes:
        raise ImageLoadError(name, f"{n / 2**20:.1f} MiB of image data, over the {max_bytes / 2**20:g} MiB limit",
                             "send smaller frames (e.g. 640 px wide JPEG)")
    try:
        with Image.open(_io.BytesIO(bytes(data))) as im:
            w, h = im.size
    except UnidentifiedImageError:
        raise ImageLoadError(name, f"not an image ({n} bytes)", "send JPEG or PNG bytes") from None
    except Exception as exc:  # PIL raises many types on broken headers; all mean "corrupt"
        raise ImageLoadError(name, f"corrupt image header ({type(exc).__name__}: {exc})",
                             "send JPEG or PNG bytes") from None
    _check_pixels(w, h, max_pixels, name, n)
    return w, h


def decode_image_bytes(data: bytes | bytearray | memoryview, *, max_bytes: int = MAX_FRAME_BYTES,
                       max_pixels: int = MAX_FRAME_PIXELS, name: str = "frame") -> np.ndarray:
    """Encoded image bytes -> RGB ``uint8 (H, W, 3)``, capped in bytes and pixels before decoding
    (:func:`check_image_bytes`); :class:`ImageLoadError` for anything unusable. Notebook 06."""
    import cv2

    check_image_bytes(data, max_bytes=max_bytes, max_pixels=max_pixels, name=name)
    img = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR)
    if img is None:
        raise ImageLoadError(name, "could not decode the image data (corrupt or truncated)",
                             "send complete JPEG or PNG frames")
    return cv2.cvtColor(img, cv2.COLOR_BGR2RGB)
