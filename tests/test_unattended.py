"""The service as systemd runs it: camera options reach the source, the watchdog is fed only while
frames flow, and a camera that stalls for good ends run and serve with a failure (so Restart= fires)."""

from __future__ import annotations

import signal
import socket
import threading
import time

import pytest

import edgeclf.edge_app.run
import edgeclf.edge_app.web.serve
from edgeclf.edge_app.picamera import Picamera2Source
from edgeclf.edge_app.run import main as run_main
from edgeclf.edge_app.sources import CameraSettings
from edgeclf.edge_app.web.serve import main as serve_main
from tests.fakes import ScriptedSource, install_picamera2


def test_camera_options_reach_the_source(converted, monkeypatch):
    seen = []
    monkeypatch.setattr(
        edgeclf.edge_app.run, "parse_source", lambda spec, camera: seen.append(camera) or ScriptedSource(3, live=False)
    )
    argv = ["--model", str(converted["int8"]), "--no-display", "--source", "x", "--max-frames", "2"]
    extra = ["--size", "320x240", "--fps", "15", "--hflip", "--stall-timeout", "2.5"]
    assert run_main(argv + extra) == 0
    assert seen == [CameraSettings(size=(320, 240), fps=15.0, hflip=True, vflip=False, stall_timeout=2.5)]
    assert run_main(argv) == 0
    assert seen[-1] == CameraSettings()  # 640x480, 30 fps, no flips, 5 s


@pytest.mark.parametrize(
    "option",
    [
        ["--fps", "0"],
        ["--stall-timeout", "-1"],
        ["--size", "1x1"],
        ["--fps", "nan"],
        ["--size", "0x480"],
        ["--fps", "0.3"],
    ],
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
        edgeclf.edge_app.run, "parse_source", lambda spec, camera: Picamera2Source(camera, factory=cls, pisp=False)
    )
    monkeypatch.setattr("edgeclf.edge_app.capture.Grabber.__init__.__defaults__", (5, 0.05, 0.1))
    argv = ["--model", str(converted["int8"]), "--no-display", "--source", "picamera2"]
    start = time.monotonic()
    code = run_main(argv + ["--stall-timeout", "0.3", "--retries", "1", "--json-every", "0"])
    ended = time.monotonic()
    messages = notify_socket.close()
    assert cls.hangs == []  # no call that real picamera2 would have blocked in for ever
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
    monkeypatch.setattr("edgeclf.edge_app.notify.socket.socket", lambda *args: sent.append(args))
    monkeypatch.setattr(edgeclf.edge_app.run, "parse_source", lambda spec, camera: ScriptedSource(5, live=False))
    assert run_main(["--model", str(converted["int8"]), "--no-display", "--source", "x"]) == 0
    assert sent == []


def test_serve_exits_1_when_its_camera_gives_up(converted, monkeypatch, notify_socket, tmp_path, caplog):
    """A live feed that gave up must end the service (Restart=on-failure), not leave a server without camera."""
    seen = []

    def source(spec, camera):
        seen.append(camera)
        return ScriptedSource(frames=30)  # live: after 30 frames every read fails, as an unplugged camera

    monkeypatch.setattr(edgeclf.edge_app.web.serve, "parse_source", source)
    monkeypatch.setattr("edgeclf.edge_app.capture.Grabber.__init__.__defaults__", (5, 0.05, 0.1))
    argv = ["--model", str(converted["int8"]), "--source", "0", "--port", "0", "--db", str(tmp_path / "h.db")]
    done = {}
    main = threading.main_thread().ident

    def too_long():  # a server that would hang here is stopped, and the test fails instead of hanging
        done["timeout"] = True
        signal.pthread_kill(main, signal.SIGINT)

    timer = threading.Timer(20, too_long)
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


class StuckClosing(ScriptedSource):
    """A live camera whose reads fail after a few frames and whose close() then blocks in the driver
    (real picamera2's stop() and close() wait without a timeout): the grabber's reopen never returns."""

    def __init__(self):
        super().__init__(frames=5)
        self.release = threading.Event()

    def close(self):
        super().close()
        self.release.wait(20)


def test_run_exits_1_when_the_capture_thread_is_stuck(converted, monkeypatch, caplog):
    source = StuckClosing()
    monkeypatch.setattr(edgeclf.edge_app.run, "parse_source", lambda spec, camera: source)
    monkeypatch.setattr("edgeclf.edge_app.notify.GIVE_UP_MARGIN", 0.0)
    monkeypatch.setattr("edgeclf.edge_app.notify.OPENCV_TIMEOUT", 0.5)  # the scripted source stands for an OpenCV one
    argv = [
        "--model",
        str(converted["int8"]),
        "--no-display",
        "--source",
        "0",
        "--retries",
        "1",
        "--stall-timeout",
        "0.5",
    ]
    start = time.monotonic()
    try:
        code = run_main(argv)
    finally:
        source.release.set()
    took = time.monotonic() - start
    assert code == 1
    assert any("no frame for" in r.message for r in caplog.records), [r.message for r in caplog.records]
    assert took < 10  # 0.5 s read + 0.5 s back-off + 0.5 s open + 0.5 s read, then the loop's own check


def live_feed(converted, source, **kwargs):
    from edgeclf.edge_app.classifier import Classifier
    from edgeclf.edge_app.web.feed import LiveFeed, SharedClassifier

    given_up = []
    feed = LiveFeed(SharedClassifier(Classifier(converted["int8"])), source, on_give_up=given_up.append, **kwargs)
    return feed, given_up


def wait_for(condition, timeout=10.0):
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.02)


def test_feed_skips_a_bad_frame_and_gives_up_after_many(converted, monkeypatch):
    feed, given_up = live_feed(converted, ScriptedSource(delay=0.002))
    calls = {"n": 0}
    real = feed._show

    def show(frame, cv2):
        calls["n"] += 1
        if calls["n"] == 3 or calls["n"] > 10:  # one bad frame, then every frame fails
            raise ValueError("cv2 could not encode")
        real(frame, cv2)

    monkeypatch.setattr(feed, "_show", show)
    feed.start()
    try:
        wait_for(lambda: feed.error is not None)
    finally:
        feed.stop()
    assert feed.frames == 9  # the third frame was skipped, not the end of the feed
    assert "30 frames in a row failed: ValueError: cv2 could not encode" in feed.error
    assert given_up == [feed.error]


def test_feed_goes_on_when_the_history_cannot_store(converted, caplog):
    from edgeclf.edge_app.errors import EdgeClfError

    class FullDisk:
        def add(self, *args, **kwargs):
            raise EdgeClfError("history database error: database or disk is full")

    feed, given_up = live_feed(converted, ScriptedSource(delay=0.002), history=FullDisk(), sample_every=0.001)
    feed.start()
    try:
        wait_for(lambda: feed.frames >= 20)
    finally:
        feed.stop()
    assert feed.error is None and given_up == []
    assert sum("could not be stored" in r.message for r in caplog.records) == 1


def test_feed_gives_up_when_the_capture_is_stuck(converted, monkeypatch):
    source = StuckClosing()
    monkeypatch.setattr("edgeclf.edge_app.capture.Grabber.__init__.__defaults__", (1, 0.05, 0.1))
    feed, given_up = live_feed(converted, source, give_up_after=1.0)
    feed.start()
    try:
        wait_for(lambda: feed.error is not None)
    finally:
        source.release.set()
        feed.stop()
    assert "no frame for 1 s from scripted: the capture is stuck" in feed.error
    assert given_up == [feed.error]


def test_serve_caps_the_live_history(converted, monkeypatch, tmp_path, capsys):
    caps = []

    class Recorder(edgeclf.edge_app.web.serve.History):
        def __init__(self, path, max_live_rows=None):
            caps.append(max_live_rows)
            raise edgeclf.edge_app.web.serve.EdgeClfError("stop here")

    monkeypatch.setattr(edgeclf.edge_app.web.serve, "History", Recorder)
    argv = ["--model", str(converted["int8"]), "--port", "0", "--db", str(tmp_path / "h.db")]
    assert serve_main(argv) == 1 and serve_main(argv + ["--history-max-live", "0"]) == 1
    assert caps == [10_000, 0]
    with pytest.raises(SystemExit) as exc:
        serve_main(argv + ["--history-max-live", "-1"])
    assert exc.value.code == 2 and "--history-max-live" in capsys.readouterr().err
