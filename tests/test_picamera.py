"""The Pi camera source against FakePicamera2, a fake that behaves as picamera2's source reads."""

import concurrent.futures
import threading
import time

import numpy as np
import pytest

from edgeclf.edge_app.capture import Grabber
from edgeclf.edge_app.picamera import Picamera2Source, pi_model
from edgeclf.edge_app.sources import CameraSettings, SourceError
from tests.fakes import (
    CSI_CAMERA,
    USB_CAMERA,
    ColorSpace,
    Transform,
    WouldHang,
    break_import,
    encode_yuv420,
    install_picamera2,
    pattern,
    yuv420_stride,
)

pytestmark = pytest.mark.device  # edge extra + pytest only: .ci/edge-job runs it


def bounded(call, seconds):
    """Run `call` in a thread for at most `seconds`: ("returned", value), ("raised", exception) or ("blocked", None)."""
    outcome = []

    def run():
        try:
            outcome.append(("returned", call()))
        except BaseException as exc:  # noqa: BLE001 - handed to the test
            outcome.append(("raised", exc))

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    thread.join(seconds)
    return outcome[0] if outcome else ("blocked", None)


def started(cls, camera_num=0, **config):
    cam = cls(camera_num)
    cam.configure(cam.create_preview_configuration(**config))
    cam.start()
    return cam


# The fake itself: each test pins one awkward part of picamera2 that the source must cope with.


def test_fake_yuv420_is_padded_planes_in_the_colour_space_asked_for():
    bgr = pattern(320, 240)
    stride = yuv420_stride(320)
    assert stride > 320
    full = encode_yuv420(bgr, ColorSpace.Sycc(), stride)
    assert full.shape == (360, stride) and full.dtype == np.uint8
    assert (full[:240, 320:] != 0).all()  # Y rows: garbage past the image
    u_rows = full[240:300].reshape(120, stride // 2)  # U: 120 rows of stride/2 bytes, two per array row
    assert (u_rows[:, 160:] != 0).all() and (full[300:].reshape(120, stride // 2)[:, 160:] != 0).all()
    white = encode_yuv420(np.full((4, 4, 3), 255, np.uint8), ColorSpace.Sycc(), 64)
    assert white[0, 0] == 255 and white[4, 0] == 128  # sYCC: full range, Y 0..255
    white = encode_yuv420(np.full((4, 4, 3), 255, np.uint8), ColorSpace.Smpte170m(), 64)
    assert white[0, 0] == 235 and white[4, 0] == 128  # SMPTE 170M: limited, Y 16..235


def test_fake_stall_times_out_like_picamera2_and_stop_waits_behind_the_job(monkeypatch):
    cls = install_picamera2(monkeypatch, stall_after=1, hang_limit=0.3)
    cam = started(cls, main={"size": (64, 48), "format": "RGB888"})
    (main,), _ = cam.capture_arrays(["main"], wait=1.0)
    assert main.shape == (48, 64, 3)
    with pytest.raises(concurrent.futures.TimeoutError):  # Future.result(timeout): builtins.TimeoutError on 3.11
        cam.capture_arrays(["main"], wait=0.05)
    with pytest.raises(WouldHang, match="hangs"):  # the timed-out job is still queued
        cam.stop()
    with pytest.raises(WouldHang, match="blocks forever"):
        cam.capture_arrays(["main"])
    cam.cancel_all_and_flush()
    cam.stop()
    assert not cam.started and cam.cancelled == 3  # both captures and the first stop() were queued
    assert len(cls.hangs) == 2 and not issubclass(WouldHang, Exception)


def test_a_hang_is_not_swallowed_by_the_code_under_test(monkeypatch):
    """Picamera2Source.close() catches Exception: a hang the fake reports must get through it, or a
    source that forgets to flush the stalled job passes every test."""
    cls = install_picamera2(monkeypatch, stall_after=1, hang_limit=0.2)
    monkeypatch.setattr(Picamera2Source, "_flush", lambda self: None)  # the mutation: no flush
    source = Picamera2Source(CameraSettings(size=(320, 240), stall_timeout=0.05), factory=cls)
    source.open()
    source.read()
    with pytest.raises(SourceError, match="stalled"):
        source.read()
    with pytest.raises(WouldHang, match="picamera2 hangs here"):
        source.close()
    assert len(cls.hangs) == 1  # recorded too, for tests where a thread would swallow it
    cls.instances[-1].cancel_all_and_flush()


def test_fake_capture_without_wait_is_released_only_by_cancel(monkeypatch):
    cls = install_picamera2(monkeypatch, stall_after=0)
    cam = started(cls)
    errors = []

    def capture():
        try:
            cam.capture_arrays(["main"])
        except BaseException as exc:  # noqa: BLE001 - the test checks its type
            errors.append(exc)

    thread = threading.Thread(target=capture)
    thread.start()
    thread.join(0.2)
    assert thread.is_alive()
    cam.cancel_all_and_flush()
    thread.join(1)
    assert [type(e) for e in errors] == [concurrent.futures.CancelledError]  # Job.cancel's exception


def test_fake_refuses_what_libcamera_refuses(monkeypatch):
    cls = install_picamera2(monkeypatch)
    cam = cls()
    with pytest.raises(RuntimeError, match="lores stream must be YUV"):  # a Pi 4 (VC4)
        cam.configure(cam.create_preview_configuration(lores={"size": (320, 240), "format": "RGB888"}))
    with pytest.raises(RuntimeError, match="may not exceed main"):
        cam.configure(cam.create_preview_configuration(main={"size": (160, 120)}, lores={"size": (320, 240)}))
    with pytest.raises(RuntimeError, match="Colour space has incorrect type"):
        cam.configure(cam.create_preview_configuration(colour_space="SMPTE170M"))
    config = cam.create_preview_configuration(main={"size": (641, 481)}, transform=Transform(hflip=1))
    assert config["main"]["size"] == (640, 480)  # picamera2 rounds sizes down to even
    config["controls"]["FrameRate"] = 25
    cam.configure(config)
    assert cam.controls["FrameDurationLimits"] == (40000, 40000)
    pisp = install_picamera2(monkeypatch, pisp=True)()
    pisp.configure(pisp.create_preview_configuration(lores={"size": (320, 240), "format": "RGB888"}))


def test_fake_lists_usb_cameras_like_picamera2(monkeypatch):
    cls = install_picamera2(monkeypatch, cameras=[USB_CAMERA, CSI_CAMERA])
    assert [info["Model"] for info in cls.global_camera_info()] == ["imx708", "HD Pro Webcam C920"]
    assert cls(0).info["Num"] == 1  # picamera2 maps its index to libcamera's through the sorted list
    cls.sorts_usb_last = False  # older picamera2: libcamera's order
    assert cls.global_camera_info()[0]["Model"] == "HD Pro Webcam C920"


# The source.


def test_picamera2_rgb_lores_refused_on_pi4_is_a_clear_error(monkeypatch):
    cls = install_picamera2(monkeypatch, pisp=False)
    source = Picamera2Source(factory=cls, pisp=True)  # a wrong guess of the platform
    with pytest.raises(SourceError, match="cannot start the Pi camera: lores stream must be YUV"):
        source.open()
    assert cls.instances[-1].closed


def test_picamera2_failure_mid_run(monkeypatch):
    cls = install_picamera2(monkeypatch, fail_after=2)
    source = Picamera2Source(CameraSettings(), factory=cls)
    source.open()
    source.read()
    source.read()
    with pytest.raises(SourceError, match="stopped delivering frames"):
        source.read()
    source.close()
    assert cls.instances[-1].closed


def test_stalled_camera_read_times_out_flushes_and_closes(monkeypatch):
    cls = install_picamera2(monkeypatch, stall_after=1)
    source = Picamera2Source(CameraSettings(size=(320, 240), stall_timeout=0.2), factory=cls)
    source.open()
    cam = cls.instances[-1]
    try:
        assert source.read() is not None
        start = time.monotonic()
        kind, error = bounded(source.read, 3.0)
        assert kind == "raised" and isinstance(error, SourceError), (kind, error)
        assert "no frame in 0.2 s" in str(error) and time.monotonic() - start < 1.5
        assert cam.cancelled == 1  # the timed-out job was flushed, so stop() is not queued behind it
        assert bounded(source.close, 2.0) == ("returned", None) and cam.closed
    finally:
        cam.cancel_all_and_flush()  # releases a capture the old code left blocked


def test_close_flushes_again_when_the_reads_flush_failed(monkeypatch, caplog):
    cls = install_picamera2(monkeypatch, stall_after=1, hang_limit=0.5)
    source = Picamera2Source(CameraSettings(size=(320, 240), stall_timeout=0.05), factory=cls)
    source.open()
    cam = cls.instances[-1]
    flush, calls = cam.cancel_all_and_flush, []

    def flaky_flush():
        calls.append(1)
        if len(calls) == 1:
            raise RuntimeError("Camera frontend has timed out!")
        flush()

    cam.cancel_all_and_flush = flaky_flush
    try:
        source.read()
        with pytest.raises(SourceError, match="stalled"):
            source.read()
        assert "cancelling the stalled capture failed" in caplog.text
        assert bounded(source.close, 2.0) == ("returned", None) and cam.closed
        assert cls.hangs == [] and cam.cancelled == 1
    finally:
        flush()


def test_grabber_gives_up_on_a_stalled_pi_camera(monkeypatch):
    cls = install_picamera2(monkeypatch, stall_after=0, hang_limit=1.0)
    source = Picamera2Source(CameraSettings(size=(320, 240), stall_timeout=0.1), factory=cls)
    grabber = Grabber(source, retries=2, backoff=0.01).start()
    deadline = time.monotonic() + 4
    while not grabber.ended and time.monotonic() < deadline:
        assert grabber.next_frame(0.1) is None
    assert grabber.ended, "the grabber is still waiting on a stalled camera"
    assert "no frame in 0.1 s" in grabber.error and "gave up after 2 retries" in grabber.error
    assert len(cls.instances) == 3 and all(cam.closed for cam in cls.instances)
    grabber.stop()


def bt601_limited_to_bgr(yuv, width, height):
    """Reference decoder: picamera2's padded YUV420 planes, BT.601 limited range (Y 16..235), to BGR."""
    stride, flat = yuv.shape[1], yuv.reshape(-1)
    y = flat[: height * stride].reshape(height, stride)[:, :width].astype(float)
    chroma = height // 2 * (stride // 2)
    planes = flat[height * stride :].reshape(2, chroma)
    u, v = (p.reshape(height // 2, stride // 2)[:, : width // 2].repeat(2, 0).repeat(2, 1) - 128.0 for p in planes)
    luma = 255 / 219 * (y - 16)
    r, g, b = luma + 1.596 * v, luma - 0.392 * u - 0.813 * v, luma + 2.017 * u
    return np.clip(np.rint(np.dstack([b, g, r])), 0, 255).astype(np.uint8)


def test_pi4_lores_colours_match_the_scene(monkeypatch):
    """sYCC (picamera2's preview default) is full range; OpenCV's I420 conversion assumes limited BT.601."""
    cls = install_picamera2(monkeypatch, pisp=False)
    source = Picamera2Source(CameraSettings(size=(640, 480)), factory=cls)
    source.open()
    cam = cls.instances[-1]
    assert cam.camera_config["lores"]["format"] == "YUV420"
    frame = source.read()
    truth = cam.truth["lores"].astype(int)
    error = frame.for_model.astype(int) - truth
    assert np.abs(error).mean() < 2.0, np.abs(error).mean()
    assert np.abs(error.reshape(-1, 3).mean(axis=0)).max() < 1.0  # no channel brighter or darker overall
    assert cam.camera_config["colour_space"] == ColorSpace.Smpte170m()
    source.close()


def test_lores_conversion_equals_a_bt601_limited_reference(monkeypatch):
    cls = install_picamera2(monkeypatch, pisp=False)
    source = Picamera2Source(CameraSettings(size=(640, 480)), factory=cls)
    source.open()
    w, h = cls.instances[-1].stream_configuration("lores")["size"]
    yuv = encode_yuv420(pattern(w, h, seed=3), ColorSpace.Smpte170m(), yuv420_stride(w), seed=3)
    assert np.abs(source.lores_to_bgr(yuv).astype(int) - bt601_limited_to_bgr(yuv, w, h)).max() <= 2
    source.close()


@pytest.mark.parametrize(("fps", "limits"), [(30.0, (33333, 83333)), (15.0, (66666, 83333)), (5.0, (200000, 200000))])
def test_fps_caps_the_pi_camera(monkeypatch, fps, limits):
    """At most `fps`; in the dark as slow as picamera2's preview default (12 fps), not pinned to `fps`."""
    cls = install_picamera2(monkeypatch)
    source = Picamera2Source(CameraSettings(size=(320, 240), fps=fps), factory=cls)
    source.open()
    assert cls.instances[-1].controls["FrameDurationLimits"] == limits  # microseconds per frame: min, max
    source.close()


def test_lores_is_converted_only_for_frames_the_model_takes(monkeypatch):
    cls = install_picamera2(monkeypatch)
    source = Picamera2Source(CameraSettings(size=(320, 240)), factory=cls)
    source.open()
    conversions = []
    convert = source.lores_to_bgr
    monkeypatch.setattr(source, "lores_to_bgr", lambda array: conversions.append(1) or convert(array))
    frames = [source.read() for _ in range(5)]
    assert conversions == []  # a live loop drops most of these unseen
    taken = frames[-1].for_model
    assert taken.shape == (240, 320, 3) and frames[-1].for_model is taken and len(conversions) == 1
    source.close()


@pytest.mark.parametrize("pisp", [False, True])
def test_platform_decides_the_lores_format(monkeypatch, pisp):
    """picamera2.platform.get_platform(): a Pi 5 (PISP) gives RGB888 lores, a Pi 4 (VC4) must use YUV420."""
    cls = install_picamera2(monkeypatch, pisp=pisp)
    source = Picamera2Source(CameraSettings(size=(640, 480)))
    source.open()
    cam = cls.instances[-1]
    assert cam.started and cam.config_lores_format == ("RGB888" if pisp else "YUV420")
    assert cam.camera_config["main"]["format"] == "RGB888"
    frame = source.read()
    assert np.array_equal(frame.image, cam.main_image)  # RGB888 is already B,G,R: no swap
    error = np.abs(frame.for_model.astype(int) - cam.truth["lores"].astype(int)).mean()
    assert frame.for_model.shape == (240, 320, 3) and error < (0.5 if pisp else 2.0)
    source.close()
    assert cam.closed and not cam.started


@pytest.mark.parametrize(
    ("size", "main", "lores"),
    [
        ((640, 480), (640, 480), (320, 240)),
        ((1280, 720), (1280, 720), (320, 180)),
        ((1920, 1080), (1920, 1080), (320, 180)),
        ((160, 120), (160, 120), (160, 120)),  # smaller than 320x240: lores may not exceed main
        ((201, 151), (200, 150), (200, 150)),  # odd: picamera2 rounds main down to even
        ((642, 100), (642, 100), (320, 50)),
        ((2, 2), (2, 2), (2, 2)),
    ],
)
def test_lores_keeps_the_main_aspect_ratio_at_most_320_wide(monkeypatch, size, main, lores):
    cls = install_picamera2(monkeypatch)
    source = Picamera2Source(CameraSettings(size=size))
    source.open()
    cam = cls.instances[-1]
    assert cam.camera_config["main"]["size"] == main and cam.camera_config["lores"]["size"] == lores
    frame = source.read()
    assert frame.image.shape == (main[1], main[0], 3) and frame.for_model.shape == (lores[1], lores[0], 3)
    source.close()


def test_flips_are_done_by_the_camera(monkeypatch):
    cls = install_picamera2(monkeypatch)
    source = Picamera2Source(CameraSettings(size=(320, 240), hflip=True, vflip=True))
    source.open()
    cam = cls.instances[-1]
    assert cam.camera_config["transform"] == Transform(hflip=1, vflip=1)
    frame = source.read()
    assert np.array_equal(frame.image, pattern(320, 240, seed=0)[::-1, ::-1])  # once, by the ISP
    assert np.abs(frame.for_model.astype(int) - pattern(320, 240, seed=0)[::-1, ::-1]).mean() < 2.0
    source.close()


def test_the_pi_camera_is_chosen_past_a_usb_webcam(monkeypatch):
    """Older picamera2 lists cameras in libcamera's order; Picamera2(0) would open the webcam."""
    cls = install_picamera2(monkeypatch, cameras=[USB_CAMERA, CSI_CAMERA], sorts_usb_last=False)
    source = Picamera2Source(CameraSettings(size=(320, 240)))
    source.open()
    assert cls.instances[-1].info["Model"] == "imx708"
    source.close()


def test_usb_only_or_broken_picamera2_is_a_clear_error(monkeypatch):
    install_picamera2(monkeypatch, cameras=[USB_CAMERA])
    with pytest.raises(SourceError, match=r"libcamera lists only USB cameras \(HD Pro Webcam C920\)"):
        Picamera2Source().open()
    break_import(monkeypatch, "picamera2", ValueError("numpy.dtype size changed, may indicate binary incompatibility"))
    with pytest.raises(SourceError, match="picamera2 is not importable.*numpy.dtype size changed"):
        Picamera2Source().open()


def test_pi_model(tmp_path):
    (tmp_path / "model").write_bytes(b"Raspberry Pi 4 Model B Rev 1.4\x00")
    assert pi_model(tmp_path / "model") == "Raspberry Pi 4 Model B Rev 1.4"
    (tmp_path / "other").write_bytes(b"QEMU Virtual Machine\x00")
    assert pi_model(tmp_path / "other") is None
    assert pi_model(tmp_path / "absent") is None
