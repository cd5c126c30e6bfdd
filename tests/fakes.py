"""Stand-ins for hardware: a picamera2 object following its documented API, and scripted sources."""

from __future__ import annotations

import threading
import time

import cv2
import numpy as np

from edge_app.sources import Frame, SourceError


def pattern(width: int, height: int, seed: int = 0) -> np.ndarray:
    """A smooth BGR image (gradients survive YUV420 subsampling) with a distinct colour per channel."""
    y, x = np.mgrid[0:height, 0:width]
    rng = np.random.default_rng(seed)
    a, b, c = rng.uniform(0.2, 1.0, 3)
    img = np.stack([x / width * 255 * a, y / height * 255 * b, (x + y) / (width + height) * 255 * c], axis=2)
    return img.astype(np.uint8)


class FakePicamera2:
    """Follows picamera2's documented calls: create_preview_configuration, configure, start,
    capture_array / capture_arrays, stop, close. Pi 4 mode refuses a non-YUV lores stream,
    as the real library does there."""

    instances: list[FakePicamera2] = []

    def __init__(self, pi5: bool = False, fail_after: int | None = None) -> None:
        self.pi5 = pi5
        self.fail_after = fail_after
        self.config: dict | None = None
        self.started = False
        self.closed = False
        self.captures = 0
        self.main_image: np.ndarray | None = None
        FakePicamera2.instances.append(self)

    def create_preview_configuration(self, main=None, lores=None, **kwargs):
        return {"main": dict(main or {}), "lores": dict(lores) if lores else None}

    def configure(self, config):
        lores = config.get("lores")
        if lores and not self.pi5 and not lores["format"].startswith("YUV"):
            raise RuntimeError("lores stream must be YUV")
        self.config = config

    def start(self):
        assert self.config is not None, "configure() before start()"
        self.started = True

    def _array(self, name):
        stream = self.config[name]
        w, h = stream["size"]
        bgr = pattern(w, h, seed=self.captures - 1)  # the frame of the last request
        if name == "main":
            self.main_image = bgr
            return np.dstack([bgr, np.full((h, w), 255, np.uint8)]) if stream["format"] == "XRGB8888" else bgr
        if stream["format"] == "YUV420":
            return cv2.cvtColor(bgr, cv2.COLOR_BGR2YUV_I420)  # (h * 3 / 2, w) planes, as picamera2 returns
        return bgr  # RGB888 / BGR byte order

    def capture_array(self, name="main"):
        if not self.started:
            raise RuntimeError("camera not started")
        if self.fail_after is not None and self.captures >= self.fail_after:
            raise RuntimeError("Camera frontend has timed out!")
        self.captures += 1
        return self._array(name)

    def capture_arrays(self, names):
        arrays = [self.capture_array(names[0])] + [self._array(n) for n in names[1:]]
        return arrays, {"SensorTimestamp": time.monotonic_ns()}

    def stop(self):
        self.started = False

    def close(self):
        self.closed = True


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
