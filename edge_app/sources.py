"""Frame sources behind one small interface: still images, OpenCV (camera, video file, URL), picamera2.

A source yields BGR uint8 frames (OpenCV's order). `live` sources (cameras, streams) may drop
stale frames; file sources deliver every frame and end.
"""

from __future__ import annotations

import glob
import logging
import math
import os
import re
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from edgeclf.edge_app import imagedecode, preprocess
from edgeclf.edge_app.errors import EdgeClfError

log = logging.getLogger(__name__)

IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".bmp", ".webp", ".tif", ".tiff", ".ppm", ".pgm"}
URL = re.compile(r"^[a-z][a-z0-9+.-]*://", re.IGNORECASE)


class SourceError(EdgeClfError):
    """A source cannot be opened or stopped delivering frames."""


@dataclass(frozen=True)
class CameraSettings:
    """How to drive a camera: resolution, frame-rate cap, flips, and how long a read may wait for a frame.

    `size` and `fps` apply to cameras (picamera2, an OpenCV camera index); the flips also to streams and
    video files; `stall_timeout` to picamera2 (OpenCV's backends have their own timeouts)."""

    size: tuple[int, int] = (640, 480)
    fps: float = 30.0
    hflip: bool = False
    vflip: bool = False
    stall_timeout: float = 5.0

    def __post_init__(self) -> None:
        width, height = self.size
        if int(width) != width or int(height) != height or width < 2 or height < 2:
            raise ValueError(f"camera size must be whole pixels, at least 2x2, got {width}x{height}")
        object.__setattr__(self, "size", (int(width), int(height)))
        for name in ("fps", "stall_timeout"):
            value = getattr(self, name)
            if not (math.isfinite(value) and value > 0):
                raise ValueError(f"camera {name} must be a number above 0, got {value}")

    @property
    def flip_code(self) -> int | None:
        """cv2.flip's code for the flips asked for (1 mirror, 0 upside down, -1 both); None for none."""
        if self.hflip:
            return -1 if self.vflip else 1
        return 0 if self.vflip else None


@dataclass
class Frame:
    """One captured frame: `image` (BGR) to show and save, `infer` (BGR) to classify when smaller.

    `infer` may be a function that makes it: a live source hands over frames that the model mostly
    drops, and the conversion then runs only for the frames it takes (`for_model`)."""

    image: np.ndarray
    index: int
    origin: str
    timestamp: float = field(default_factory=time.time)
    infer: np.ndarray | Callable[[], np.ndarray] | None = None

    @property
    def for_model(self) -> np.ndarray:
        """The image to classify: `infer` (made now, once, if it was deferred), else `image`."""
        if callable(self.infer):
            self.infer = self.infer()
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
    """Decode one image as BGR uint8 (imagedecode's budget), None when it is not a readable image."""
    try:
        return imagedecode.load(path)
    except imagedecode.ImageRejected:
        return None


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
            try:
                image = imagedecode.load(path)
            except imagedecode.ImageRejected as exc:  # corrupt, not an image, or a decompression bomb
                self.skipped += 1
                print(f"warning: skipped {path}: {exc}", file=sys.stderr)
                continue
            frame = Frame(image, self._index, str(path))
            self._index += 1
            return frame
        return None

    def close(self) -> None:
        self._paths = iter(())


class OpenCVSource:
    """cv2.VideoCapture: a camera index, a video file or a stream URL (rtsp://, http://).

    A video file's unreadable frames (a damaged stretch) are skipped and counted in `skipped`,
    up to `max_unreadable` in a row: OpenCV's FFmpeg backend consumes one packet per failed
    read, so reading on finds the frames past the damage. The file ends when its declared
    frame count is reached or `max_unreadable` reads in a row failed. A file that declares no
    count (a raw MJPEG or H.264 stream) ends at the first failed read that did not move its
    position: past its last frame that is every read.
    """

    max_unreadable = 1000
    max_warnings = 10  # one line per damaged stretch, then only the count in the summary

    def __init__(self, spec: str | int, camera: CameraSettings | None = None) -> None:
        self.spec = spec
        self.name = f"camera {spec}" if isinstance(spec, int) else str(spec)
        self.live = isinstance(spec, int) or bool(URL.match(str(spec)))
        self.camera = camera
        self.size = camera.size if camera else None
        self._cap: Any = None
        self._index = 0  # a file's position: frames delivered and frames skipped
        self.fps = 0.0
        self.frame_count = 0  # what a video file declares; 0 when unknown
        self.skipped = 0
        self._warned = 0

    def open(self) -> None:
        cv2 = preprocess._cv2()
        if not self.live:
            if not Path(str(self.spec)).is_file():
                raise SourceError(f"source not found: {self.spec}")
            # FFmpeg prints a line per damaged packet; a file's damage is reported here, once per stretch
            os.environ.setdefault("OPENCV_FFMPEG_LOGLEVEL", "-8")
        cap = cv2.VideoCapture(self.spec)
        if not cap.isOpened():
            cap.release()
            why = "" if self.live else ": not a video OpenCV can read"
            raise SourceError(f"cannot open {self.name}{why}")
        if isinstance(self.spec, int) and self.camera:  # a camera: files and streams have their own
            cap.set(cv2.CAP_PROP_FRAME_WIDTH, self.camera.size[0])
            cap.set(cv2.CAP_PROP_FRAME_HEIGHT, self.camera.size[1])
            cap.set(cv2.CAP_PROP_FPS, self.camera.fps)
        fps = cap.get(cv2.CAP_PROP_FPS)  # read here, not while the capture thread reads frames
        self.fps = float(fps) if fps and 0 < fps < 1000 else 0.0
        if not self.live:
            count = cap.get(cv2.CAP_PROP_FRAME_COUNT)
            self.frame_count = int(count) if count and 0 < count < 2**31 else 0
        self._cap = cap

    def read(self) -> Frame | None:
        if self._cap is None:
            raise SourceError(f"{self.name} is not open")
        if self.live:
            ok, image = self._cap.read()
            if not ok or image is None:
                raise SourceError(f"{self.name} stopped delivering frames")
            return self._frame(image)
        failed = 0
        while True:
            before = None if self.frame_count else self._position()
            ok, image = self._cap.read()
            if ok and image is not None:
                if failed:
                    self._skipped_stretch(failed)
                return self._frame(image)
            failed += 1
            if failed >= self.max_unreadable or self._at_end(failed, before):
                self._ended(failed)
                return None

    def _position(self) -> tuple[float, float]:
        cv2 = preprocess._cv2()
        return self._cap.get(cv2.CAP_PROP_POS_FRAMES), self._cap.get(cv2.CAP_PROP_POS_MSEC)

    def _at_end(self, failed: int, before: tuple[float, float] | None) -> bool:
        """After `failed` reads in a row: past the declared count; with none declared, a read that did not
        move the position (frames and milliseconds from `before`), or one at the end of the file."""
        if before is None:
            return self._index + failed >= self.frame_count
        frames, msec = self._position()
        advanced = frames > before[0] or msec > before[1]
        return not advanced or self._cap.get(preprocess._cv2().CAP_PROP_POS_AVI_RATIO) >= 1

    def _frame(self, image: np.ndarray) -> Frame:
        if self.camera and self.camera.flip_code is not None:
            image = preprocess._cv2().flip(image, self.camera.flip_code)
        frame = Frame(image, self._index, self.name)
        self._index += 1
        return frame

    def _skipped_stretch(self, failed: int) -> None:
        first, self._index = self._index, self._index + failed
        self.skipped += failed
        self._warned += 1
        if self._warned <= self.max_warnings:
            where = f"frame {first}" if failed == 1 else f"frames {first}-{first + failed - 1}"
            more = "; further damaged stretches are only counted" if self._warned == self.max_warnings else ""
            print(f"warning: {self.name}: {where} unreadable, skipped{more}", file=sys.stderr)

    def _ended(self, failed: int) -> None:
        """The reads that failed at the end: past the declared count that is the end; short of it, say so."""
        if failed >= self.max_unreadable:
            print(
                f"warning: {self.name}: {failed} unreadable frames in a row after frame {self._index}; giving up",
                file=sys.stderr,
            )
        elif self.frame_count and self._index < self.frame_count - 1:  # counts from duration can be one off
            print(
                f"warning: {self.name} ended after {self._index} of the {self.frame_count} frames it declares "
                "(truncated or damaged at the end)",
                file=sys.stderr,
            )

    def close(self) -> None:
        if self._cap is not None:
            self._cap.release()
            self._cap = None


def parse_source(spec: str | None, camera: CameraSettings = CameraSettings()) -> FrameSource:
    """`picamera2`, a camera index, a URL, a video file, an image / folder / glob; None: first camera."""
    if spec is None:
        return first_camera(camera)
    if spec == "picamera2":
        from edgeclf.edge_app.picamera import Picamera2Source

        return Picamera2Source(camera)
    if spec.isdigit():
        return OpenCVSource(int(spec), camera)
    if (index := video_device_index(spec)) is not None:
        return OpenCVSource(index, camera)
    if URL.match(spec):
        return OpenCVSource(spec, camera)
    path = Path(spec)
    if path.is_file() and path.suffix.lower() not in IMAGE_SUFFIXES:
        return OpenCVSource(spec, camera)
    return ImageSource(spec)


def video_device_index(spec: str) -> int | None:
    """N for /dev/videoN (or a /dev/v4l/by-id link to it), opened as camera index N; None otherwise."""
    if not spec.startswith("/dev/"):
        return None
    match = re.fullmatch(r"video(\d+)", Path(spec).resolve().name)
    return int(match.group(1)) if match else None


def first_camera(camera: CameraSettings = CameraSettings(), dev: Path = Path("/dev")) -> FrameSource:
    """A Pi camera through picamera2 if one starts, else the first /dev/video* device that delivers a frame.

    The Pi camera comes back open: starting it is the test (libcamera lists USB webcams too, and a
    camera it lists can still fail to start). When there is no camera, the error says why picamera2
    was not used."""
    from edgeclf.edge_app.picamera import Picamera2Source

    pi_camera = Picamera2Source(camera)
    try:
        pi_camera.open()
        return pi_camera
    except SourceError as exc:
        why_not_picamera2 = str(exc)
    log.info("no Pi camera (%s); trying /dev/video*", why_not_picamera2)
    # On a Pi, /dev/video10+ are the codec and ISP nodes: only a node that delivers a frame counts.
    indices = sorted(int(d.name[5:]) for d in dev.glob("video*") if d.name[5:].isdigit())
    for index in indices:
        source = OpenCVSource(index, camera)
        try:
            source.open()
            delivered = source.read() is not None
        except SourceError:
            delivered = False
        finally:
            source.close()
        if delivered:
            return OpenCVSource(index, camera)
    videos = f"none of {len(indices)} /dev/video* devices delivered a frame" if indices else "no /dev/video* device"
    raise SourceError(
        f"no camera found (picamera2: {why_not_picamera2}; {videos}); pass --source with a video file, "
        "an image folder or a stream URL, e.g. --source models/samples/clip.mp4"
    )
