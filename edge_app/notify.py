"""systemd's notify protocol (READY=1, WATCHDOG=1, STOPPING=1) over a datagram socket, no python-systemd.

systemd sets NOTIFY_SOCKET (a path, or '@name' for an abstract socket) for a Type=notify unit,
and WATCHDOG_USEC when the unit has WatchdogSec=. The frame loop calls `Notifier.frame()` for
each classified frame: the first one sends READY=1, later ones send WATCHDOG=1 every
WATCHDOG_USEC / 2, and at least every second (so the last ping before a stall is at most 1 s old
and WatchdogSec need only outlast the reopen schedule by that). The watchdog is fed only while
frames flow: a camera that stops delivering gets the app's own reopens, then its own exit 1, and
systemd's kill only if the process is stuck.
"""

from __future__ import annotations

import logging
import math
import os
import socket
import time
from collections.abc import Callable, Mapping

log = logging.getLogger(__name__)

# picamera2 needs a second or two to construct, configure and start a camera; allow more
OPEN_ALLOWANCE = 3.0
# OpenCV's FFmpeg backend waits up to 30 s in an open or a read of a stream that stopped answering,
# a V4L2 camera less: the time one call on an OpenCV source may block
OPENCV_TIMEOUT = 30.0
# the most time between two WATCHDOG=1 while frames flow (systemd suggests half WatchdogSec; at most this)
PING_EVERY = 1.0
# the live loop gives up this long after the reopen schedule should have ended (a capture thread stuck
# in a driver); the watchdog waits longer still, so the process exits 1 on its own before it is killed
GIVE_UP_MARGIN = 5.0
WATCHDOG_MARGIN = 10.0


def source_timeouts(source: str | None, stall_timeout: float) -> tuple[float, float]:
    """How long one read and one open of `source` (a --source value) may take: the Pi camera's reads end
    after --stall-timeout; an OpenCV camera or stream (or the first camera found, which may be one) can
    block in FFmpeg or V4L2 for OPENCV_TIMEOUT."""
    if source == "picamera2":
        return stall_timeout, OPEN_ALLOWANCE
    return max(stall_timeout, OPENCV_TIMEOUT), OPENCV_TIMEOUT


def longest_silence(
    read_timeout: float,
    retries: int,
    open_timeout: float = OPEN_ALLOWANCE,
    backoff: float = 0.5,
    max_backoff: float = 8.0,
) -> float:
    """Seconds without a frame before the app gives up on its own (capture.Grabber's schedule).

    A failed read is noticed after at most `read_timeout`; then each of `retries` reopens waits its
    back-off delay, opens (`open_timeout`) and may fail its first read again after `read_timeout`."""
    delays = sum(min(backoff * 2**i, max_backoff) for i in range(retries))
    return read_timeout + delays + retries * (open_timeout + read_timeout)


def give_up_after(source: str | None, stall_timeout: float, retries: int) -> float:
    """Seconds without a frame after which the live loop itself exits 1 (the capture thread is stuck)."""
    read, open_ = source_timeouts(source, stall_timeout)
    return longest_silence(read, retries, open_) + GIVE_UP_MARGIN


def watchdog_seconds(source: str | None, stall_timeout: float, retries: int) -> int:
    """The WatchdogSec= a unit needs: the longest silence of `source`'s reopen schedule, plus the time
    between two pings and a margin beyond the loop's own give-up, so systemd never kills a legitimate
    reopen, only a process that is stuck."""
    read, open_ = source_timeouts(source, stall_timeout)
    return math.ceil(longest_silence(read, retries, open_) + PING_EVERY + WATCHDOG_MARGIN)


def _address(value: str) -> str | bytes | None:
    if value.startswith("@"):
        return b"\0" + value[1:].encode()  # Linux abstract namespace
    if value.startswith("/"):
        return value
    return None


class Notifier:
    """Sends notify messages when systemd asked for them; every method is a no-op otherwise.

    A send that fails never raises (the frame loop must not die because the service manager is
    busy) and is logged at most once a minute; the next message tries again."""

    def __init__(self, environ: Mapping[str, str] | None = None, clock: Callable[[], float] = time.monotonic) -> None:
        env = os.environ if environ is None else environ
        self.address = _address(env.get("NOTIFY_SOCKET", ""))
        self.interval: float | None = None
        usec = env.get("WATCHDOG_USEC", "")
        watchdog_pid = env.get("WATCHDOG_PID", "")
        if usec.isdigit() and int(usec) > 0 and (not watchdog_pid or watchdog_pid == str(os.getpid())):
            self.interval = min(int(usec) / 1e6 / 2, PING_EVERY)
        self.ready = False
        self._clock = clock
        self._last_ping = -math.inf
        self._sock: socket.socket | None = None
        self._warned = -math.inf

    @property
    def enabled(self) -> bool:
        return self.address is not None

    def send(self, message: str) -> bool:
        """Send one datagram ('READY=1', 'STATUS=...'); False when disabled or it failed."""
        if self.address is None:
            return False
        try:
            if self._sock is None:
                self._sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC)
            self._sock.sendto(message.encode(), self.address)
            return True
        except OSError as exc:
            now = self._clock()
            if now - self._warned >= 60:
                self._warned = now
                log.warning("systemd notify socket %s: %s (trying again with the next message)", self.address, exc)
            return False

    def frame(self) -> None:
        """One frame was classified: READY=1 on the first, then WATCHDOG=1 every half watchdog time (1 s at most)."""
        if self.address is None:
            return
        now = self._clock()
        if not self.ready:
            self.ready = True
            self._last_ping = now
            self.send("READY=1\nSTATUS=classifying")
            return
        if self.interval is not None and now - self._last_ping >= self.interval:
            self._last_ping = now
            self.send("WATCHDOG=1")

    def stopping(self) -> None:
        """Tell systemd the stop is deliberate (a signal, the end of a file source)."""
        self.send("STOPPING=1")

    def close(self) -> None:
        if self._sock is not None:
            self._sock.close()
            self._sock = None
