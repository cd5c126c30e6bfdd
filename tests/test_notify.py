"""systemd notify protocol: READY after the first frame, WATCHDOG only while frames flow."""

from __future__ import annotations

import os
import socket

import pytest

from edge_app.notify import Notifier, longest_silence, watchdog_seconds


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
    notifier = Notifier({"NOTIFY_SOCKET": path, "WATCHDOG_USEC": "4000000"}, clock)
    assert notifier.enabled and notifier.interval == 2.0
    assert receive_all(sock) == []  # nothing before a frame was classified
    notifier.frame()
    assert receive_all(sock) == ["READY=1\nSTATUS=classifying"]
    for _ in range(10):  # frames at 10 fps for 1 s: no ping yet
        clock.now += 0.1
        notifier.frame()
    assert receive_all(sock) == []
    clock.now += 1.01  # 2 s after READY
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


def test_a_vanished_socket_is_reported_once_and_never_raises(tmp_path, caplog):
    notifier = Notifier({"NOTIFY_SOCKET": str(tmp_path / "gone.sock"), "WATCHDOG_USEC": "1000"})
    notifier.frame()
    notifier.frame()
    notifier.stopping()
    assert sum("notify socket" in r.message for r in caplog.records) == 1


def test_watchdog_outlasts_the_whole_reopen_schedule():
    # defaults: 5 s stall, 5 retries with 0.5 .. 8 s back-off
    silence = longest_silence(5.0, 5)
    assert silence == pytest.approx(5 + (0.5 + 1 + 2 + 4 + 8) + 5 * (3 + 5))
    assert watchdog_seconds(5.0, 5) > silence
    assert watchdog_seconds(1.0, 0) > 1.0
