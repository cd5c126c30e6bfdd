"""Capture in its own thread. Live sources keep only the newest frame, so a slow model drops
stale frames instead of building latency; file sources hand over every frame in order.
A live source that fails is reopened with back-off, a bounded number of times.

Opening happens in the capture thread too: cv2.VideoCapture on a stream that never answers
blocks inside C (FFmpeg's own timeout is 30 s), where no signal reaches it. The caller waits
in slices it can leave on a signal, and a thread still stuck in C is abandoned (it is a daemon).
"""

from __future__ import annotations

import logging
import threading
import time

from edgeclf.edge_app.logs import NOTICE
from edgeclf.edge_app.sources import Frame, FrameSource, SourceError

log = logging.getLogger(__name__)


class Grabber:
    """Run `source` in a background thread; `next_frame()` gives the newest unseen frame."""

    def __init__(
        self,
        source: FrameSource,
        retries: int = 5,
        backoff: float = 0.5,
        max_backoff: float = 8.0,
        *,
        give_up_after: float | None = None,
    ) -> None:
        """`give_up_after`: seconds without a frame from a live source after which `stuck_for()` reports it
        (longer than the reopen schedule can take: the capture thread is stuck in a driver call)."""
        self.source = source
        self.retries = retries
        self.backoff = backoff
        self.max_backoff = max_backoff
        self.give_up_after = give_up_after
        self._delivered_at = time.monotonic()  # the last frame, or the start
        self.dropped = 0
        self.reconnects = 0
        self.error: str | None = None
        self._attempts = 0
        self._latest: Frame | None = None
        self._ended = False
        self._stop = threading.Event()
        self._opened = threading.Event()  # set when the first open() returned or raised
        self._open_error: BaseException | None = None
        self._cond = threading.Condition()
        self._thread = threading.Thread(target=self._run, name="edgeclf-capture", daemon=True)

    def start(self, cancel: threading.Event | None = None) -> Grabber:
        """Open the source in the capture thread and start capturing; errors from opening are raised here.

        The wait gives way to signals (a KeyboardInterrupt propagates) and to `cancel`: then the
        grabber is stopped and a source still stuck opening is left to its thread."""
        if cancel is not None and cancel.is_set():
            self._stop.set()
            with self._cond:
                self._ended = True
            return self
        self._thread.start()
        try:
            while not self._opened.wait(0.1):
                if cancel is not None and cancel.is_set():
                    self._stop.set()
                    return self
        except BaseException:
            self._stop.set()  # the thread closes the source if its open() ever returns
            raise
        if self._open_error is not None:
            raise self._open_error
        with self._cond:
            self._delivered_at = time.monotonic()  # the silence counts from the open, not from before it
        return self

    def _put(self, frame: Frame) -> None:
        with self._cond:
            self._delivered_at = time.monotonic()
            if self.source.live:
                if self._latest is not None:
                    self.dropped += 1
                self._latest = frame
            else:
                while self._latest is not None and not self._stop.is_set():
                    self._cond.wait(0.1)
                self._latest = frame
            self._cond.notify_all()

    def _reopen(self) -> bool:
        """Reopen with growing delays. The budget of `retries` attempts is shared by failed reads
        and failed opens, and refilled only by a delivered frame, so a source that opens but
        never delivers also ends."""
        while self._attempts < self.retries:
            self._attempts += 1
            delay = min(self.backoff * 2 ** (self._attempts - 1), self.max_backoff)
            if self._stop.wait(delay):
                return False
            try:
                self.source.close()
                self.source.open()
                self.reconnects += 1
                log.log(NOTICE, "%s reopened (attempt %d)", self.source.name, self._attempts)
                return True
            except Exception as exc:  # noqa: BLE001 - drivers raise anything; each failure is one retry
                log.warning("reopening %s failed (%d/%d): %s", self.source.name, self._attempts, self.retries, exc)
        return False

    def _open(self) -> bool:
        try:
            self.source.open()
            return True
        except BaseException as exc:  # noqa: BLE001 - handed to start(), in the caller's thread
            self._open_error = exc
            return False
        finally:
            self._opened.set()

    def _run(self) -> None:
        if not self._open():
            with self._cond:
                self._ended = True  # a failed open() cleaned up after itself: nothing to close
                self._cond.notify_all()
            return
        try:
            while not self._stop.is_set():
                try:
                    frame = self.source.read()
                except Exception as exc:  # noqa: BLE001 - cv2.error, RuntimeError...: a failed read
                    if not isinstance(exc, SourceError):
                        exc = SourceError(f"{self.source.name} failed: {type(exc).__name__}: {exc}")
                    log.warning("%s", exc)
                    if self.source.live and self._reopen():
                        continue
                    if not self._stop.is_set():
                        self.error = f"{exc}; gave up after {self.retries} retries" if self.source.live else str(exc)
                    break
                if frame is None:
                    break
                self._attempts = 0
                self._put(frame)
        finally:
            self._close_source()  # in this thread, so never while a read() is in progress
            with self._cond:
                self._ended = True
                self._cond.notify_all()

    def _close_source(self) -> None:
        try:
            self.source.close()
        except Exception as exc:  # noqa: BLE001 - a failing close must not hide the run's result
            log.warning("closing %s failed: %s", self.source.name, exc)

    def next_frame(self, timeout: float = 5.0) -> Frame | None:
        """The newest frame not yet taken; None when the source has ended (or `timeout` passed)."""
        deadline = time.monotonic() + timeout
        with self._cond:
            while self._latest is None and not self._ended:
                left = deadline - time.monotonic()
                if left <= 0:
                    return None
                self._cond.wait(left)
            frame, self._latest = self._latest, None
            self._cond.notify_all()
            return frame

    def stuck_for(self) -> float | None:
        """Seconds a live source has delivered nothing, once that is longer than `give_up_after`; else None."""
        if not self.source.live or self.give_up_after is None:
            return None
        with self._cond:
            silent = time.monotonic() - self._delivered_at
        return silent if silent > self.give_up_after else None

    @property
    def ended(self) -> bool:
        with self._cond:
            return self._ended and self._latest is None

    def stop(self, timeout: float = 5.0) -> None:
        """Stop capturing and release the source; a thread stuck in a driver call is left after `timeout`."""
        self._stop.set()
        with self._cond:
            self._cond.notify_all()
        if self._thread.is_alive():
            self._thread.join(timeout=timeout)
        if self._thread.is_alive():
            log.warning("%s did not stop within %g s; left to close on its own", self.source.name, timeout)
