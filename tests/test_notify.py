"""systemd notify protocol: READY after the first frame, WATCHDOG only while frames flow."""

from __future__ import annotations

import os
import socket

import pytest

from edgeclf.edge_app.notify import (
    PING_EVERY,
    Notifier,
    give_up_after,
    longest_silence,
    source_timeouts,
    watchdog_seconds,
)

pytestmark = pytest.mark.device  # edge extra + pytest only: .ci/edge-job runs it


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def receive_all(sock: socket.socket) -> list[str]:
    sock.setblocking(False)
    messages = []
    while True:
        try:
            messages.append(sock.recv(4096).decode())
        except BlockingIOError:
            return messages


@pytest.fixture
def listener(tmp_path):
    path = tmp_path / "notify.sock"
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(str(path))
    yield sock, str(path)
    sock.close()


def test_ready_after_first_frame_then_watchdog_every_half_period(listener):
    sock, path = listener
    clock = Clock()
    notifier = Notifier({"NOTIFY_SOCKET": path, "WATCHDOG_USEC": "1000000"}, clock)
    assert notifier.enabled and notifier.interval == 0.5
    assert receive_all(sock) == []  # nothing before a frame was classified
    notifier.frame()
    assert receive_all(sock) == ["READY=1\nSTATUS=classifying"]
    for _ in range(10):  # frames at 25 fps for 0.4 s: no ping yet
        clock.now += 0.04
        notifier.frame()
    assert receive_all(sock) == []
    clock.now += 0.11  # 0.51 s after READY
    notifier.frame()
    assert receive_all(sock) == ["WATCHDOG=1"]
    clock.now += 30.0  # frames stopped: no frame() call, no message, whatever the time
    assert receive_all(sock) == []
    notifier.frame()
    notifier.stopping()
    assert receive_all(sock) == ["WATCHDOG=1", "STOPPING=1"]


def test_abstract_socket_address():
    name = f"edgeclf-test-{os.getpid()}"
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(b"\0" + name.encode())
    try:
        notifier = Notifier({"NOTIFY_SOCKET": "@" + name})
        notifier.frame()
        assert receive_all(sock) == ["READY=1\nSTATUS=classifying"]
    finally:
        sock.close()


def test_disabled_without_socket_and_no_watchdog_without_usec(listener):
    sock, path = listener
    off = Notifier({})
    off.frame()
    assert not off.enabled and not off.send("READY=1")
    clock = Clock()
    notifier = Notifier({"NOTIFY_SOCKET": path}, clock)  # Type=notify without WatchdogSec
    notifier.frame()
    clock.now += 1000
    notifier.frame()
    assert receive_all(sock) == ["READY=1\nSTATUS=classifying"]
    other_pid = Notifier({"NOTIFY_SOCKET": path, "WATCHDOG_USEC": "1000000", "WATCHDOG_PID": "1"})
    assert other_pid.interval is None  # the watchdog is meant for another process


def test_a_vanished_socket_is_reported_once_a_minute_and_retried(tmp_path, caplog):
    clock = Clock()
    path = tmp_path / "later.sock"
    notifier = Notifier({"NOTIFY_SOCKET": str(path), "WATCHDOG_USEC": "1000"}, clock)
    notifier.frame()
    clock.now += 1
    notifier.frame()
    notifier.stopping()
    assert sum("notify socket" in r.message for r in caplog.records) == 1
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(str(path))  # systemd is back (or was only busy): the next message goes through
    try:
        clock.now += 1
        notifier.frame()
        assert receive_all(sock) == ["WATCHDOG=1"]
    finally:
        sock.close()


def test_pings_at_least_every_second_whatever_the_watchdog(listener):
    sock, path = listener
    clock = Clock()
    notifier = Notifier({"NOTIFY_SOCKET": path, "WATCHDOG_USEC": str(60 * 10**6)}, clock)
    assert notifier.interval == 1.0  # not 30 s: the last ping before a stall is at most 1 s old
    notifier.frame()
    clock.now += 1.0
    notifier.frame()
    assert receive_all(sock)[1:] == ["WATCHDOG=1"]


@pytest.mark.parametrize("source", ["picamera2", "rtsp://cam/stream", "0", None])
def test_watchdog_outlasts_the_whole_reopen_schedule(source):
    from edgeclf.edge_app.capture import Grabber

    read, open_ = source_timeouts(source, 5.0)
    # Grabber's schedule: its defaults are what longest_silence assumes
    assert Grabber.__init__.__defaults__ == (5, 0.5, 8.0)
    delays = 0.5 + 1 + 2 + 4 + 8
    silence = longest_silence(read, 5, open_)
    assert silence == pytest.approx(read + delays + 5 * (open_ + read))
    # the last ping is at most PING_EVERY before the stall; the loop gives up before systemd kills it
    assert silence + PING_EVERY < give_up_after(source, 5.0, 5) < watchdog_seconds(source, 5.0, 5)
    if source == "picamera2":
        assert read == 5.0 and watchdog_seconds(source, 5.0, 5) == 72
    else:  # FFmpeg's 30 s in an open or a read of a stream that went quiet
        assert read == open_ == 30.0 and watchdog_seconds(source, 5.0, 5) > 345
