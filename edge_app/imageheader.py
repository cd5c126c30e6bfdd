"""Image dimensions from a file's bytes, without decoding it (decompression bombs).

The edge extra has no Pillow, so the headers of the formats OpenCV decodes for us are parsed
here: JPEG (and MPO), PNG, GIF, BMP, WebP, TIFF and PNM. Anything else is not an image to us.

Each parser reads the header the way the decoder behind OpenCV does, because a header that two
readers understand differently is how a bomb hides its size: JPEG markers are found as libjpeg
finds them (stuffed FF 00 and garbage between segments skipped, segments skipped by their
length), a TIFF's width and height must each be given once, and PNM numbers end where OpenCV's
reader ends them. Where the readers could still disagree the header is refused (ValueError ->
None), never guessed.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass

import numpy as np

HEAD_BYTES = 4096  # PNG, GIF, BMP, WebP and PNM declare their size within this; JPEG and TIFF get the whole file
MAX_SCANS = 100  # a progressive JPEG has about 10; each scan is a pass over every block (CPU bombs)

# JPEG start-of-frame markers (C4 DHT, C8 JPG and CC DAC are not frames)
_SOF = {0xC0, 0xC1, 0xC2, 0xC3, 0xC5, 0xC6, 0xC7, 0xC9, 0xCA, 0xCB, 0xCD, 0xCE, 0xCF}
_PROGRESSIVE = {0xC2, 0xC6, 0xCA, 0xCE}
_LOSSLESS = {0xC3, 0xC7, 0xCB, 0xCF}  # decoded at full size: libjpeg cannot scale them
# markers libjpeg reads (or skips by length) between SOI and the first scan; anything else is an error there
_TABLES = {0xC4, 0xCC, 0xDB, 0xDD, 0xDC, 0xFE, *range(0xE0, 0xF0)}  # DHT DAC DQT DRI DNL COM APPn
_NO_LENGTH = {0x01, *range(0xD0, 0xD8)}  # TEM, RSTn


@dataclass(frozen=True)
class ImageHeader:
    """What the header declares. `coefficient_bytes`: the full-size DCT buffer libjpeg keeps for a
    progressive or non-interleaved JPEG; `sample_bytes`: 2 for 16-bit samples."""

    format: str
    width: int
    height: int
    progressive: bool = False
    coefficient_bytes: int = 0
    sample_bytes: int = 1
    scalable: bool = False  # JPEG's DCT scaling applies

    @property
    def pixels(self) -> int:
        return self.width * self.height


def probe(data: bytes | memoryview | np.ndarray) -> ImageHeader | None:
    """The header of JPEG / PNG / GIF / BMP / WebP / TIFF / PNM bytes; None for anything else or a header
    that is cut short, malformed, or could be read two ways."""
    buf = np.frombuffer(data, np.uint8) if not isinstance(data, np.ndarray) else data.reshape(-1)
    head = buf[:HEAD_BYTES].tobytes()
    parsers = {
        b"\xff\xd8": lambda: _jpeg(buf),
        b"\x89PNG\r\n\x1a\n": lambda: _png(head),
        b"GIF8": lambda: _gif(head),
        b"BM": lambda: _bmp(head),
        b"RIFF": lambda: _webp(head),
        b"II*\x00": lambda: _tiff(buf, "<"),
        b"MM\x00*": lambda: _tiff(buf, ">"),
        b"P": lambda: _pnm(head),
    }
    for magic, parse in parsers.items():
        if head.startswith(magic):
            try:
                found = parse()
            except (struct.error, IndexError, ValueError):
                return None
            return found if found is not None and found.width > 0 and found.height > 0 else None
    return None


MAGIC = {b"\xff\xd8": "JPEG", b"\x89PNG\r\n\x1a\n": "PNG", b"GIF8": "GIF", b"BM": "BMP", b"II*\x00": "TIFF"}
MAGIC[b"MM\x00*"] = "TIFF"


def sniff(head: bytes) -> str | None:
    """The format the first bytes announce, whether or not the header behind them is sound; None for none."""
    for magic, name in MAGIC.items():
        if head.startswith(magic):
            return name
    if head[:4] == b"RIFF" and head[8:12] == b"WEBP":
        return "WEBP"
    if head[:1] == b"P" and head[1:2] in (b"1", b"2", b"3", b"4", b"5", b"6") and head[2:3].isspace():
        return "PNM"
    return None


def _next_ff(b: np.ndarray, i: int, chunk: int = 1 << 16) -> int:
    """Index of the next 0xFF byte at or after `i` (len(b) when there is none), searched a chunk at a time."""
    while i < len(b):
        hits = np.flatnonzero(b[i : i + chunk] == 0xFF)
        if hits.size:
            return i + int(hits[0])
        i += chunk
    return len(b)


def _next_marker(b: np.ndarray, i: int) -> tuple[int, int]:
    """(marker, index after it) from `i` on, as libjpeg's next_marker: bytes up to an FF are skipped,
    fill FFs too, and FF 00 (stuffed data) does not end the search."""
    n = len(b)
    while True:
        i = _next_ff(b, i)
        while i < n and b[i] == 0xFF:
            i += 1
        if i >= n:
            raise ValueError("JPEG ends before its frame and first scan")
        if b[i] != 0x00:
            return int(b[i]), i + 1
        i += 1


def _jpeg(b: np.ndarray) -> ImageHeader:
    i = 2
    frame: tuple[int, int, int, bytes] | None = None
    while True:
        marker, i = _next_marker(b, i)
        if marker in _NO_LENGTH:
            continue
        if marker == 0xD8 or marker == 0xD9:
            raise ValueError("JPEG with a second start, or ending, before its first scan")
        length = int(b[i]) << 8 | int(b[i + 1])
        if length < 2 or i + length > len(b):
            raise ValueError("bad JPEG segment length")
        body = b[i + 2 : i + length].tobytes()
        if marker in _SOF:
            if frame is not None:
                raise ValueError("JPEG with two frame headers")
            precision, height, width, count = struct.unpack(">BHHB", body[:6])
            frame = (marker, width, height, body[6 : 6 + 3 * count] + bytes([precision]))
        elif marker == 0xDA:
            if frame is None:
                raise ValueError("JPEG scan before its frame header")
            return _jpeg_header(b, frame, body[0])
        elif marker not in _TABLES:
            raise ValueError(f"JPEG marker {marker:#x} where libjpeg stops")
        i += length


def _jpeg_header(b: np.ndarray, frame: tuple[int, int, int, bytes], scan_components: int) -> ImageHeader:
    marker, width, height, spec = frame
    components, precision = spec[:-1], spec[-1]
    if len(components) < 3 or len(components) % 3:
        raise ValueError("JPEG frame without components")
    sample = 2 if precision > 8 else 1
    buffered = marker in _PROGRESSIVE or scan_components < len(components) // 3
    pairs = np.flatnonzero((b[:-1] == 0xFF) & (b[1:] == 0xDA))
    if len(pairs) > MAX_SCANS:
        raise ValueError(f"JPEG with {len(pairs)} scans")
    coefficients = _coefficient_bytes(components, width, height) * sample if buffered else 0
    return ImageHeader("JPEG", width, height, marker in _PROGRESSIVE, coefficients, sample, marker not in _LOSSLESS)


def _coefficient_bytes(components: bytes, width: int, height: int) -> int:
    """Bytes libjpeg allocates for a whole image's coefficients: 2 per sample, whole blocks."""
    factors = [(components[j + 1] >> 4, components[j + 1] & 15) for j in range(0, len(components), 3)]
    if any(h == 0 or v == 0 for h, v in factors):
        raise ValueError("bad JPEG sampling factors")
    hmax, vmax = max(h for h, _ in factors), max(v for _, v in factors)
    total = 0
    for h, v in factors:
        blocks_w = -(-width * h // (8 * hmax))
        blocks_h = -(-height * v // (8 * vmax))
        total += blocks_w * blocks_h * 64 * 2
    return total


def _png(b: bytes) -> ImageHeader:
    if b[12:16] != b"IHDR":
        raise ValueError("PNG without IHDR")
    width, height, depth = struct.unpack(">IIB", b[16:25])
    return ImageHeader("PNG", width, height, sample_bytes=2 if depth > 8 else 1)


def png_chunk_problem(data: bytes | memoryview) -> str | None:
    """Why a whole PNG's chunk list cannot be trusted, or None: a chunk that declares more bytes than the
    file holds after it. OpenCV 4.11's PNG reader allocates a chunk's declared length before reading
    it, so a 1 KB file whose length field says 3 GB costs 3 GB; libpng refuses lengths over 2^31 - 1."""
    at, size = 8, len(data)
    while at + 8 <= size:
        length = int.from_bytes(data[at : at + 4], "big")
        kind = "".join(chr(c) if chr(c).isalnum() else "?" for c in bytes(data[at + 4 : at + 8]))
        if length > size - at - 12:  # the chunk's length, type and CRC are 12 bytes around its body
            return f"its {kind} chunk declares {length:,} bytes, more than the file holds"
        if kind == "IEND":
            return None
        at += 12 + length
    return "it ends before its IEND chunk"


def _gif(b: bytes) -> ImageHeader:
    if b[:6] not in (b"GIF87a", b"GIF89a"):
        raise ValueError("not GIF87a / GIF89a")
    width, height = struct.unpack("<HH", b[6:10])
    return ImageHeader("GIF", width, height)


def _bmp(b: bytes) -> ImageHeader:
    dib = struct.unpack("<I", b[14:18])[0]
    if dib == 12:  # OS/2 BITMAPCOREHEADER
        width, height = struct.unpack("<HH", b[18:22])
    else:
        width, height = struct.unpack("<ii", b[18:26])
    return ImageHeader("BMP", abs(width), abs(height))  # a negative height means top-down rows


def _webp(b: bytes) -> ImageHeader:
    if b[8:12] != b"WEBP":
        raise ValueError("RIFF but not WebP")
    kind, body = b[12:16], b[20:]
    if kind == b"VP8 ":
        if body[3:6] != b"\x9d\x01\x2a":
            raise ValueError("bad VP8 start code")
        width, height = struct.unpack("<HH", body[6:10])
        return ImageHeader("WEBP", width & 0x3FFF, height & 0x3FFF)
    if kind == b"VP8L":
        if body[0] != 0x2F:
            raise ValueError("bad VP8L signature")
        bits = struct.unpack("<I", body[1:5])[0]
        return ImageHeader("WEBP", (bits & 0x3FFF) + 1, ((bits >> 14) & 0x3FFF) + 1)
    if kind == b"VP8X":
        width = int.from_bytes(body[4:7], "little") + 1
        height = int.from_bytes(body[7:10], "little") + 1
        return ImageHeader("WEBP", width, height)
    raise ValueError("unknown WebP chunk")


def _tiff(buf: np.ndarray, end: str) -> ImageHeader:
    def read(fmt: str, offset: int) -> tuple[int, ...]:
        size = struct.calcsize(end + fmt)
        if offset < 0 or offset + size > len(buf):
            raise ValueError("TIFF field beyond the end of the file")
        return struct.unpack(end + fmt, buf[offset : offset + size].tobytes())

    offset = read("I", 4)[0]
    count = read("H", offset)[0]
    size: dict[int, int] = {}
    for k in range(count):
        tag, kind, n = read("HHI", offset + 2 + 12 * k)
        if tag not in (256, 257):
            continue
        if tag in size or kind not in (3, 4) or n != 1:
            raise ValueError("TIFF width or height given twice, or not as one SHORT / LONG")
        size[tag] = read("H" if kind == 3 else "I", offset + 10 + 12 * k)[0]
    if 256 not in size or 257 not in size:
        raise ValueError("TIFF without width and height")
    return ImageHeader("TIFF", size[256], size[257])


def _pnm(b: bytes) -> ImageHeader | None:
    if len(b) < 3 or b[1:2] not in (b"1", b"2", b"3", b"4", b"5", b"6") or not b[2:3].isspace():
        return None  # OpenCV's signature check: P, a digit 1-6, whitespace
    i = 2
    numbers = []
    for _ in range(2):
        value, i = _pnm_number(b, i)
        numbers.append(value)
    return ImageHeader("PNM", numbers[0], numbers[1])


def _pnm_number(b: bytes, i: int) -> tuple[int, int]:
    """A header number as OpenCV's PxM reader takes it: whitespace and '#' comments (to the end of the
    line) before it, and the one byte after its digits consumed, whatever it is."""
    while True:
        c = b[i : i + 1]
        if not c:
            raise ValueError("PNM header cut short")
        if c == b"#":
            while b[i : i + 1] not in (b"\n", b"\r", b""):
                i += 1
            i += 1
        elif c.isspace():
            i += 1
        elif c.isdigit():
            break
        else:
            raise ValueError("unexpected byte in a PNM header")
    start = i
    while b[i : i + 1].isdigit():
        i += 1
    if i - start > 9:
        raise ValueError("PNM dimension too long")
    return int(b[start:i]), i + 1
