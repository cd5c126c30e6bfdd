"""Uploaded bytes -> a BGR image, checked as an image by its content (never its name or type),
with the pixel count read from the header before anything is decoded (decompression bombs)."""

from __future__ import annotations

import io
import warnings

import numpy as np

from edge_app import preprocess
from edge_app.errors import EdgeClfError, require

FORMATS = {"JPEG", "MPO", "PNG", "BMP", "WEBP"}  # MPO: the multi-picture JPEG many phones write
MAX_PIXELS = 40_000_000


class BadUpload(EdgeClfError):
    """An upload that is not a usable image: answered with 400 and this message."""


def decode(data: bytes, max_pixels: int = MAX_PIXELS) -> np.ndarray:
    """Validate and decode an uploaded image; BadUpload with a clear message otherwise."""
    if not data:
        raise BadUpload("empty upload: send an image file")
    image_mod = require("PIL.Image", "web")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", image_mod.DecompressionBombWarning)
            with image_mod.open(io.BytesIO(data)) as im:  # reads the header only
                width, height, fmt = im.width, im.height, im.format
    except (image_mod.DecompressionBombError, image_mod.DecompressionBombWarning):
        raise BadUpload("image refused: its header declares far too many pixels") from None
    except Exception:  # noqa: BLE001 - PIL raises several types for non-images
        raise BadUpload("not an image: upload a JPEG, PNG, BMP or WebP file") from None
    if fmt not in FORMATS:
        raise BadUpload(f"unsupported image format {fmt}: upload a JPEG, PNG, BMP or WebP file")
    if width * height > max_pixels:
        raise BadUpload(f"image is {width}x{height} pixels, more than the limit of {max_pixels:,}")
    cv2 = preprocess._cv2()
    image = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR)
    if image is None:
        raise BadUpload(f"corrupt {fmt} image: it could not be decoded")
    return image
