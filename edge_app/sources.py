"""Still-image sources: a file, a folder or a glob, yielding BGR frames as OpenCV reads them."""

from __future__ import annotations

import glob
import sys
from collections.abc import Iterator
from pathlib import Path

import numpy as np

from edge_app import preprocess
from edge_app.errors import EdgeClfError

IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".bmp", ".webp", ".tif", ".tiff", ".ppm", ".pgm"}


def image_paths(spec: str) -> list[Path]:
    """Expand a file, a folder (its images, sorted, not recursive) or a glob pattern."""
    path = Path(spec)
    if path.is_dir():
        found = sorted(p for p in path.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)
    elif path.is_file():
        found = [path]
    elif any(ch in spec for ch in "*?["):
        found = sorted(Path(p) for p in glob.glob(spec, recursive=True) if Path(p).is_file())
    else:
        raise EdgeClfError(f"source not found: {spec}")
    if not found:
        raise EdgeClfError(f"no images in {spec}")
    return found


def read_image(path: Path) -> np.ndarray | None:
    """Decode one image as BGR uint8, None when the file is not a readable image."""
    cv2 = preprocess._cv2()
    try:
        data = np.fromfile(path, dtype=np.uint8)
    except OSError:
        return None
    return cv2.imdecode(data, cv2.IMREAD_COLOR) if data.size else None


def iter_images(spec: str) -> Iterator[tuple[Path, np.ndarray]]:
    """(path, BGR image) for each readable image; unreadable ones are reported and skipped."""
    for path in image_paths(spec):
        image = read_image(path)
        if image is None:
            print(f"warning: skipped {path}: not a readable image", file=sys.stderr)
            continue
        yield path, image
