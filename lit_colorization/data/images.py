"""Robust decoding of one image file into an 8-bit RGB array.

Conversions (all to H x W x 3 uint8):
- EXIF orientation is applied, so pixels are in display order.
- Anything with transparency (RGBA, LA, PA, palette or RGB with a transparent colour) is composited on
  white: fully transparent pixels often hold arbitrary (frequently black) colours that would otherwise
  become fake colour targets, and white is how viewers show them.
- 16-bit and 32-bit integer images are scaled from 0..65535 to 0..255 (PIL's own conversion clips).
- CMYK uses PIL's conversion (embedded ICC profiles are not applied); grayscale and palette images are expanded.
Anything PIL cannot decode (truncated, empty, not an image, too many pixels) is "unreadable".
"""

from __future__ import annotations

import io
import logging
import os
import re
import warnings

import numpy as np
from PIL import Image, ImageOps

logger = logging.getLogger(__name__)

SIXTEEN_BIT_MODES = frozenset({"I;16", "I;16B", "I;16L", "I;16N", "I"})
SIXTEEN_BIT_MAX = 65535

# Per process: a DataLoader worker warns about each bad file once, not once per epoch.
_reported_unreadable: set[str] = set()


class UnreadableImageError(ValueError):
    """A file that cannot be decoded into an RGB image; the one-line message names the file and the reason.

    It takes the message as its only argument so that DataLoader workers can re-raise it with its type.
    """


def read_rgb(
    path: str | os.PathLike[str], strict: bool = False, data: bytes | None = None
) -> np.ndarray | None:
    """Decode `path` into an H x W x 3 uint8 array; or `data`, the file's bytes read already (from a shard), which
    `path` then only names.

    Returns None for an unreadable file (logged once per file and process), or raises
    `UnreadableImageError` when `strict` is true.
    """
    path_str = os.fspath(path)
    try:
        return _decode(path_str if data is None else io.BytesIO(data))
    except Exception as error:
        # PIL's format plugins raise many exception types on corrupt data (OSError, SyntaxError,
        # struct.error, IndexError...); every one of them means "this file cannot be used".
        message = f"unreadable image {path_str}: {_describe(error)}"
        if strict:
            raise UnreadableImageError(message) from error
    _warn_once(path_str, message)
    return None


def _decode(path: str | io.BytesIO) -> np.ndarray:
    with warnings.catch_warnings():
        # Between MAX_IMAGE_PIXELS and twice that PIL only warns; refuse those files too.
        warnings.simplefilter("error", Image.DecompressionBombWarning)
        with Image.open(path) as image:
            ImageOps.exif_transpose(image, in_place=True)  # in place: no copy of upright images
            return _to_rgb_array(image)


def _describe(error: Exception) -> str:
    if isinstance(error, (Image.DecompressionBombError, Image.DecompressionBombWarning)):
        return _one_line(f"too many pixels, possible decompression bomb ({error})")
    # Bytes read already (from a shard) are named by the caller, not by the buffer's repr.
    text = re.sub(r"<_io\.BytesIO object at 0x[0-9a-f]+>", "its bytes", str(error))
    return _one_line(f"{type(error).__name__}: {text}")


def _to_rgb_array(image: Image.Image) -> np.ndarray:
    if image.mode in SIXTEEN_BIT_MODES:
        return _sixteen_bit_gray_to_rgb(np.asarray(image))
    if image.mode == "F":
        raise ValueError("floating-point images (mode F) are not supported")
    if image.has_transparency_data:
        return _composite_on_white(image.convert("RGBA"))
    return np.array(image.convert("RGB"), dtype=np.uint8)


def _sixteen_bit_gray_to_rgb(values: np.ndarray) -> np.ndarray:
    if values.size and (values.min() < 0 or values.max() > SIXTEEN_BIT_MAX):
        raise ValueError(f"integer pixel values outside 0..{SIXTEEN_BIT_MAX}")
    gray = np.rint(values.astype(np.float32) * (255.0 / SIXTEEN_BIT_MAX)).astype(np.uint8)
    return np.repeat(gray[..., None], 3, axis=2)


def _composite_on_white(rgba: Image.Image) -> np.ndarray:
    white = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
    return np.array(Image.alpha_composite(white, rgba).convert("RGB"), dtype=np.uint8)


def _one_line(text: str) -> str:
    return " ".join(text.split())


def _warn_once(path: str, message: str) -> None:
    if path in _reported_unreadable:
        return
    _reported_unreadable.add(path)
    logger.warning("skipping %s", message)
