"""Frame sources behind one small interface: still images, OpenCV (camera, video file, URL), picamera2.

A source yields BGR uint8 frames (OpenCV's order). `live` sources (cameras, streams) may drop
stale frames; file sources deliver every frame and end.
"""

from __future__ import annotations

import glob
import re
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from edge_app import preprocess
from edge_app.errors import EdgeClfError

IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".bmp", ".webp", ".tif", ".tiff", ".ppm", ".pgm"}
URL = re.compile(r"^[a-z][a-z0-9+.-]*://", re.IGNORECASE)


class SourceError(EdgeClfError):
    """A source cannot be opened or stopped delivering frames."""


@dataclass
class Frame:
    """One captured frame: `image` (BGR) to show and save, `infer` (BGR) to classify when smaller."""

    image: np.ndarray
    index: int
    origin: str
    timestamp: float = field(default_factory=time.time)
    infer: np.ndarray | None = None

    @property
    def for_model(self) -> np.ndarray:
        return self.image if self.infer is None else self.infer


class FrameSource(Protocol):
    """open() -> read() ... -> close(). read() returns None at the end, raises SourceError on failure."""

    name: str
    live: bool

    def open(self) -> None: ...

    def read(self) -> Frame | None: ...

    def close(self) -> None: ...


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
        raise SourceError(f"source not found: {spec}")
    if not found:
        raise SourceError(f"no images in {spec}")
    return found


def read_image(path: Path) -> np.ndarray | None:
    """Decode one image as BGR uint8, None when the file is not a readable image."""
    cv2 = preprocess._cv2()
    try:
        data = np.fromfile(path, dtype=np.uint8)
    except OSError:
        return None
    return cv2.imdecode(data, cv2.IMREAD_COLOR) if data.size else None


class ImageSource:
    """Still images: a file, a folder or a glob. Unreadable files are reported and skipped."""

    live = False

    def __init__(self, spec: str) -> None:
        self.name = spec
        self._paths: Iterator[Path] = iter(())
        self._index = 0
        self.skipped = 0

    def open(self) -> None:
        self._paths = iter(image_paths(self.name))

    def read(self) -> Frame | None:
        for path in self._paths:
            image = read_image(path)
            if image is None:
                self.skipped += 1
                print(f"warning: skipped {path}: not a readable image", file=sys.stderr)
                continue
            frame = Frame(image, self._index, str(path))
            self._index += 1
            return frame
        return None

    def close(self) -> None:
        self._paths = iter(())


class OpenCVSource:
    """cv2.VideoCapture: a camera index, a video file or a stream URL (rtsp://, http://)."""

    def __init__(self, spec: str | int, size: tuple[int, int] | None = None) -> None:
        self.spec = spec
        self.name = f"camera {spec}" if isinstance(spec, int) else str(spec)
        self.live = isinstance(spec, int) or bool(URL.match(str(spec)))
        self.size = size
        self._cap: Any = None
        self._index = 0
        self.fps = 0.0

    def open(self) -> None:
        cv2 = preprocess._cv2()
        if not self.live and not Path(str(self.spec)).is_file():
            raise SourceError(f"source not found: {self.spec}")
        cap = cv2.VideoCapture(self.spec)
        if not cap.isOpened():
            cap.release()
            raise SourceError(f"cannot open {self.name}")
        if isinstance(self.spec, int) and self.size:
            cap.set(cv2.CAP_PROP_FRAME_WIDTH, self.size[0])
            cap.set(cv2.CAP_PROP_FRAME_HEIGHT, self.size[1])
        fps = cap.get(cv2.CAP_PROP_FPS)  # read here, not while the capture thread reads frames
        self.fps = float(fps) if fps and 0 < fps < 1000 else 0.0
        self._cap = cap

    def read(self) -> Frame | None:
        if self._cap is None:
            raise SourceError(f"{self.name} is not open")
        ok, image = self._cap.read()
        if not ok or image is None:
            if self.live:
                raise SourceError(f"{self.name} stopped delivering frames")
            return None  # a video file that ends, ends the run
        frame = Frame(image, self._index, self.name)
        self._index += 1
        return frame

    def close(self) -> None:
        if self._cap is not None:
            self._cap.release()
            self._cap = None


def parse_source(spec: str | None, size: tuple[int, int] = (640, 480)) -> FrameSource:
    """`picamera2`, a camera index, a URL, a video file, an image / folder / glob; None: first camera."""
    if spec is None:
        return first_camera(size)
    if spec == "picamera2":
        from edge_app.picamera import Picamera2Source

        return Picamera2Source(size)
    if spec.isdigit():
        return OpenCVSource(int(spec), size)
    if URL.match(spec):
        return OpenCVSource(spec)
    path = Path(spec)
    if path.is_file() and path.suffix.lower() not in IMAGE_SUFFIXES:
        return OpenCVSource(spec)
    return ImageSource(spec)


def first_camera(size: tuple[int, int], dev: Path = Path("/dev")) -> FrameSource:
    """A Pi camera through picamera2 if there is one, else the first /dev/video* device that delivers."""
    from edge_app.picamera import Picamera2Source, cameras_available

    if cameras_available():
        return Picamera2Source(size)
    # On a Pi, /dev/video10+ are the codec and ISP nodes: only a node that delivers a frame counts.
    indices = sorted(int(d.name[5:]) for d in dev.glob("video*") if d.name[5:].isdigit())
    for index in indices:
        source = OpenCVSource(index, size)
        try:
            source.open()
            delivered = source.read() is not None
        except SourceError:
            delivered = False
        finally:
            source.close()
        if delivered:
            return OpenCVSource(index, size)
    raise SourceError(
        "no camera found (no picamera2 camera, no /dev/video*); pass --source with a video file, "
        "an image folder or a stream URL, e.g. --source models/samples/clip.mp4"
    )
