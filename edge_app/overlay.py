"""What a person sees: the label overlay, an on-screen window, and the annotated video file."""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Any

import numpy as np

from edgeclf.edge_app import preprocess
from edgeclf.edge_app.errors import EdgeClfError

MIN_WIDTH = 320  # tiny frames (32x32 test images) are enlarged so the text fits


def annotate(
    image: np.ndarray, top: list[tuple[str, float]], uncertain: bool, infer_ms: float, fps: float
) -> np.ndarray:
    """A copy of `image` (BGR) with the label, confidence, inference ms, FPS and the runners-up drawn on it."""
    cv2 = preprocess._cv2()
    if image.shape[1] < MIN_WIDTH:
        factor = -(-MIN_WIDTH // image.shape[1])
        image = cv2.resize(image, None, fx=factor, fy=factor, interpolation=cv2.INTER_NEAREST)
    else:
        image = image.copy()
    h, w = image.shape[:2]
    scale = max(0.4, w / 900)
    thick = max(1, round(scale * 2))
    line = int(28 * scale) + 6
    rows = 2 + max(0, len(top) - 1)
    band = image[: line * rows + 6]
    band[:] = (band * 0.35).astype(np.uint8)  # darken behind the text
    label, score = top[0]
    headline = f"uncertain ({label}? {score:.0%})" if uncertain else f"{label} {score:.0%}"
    colour = (0, 200, 255) if uncertain else (80, 255, 80)
    cv2.putText(image, headline, (8, line), cv2.FONT_HERSHEY_SIMPLEX, scale * 1.1, colour, thick, cv2.LINE_AA)
    stats = f"{infer_ms:.1f} ms  {fps:.1f} FPS"
    cv2.putText(image, stats, (8, 2 * line), cv2.FONT_HERSHEY_SIMPLEX, scale * 0.8, (255, 255, 255), thick, cv2.LINE_AA)
    for i, (name, p) in enumerate(top[1:], start=3):
        text = f"{name} {p:.0%}"
        cv2.putText(image, text, (8, i * line), cv2.FONT_HERSHEY_SIMPLEX, scale * 0.7, (200, 200, 200), 1, cv2.LINE_AA)
    return image


def gui_available() -> tuple[bool, str]:
    """(True, '') when a window can be shown; else (False, why)."""
    if not (os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY")):
        return False, "no display (DISPLAY / WAYLAND_DISPLAY unset)"
    cv2 = preprocess._cv2()
    gui = [ln for ln in cv2.getBuildInformation().splitlines() if ln.strip().startswith("GUI:")]
    if gui and "NONE" in gui[0].upper():
        return False, (
            "this OpenCV has no GUI (opencv-python-headless): pip uninstall opencv-python-headless, then either "
            "pip install 'opencv-python>=4.10,<4.12' (a GUI build) or sudo apt install python3-opencv (seen from "
            "a venv made with --system-site-packages)"
        )
    return True, ""


class Window:
    """An OpenCV window; `show()` returns False when the user pressed q or Esc."""

    def __init__(self, title: str = "edgeclf") -> None:
        self.title = title
        self._cv2 = preprocess._cv2()

    def show(self, image: np.ndarray) -> bool:
        self._cv2.imshow(self.title, image)
        key = self._cv2.waitKey(1) & 0xFF
        return key not in (ord("q"), 27)

    def close(self) -> None:
        try:
            self._cv2.destroyWindow(self.title)
        except Exception:  # noqa: BLE001 - the window may already be gone
            pass


class VideoSink:
    """Annotated frames to a video file, written to a temp name and renamed when closed.

    For live sources (`realtime`), each frame is repeated to fill the time until the next
    one, so playback runs at real speed although the classifier skipped stale frames.
    """

    def __init__(self, path: str | Path, fps: float, realtime: bool = False) -> None:
        self.path = Path(path)
        self.fps = fps if fps > 0 else 10.0
        self.realtime = realtime
        self._last: float | None = None
        self.tmp = self.path.with_name(f".{self.path.stem}.partial{self.path.suffix}")
        self._writer: Any = None
        self._size: tuple[int, int] | None = None
        self.frames = 0

    def write(self, image: np.ndarray, timestamp: float | None = None) -> None:
        cv2 = preprocess._cv2()
        if self._writer is None:
            try:
                self.path.parent.mkdir(parents=True, exist_ok=True)
            except OSError as exc:
                raise EdgeClfError(f"cannot write video {self.path}: {exc.strerror or exc}") from None
            size = (image.shape[1], image.shape[0])
            fourcc = cv2.VideoWriter_fourcc(*("MJPG" if self.path.suffix.lower() == ".avi" else "mp4v"))
            writer = cv2.VideoWriter(str(self.tmp), fourcc, self.fps, size)
            if not writer.isOpened():
                writer.release()
                raise EdgeClfError(f"cannot write video {self.path} (use .mp4 or .avi in a writable folder)")
            self._writer, self._size = writer, size
        if (image.shape[1], image.shape[0]) != self._size:
            image = cv2.resize(image, self._size)
        copies = 1
        if self.realtime and timestamp is not None:
            if self._last is not None:
                copies = max(1, min(round((timestamp - self._last) * self.fps), int(self.fps * 5)))
            self._last = timestamp
        for _ in range(copies):
            self._writer.write(image)
        self.frames += copies

    def close(self) -> None:
        if self._writer is None:
            return
        self._writer.release()
        self._writer = None
        try:
            os.replace(self.tmp, self.path)
        except OSError as exc:
            print(f"warning: could not finish {self.path}: {exc}", file=sys.stderr)
