import os
import signal
import threading
import time

import pytest

from edgeclf.edge_app.capture import Grabber
from edgeclf.edge_app.sources import SourceError
from tests.conftest import wait_until
from tests.fakes import ScriptedSource, StallingSource

pytestmark = pytest.mark.device  # edge extra + pytest only: .ci/edge-job runs it


def take_all(grabber, limit=1000):
    frames = []
    while len(frames) < limit:
        frame = grabber.next_frame(2.0)
        if frame is None:
            break
        frames.append(frame)
    return frames


def test_file_sources_deliver_every_frame_in_order():
    grabber = Grabber(ScriptedSource(frames=30, live=False)).start()
    frames = take_all(grabber)
    grabber.stop()
    assert [f.index for f in frames] == list(range(30)) and grabber.dropped == 0 and grabber.error is None


def test_live_sources_drop_stale_frames_for_a_slow_consumer():
    source = ScriptedSource(delay=0.002)
    grabber = Grabber(source).start()
    seen = [-1]
    for _ in range(5):
        # a slow model: while it works on one frame the camera delivers 8 more (frame seen + 8 may not be
        # handed over yet, so at least 6 of them wait in the grabber's slot, one replacing the other)
        wait_until(lambda: source.delivered >= seen[-1] + 1 + 8, timeout=10, what="8 more frames")
        seen.append(grabber.next_frame(1.0).index)
    grabber.stop()
    seen = seen[1:]
    assert all(b - a >= 6 for a, b in zip([-1, *seen], seen)), seen  # always the newest, never the backlog
    assert grabber.dropped >= sum(b - a - 1 for a, b in zip([-1, *seen], seen)) >= 5 * 5, (grabber.dropped, seen)
    assert source.closes >= 1


def test_a_failing_camera_is_reopened_with_backoff():
    source = ScriptedSource(frames=10**6, fail_at=(5,), fail_opens=1)
    grabber = Grabber(source, retries=3, backoff=0.01).start()
    deadline = time.monotonic() + 5
    while source.delivered < 20 and time.monotonic() < deadline:
        grabber.next_frame(1.0)
    grabber.stop()
    assert source.delivered >= 20 and grabber.reconnects == 1 and source.opens == 3
    assert grabber.error is None


def test_a_camera_that_stays_gone_ends_with_an_error_after_bounded_retries():
    source = ScriptedSource(frames=5, fail_opens=100)
    grabber = Grabber(source, retries=3, backoff=0.01, max_backoff=0.02).start()
    frames = take_all(grabber)
    grabber.stop()
    assert len(frames) <= 5
    assert source.opens == 1 + 3
    assert "camera unplugged; gave up after 3 retries" in grabber.error


def test_smoother_and_summary():
    import numpy as np

    from edgeclf.edge_app.live import Smoother, Summary

    smoother = Smoother(3)
    a, b = np.array([1.0, 0.0]), np.array([0.0, 1.0])
    assert smoother.update(a).tolist() == [1.0, 0.0]
    assert np.allclose(smoother.update(b), [0.5, 0.5])
    smoother.update(b)
    assert np.allclose(smoother.update(b), [0.0, 1.0])  # the window forgets the first frame
    summary = Summary(seconds=2.0, dropped=3, reason="SIGINT")
    for ms in [1.0] * 9 + [11.0]:
        summary.add_frame(ms)
    line = summary.line()
    assert "10 frames in 2.0 s (SIGINT), mean 5.0 FPS, inference mean 2.00 ms p90 2.00 ms, 3 stale frames" in line


def test_unexpected_driver_exceptions_count_as_failures():
    class Exploding:
        name, live = "exploding", True

        def __init__(self):
            self.closes = 0

        def open(self):
            pass

        def read(self):
            raise RuntimeError("driver crashed")

        def close(self):
            self.closes += 1

    source = Exploding()
    grabber = Grabber(source, retries=1, backoff=0.01).start()
    assert grabber.next_frame(2.0) is None
    grabber.stop()
    assert "exploding failed: RuntimeError: driver crashed" in grabber.error
    assert source.closes >= 1


def test_safe_collect_names_and_realtime_video(tmp_path):
    import cv2
    import numpy as np

    from edgeclf.edge_app.collector import safe_name
    from edgeclf.edge_app.overlay import VideoSink

    assert safe_name("T-shirt/top") == "T-shirt_top"
    assert safe_name("..") == "unlabelled" and safe_name("../etc") == "etc"
    sink = VideoSink(tmp_path / "live.avi", fps=10.0, realtime=True)
    image = np.zeros((48, 64, 3), np.uint8)
    for t in (0.0, 0.5, 0.6):  # half a second, then a tenth: 1 + 5 + 1 frames at 10 fps
        sink.write(image, timestamp=t)
    sink.close()
    assert sink.frames == 7
    assert int(cv2.VideoCapture(str(tmp_path / "live.avi")).get(cv2.CAP_PROP_FRAME_COUNT)) == 7


def test_start_opens_in_the_capture_thread_and_raises_its_errors():
    opened_in = []

    class Refusing(ScriptedSource):
        def open(self):
            opened_in.append(threading.current_thread().name)
            raise SourceError("cannot open camera 7")

    grabber = Grabber(Refusing())
    with pytest.raises(SourceError, match="cannot open camera 7"):
        grabber.start()
    assert opened_in == ["edgeclf-capture"] and grabber.ended
    grabber.stop()


def test_cancel_leaves_a_source_stuck_opening():
    source = StallingSource(stall=10.0)
    cancel = threading.Event()
    # cancelled while open() is stuck, not after a guessed delay
    threading.Thread(target=lambda: source.stalled.wait(5) and cancel.set(), daemon=True).start()
    start = time.monotonic()
    try:
        grabber = Grabber(source).start(cancel)
        grabber.stop(timeout=0.2)
        assert time.monotonic() - start < 3 and source.stalled.is_set()
    finally:
        source.release()
    grabber._thread.join(5)  # released: its open() raised, and the thread ended without a frame
    assert not grabber._thread.is_alive() and grabber.next_frame(0.1) is None


def test_a_signal_interrupts_the_wait_for_a_stuck_open():
    """serve's LiveFeed.start() relies on Ctrl-C (KeyboardInterrupt) reaching the waiting caller."""
    source = StallingSource(stall=10.0)

    def interrupt(signum, frame):
        raise KeyboardInterrupt

    def interrupt_once_stuck():  # while start() waits on the stuck open(), not after a guessed delay
        if source.stalled.wait(5):
            os.kill(os.getpid(), signal.SIGUSR1)

    previous = signal.signal(signal.SIGUSR1, interrupt)
    sender = threading.Thread(target=interrupt_once_stuck)
    sender.start()
    start = time.monotonic()
    try:
        with pytest.raises(KeyboardInterrupt):
            Grabber(source).start()
        assert time.monotonic() - start < 3
    finally:
        source.release()
        sender.join()  # before the handler goes: a late SIGUSR1 would end the test process
        signal.signal(signal.SIGUSR1, previous)


def test_stop_leaves_a_read_stuck_in_a_driver_after_its_timeout(caplog):
    source = StallingSource(frames=2, stall_open=False, stall=10.0)
    grabber = Grabber(source).start()
    try:
        assert source.stalled.wait(5)
        start = time.monotonic()
        grabber.stop(timeout=0.3)
        assert time.monotonic() - start < 2
        assert [(r.levelname, r.getMessage()) for r in caplog.records] == [
            ("WARNING", "stalling did not stop within 0.3 s; left to close on its own")
        ]
    finally:
        source.release()
