"""The Raspberry Pi camera through picamera2 (the only module that imports it).

A main stream (RGB888, which picamera2 stores as B,G,R bytes: OpenCV's BGR) is shown and
saved; a small lores stream is classified. On a Pi 4 and earlier the lores stream must be
YUV420 (converted here); a Pi 5 gives RGB888 lores directly.
"""

from __future__ import annotations

import concurrent.futures
import logging
from collections.abc import Callable
from functools import partial
from pathlib import Path
from typing import Any

from edge_app import preprocess
from edge_app.sources import CameraSettings, Frame, SourceError

MODEL_FILE = Path("/proc/device-tree/model")
# picamera2's capture jobs wait on a concurrent.futures.Future: its timeout is this class, which is
# builtins.TimeoutError from Python 3.11 and its own class before (Bullseye's 3.9).
CAPTURE_TIMEOUT = (TimeoutError, concurrent.futures.TimeoutError)

# picamera2's preview configuration lets the frame rate fall to 12 fps in the dark (longer exposures).
SLOWEST_FRAME_US = 83333

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


def _picamera2_class() -> Any:
    try:
        from picamera2 import Picamera2
    except ImportError as exc:
        raise SourceError(
            "picamera2 is not importable: sudo apt install python3-picamera2, and create the venv with "
            f"--system-site-packages ({exc})"
        ) from None
    return Picamera2


def _libcamera() -> Any:
    """libcamera's Python bindings (apt's python3-libcamera, which picamera2 needs too)."""
    try:
        import libcamera
    except Exception as exc:  # noqa: BLE001 - a broken install raises more than ImportError
        raise SourceError(f"libcamera does not import: sudo apt install python3-libcamera ({exc})") from None
    return libcamera


def cameras_available() -> bool:
    """True when picamera2 imports and libcamera lists at least one camera."""
    try:
        cls = _picamera2_class()
        return bool(cls.global_camera_info())
    except Exception:  # noqa: BLE001 - any failure here just means "no Pi camera"
        return False


class Picamera2Source:
    """picamera2 with a display-size main stream and a small lores stream for the classifier."""

    live = True

    def __init__(
        self,
        camera: CameraSettings | None = None,
        factory: Callable[[], Any] | None = None,
        model: str | None = None,
    ) -> None:
        self.name = "picamera2"
        self.camera = camera or CameraSettings()
        self.size = self.camera.size
        self.lores = (320, 240)
        self._factory = factory
        self._model = model
        self._cam: Any = None
        self._index = 0
        self.lores_format = "YUV420"

    def open(self) -> None:
        factory = self._factory or _picamera2_class()
        model = self._model if self._model is not None else (pi_model() or "")
        self.lores_format = "RGB888" if "Raspberry Pi 5" in model else "YUV420"
        options = {}
        if self.lores_format == "YUV420":
            # picamera2's preview default, sYCC, is full range (Y 0..255), but OpenCV's I420 conversion is
            # BT.601 limited range (Y 16..235): ask the ISP for that. Only YUV changes: picamera2 keeps
            # RGB streams full range whatever the colour space.
            options["colour_space"] = _libcamera().ColorSpace.Smpte170m()
        cam = None
        try:
            cam = factory()
            config = cam.create_preview_configuration(
                main={"size": self.size, "format": "RGB888"},
                lores={"size": self.lores, "format": self.lores_format},
                controls={"FrameDurationLimits": frame_duration_limits(self.camera.fps)},
                **options,
            )
            cam.configure(config)
            cam.start()
        except Exception as exc:  # noqa: BLE001 - libcamera raises RuntimeError, IndexError, ...
            if cam is not None and hasattr(cam, "close"):
                try:
                    cam.close()  # release it, or every retry finds the camera busy
                except Exception:  # noqa: BLE001, S110
                    pass
            raise SourceError(f"cannot start the Pi camera: {exc}") from None
        self._cam = cam

    def lores_to_bgr(self, array: Any) -> Any:
        """The lores array in OpenCV BGR order, whatever format the Pi delivered."""
        if self.lores_format == "YUV420":
            cv2 = preprocess._cv2()
            # picamera2's YUV420 is I420 (Y, then U, then V planes; h * 3/2 rows). OpenCV's
            # COLOR_YUV420p2BGR means YV12 (V before U) and would swap red and blue here.
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
