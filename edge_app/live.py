"""The live loop: newest frame -> shared preprocessing -> invoke -> smoothing -> JSON / overlay / files."""

from __future__ import annotations

import json
import logging
import math
import signal
import sys
import threading
import time
from collections import deque
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, TextIO

import numpy as np

from edgeclf.edge_app import preprocess
from edgeclf.edge_app.capture import Grabber
from edgeclf.edge_app.classifier import Classifier
from edgeclf.edge_app.collector import CollectLimits, Collector
from edgeclf.edge_app.errors import EdgeClfError
from edgeclf.edge_app.notify import Notifier
from edgeclf.edge_app.overlay import VideoSink, Window, annotate
from edgeclf.edge_app.results import frame_json, shown_label
from edgeclf.edge_app.sources import Frame
from edgeclf.edge_app.timings import Timings

if TYPE_CHECKING:
    from edgeclf.edge_app.mqttpublish import Publisher

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class LiveOptions:
    top_k: int = 3
    threshold: float = 0.5
    smooth: int = 1
    display: bool = False
    json_lines: bool = True
    max_frames: int | None = None
    duration: float | None = None
    save_video: Path | None = None
    collect: Path | None = None
    collect_limits: CollectLimits = CollectLimits()
    json_every: float = 0.0  # seconds between JSON lines (0: every frame); a change of label prints at once


class Smoother:
    """Mean of the last `window` probability vectors, so live labels do not flicker."""

    def __init__(self, window: int) -> None:
        self._recent: deque[np.ndarray] = deque(maxlen=max(1, window))

    def update(self, probs: np.ndarray) -> np.ndarray:
        self._recent.append(probs)
        return probs if len(self._recent) == 1 else np.mean(self._recent, axis=0)


@dataclass(frozen=True)
class FrameResult:
    top: list[tuple[str, float]]
    uncertain: bool
    pre_ms: float
    infer_ms: float


class FrameStep:
    """One frame through the app: shared preprocessing, invoke, smoothing, top-k, threshold.

    The live loop and the end-to-end benchmark both call this, so they time the same code.
    """

    def __init__(self, clf: Classifier, top_k: int = 3, threshold: float = 0.5, smooth: int = 1) -> None:
        self.clf, self.k, self.threshold = clf, top_k, threshold
        self.smoother = Smoother(smooth)

    def __call__(self, image_bgr: np.ndarray) -> FrameResult:
        t0 = time.perf_counter_ns()
        x = preprocess.prepare(image_bgr, self.clf.spec, "BGR")
        t1 = time.perf_counter_ns()
        probs = self.clf.predict(x)[0]
        t2 = time.perf_counter_ns()
        top = self.clf.top_k(self.smoother.update(probs), self.k)
        return FrameResult(top, top[0][1] < self.threshold, (t1 - t0) / 1e6, (t2 - t1) / 1e6)


@dataclass
class Summary:
    """What a run did: frames classified, wall time, inference times, dropped and unreadable frames."""

    frames: int = 0
    seconds: float = 0.0
    infer_ms: Timings = field(default_factory=Timings)  # streaming: a run of weeks holds no per-frame list
    dropped: int = 0
    reconnects: int = 0
    collected: int = 0
    skipped: int = 0  # unreadable frames of a damaged video, unreadable images
    reason: str = "end of source"
    mqtt_reconnects: int | None = None  # None: no --mqtt
    mqtt_dropped: int | None = None  # events and snapshots dropped while the broker was away and the queue full

    def add_frame(self, infer_ms: float) -> None:
        """Count one classified frame and its inference time."""
        self.frames += 1
        self.infer_ms.add(infer_ms)

    @property
    def fps(self) -> float:
        return self.frames / self.seconds if self.seconds > 0 else 0.0

    def line(self) -> str:
        ms = self.infer_ms
        return (
            f"summary: {self.frames} frames in {self.seconds:.1f} s ({self.reason}), mean {self.fps:.1f} FPS, "
            f"inference mean {ms.mean:.2f} ms p90 {ms.percentile(90):.2f} ms, "
            f"{self.dropped} stale frames dropped, {self.reconnects} reconnects"
            + (f", {self.skipped} unreadable frames skipped" if self.skipped else "")
            + (f", {self.collected} frames collected" if self.collected else "")
            + (
                f", mqtt: {self.mqtt_reconnects} reconnects, {self.mqtt_dropped} messages dropped"
                if self.mqtt_reconnects is not None
                else ""
            )
        )


class StopFlag:
    """SIGINT / SIGTERM set a flag the loop checks, so the camera and files are closed properly.

    Used as a context manager in the main thread (elsewhere it installs nothing); the handlers
    it found are put back on exit. `exit_code` is 128 + the signal's number (130, 143)."""

    def __init__(self) -> None:
        self.event = threading.Event()
        self.signum: int | None = None
        self._saved: dict[int, Any] = {}

    def __enter__(self) -> StopFlag:
        if threading.current_thread() is threading.main_thread():
            for sig in (signal.SIGINT, signal.SIGTERM):
                self._saved[sig] = signal.signal(sig, self._handle)
        return self

    def _handle(self, signum: int, _frame: Any) -> None:
        self.signum = signum
        self.event.set()

    @property
    def signal(self) -> str | None:
        """The signal's name ('SIGINT'), None before one arrived."""
        return None if self.signum is None else signal.Signals(self.signum).name

    @property
    def exit_code(self) -> int | None:
        return None if self.signum is None else 128 + self.signum

    def __exit__(self, *exc: object) -> None:
        for sig, handler in self._saved.items():
            signal.signal(sig, handler)
        self._saved.clear()


def _record(frame: Frame, result: FrameResult, fps: float) -> str:
    """One JSON line: when and which frame, the prediction and its timings (edgeclf.edge_app.results), the FPS."""
    return json.dumps(
        {
            "time": datetime.fromtimestamp(frame.timestamp, UTC).isoformat(timespec="milliseconds"),
            "frame": frame.index,
            "source": frame.origin,
            **frame_json(result, preprocess_ms=True, inference_ms=True),
            "fps": round(fps, 2),
        }
    )


def _collector(options: LiveOptions) -> Collector | None:
    """The collector of `--collect`, or None (also when its folder cannot be used: the run goes on)."""
    if options.collect is None:
        return None
    try:
        return Collector(options.collect, options.collect_limits)
    except EdgeClfError as exc:
        log.warning("%s; collecting stopped", exc)
        return None


def run_live(
    clf: Classifier,
    grabber: Grabber,
    options: LiveOptions,
    out: TextIO | None = None,
    stop: StopFlag | None = None,
    notifier: Notifier | None = None,
    publisher: Publisher | None = None,
) -> Summary:
    """Classify frames until the source ends, a bound is reached, or a signal / q key stops the run.

    `stop`: a StopFlag the caller already holds (it then also covered opening the source).
    `notifier`: systemd's notify socket (from the environment when None): READY=1 after the first
    frame, WATCHDOG=1 only while frames are classified, STOPPING=1 at the end.
    `publisher`: MQTT (--mqtt) gets each smoothed result; it only queues, so the loop never waits for a broker.
    The caller closes it."""
    if stop is None:
        with StopFlag() as own:
            return run_live(clf, grabber, options, out, own, notifier, publisher)
    notifier = notifier or Notifier()
    out = out or sys.stdout
    summary = Summary()
    step = FrameStep(clf, options.top_k, options.threshold, options.smooth)
    window = Window() if options.display else None
    source = grabber.source
    sink = VideoSink(options.save_video, getattr(source, "fps", 0.0), source.live) if options.save_video else None
    collector = _collector(options)
    fps = 0.0
    printed_label, printed_at = None, -math.inf
    start = last = time.monotonic()
    stuck = False
    try:
        while not stop.event.is_set():
            if options.max_frames is not None and summary.frames >= options.max_frames:
                summary.reason = f"--max-frames {options.max_frames}"
                break
            if options.duration is not None and time.monotonic() - start >= options.duration:
                summary.reason = f"--duration {options.duration:g}"
                break
            frame = grabber.next_frame(0.25)
            if frame is None:
                if grabber.ended:
                    break
                silent = grabber.stuck_for()  # a capture thread stuck in a driver call: end, with an error
                if silent is not None:
                    stuck = True
                    raise EdgeClfError(
                        f"no frame for {silent:.0f} s from {source.name}, longer than its reopens take: "
                        f"the capture is stuck ({summary.frames} frames classified before)"
                    )
                continue
            result = step(frame.for_model)
            top, uncertain, infer_ms = result.top, result.uncertain, result.infer_ms
            now = time.monotonic()
            if summary.frames and now > last:
                fps = 1.0 / (now - last) if fps == 0 else 0.9 * fps + 0.1 / (now - last)
            last = now
            summary.add_frame(infer_ms)
            notifier.frame()
            label = shown_label(result)
            if options.json_lines and (label != printed_label or now - printed_at >= options.json_every):
                print(_record(frame, result, fps), file=out, flush=True)
                printed_label, printed_at = label, now
            if publisher is not None:
                publisher.frame(result, frame.timestamp, frame.origin, frame.image)
            if window or sink:
                shown = annotate(frame.image, top, uncertain, infer_ms, fps)
                if sink:
                    sink.write(shown, frame.timestamp)
                if window and not window.show(shown):
                    summary.reason = "q pressed"
                    break
            if collector is not None and uncertain:
                try:
                    if collector.offer(frame, top[0][0]):
                        summary.collected += 1
                except EdgeClfError as exc:
                    log.warning("%s; collecting stopped", exc)
                    collector = None
    except BrokenPipeError:
        summary.reason = "output closed"
    finally:
        summary.seconds = time.monotonic() - start
        notifier.stopping()
        grabber.stop(timeout=1.0 if stop.event.is_set() or stuck else 5.0)  # a signal is honoured within 2 s
        if sink:
            sink.close()
        if window:
            window.close()
    if stop.signal:
        summary.reason = stop.signal
    summary.dropped, summary.reconnects = grabber.dropped, grabber.reconnects
    summary.skipped = int(getattr(source, "skipped", 0))
    if grabber.error and not stop.signal:
        raise EdgeClfError(f"{grabber.error} ({summary.frames} frames classified before)")
    return summary
