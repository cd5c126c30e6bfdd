"""The service as systemd runs it: camera options reach the source, the watchdog is fed only while
frames flow, and a camera that stalls for good ends run and serve with a failure (so Restart= fires)."""

from __future__ import annotations

import socket
import threading
import time

import pytest

import edge_app.run
import edge_app.web.serve
from edge_app.picamera import Picamera2Source
from edge_app.run import main as run_main
from edge_app.sources import CameraSettings
from edge_app.web.serve import main as serve_main
from tests.fakes import ScriptedSource, install_picamera2


def test_camera_options_reach_the_source(converted, monkeypatch):
    seen = []
    monkeypatch.setattr(edge_app.run, "parse_source", lambda spec, camera: seen.append(camera) or ScriptedSource(3, live=False))
    argv = ["--model", str(converted["int8"]), "--no-display", "--source", "x", "--max-frames", "2"]
    extra = ["--size", "320x240", "--fps", "15", "--hflip", "--stall-timeout", "2.5"]
    assert run_main(argv + extra) == 0
    assert seen == [CameraSettings(size=(320, 240), fps=15.0, hflip=True, vflip=False, stall_timeout=2.5)]
    assert run_main(argv) == 0
    assert seen[-1] == CameraSettings()  # 640x480, 30 fps, no flips, 5 s


@pytest.mark.parametrize(
    "option", [["--fps", "0"], ["--stall-timeout", "-1"], ["--size", "1x1"], ["--fps", "nan"], ["--size", "0x480"]]
)
def test_bad_camera_options_are_usage_errors(option, converted, capsys):
    with pytest.raises(SystemExit) as exc:
        run_main(["--model", str(converted["int8"]), "--no-display", *option])
    assert exc.value.code == 2
    err = capsys.readouterr().err
    assert "Traceback" not in err and option[0] in err


class Listener:
    """A datagram socket standing in for systemd's NOTIFY_SOCKET; records (time, message)."""

    def __init__(self, path: str) -> None:
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.bind(path)
        self.sock.settimeout(0.05)
        self.messages: list[tuple[float, str]] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                self.messages.append((time.monotonic(), self.sock.recv(4096).decode()))
            except TimeoutError:
                continue

    def close(self) -> list[tuple[float, str]]:
        self._stop.set()
        self._thread.join()
        self.sock.close()
        return self.messages


@pytest.fixture
def notify_socket(tmp_path, monkeypatch):
    path = str(tmp_path / "notify.sock")
    listener = Listener(path)
    monkeypatch.setenv("NOTIFY_SOCKET", path)
    monkeypatch.setenv("WATCHDOG_USEC", "40000")  # a ping due every 20 ms
    monkeypatch.delenv("WATCHDOG_PID", raising=False)
    yield listener
    listener.close()


def stalling_pi_camera(monkeypatch, frames: int):
    """A Pi camera (faithful fake) that delivers `frames` frames, then stalls; reopened, it stays stalled."""
    cls = install_picamera2(monkeypatch, hang_limit=2.0)
    first = cls.__init__

    def init(self, *args, **kwargs):
        first(self, *args, **kwargs)
        self.stall_after = frames if len(cls.instances) == 1 else 0

    monkeypatch.setattr(cls, "__init__", init)
    return cls


def test_run_feeds_the_watchdog_while_frames_flow_and_fails_when_the_camera_stalls(
    converted, monkeypatch, notify_socket, caplog
):
    cls = stalling_pi_camera(monkeypatch, frames=40)
    monkeypatch.setattr(
        edge_app.run, "parse_source", lambda spec, camera: Picamera2Source(camera, factory=cls, pisp=False)
    )
    monkeypatch.setattr("edge_app.capture.Grabber.__init__.__defaults__", (5, 0.05, 0.1))
    argv = ["--model", str(converted["int8"]), "--no-display", "--source", "picamera2"]
    start = time.monotonic()
    code = run_main(argv + ["--stall-timeout", "0.3", "--retries", "1", "--json-every", "0"])
    ended = time.monotonic()
    messages = notify_socket.close()
    assert code == 1
    assert any("no frame in 0.3 s" in r.message and "gave up after 1 retries" in r.message for r in caplog.records)
    texts = [text for _, text in messages]
    assert texts[0].startswith("READY=1"), texts
    pings = [at for at, text in messages if text == "WATCHDOG=1"]
    assert pings, "no WATCHDOG=1 while 40 frames flowed"
    assert len(pings) < 40
    # after the last frame: the stall (0.3 s), a reopen that stalls again (0.3 s): no ping in that time
    assert ended - pings[-1] >= 0.6, (ended - start, ended - pings[-1])
    assert all(text in ("WATCHDOG=1", "STOPPING=1") for text in texts[1:]), texts


def test_run_without_notify_socket_sends_nothing(converted, monkeypatch):
    monkeypatch.delenv("NOTIFY_SOCKET", raising=False)
    sent = []
    monkeypatch.setattr("edge_app.notify.socket.socket", lambda *args: sent.append(args))
    monkeypatch.setattr(edge_app.run, "parse_source", lambda spec, camera: ScriptedSource(5, live=False))
    assert run_main(["--model", str(converted["int8"]), "--no-display", "--source", "x"]) == 0
    assert sent == []


def test_serve_exits_1_when_its_camera_gives_up(converted, monkeypatch, notify_socket, tmp_path, caplog):
    """A live feed that gave up must end the service (Restart=on-failure), not leave a server without camera."""
    seen = []

    def source(spec, camera):
        seen.append(camera)
        return ScriptedSource(frames=30)  # live: after 30 frames every read fails, as an unplugged camera

    monkeypatch.setattr(edge_app.web.serve, "parse_source", source)
    monkeypatch.setattr("edge_app.capture.Grabber.__init__.__defaults__", (5, 0.05, 0.1))
    argv = ["--model", str(converted["int8"]), "--source", "0", "--port", "0", "--db", str(tmp_path / "h.db")]
    done = {}
    timer = threading.Timer(20, lambda: done.setdefault("timeout", True))
    timer.start()
    try:
        code = serve_main(argv + ["--retries", "1", "--fps", "10", "--vflip"])
    finally:
        timer.cancel()
    messages = notify_socket.close()
    assert code == 1 and "timeout" not in done
    assert seen == [CameraSettings(fps=10.0, vflip=True)]
    assert any("gave up after 1 retries" in r.message for r in caplog.records)
    texts = [text for _, text in messages]
    assert texts and texts[0].startswith("READY=1"), texts
