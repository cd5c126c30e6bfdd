"""A video file as the Live page's camera: played at its own frame rate, from the start again at its end.

`serve --source clip.mp4` would otherwise classify the file as fast as it decodes (80 frames in a
second) and stop: the Live page would show a still, and there would be nothing to capture or to see
a newly taught class on. `run` keeps reading files once, as fast as it can (benchmarks depend on it).
"""

from __future__ import annotations

import time

from edgeclf.edge_app.sources import Frame, OpenCVSource, SourceError

DEFAULT_FPS = 10.0  # for a file that declares no frame rate


class LoopingVideo:
    """Wraps a video file's OpenCVSource: live (the grabber keeps only the newest frame), paced, endless."""

    live = True

    def __init__(self, inner: OpenCVSource) -> None:
        self.inner = inner
        self.name = inner.name
        self.fps = 0.0
        self._next = 0.0
        self.loops = 0

    def open(self) -> None:
        self.inner.open()
        self.fps = self.inner.fps or DEFAULT_FPS
        self._next = time.monotonic()

    def read(self) -> Frame | None:
        delay = self._next - time.monotonic()
        if delay > 0:
            time.sleep(delay)  # pacing, as a camera delivers at its frame rate
        self._next = max(self._next + 1 / self.fps, time.monotonic() - 1 / self.fps)
        frame = self.inner.read()
        if frame is None:  # the end: from the start again (a file with no frame at all raises on reopen)
            self.inner.close()
            self.inner.open()
            self.loops += 1
            frame = self.inner.read()
            if frame is None:
                raise SourceError(f"{self.name} has no readable frame")
        return frame

    def close(self) -> None:
        self.inner.close()
