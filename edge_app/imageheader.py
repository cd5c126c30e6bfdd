"""Image dimensions from the first bytes of a file, without decoding it (decompression bombs).

The edge extra has no Pillow, so the headers of the formats OpenCV decodes for us are parsed
here: JPEG (and MPO), PNG, GIF, BMP, WebP, TIFF and PNM. Anything else is not an image to us.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass

HEAD_BYTES = 1 << 16  # every header parsed here fits in the first 64 KiB (JPEG's EXIF segments included)

# JPEG start-of-frame markers (C4 DHT, C8 JPG and CC DAC are not frames); the second set is progressive
_SOF = {0xC0, 0xC1, 0xC2, 0xC3, 0xC5, 0xC6, 0xC7, 0xC9, 0xCA, 0xCB, 0xCD, 0xCE, 0xCF}
_PROGRESSIVE = {0xC2, 0xC6, 0xCA, 0xCE}


@dataclass(frozen=True)
class ImageHeader:
    """What the header declares. `coefficient_bytes`: a progressive JPEG's full-size DCT buffer."""

    format: str
    width: int
    height: int
    progressive: bool = False
    coefficient_bytes: int = 0

    @property
    def pixels(self) -> int:
        return self.width * self.height


def probe(data: bytes | memoryview) -> ImageHeader | None:
    """The header of JPEG / PNG / GIF / BMP / WebP / TIFF / PNM bytes; None for anything else or a broken header."""
    head = bytes(data[:HEAD_BYTES])
    for parse in (_jpeg, _png, _gif, _bmp, _webp, _tiff, _pnm):
        try:
            found = parse(head)
        except (struct.error, IndexError, ValueError):
            return None  # the magic matched but the header is cut short or nonsense
        if found is not None:
            return found if found.width > 0 and found.height > 0 else None
    return None


def _jpeg(b: bytes) -> ImageHeader | None:
    if not b.startswith(b"\xff\xd8"):
        return None
    i = 2
    while i + 4 <= len(b):
        if b[i] != 0xFF:
            raise ValueError("JPEG marker expected")
        marker = b[i + 1]
        if marker == 0xFF:  # fill byte
            i += 1
            continue
        if marker in (0x01, *range(0xD0, 0xD8)):  # markers without a length
            i += 2
            continue
        if marker in (0xD9, 0xDA):  # end of image or start of scan before any frame header
            raise ValueError("no JPEG frame header")
        length = struct.unpack(">H", b[i + 2 : i + 4])[0]
        if length < 2:
            raise ValueError("bad JPEG segment length")
        if marker in _SOF:
            height, width, count = struct.unpack(">HHB", b[i + 5 : i + 10])
            progressive = marker in _PROGRESSIVE
            coefficients = _coefficient_bytes(b[i + 10 : i + 10 + 3 * count], width, height) if progressive else 0
            return ImageHeader("JPEG", width, height, progressive, coefficients)
        i += 2 + length
    raise ValueError("JPEG header cut short")


def _coefficient_bytes(components: bytes, width: int, height: int) -> int:
    """Bytes libjpeg allocates for a progressive JPEG's coefficients: 2 per sample, whole blocks."""
    factors = [(components[j + 1] >> 4, components[j + 1] & 15) for j in range(0, len(components) - 2, 3)]
    if not factors or any(h == 0 or v == 0 for h, v in factors):
        raise ValueError("bad JPEG sampling factors")
    hmax, vmax = max(h for h, _ in factors), max(v for _, v in factors)
    total = 0
    for h, v in factors:
        blocks_w = -(-width * h // (8 * hmax))
        blocks_h = -(-height * v // (8 * vmax))
        total += blocks_w * blocks_h * 64 * 2
    return total


def _png(b: bytes) -> ImageHeader | None:
    if not b.startswith(b"\x89PNG\r\n\x1a\n"):
        return None
    if b[12:16] != b"IHDR":
        raise ValueError("PNG without IHDR")
    width, height = struct.unpack(">II", b[16:24])
    return ImageHeader("PNG", width, height)


def _gif(b: bytes) -> ImageHeader | None:
    if b[:6] not in (b"GIF87a", b"GIF89a"):
        return None
    width, height = struct.unpack("<HH", b[6:10])
    return ImageHeader("GIF", width, height)


def _bmp(b: bytes) -> ImageHeader | None:
    if not b.startswith(b"BM") or len(b) < 26:
        return None
    dib = struct.unpack("<I", b[14:18])[0]
    if dib == 12:  # OS/2 BITMAPCOREHEADER
        width, height = struct.unpack("<HH", b[18:22])
    else:
        width, height = struct.unpack("<ii", b[18:26])
    return ImageHeader("BMP", abs(width), abs(height))  # a negative height means top-down rows


def _webp(b: bytes) -> ImageHeader | None:
    if b[:4] != b"RIFF" or b[8:12] != b"WEBP":
        return None
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


def _tiff(b: bytes) -> ImageHeader | None:
    if b[:4] == b"II*\x00":
        end = "<"
    elif b[:4] == b"MM\x00*":
        end = ">"
    else:
        return None
    offset = struct.unpack(end + "I", b[4:8])[0]
    count = struct.unpack(end + "H", b[offset : offset + 2])[0]
    size: dict[int, int] = {}
    for k in range(count):
        tag, kind, _n = struct.unpack(end + "HHI", b[offset + 2 + 12 * k : offset + 10 + 12 * k])
        if tag in (256, 257):
            value = b[offset + 10 + 12 * k : offset + 14 + 12 * k]
            size[tag] = struct.unpack(end + ("H" if kind == 3 else "I"), value[: 2 if kind == 3 else 4])[0]
    if 256 not in size or 257 not in size:
        raise ValueError("TIFF without width and height")
    return ImageHeader("TIFF", size[256], size[257])


def _pnm(b: bytes) -> ImageHeader | None:
    if len(b) < 3 or b[0:1] != b"P" or b[1:2] not in b"123456" or not b[2:3].isspace():
        return None
    fields: list[int] = []
    for line in b[2:4096].split(b"\n"):
        for token in line.split(b"#", 1)[0].split():
            fields.append(int(token))
            if len(fields) == 2:
                return ImageHeader("PNM", fields[0], fields[1])
    raise ValueError("PNM header cut short")
