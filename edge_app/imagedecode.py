"""The one image decoder: header checked against a pixel and memory budget before OpenCV decodes.

Every image the project reads goes through `decode`: `edgeclf run` on files, training, calibration,
benchmark and doctor data (through `sources.read_image`), and web uploads. The rules:

- The header's dimensions are read first (`imageheader.probe`); more than `max_pixels` is refused
  without decoding a byte.
- Large JPEGs are decoded at 1/2, 1/4 or 1/8 scale in libjpeg's DCT domain while the short side
  stays at least `KEEP_SIDE` pixels: a 4000x3000 photo becomes 1000x750 with a fraction of the
  memory, far more than any classifier input needs. Other formats decode at full size.
- The memory the decode will take is estimated (measured with OpenCV 5.0: about 6 bytes per
  output pixel, 8 for GIF and 10 for TIFF, plus a progressive JPEG's full-size coefficients); one
  decode over `max_bytes` is refused, and decodes in flight share a `MemoryBudget`, so a thread
  pool or eight concurrent uploads cannot multiply it.
- `cv2.error` and undecodable data become `ImageRejected` with one line saying why.
"""

from __future__ import annotations

import functools
import os
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from edgeclf.edge_app import preprocess
from edgeclf.edge_app.errors import EdgeClfError
from edgeclf.edge_app.imageheader import HEAD_BYTES, ImageHeader, png_chunk_problem, probe, sniff

KEEP_SIDE = 512  # reduced JPEG decoding keeps at least this many pixels on the short side
BYTES_PER_PIXEL = {"GIF": 8.5, "TIFF": 10.5}  # peak decode memory per output pixel; 6.5 for the rest
DEFAULT_BYTES_PER_PIXEL = 6.5
MiB = 1024 * 1024


class ImageRejected(EdgeClfError):
    """Bytes that are not a usable image, or one too large to decode within the budget."""


class DecodeBusy(ImageRejected):
    """The memory budget stayed taken by other decodes for longer than the wait allows."""


class MemoryBudget:
    """Bytes of decode memory shared by the decodes in flight; a decode waits for its share."""

    def __init__(self, total: int, wait: float = 30.0) -> None:
        self.total = total
        self.wait = wait
        self.used = 0
        self._cond = threading.Condition()

    def acquire(self, amount: int) -> None:
        amount = min(amount, self.total)
        with self._cond:
            if not self._cond.wait_for(lambda: self.used + amount <= self.total, self.wait):
                raise DecodeBusy(f"busy decoding other images for {self.wait:g} s; try again")
            self.used += amount

    def release(self, amount: int) -> None:
        with self._cond:
            self.used -= min(amount, self.total)
            self._cond.notify_all()


@dataclass(frozen=True)
class DecodeLimits:
    """`max_pixels` declared by the header, `max_bytes` of memory for one decode, shared `budget`."""

    max_pixels: int
    max_bytes: int
    budget: MemoryBudget
    formats: frozenset[str] | None = None  # None: every format imageheader knows


# run, datasets, bench, doctor: generous, but a 30000x30000 PNG (5 GB decoded) is refused
# (files wait for their turn as long as it takes: an image dropped from training data for being unlucky is worse)
FILE_LIMITS = DecodeLimits(max_pixels=200_000_000, max_bytes=256 * MiB, budget=MemoryBudget(384 * MiB, wait=3600))
MAX_FILE_BYTES = 64 * MiB  # an image file larger than this is not read at all


def reduction(header: ImageHeader) -> int:
    """The JPEG scale denominator (1, 2, 4 or 8) that keeps the short side at least KEEP_SIDE."""
    if not header.scalable:
        return 1
    short = min(header.width, header.height)
    factor = 1
    while factor < 8 and short // (factor * 2) >= KEEP_SIDE:
        factor *= 2
    return factor


def out_pixels(header: ImageHeader, factor: int) -> int:
    """Pixels of `header`'s image decoded at 1/`factor` scale (libjpeg rounds up)."""
    return -(-header.width // factor) * -(-header.height // factor)


def decode_bytes_needed(header: ImageHeader, factor: int) -> int:
    """Estimated peak memory of decoding `header` at 1/`factor` scale."""
    per_pixel = BYTES_PER_PIXEL.get(header.format, DEFAULT_BYTES_PER_PIXEL) * header.sample_bytes
    return int(out_pixels(header, factor) * per_pixel) + header.coefficient_bytes


def probe_checked(head: bytes | np.ndarray, limits: DecodeLimits) -> tuple[ImageHeader, int, int]:
    """(header, scale factor, estimated bytes) of image bytes; ImageRejected saying why not otherwise."""
    header = probe(head)
    if header is None:
        kind = sniff(bytes(head[:HEAD_BYTES]))
        if kind is not None:
            raise ImageRejected(f"corrupt {kind} image: its header is cut short or malformed")
    return header, *check(header, limits)


def check(header: ImageHeader | None, limits: DecodeLimits) -> tuple[int, int]:
    """(scale factor, estimated bytes) for decoding; ImageRejected with the reason otherwise."""
    if header is None:
        raise ImageRejected("not an image: expected a JPEG, PNG, BMP, WebP, GIF, TIFF or PNM file")
    if limits.formats is not None and header.format not in limits.formats:
        allowed = ", ".join(sorted(limits.formats))
        raise ImageRejected(f"unsupported image format {header.format}: use {allowed}")
    size = f"{header.width}x{header.height}"
    if header.pixels > 10 * limits.max_pixels:
        raise ImageRejected(f"image refused: its header declares far too many pixels ({size})")
    if header.pixels > limits.max_pixels:
        raise ImageRejected(f"image is {size} pixels, more than the limit of {limits.max_pixels:,}")
    factor = reduction(header)
    need = decode_bytes_needed(header, factor)
    if need > limits.max_bytes:
        raise ImageRejected(
            f"{size} {header.format} image needs about {need / MiB:.0f} MiB to decode, more than the "
            f"{limits.max_bytes / MiB:.0f} MiB allowed; send a smaller image"
            + (" or a JPEG" if header.format != "JPEG" else "")
        )
    return factor, need


_FLAGS = {1: "IMREAD_COLOR", 2: "IMREAD_REDUCED_COLOR_2", 4: "IMREAD_REDUCED_COLOR_4", 8: "IMREAD_REDUCED_COLOR_8"}


# the smallest GIF (1x1), to ask OpenCV whether it was built with a GIF reader
TINY_GIF = (
    b"GIF89a\x01\x00\x01\x00\x80\x00\x00\x00\x00\x00\xff\xff\xff"
    b",\x00\x00\x00\x00\x01\x00\x01\x00\x00\x02\x02D\x01\x00;"
)


@functools.cache
def reads_gif() -> bool:
    """Whether this OpenCV decodes GIF (5.0's wheels do; opencv-python's 4.x wheels are built without it)."""
    cv2 = preprocess._cv2()
    return cv2.imdecode(np.frombuffer(TINY_GIF, np.uint8), cv2.IMREAD_COLOR) is not None


@contextmanager
def decoded(data: bytes | np.ndarray, limits: DecodeLimits = FILE_LIMITS) -> Iterator[np.ndarray]:
    """Decode within `limits` and keep the image's share of the memory budget until the block ends,
    so a caller that holds the full-size image (a web request classifying it) stays counted."""
    buf = np.frombuffer(data, np.uint8) if isinstance(data, bytes | bytearray | memoryview) else data
    if buf.size == 0:
        raise ImageRejected("empty file: not an image")
    header, factor, need = probe_checked(buf, limits)
    if header.format == "PNG":
        problem = png_chunk_problem(memoryview(buf))
        if problem:
            raise ImageRejected(f"corrupt PNG image: {problem}")
    cv2 = preprocess._cv2()
    limits.budget.acquire(need)
    try:
        try:
            image = cv2.imdecode(buf, getattr(cv2, _FLAGS[factor]))
        except cv2.error as exc:
            reason = str(exc).strip().splitlines()[-1][:120]
            raise ImageRejected(f"corrupt {header.format} image: {reason}") from None
        if image is None and header.format == "GIF" and not reads_gif():
            raise ImageRejected(f"GIF image: this OpenCV ({cv2.__version__}) has no GIF reader; convert it to PNG")
        if image is None or image.size == 0:
            raise ImageRejected(f"corrupt {header.format} image: it could not be decoded")
        if image.shape[0] * image.shape[1] > out_pixels(header, factor):
            # a header the decoder read differently: never hand on more than was checked
            raise ImageRejected(
                f"{header.format} image decoded to {image.shape[1]}x{image.shape[0]}, more than the "
                f"{header.width}x{header.height} its header declares"
            )
        if image.ndim != 3 or image.shape[2] != 3:
            image = preprocess.to_color(image, "BGR", "BGR")
        yield image
    finally:
        limits.budget.release(need)


def decode(data: bytes | np.ndarray, limits: DecodeLimits = FILE_LIMITS) -> np.ndarray:
    """Image bytes -> BGR uint8 HxWx3 within `limits`; ImageRejected (one line) otherwise."""
    with decoded(data, limits) as image:
        return image


def load(path: str | Path, limits: DecodeLimits = FILE_LIMITS) -> np.ndarray:
    """Decode an image file within `limits`; ImageRejected naming the reason otherwise. Formats whose
    size is in their first bytes are checked before the rest of the file is read."""
    path = Path(path)
    try:
        with open(path, "rb") as fh:
            size = os.fstat(fh.fileno()).st_size
            if size > MAX_FILE_BYTES:
                raise ImageRejected(f"file of {size / MiB:.0f} MiB is larger than any image read here")
            head = fh.read(HEAD_BYTES)
            if sniff(head) not in ("JPEG", "TIFF"):  # the others declare their size up front: check before reading on
                probe_checked(head, limits)
            data = head + fh.read(MAX_FILE_BYTES)
    except OSError as exc:
        raise ImageRejected(f"cannot read it: {exc.strerror or exc}") from None
    return decode(data, limits)
