import cv2
import numpy as np
import pytest

from edgeclf.edge_app.picamera import Picamera2Source
from edgeclf.edge_app.sources import (
    CameraSettings,
    Frame,
    ImageSource,
    OpenCVSource,
    SourceError,
    first_camera,
    parse_source,
)
from tests.fakes import USB_CAMERA, break_import, install_picamera2, pattern

pytestmark = pytest.mark.device  # edge extra + pytest only: .ci/edge-job runs it


class FakeCapture:
    """cv2.VideoCapture on a camera that delivers pattern frames and remembers what was set."""

    instances = []

    def __init__(self, spec, *args):
        self.spec = spec
        self.props = {}
        self.frames = 0
        FakeCapture.instances.append(self)

    def isOpened(self):  # noqa: N802 - OpenCV's name
        return True

    def set(self, prop, value):
        self.props[prop] = value
        return True

    def get(self, prop):
        return self.props.get(prop, 0.0)

    def read(self):
        self.frames += 1
        return True, pattern(64, 48, seed=self.frames)

    def release(self):
        pass


@pytest.fixture
def capture(monkeypatch):
    FakeCapture.instances = []
    monkeypatch.setattr(cv2, "VideoCapture", FakeCapture)
    return FakeCapture


def write_video(path, frames=12, size=(64, 48), fps=10.0):
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), fps, size)
    for i in range(frames):
        writer.write(pattern(*size, seed=i))
    writer.release()
    return path


def drain(source):
    source.open()
    frames = []
    while (frame := source.read()) is not None:
        frames.append(frame)
    source.close()
    return frames


def test_image_folder_skips_corrupt_files(tmp_path, capsys):
    for i in range(3):
        cv2.imwrite(str(tmp_path / f"{i}.png"), pattern(20, 10, seed=i))
    (tmp_path / "3.jpg").write_bytes(b"corrupt")
    (tmp_path / "notes.txt").write_text("ignored: not an image suffix")
    source = ImageSource(str(tmp_path))
    frames = drain(source)
    assert [f.index for f in frames] == [0, 1, 2] and source.skipped == 1
    assert frames[0].image.shape == (10, 20, 3)
    assert "skipped" in capsys.readouterr().err
    assert len(drain(ImageSource(str(tmp_path / "*.png")))) == 3
    with pytest.raises(SourceError, match="source not found"):
        ImageSource(str(tmp_path / "missing")).open()


def test_video_file_delivers_every_frame_then_ends(tmp_path):
    video = write_video(tmp_path / "clip.avi", frames=12)
    source = parse_source(str(video))
    assert isinstance(source, OpenCVSource) and not source.live
    frames = drain(source)
    assert len(frames) == 12 and frames[0].image.shape == (48, 64, 3)
    with pytest.raises(SourceError, match="source not found"):
        OpenCVSource(str(tmp_path / "none.mp4")).open()
    (tmp_path / "bad.mp4").write_bytes(b"not a video")
    with pytest.raises(SourceError, match="cannot open"):
        parse_source(str(tmp_path / "bad.mp4")).open()


def test_source_spec_parsing(tmp_path):
    assert isinstance(parse_source("0"), OpenCVSource) and parse_source("0").live
    url = parse_source("rtsp://127.0.0.1:8554/cam")
    assert isinstance(url, OpenCVSource) and url.live
    assert isinstance(parse_source("picamera2"), Picamera2Source)
    assert isinstance(parse_source(str(tmp_path)), ImageSource)


@pytest.mark.parametrize(
    ("setup", "why"),
    [
        (
            lambda mp: break_import(mp, "picamera2", ModuleNotFoundError("No module named 'picamera2'")),
            "picamera2 is not importable.*No module named 'picamera2'",
        ),
        (lambda mp: install_picamera2(mp, cameras=[USB_CAMERA]), "libcamera lists only USB cameras"),
        (lambda mp: install_picamera2(mp, cameras=[]), "libcamera lists no camera"),
        (
            lambda mp: install_picamera2(mp, open_error=RuntimeError("Camera __init__ sequence did not complete.")),
            "cannot start the Pi camera: Camera __init__ sequence did not complete",
        ),
    ],
)
def test_no_camera_error_says_why_picamera2_was_not_used(tmp_path, monkeypatch, setup, why):
    setup(monkeypatch)
    with pytest.raises(SourceError, match=f"no camera found.*{why}.*no /dev/video.*--source"):
        first_camera(CameraSettings(), dev=tmp_path)


@pytest.mark.parametrize(
    "setup",
    [
        lambda mp: install_picamera2(mp, cameras=[USB_CAMERA]),  # libcamera lists UVC webcams too
        lambda mp: install_picamera2(mp, open_error=RuntimeError("Failed to acquire camera: Device or resource busy")),
    ],
)
def test_first_camera_falls_back_to_dev_video(tmp_path, monkeypatch, capture, setup):
    setup(monkeypatch)
    (tmp_path / "video0").touch()
    source = first_camera(CameraSettings(size=(320, 240)), dev=tmp_path)
    assert isinstance(source, OpenCVSource) and source.spec == 0


def test_first_camera_opens_the_pi_camera_once(monkeypatch):
    cls = install_picamera2(monkeypatch)
    source = first_camera(CameraSettings(size=(320, 240)))
    assert isinstance(source, Picamera2Source)
    source.open()  # the grabber's open(): the camera is already running
    assert len(cls.instances) == 1 and source.read() is not None
    source.close()


def test_opencv_flips(capture):
    for hflip, vflip, code in [(True, False, 1), (False, True, 0), (True, True, -1)]:
        source = parse_source("0", CameraSettings(hflip=hflip, vflip=vflip))
        source.open()
        frame = source.read()
        assert np.array_equal(frame.image, cv2.flip(pattern(64, 48, seed=1), code))
        source.close()


@pytest.mark.parametrize(
    "bad",
    [
        {"size": (0, 480)},
        {"size": (1, 1)},
        {"fps": 0},
        {"fps": float("nan")},
        {"stall_timeout": 0},
        {"stall_timeout": -1},
    ],
)
def test_camera_settings_refuse_nonsense(bad):
    with pytest.raises(ValueError):
        CameraSettings(**bad)


def test_fps_is_set_on_cameras_only(capture, tmp_path):
    settings = CameraSettings(size=(320, 240), fps=15.0)
    for spec in ("0", "/dev/video2"):
        source = parse_source(spec, settings)
        assert isinstance(source, OpenCVSource) and source.live
        source.open()
        assert capture.instances[-1].props[cv2.CAP_PROP_FPS] == 15.0
        assert capture.instances[-1].props[cv2.CAP_PROP_FRAME_WIDTH] == 320
        assert capture.instances[-1].spec == int(spec[-1])
        source.close()
    (tmp_path / "clip.avi").write_bytes(b"any")
    for spec in ("rtsp://127.0.0.1:8554/cam", str(tmp_path / "clip.avi")):
        parse_source(spec, settings).open()
        assert cv2.CAP_PROP_FPS not in capture.instances[-1].props


def test_frame_converts_its_model_input_once_and_only_when_asked():
    calls = []
    small = np.zeros((2, 2, 3), np.uint8)
    frame = Frame(np.ones((4, 4, 3), np.uint8), 0, "test", infer=lambda: calls.append(1) or small)
    assert calls == []
    assert frame.for_model is small and frame.for_model is small and calls == [1]
    assert Frame(small, 0, "test").for_model is small
