import cv2
import numpy as np
import pytest

from edge_app.picamera import Picamera2Source, pi_model
from edge_app.sources import ImageSource, OpenCVSource, SourceError, first_camera, parse_source
from tests.fakes import FakePicamera2, pattern


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


def test_no_camera_is_one_clear_error(tmp_path, monkeypatch):
    monkeypatch.setattr("edge_app.picamera.cameras_available", lambda: False)
    with pytest.raises(SourceError, match="no camera found.*--source"):
        first_camera((640, 480), dev=tmp_path)


@pytest.mark.parametrize("pi5", [False, True])
def test_picamera2_main_and_lores(pi5):
    model = "Raspberry Pi 5 Model B Rev 1.0" if pi5 else "Raspberry Pi 4 Model B Rev 1.5"
    source = Picamera2Source((320, 240), (160, 120), factory=lambda: FakePicamera2(pi5=pi5), model=model)
    source.open()
    cam = FakePicamera2.instances[-1]
    assert cam.started and cam.config["lores"]["format"] == ("RGB888" if pi5 else "YUV420")
    assert cam.config["main"] == {"size": (320, 240), "format": "RGB888"}
    frame = source.read()
    assert frame.image.shape == (240, 320, 3)
    assert np.array_equal(frame.image, cam.main_image)  # RGB888 is already B,G,R: no swap
    expected = pattern(160, 120, seed=0)
    assert frame.infer.shape == (120, 160, 3)
    error = np.abs(frame.infer.astype(int) - expected.astype(int)).mean()
    assert error < (1 if pi5 else 4)  # YUV420 round trip loses a little chroma
    source.close()
    assert cam.closed and not cam.started


def test_picamera2_rgb_lores_refused_on_pi4_is_a_clear_error():
    source = Picamera2Source(factory=lambda: FakePicamera2(pi5=False), model="Raspberry Pi 5")  # wrong guess
    with pytest.raises(SourceError, match="cannot start the Pi camera: lores stream must be YUV"):
        source.open()


def test_picamera2_failure_mid_run():
    source = Picamera2Source(factory=lambda: FakePicamera2(fail_after=2), model="")
    source.open()
    source.read()
    source.read()
    with pytest.raises(SourceError, match="stopped delivering frames"):
        source.read()


def test_pi_model(tmp_path):
    (tmp_path / "model").write_bytes(b"Raspberry Pi 4 Model B Rev 1.4\x00")
    assert pi_model(tmp_path / "model") == "Raspberry Pi 4 Model B Rev 1.4"
    (tmp_path / "other").write_bytes(b"QEMU Virtual Machine\x00")
    assert pi_model(tmp_path / "other") is None
    assert pi_model(tmp_path / "absent") is None
