"""Uploaded bytes -> a BGR image through the shared decoder (`edgeclf.edge_app.imagedecode`): checked as an
image by its content (never its name or type), the header's pixel count checked before anything is
decoded (decompression bombs), large JPEGs decoded at reduced scale, and the memory of the decodes
in flight bounded for the whole server (eight concurrent uploads cannot multiply it)."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import ExitStack, contextmanager

import numpy as np

from edgeclf.edge_app import imagedecode
from edgeclf.edge_app.imagedecode import DecodeLimits, ImageRejected, MemoryBudget, MiB

FORMATS = frozenset({"JPEG", "PNG", "BMP", "WEBP"})  # MPO, the multi-picture JPEG phones write, is a JPEG
MAX_PIXELS = 40_000_000
MAX_DECODE_BYTES = 64 * MiB  # one decode: a 3600x2700 PNG fits (about 60 MiB), a 6000x6000 one (223 MiB) does not
UPLOAD_BUDGET = MemoryBudget(MAX_DECODE_BYTES)  # shared by every request thread: big decodes take turns


class BadUpload(ImageRejected):
    """An upload that is not a usable image: answered with 400 and this message."""


class UploadBusy(BadUpload):
    """The decode budget stayed taken: answered with 503."""

    status = 503


@contextmanager
def decoded(data: bytes, max_pixels: int = MAX_PIXELS) -> Iterator[np.ndarray]:
    """Validate and decode an upload; the image's memory stays counted in the server's budget until
    the block ends (the request has classified it and stored its thumbnail). BadUpload otherwise."""
    if not data:
        raise BadUpload("empty upload: send an image file")
    limits = DecodeLimits(max_pixels, MAX_DECODE_BYTES, UPLOAD_BUDGET, FORMATS)
    with ExitStack() as stack:
        try:
            image = stack.enter_context(imagedecode.decoded(data, limits))
        except imagedecode.DecodeBusy as exc:
            raise UploadBusy(f"server {exc}") from None
        except ImageRejected as exc:
            message = str(exc)
            if message.startswith("not an image"):
                message = "not an image: upload a JPEG, PNG, BMP or WebP file"
            raise BadUpload(message) from None
        yield image
