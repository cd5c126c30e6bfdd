"""Stand-ins for hardware: picamera2 and libcamera as their source reads, and scripted sources.

FakePicamera2 copies what picamera2 (raspberrypi/picamera2: picamera2.py, job.py, request.py,
platform.py, utils.py, formats.py) does where it is awkward: a YUV420 stream comes back as an
(h * 3/2, stride) array with padding bytes on every row, U and V planes of stride/2 bytes per row;
the YUV encoding follows the configuration's colour space (the preview default, sYCC, is full
range); captures are jobs on a queue, so a camera that stops delivering blocks a capture without
`wait=` forever, raises concurrent.futures.TimeoutError after `wait` seconds and leaves the job
queued, where stop() then waits behind it until cancel_all_and_flush(); global_camera_info()
lists USB webcams too; a Pi 4 (Platform.VC4) refuses a non-YUV lores stream.
"""

from __future__ import annotations

import concurrent.futures
import importlib.abc
import sys
import threading
import time
import types
from enum import Enum

import numpy as np

from edgeclf.edge_app.sources import Frame, SourceError


def pattern(width: int, height: int, seed: int = 0) -> np.ndarray:
    """A smooth BGR image (gradients survive YUV420 subsampling) with a distinct colour per channel."""
    y, x = np.mgrid[0:height, 0:width]
    rng = np.random.default_rng(seed)
    a, b, c = rng.uniform(0.2, 1.0, 3)
    img = np.stack([x / width * 255 * a, y / height * 255 * b, (x + y) / (width + height) * 255 * c], axis=2)
    return img.astype(np.uint8)


class ColorSpace:
    """libcamera.ColorSpace: the presets picamera2 uses. `range` and `ycbcrEncoding` set the YUV maths."""

    def __init__(self, name: str, ycbcr_encoding: str, range_: str) -> None:
        self.name = name
        self.ycbcrEncoding = ycbcr_encoding
        self.range = range_

    @staticmethod
    def Sycc() -> ColorSpace:
        return ColorSpace("sYCC", "Rec601", "Full")  # JPEG's: picamera2's preview and still default

    @staticmethod
    def Smpte170m() -> ColorSpace:
        return ColorSpace("SMPTE170M", "Rec601", "Limited")

    @staticmethod
    def Rec709() -> ColorSpace:
        return ColorSpace("Rec709", "Rec709", "Limited")

    def __eq__(self, other: object) -> bool:
        return isinstance(other, ColorSpace) and vars(self) == vars(other)

    def __hash__(self) -> int:
        return hash(self.name)

    def __repr__(self) -> str:
        return f"<ColorSpace {self.name}>"


class Transform:
    """libcamera.Transform(hflip=, vflip=, transpose=)."""

    def __init__(self, hflip: int = 0, vflip: int = 0, transpose: int = 0) -> None:
        self.hflip, self.vflip, self.transpose = bool(hflip), bool(vflip), bool(transpose)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Transform) and vars(self) == vars(other)

    def __repr__(self) -> str:
        return f"<Transform hflip={int(self.hflip)} vflip={int(self.vflip)} transpose={int(self.transpose)}>"


class Platform(Enum):
    """picamera2.platform.Platform: VC4 is a Pi 4 and earlier, PISP a Pi 5 / CM5."""

    VC4 = 0
    PISP = 1


# global_camera_info() entries as libcamera describes them on a Pi: a CSI camera and a UVC webcam.
CSI_CAMERA = {"Model": "imx708", "Location": 2, "Rotation": 180, "Id": "/base/soc/i2c0mux/i2c@1/imx708@1a"}
USB_CAMERA = {
    "Model": "HD Pro Webcam C920",
    "Location": 2,
    "Id": "/base/scb/pcie@7d500000/pci@0,0/usb@0,0-1:1.0-046d:082d",
}

YUV_FORMATS = {"NV21", "NV12", "YUV420", "YVU420", "YVYU", "YUYV", "UYVY", "VYUY"}
RGB_FORMATS = {"BGR888", "RGB888", "XBGR8888", "XRGB8888"}
RPI_CONTROLS = {"FrameDurationLimits", "NoiseReductionMode", "ExposureTime", "AnalogueGain", "AeEnable", "ScalerCrop"}


def yuv420_stride(width: int) -> int:
    """A padded row: libcamera aligns rows and this fake adds 64 more bytes, so every row has padding."""
    return -(-width // 64) * 64 + 64


def encode_yuv420(bgr: np.ndarray, colour_space: ColorSpace, stride: int, seed: int = 0) -> np.ndarray:
    """`bgr` as picamera2 hands over a YUV420 stream: (h * 3/2, stride) uint8, Y rows then U then V, each
    chroma row stride/2 bytes, the bytes past the image garbage. Full or limited range per `colour_space`."""
    h, w = bgr.shape[:2]
    b, g, r = (bgr[..., i].astype(np.float64) for i in range(3))
    kr, kb = (0.299, 0.114) if colour_space.ycbcrEncoding == "Rec601" else (0.2126, 0.0722)
    y = kr * r + (1 - kr - kb) * g + kb * b
    cb, cr = (b - y) / (2 * (1 - kb)), (r - y) / (2 * (1 - kr))
    if colour_space.range == "Full":
        y_code, cb_code, cr_code = y, cb + 128, cr + 128
    else:
        y_code, cb_code, cr_code = 16 + y * 219 / 255, 128 + cb * 224 / 255, 128 + cr * 224 / 255

    def plane(values: np.ndarray) -> np.ndarray:
        return np.clip(np.rint(values), 0, 255).astype(np.uint8)

    def half(values: np.ndarray) -> np.ndarray:  # 2x2 chroma subsampling
        return values.reshape(h // 2, 2, w // 2, 2).mean(axis=(1, 3))

    buffer = np.random.default_rng(seed).integers(1, 256, h * 3 // 2 * stride, dtype=np.uint8)
    chroma = h // 2 * (stride // 2)
    buffer[: h * stride].reshape(h, stride)[:, :w] = plane(y_code)
    buffer[h * stride : h * stride + chroma].reshape(h // 2, stride // 2)[:, : w // 2] = plane(half(cb_code))
    buffer[h * stride + chroma :].reshape(h // 2, stride // 2)[:, : w // 2] = plane(half(cr_code))
    return buffer.reshape(h * 3 // 2, stride)


class WouldHang(BaseException):
    """The real picamera2 would block for ever here. A BaseException, so that the `except Exception` of
    the code under test (a close() that must not fail the run) cannot hide it; recorded in `hangs` too."""


class FakePicamera2:
    """picamera2.Picamera2 as its source behaves; `install_picamera2` makes a configured subclass per test.

    Class settings: `platform`, `cameras` (global_camera_info() entries), `sorts_usb_last` (picamera2's
    newer versions list USB cameras last, older ones in libcamera's order), `open_error` (raised by the
    constructor), `stall_after` (captures delivered before the camera stops delivering, per instance),
    `fail_after` (captures before one raises) and `hang_limit` (a call that picamera2 would block in
    forever raises WouldHang after this many seconds instead, so a test cannot hang; each such call is
    appended to the class's `hangs`, so a test can assert that none happened even where a thread ate it)."""

    platform = Platform.VC4
    cameras: list[dict] = [CSI_CAMERA]
    sorts_usb_last = True
    open_error: BaseException | None = None
    stall_after: int | None = None
    fail_after: int | None = None
    hang_limit = 5.0
    instances: list[FakePicamera2] = []
    hangs: list[str] = []  # what would have hung for ever, in order

    def _hang(self, what: str) -> WouldHang:
        type(self).hangs.append(what)
        return WouldHang(what)

    @classmethod
    def global_camera_info(cls) -> list[dict]:
        infos = [dict(info, Num=num) for num, info in enumerate(cls.cameras)]  # Num: libcamera's index
        if cls.sorts_usb_last:
            infos.sort(key=lambda info: ("/usb" not in info["Id"], info["Id"]), reverse=True)
        return infos

    def __init__(self, camera_num: int = 0, tuning: object = None) -> None:
        type(self).instances.append(self)
        self.is_open = False
        self.started = False
        self.closed = False
        self.info = self.global_camera_info()[camera_num]  # IndexError, as picamera2 raises
        if self.open_error is not None:
            raise self.open_error
        self.rpi_camera = "/usb" not in self.info["Id"]  # USB cameras advertise no Pi controls
        self.camera_controls = {name: (None, None, None) for name in (RPI_CONTROLS if self.rpi_camera else ())}
        self.camera_config: dict | None = None
        self.controls: dict = {}  # what the camera runs with once configured (FrameRate resolved)
        self.captures = 0
        self.cancelled = 0  # jobs cancel_all_and_flush() cancelled
        self.truth: dict[str, np.ndarray] = {}  # per stream, the BGR scene of the last capture
        self._jobs: list[concurrent.futures.Future] = []  # picamera2's _job_list
        self._lock = threading.Lock()
        self.is_open = True

    @property
    def main_image(self) -> np.ndarray | None:
        return self.truth.get("main")

    @property
    def config_lores_format(self) -> str | None:
        lores = self.camera_config and self.camera_config["lores"]
        return lores["format"] if lores else None

    @staticmethod
    def _stream(defaults: dict, updates: dict | None) -> dict | None:
        if updates is None:
            return None
        for key in updates:
            if key not in ("format", "size", "stride", "preserve_ar"):
                raise ValueError(f"Bad key {key!r}: valid stream keys are format, size, stride, preserve_ar")
        stream = defaults | updates
        w, h = stream["size"]
        stream["size"] = (w - w % 2, h - h % 2)  # align_stream(optimal=False): picamera2 rounds down to even
        return stream

    def create_preview_configuration(
        self,
        main: dict | None = None,
        lores: dict | None = None,
        raw: dict | None = None,
        transform: Transform | None = None,
        colour_space: ColorSpace | None = None,
        buffer_count: int = 4,
        controls: dict | None = None,
        display: str = "main",
        encode: str = "main",
        queue: bool = True,
        sensor: dict | None = None,
        use_case: str = "preview",
    ) -> dict:
        main = self._stream({"format": "XBGR8888", "size": (640, 480), "preserve_ar": True}, main or {})
        lores = self._stream({"format": "YUV420", "size": main["size"], "preserve_ar": False}, lores)
        controls = dict(controls or {})
        if self.rpi_camera:  # picamera2 lets the preview run from 12 fps up unless told otherwise
            controls = {"NoiseReductionMode": 1, "FrameDurationLimits": (100, 83333)} | controls
        return {
            "use_case": use_case,
            "transform": Transform() if transform is None else transform,
            "colour_space": ColorSpace.Sycc() if colour_space is None else colour_space,
            "buffer_count": buffer_count,
            "queue": queue,
            "main": main,
            "lores": lores,
            "raw": None,
            "controls": controls,
            "sensor": sensor,
            "display": display,
            "encode": encode,
        }

    @staticmethod
    def _check_stream(stream: dict, name: str) -> None:
        fmt = stream["format"]
        if fmt not in YUV_FORMATS and fmt not in RGB_FORMATS and fmt != "MJPEG":
            raise RuntimeError(f"Bad format {fmt} in stream {name}")
        size = stream["size"]
        if type(size) is not tuple or len(size) != 2:
            raise RuntimeError(f"size in {name} stream should be (width, height)")
        if size[0] % 2 or size[1] % 2:
            raise RuntimeError("width and height should be even")

    def configure(self, config: dict) -> None:
        if self.started:
            raise RuntimeError("Camera must be stopped before configuring")
        if not isinstance(config["colour_space"], ColorSpace):
            raise RuntimeError("Colour space has incorrect type")
        if not isinstance(config["transform"], Transform):
            raise RuntimeError("Transform has incorrect type")
        self._check_stream(config["main"], "main")
        lores = config["lores"]
        if lores is not None:
            self._check_stream(lores, "lores")
            if lores["size"][0] > config["main"]["size"][0] or lores["size"][1] > config["main"]["size"][1]:
                raise RuntimeError("lores stream dimensions may not exceed main stream")
            if self.platform == Platform.VC4 and lores["format"] not in YUV_FORMATS:
                raise RuntimeError("lores stream must be YUV")
        controls = {}
        for name, value in config["controls"].items():  # picamera2's Controls: FrameRate is a virtual control
            if name == "FrameRate":
                low, high = value if isinstance(value, tuple | list) else (value, value)
                name, value = "FrameDurationLimits", (int(1000000 / high), int(1000000 / low))
            if name not in self.camera_controls:
                raise RuntimeError(f"Control {name} is not advertised by libcamera")
            controls[name] = value
        config = {key: dict(value) if isinstance(value, dict) else value for key, value in config.items()}
        for name in ("main", "lores"):
            stream = config[name]
            if stream is not None:
                w, h = stream["size"]
                if stream["format"] in YUV_FORMATS:
                    stream["stride"] = yuv420_stride(w)
                    stream["framesize"] = stream["stride"] * h * 3 // 2
                else:
                    stream["stride"] = -(-w * (4 if stream["format"].startswith("X") else 3) // 64) * 64
                    stream["framesize"] = stream["stride"] * h
        self.controls = controls
        self.camera_config = config

    def stream_configuration(self, name: str = "main") -> dict:
        return self.camera_config[name]

    def start(self, config: dict | None = None, show_preview: bool | None = False) -> None:
        if config is not None:
            self.configure(config)
        if self.camera_config is None:
            raise RuntimeError("Camera has not been configured")
        self.started = True

    def _scene(self, name: str) -> np.ndarray:
        """What the sensor sees for the current frame, at the stream's size, after the configured transform."""
        w, h = self.camera_config[name]["size"]
        scene = pattern(w, h, seed=self.captures - 1)
        transform = self.camera_config["transform"]
        if transform.hflip:
            scene = scene[:, ::-1]
        if transform.vflip:
            scene = scene[::-1]
        return np.ascontiguousarray(scene)

    def _array(self, name: str) -> np.ndarray:
        stream = self.camera_config[name]
        if stream is None:
            raise RuntimeError(f"Stream {name!r} is not defined")
        scene = self.truth[name] = self._scene(name)
        fmt = stream["format"]
        if fmt == "YUV420":
            return encode_yuv420(scene, self.camera_config["colour_space"], stream["stride"], seed=self.captures)
        rgb = scene if fmt.endswith("RGB888") else scene[..., ::-1]  # RGB888 is B,G,R in memory
        if fmt.startswith("X"):
            return np.dstack([rgb, np.full(scene.shape[:2], 255, np.uint8)])
        return np.ascontiguousarray(rgb)  # RGB streams are full range whatever the colour space

    def capture_arrays(self, names=("main",), wait=None, signal_function=None):
        """One request's arrays, or, once the camera stalls, a queued job that never completes."""
        if wait is False or signal_function is not None:
            raise NotImplementedError("FakePicamera2 only captures synchronously")
        with self._lock:
            delivering = self.started and (self.stall_after is None or self.captures < self.stall_after)
            if delivering:
                if self.fail_after is not None and self.captures >= self.fail_after:
                    raise RuntimeError("Camera frontend has timed out!")
                self.captures += 1
                arrays = [self._array(name) for name in names]
                return arrays, {"SensorTimestamp": time.monotonic_ns()}
            job: concurrent.futures.Future = concurrent.futures.Future()
            self._jobs.append(job)
        timeout = None if wait is None or wait is True else float(wait)
        try:
            return job.result(timeout=self.hang_limit if timeout is None else timeout)
        except concurrent.futures.TimeoutError:
            if timeout is None:
                raise self._hang("capture without wait= on a stalled camera: picamera2 blocks forever") from None
            raise  # picamera2's Job.get_result: Future.result(timeout); the job stays queued

    def capture_array(self, name="main", wait=None, signal_function=None):
        return self.capture_arrays([name], wait, signal_function)[0][0]

    def cancel_all_and_flush(self) -> None:
        with self._lock:
            for job in self._jobs:
                job.set_exception(concurrent.futures.CancelledError())
            self.cancelled += len(self._jobs)
            self._jobs = []

    def stop(self) -> None:
        """picamera2 sends stop to its event loop as a job, behind any capture job still queued."""
        if not self.started:
            return
        with self._lock:
            ahead = list(self._jobs)
            job: concurrent.futures.Future = concurrent.futures.Future()
            if ahead:
                self._jobs.append(job)
        if ahead:
            try:
                job.result(timeout=self.hang_limit)  # only cancel_all_and_flush() ends this wait
            except concurrent.futures.TimeoutError:
                raise self._hang("stop() behind a capture job that never completes: picamera2 hangs here") from None
        self.started = False

    def close(self) -> None:
        """picamera2 stops its preview thread, then the camera directly: no job queue involved."""
        if not self.is_open:
            return
        self.started = False
        self.is_open = False
        self.closed = True


class _RefuseImport(importlib.abc.MetaPathFinder):
    def __init__(self, name: str, error: BaseException) -> None:
        self.name, self.error = name, error

    def find_spec(self, fullname: str, path: object, target: object = None) -> None:
        if fullname == self.name or fullname.startswith(self.name + "."):
            raise self.error


def break_import(monkeypatch, name: str, error: BaseException) -> None:
    """`import name` raises `error`: not installed (ModuleNotFoundError) or a broken install (a numpy
    built for another ABI raises ValueError from inside picamera2's imports)."""
    for module in [m for m in sys.modules if m == name or m.startswith(name + ".")]:
        monkeypatch.delitem(sys.modules, module)
    monkeypatch.setattr(sys, "meta_path", [_RefuseImport(name, error), *sys.meta_path])


def install_picamera2(monkeypatch, pisp: bool = False, cameras=(CSI_CAMERA,), **settings) -> type[FakePicamera2]:
    """Fake `picamera2`, `picamera2.platform` and `libcamera` modules in sys.modules; returns the camera class."""
    cls = type(
        "FakePicamera2",
        (FakePicamera2,),
        {
            "platform": Platform.PISP if pisp else Platform.VC4,
            "cameras": list(cameras),
            "instances": [],
            "hangs": [],
            **settings,
        },
    )
    package = types.ModuleType("picamera2")
    package.__path__ = []
    package.Picamera2 = cls
    platform = types.ModuleType("picamera2.platform")
    platform.Platform = Platform
    platform.get_platform = lambda: cls.platform
    package.platform = platform
    libcamera = types.ModuleType("libcamera")
    libcamera.ColorSpace = ColorSpace
    libcamera.Transform = Transform
    monkeypatch.setitem(sys.modules, "picamera2", package)
    monkeypatch.setitem(sys.modules, "picamera2.platform", platform)
    monkeypatch.setitem(sys.modules, "libcamera", libcamera)
    return cls


class ScriptedSource:
    """A source that delivers `frames` frames (then ends, or fails when live), fails reads once at
    each count in `fail_at`, and refuses the first `fail_opens` reopens."""

    def __init__(self, frames=10**9, live=True, fail_at=(), fail_opens=0, delay=0.0, size=(64, 48)):
        self.name = "scripted"
        self.live = live
        self.frames = frames
        self.pending = set(fail_at)
        self.fail_opens = fail_opens
        self.delay = delay
        self.size = size
        self.opens = 0
        self.closes = 0
        self.delivered = 0

    def open(self):
        self.opens += 1
        if self.opens > 1 and self.fail_opens > 0:
            self.fail_opens -= 1
            raise SourceError("device busy")

    def read(self):
        if self.delay:
            time.sleep(self.delay)
        if self.delivered in self.pending:
            self.pending.discard(self.delivered)
            raise SourceError("camera unplugged")
        if self.delivered >= self.frames:
            if self.live:
                raise SourceError("camera unplugged")
            return None
        frame = Frame(pattern(*self.size, seed=self.delivered), self.delivered, self.name)
        self.delivered += 1
        return frame

    def close(self):
        self.closes += 1


class StallingSource(ScriptedSource):
    """Blocks like a cv2.VideoCapture stuck inside C on a stream that accepted the connection and
    never answers: open() (`stall_open`) or the read after `frames` frames waits up to `stall`
    seconds, deaf to signals and to the grabber's stop; only `release()` (the test's cleanup) or
    the time limit ends it. A stall that ran out raises, as FFmpeg's own timeout does."""

    def __init__(self, frames=10**9, stall_open=True, stall=30.0, live=True):
        super().__init__(frames=frames, live=live)
        self.name = "stalling"
        self.stall_open = stall_open
        self.stall = stall
        self.stalled = threading.Event()  # set once a call is blocked
        self._release = threading.Event()

    def _block(self):
        self.stalled.set()
        deadline = time.monotonic() + self.stall
        interrupted = None
        while not self._release.is_set() and time.monotonic() < deadline:
            try:
                self._release.wait(max(0.0, deadline - time.monotonic()))
            except KeyboardInterrupt as exc:  # C code sees Ctrl-C only once it returns to Python
                interrupted = exc
        if interrupted is not None:
            raise interrupted
        if not self._release.is_set():
            raise SourceError(f"{self.name}: stream timeout after {self.stall:g} s")
        raise SourceError(f"{self.name}: released")

    def open(self):
        super().open()
        if self.stall_open:
            self._block()

    def read(self):
        if self.delivered >= self.frames:
            self._block()
        return super().read()

    def release(self):
        self._release.set()
