"""systemd's notify protocol (READY=1, WATCHDOG=1, STOPPING=1) over a datagram socket, no python-systemd.

systemd sets NOTIFY_SOCKET (a path, or '@name' for an abstract socket) for a Type=notify unit,
and WATCHDOG_USEC when the unit has WatchdogSec=. The frame loop calls `Notifier.frame()` for
each classified frame: the first one sends READY=1, later ones send WATCHDOG=1 at most every
WATCHDOG_USEC / 2. So the watchdog is fed only while frames flow, and a camera that stops
delivering makes systemd restart the service even if every thread is stuck.
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
# added to the longest silence so that a reopen that just makes it is never killed
WATCHDOG_MARGIN = 10.0


def longest_silence(stall_timeout: float, retries: int, backoff: float = 0.5, max_backoff: float = 8.0) -> float:
    """Seconds without a classified frame before the app gives up on its own (capture.Grabber's schedule).

    A stall is noticed after `stall_timeout`; then each of `retries` reopens waits its back-off delay,
    opens (OPEN_ALLOWANCE) and may stall again for `stall_timeout`."""
    reopens = sum(min(backoff * 2**i, max_backoff) + OPEN_ALLOWANCE + stall_timeout for i in range(retries))
    return stall_timeout + reopens


def watchdog_seconds(stall_timeout: float, retries: int, backoff: float = 0.5, max_backoff: float = 8.0) -> int:
    """The WatchdogSec= a unit needs: longer than `longest_silence`, so systemd never kills a legitimate reopen."""
    return math.ceil(longest_silence(stall_timeout, retries, backoff, max_backoff) + WATCHDOG_MARGIN)


def _address(value: str) -> str | bytes | None:
    if value.startswith("@"):
        return b"\0" + value[1:].encode()  # Linux abstract namespace
    if value.startswith("/"):
        return value
    return None


class Notifier:
    """Sends notify messages when systemd asked for them; every method is a no-op otherwise.

    A send that fails (the socket went away) is logged once and never raises: the frame loop
    must not die because the service manager did."""

    def __init__(self, environ: Mapping[str, str] | None = None, clock: Callable[[], float] = time.monotonic) -> None:
        env = os.environ if environ is None else environ
        self.address = _address(env.get("NOTIFY_SOCKET", ""))
        self.interval: float | None = None
        usec = env.get("WATCHDOG_USEC", "")
        watchdog_pid = env.get("WATCHDOG_PID", "")
        if usec.isdigit() and int(usec) > 0 and (not watchdog_pid or watchdog_pid == str(os.getpid())):
            self.interval = int(usec) / 1e6 / 2
        self.ready = False
        self._clock = clock
        self._last_ping = -math.inf
        self._sock: socket.socket | None = None
        self._failed = False

    @property
    def enabled(self) -> bool:
        return self.address is not None

    def send(self, message: str) -> bool:
        """Send one datagram ('READY=1', 'STATUS=...'); False when disabled or it failed."""
        if self.address is None or self._failed:
            return False
        try:
            if self._sock is None:
                self._sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC)
            self._sock.sendto(message.encode(), self.address)
            return True
        except OSError as exc:
            self._failed = True
            log.warning("systemd notify socket %s failed (%s); no more notifications", self.address, exc)
            return False

    def frame(self) -> None:
        """One frame was classified: READY=1 on the first, then WATCHDOG=1 when half the watchdog time passed."""
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
