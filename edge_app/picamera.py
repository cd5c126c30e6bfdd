"""The Raspberry Pi camera through picamera2 (the only module that imports it, or libcamera).

A main stream (RGB888, which picamera2 stores as B,G,R bytes: OpenCV's BGR) is shown and saved; a
small lores stream of the same aspect ratio is classified. On a Pi 4 and earlier (picamera2's
Platform.VC4) the lores stream must be YUV420, converted here for the frames the model takes; a Pi 5
(Platform.PISP) gives RGB888 lores directly. The camera does flips and the frame-rate cap itself.
"""

from __future__ import annotations

import concurrent.futures
import logging
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np

from edgeclf.edge_app import preprocess
from edgeclf.edge_app.sources import CameraSettings, Frame, SourceError

MODEL_FILE = Path("/proc/device-tree/model")
LORES_MAX_WIDTH = 320
# picamera2's preview configuration lets the frame rate fall to 12 fps in the dark (longer exposures).
SLOWEST_FRAME_US = 83333
# picamera2's capture jobs wait on a concurrent.futures.Future: its timeout is this class, which is
# builtins.TimeoutError from Python 3.11 and its own class before (Bullseye's 3.9).
CAPTURE_TIMEOUT = (TimeoutError, concurrent.futures.TimeoutError)

log = logging.getLogger(__name__)


def pi_model(path: Path = MODEL_FILE) -> str | None:
    """'Raspberry Pi 5 Model B Rev 1.0' on a Pi, None elsewhere."""
    try:
        text = path.read_bytes().rstrip(b"\x00").decode("ascii", "replace").strip()
    except OSError:
        return None
    return text if text.startswith("Raspberry Pi") else None


def frame_duration_limits(fps: float) -> tuple[int, int]:
    """libcamera's FrameDurationLimits (shortest, longest frame in microseconds) for at most `fps`.

    picamera2's FrameRate control sets both to 1/fps, which also cuts exposures in the dark to 1/fps;
    this keeps the preview default's 12 fps floor below the cap."""
    shortest = int(1_000_000 / fps)
    return shortest, max(shortest, SLOWEST_FRAME_US)


def even_size(size: tuple[int, int]) -> tuple[int, int]:
    """`size` rounded down to even sides, as picamera2 rounds every stream it configures."""
    return size[0] - size[0] % 2, size[1] - size[1] % 2


def lores_size(main: tuple[int, int]) -> tuple[int, int]:
    """The classifier's stream for a main stream of `main`: its aspect ratio, even sides, at most 320
    wide and never larger than main (libcamera refuses a lores stream larger than main)."""
    width, height = even_size(main)
    lores_width = min(LORES_MAX_WIDTH, width)
    lores_height = max(2, round(height * lores_width / width / 2) * 2)
    return lores_width, min(lores_height, height)


def is_usb(info: dict) -> bool:
    """A USB (UVC) webcam in global_camera_info(): picamera2 itself tells them by '/usb' in libcamera's
    camera id (and lists them last)."""
    return "/usb" in str(info.get("Id", ""))


def _picamera2_class() -> Any:
    try:
        from picamera2 import Picamera2
    except Exception as exc:  # noqa: BLE001 - a numpy built for another ABI raises ValueError, not ImportError
        raise SourceError(
            f"picamera2 is not importable ({type(exc).__name__}: {exc}): sudo apt install python3-picamera2, "
            "and create the venv with --system-site-packages"
        ) from None
    return Picamera2


def _libcamera() -> Any:
    """libcamera's Python bindings (apt's python3-libcamera, which picamera2 needs too)."""
    try:
        import libcamera
    except Exception as exc:  # noqa: BLE001 - a broken install raises more than ImportError
        raise SourceError(f"libcamera does not import: sudo apt install python3-libcamera ({exc})") from None
    return libcamera


def is_pisp() -> bool:
    """True on a Pi 5 / CM5 (picamera2's Platform.PISP), whose ISP can give an RGB lores stream."""
    try:
        from picamera2.platform import Platform, get_platform
    except Exception:  # noqa: BLE001 - picamera2 before 0.3.13 knew no Pi 5: VC4, where YUV420 is safe
        return False
    return get_platform() == Platform.PISP


def pi_camera_number(picamera2: Any) -> int:
    """The first camera in `picamera2.global_camera_info()` that is not a USB webcam, as the number
    Picamera2() takes (its index in that list); SourceError saying why there is none."""
    try:
        cameras = picamera2.global_camera_info()
    except Exception as exc:  # noqa: BLE001
        raise SourceError(f"libcamera cannot list cameras: {exc}") from None
    if not cameras:
        raise SourceError("libcamera lists no camera (check the ribbon cable: rpicam-hello --list-cameras)")
    for number, info in enumerate(cameras):
        if not is_usb(info):
            return number
    models = ", ".join(str(info.get("Model", "?")) for info in cameras)
    raise SourceError(f"libcamera lists only USB cameras ({models}); those are opened through /dev/video*")


def cameras_available() -> bool:
    """True when picamera2 imports and libcamera lists a camera that is not a USB webcam."""
    try:
        pi_camera_number(_picamera2_class())
    except SourceError:
        return False
    return True


class Picamera2Source:
    """picamera2 with a display-size main stream and a small lores stream for the classifier.

    `factory` stands in for the Picamera2 class (called with the camera number; global_camera_info()
    on it lists the cameras); `pisp` for the platform, found with picamera2.platform when None."""

    live = True

    def __init__(self, camera: CameraSettings | None = None, factory: Any = None, pisp: bool | None = None) -> None:
        self.name = "picamera2"
        self.camera = camera or CameraSettings()
        self.size = even_size(self.camera.size)
        self.lores = lores_size(self.size)
        self.lores_format = "YUV420"
        self._factory = factory
        self._pisp = pisp
        self._cam: Any = None
        self._index = 0

    def open(self) -> None:
        """Start the camera; SourceError saying why it cannot. Nothing to do when it is open already
        (first_camera hands over the camera it opened to find out whether it works)."""
        if self._cam is not None:
            return
        picamera2 = self._factory or _picamera2_class()
        number = pi_camera_number(picamera2)
        pisp = self._pisp if self._pisp is not None else is_pisp()
        self.lores_format = "RGB888" if pisp else "YUV420"
        libcamera = _libcamera()
        options = {}
        if self.lores_format == "YUV420":
            # picamera2's preview default, sYCC, is full range (Y 0..255), but OpenCV's I420 conversion is
            # BT.601 limited range (Y 16..235): ask the ISP for that. Only YUV changes: picamera2 keeps
            # RGB streams full range whatever the colour space.
            options["colour_space"] = libcamera.ColorSpace.Smpte170m()
        cam = None
        try:
            cam = picamera2(number)
            config = cam.create_preview_configuration(
                main={"size": self.size, "format": "RGB888"},
                lores={"size": self.lores, "format": self.lores_format},
                controls={"FrameDurationLimits": frame_duration_limits(self.camera.fps)},
                transform=libcamera.Transform(hflip=int(self.camera.hflip), vflip=int(self.camera.vflip)),
                **options,
            )
            cam.configure(config)
            self.lores = tuple(cam.camera_config["lores"]["size"])  # what libcamera settled on
            cam.start()
        except Exception as exc:  # noqa: BLE001 - libcamera raises RuntimeError, IndexError, ...
            if cam is not None:
                try:
                    cam.close()  # release it, or every retry finds the camera busy
                except Exception:  # noqa: BLE001, S110
                    pass
            raise SourceError(f"cannot start the Pi camera: {exc}") from None
        if not hasattr(cam, "cancel_all_and_flush"):
            log.warning(
                "picamera2 is older than 0.3.20: a stalled camera will hang; sudo apt upgrade python3-picamera2"
            )
        self._cam = cam

    def lores_to_bgr(self, array: np.ndarray) -> np.ndarray:
        """The lores array in OpenCV BGR order, whatever format the Pi delivered."""
        if self.lores_format == "YUV420":
            cv2 = preprocess._cv2()
            # picamera2's YUV420 is (h * 3/2, stride): h rows of Y, then the U and V planes, each chroma row
            # stride/2 bytes, every row padded past the image. Converting the padded width keeps the planes
            # where OpenCV looks for them; the padding is cut after. I420 is U before V (OpenCV's
            # COLOR_YUV420p2BGR means YV12, V before U, and would swap red and blue here).
            return cv2.cvtColor(array, cv2.COLOR_YUV2BGR_I420)[:, : self.lores[0]]
        return array[:, :, :3]  # RGB888 is B,G,R in memory; XRGB8888 has a 4th byte

    def read(self) -> Frame | None:
        """The next frame; SourceError when the camera fails or delivers nothing within `stall_timeout`."""
        if self._cam is None:
            raise SourceError("picamera2 is not open")
        timeout = self.camera.stall_timeout
        try:
            # Both streams from one request. Without wait= picamera2 waits on its job for ever: a camera
            # whose cable came loose would hang the capture thread and every later stop().
            (main, lores), _ = self._cam.capture_arrays(["main", "lores"], wait=timeout)
        except CAPTURE_TIMEOUT:
            # The timed-out job stays on picamera2's queue, and stop() would queue behind it for ever.
            self._flush()
            raise SourceError(f"the Pi camera delivered no frame in {timeout:g} s (stalled)") from None
        except Exception as exc:  # noqa: BLE001
            raise SourceError(f"the Pi camera stopped delivering frames: {exc}") from None
        # picamera2 hands over copies, so the conversion can wait until the model takes this frame
        frame = Frame(main[:, :, :3], self._index, self.name, infer=partial(self.lores_to_bgr, lores))
        self._index += 1
        return frame

    def _flush(self) -> None:
        try:
            self._cam.cancel_all_and_flush()  # picamera2 >= 0.3.20
        except Exception as exc:  # noqa: BLE001 - the read's SourceError is what matters
            log.warning("picamera2: cancelling the stalled capture failed: %s", exc)

    def close(self) -> None:
        """Stop and release the camera; after a stall too (no capture job is left for stop() to wait behind)."""
        if self._cam is None:
            return
        cam = self._cam
        self._flush()
        self._cam = None
        failed = None
        for step in (cam.stop, cam.close):  # close() even when stop() failed, or the camera stays busy
            try:
                step()
            except Exception as exc:  # noqa: BLE001 - libcamera raises RuntimeError, ...
                failed = failed or exc
        if failed is not None:
            raise SourceError(f"stopping the Pi camera failed: {failed}")
