import time

from edge_app.capture import Grabber
from tests.fakes import ScriptedSource


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
    seen = []
    for _ in range(5):
        time.sleep(0.05)  # a slow model
        seen.append(grabber.next_frame(1.0).index)
    grabber.stop()
    assert grabber.dropped > 10
    assert all(b - a > 1 for a, b in zip(seen, seen[1:]))  # always the newest, never the backlog
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

    from edge_app.live import Smoother, Summary

    smoother = Smoother(3)
    a, b = np.array([1.0, 0.0]), np.array([0.0, 1.0])
    assert smoother.update(a).tolist() == [1.0, 0.0]
    assert np.allclose(smoother.update(b), [0.5, 0.5])
    smoother.update(b)
    assert np.allclose(smoother.update(b), [0.0, 1.0])  # the window forgets the first frame
    summary = Summary(frames=10, seconds=2.0, infer_ms=[1.0] * 9 + [11.0], dropped=3, reason="SIGINT")
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

    from edge_app.live import safe_name
    from edge_app.overlay import VideoSink

    assert safe_name("T-shirt/top") == "T-shirt_top"
    assert safe_name("..") == "unlabelled" and safe_name("../etc") == "etc"
    sink = VideoSink(tmp_path / "live.avi", fps=10.0, realtime=True)
    image = np.zeros((48, 64, 3), np.uint8)
    for t in (0.0, 0.5, 0.6):  # half a second, then a tenth: 1 + 5 + 1 frames at 10 fps
        sink.write(image, timestamp=t)
    sink.close()
    assert sink.frames == 7
    assert int(cv2.VideoCapture(str(tmp_path / "live.avi")).get(cv2.CAP_PROP_FRAME_COUNT)) == 7
