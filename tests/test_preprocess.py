import numpy as np
import pytest

from edgeclf.edge_app import preprocess
from edgeclf.edge_app.contract import InputSpec

pytestmark = pytest.mark.device  # edge extra + pytest only: .ci/edge-job runs it


def test_colour_order_and_channel_expansion():
    rgb = np.zeros((2, 2, 3), np.uint8)
    rgb[..., 0] = 200
    bgr = preprocess.to_color(rgb, "RGB", "BGR")
    assert bgr[0, 0].tolist() == [0, 0, 200]
    assert preprocess.to_color(np.full((2, 2), 7, np.uint8), "BGR", "RGB").shape == (2, 2, 3)
    assert preprocess.to_color(np.zeros((2, 2, 4), np.uint8), "RGB", "RGB").shape == (2, 2, 3)
    with pytest.raises(ValueError):
        preprocess.to_color(np.zeros((2, 2, 2), np.uint8), "RGB", "RGB")


def test_center_crop_keeps_the_middle():
    image = np.zeros((40, 80, 3), np.uint8)
    image[:, 20:60] = 255  # the centred 40x40 square is white
    out = preprocess.resize(image, 10, 10, "center_crop")
    assert out.shape == (10, 10, 3) and out.min() == 255
    stretched = preprocess.resize(image, 10, 10, "stretch")
    assert stretched.min() == 0  # the black borders survive a stretch
    assert preprocess.center_crop_box(40, 80, 1.0) == (0, 20, 40, 40)
    assert preprocess.center_crop_box(80, 40, 1.0) == (20, 0, 40, 40)


def test_normalize_and_prepare():
    spec = InputSpec(4, 4, mean=(127.5,) * 3, std=(127.5,) * 3)
    px = np.array([[[0, 255, 127]]], np.uint8)
    assert np.allclose(preprocess.normalize(px, spec), [[[-1.0, 1.0, -0.0039216]]], atol=1e-5)
    frame = np.zeros((30, 40, 3), np.uint8)
    frame[..., 2] = 255  # red in BGR
    x = preprocess.prepare(frame, spec, color="BGR")
    assert x.shape == (4, 4, 3) and x.dtype == np.float32
    assert np.allclose(x[..., 0], 1.0) and np.allclose(x[..., 2], -1.0)


@pytest.mark.parametrize("dtype, scale, zp", [(np.int8, 1 / 255, -128), (np.uint8, 1 / 127.5, 128)])
def test_quantize_round_trip_and_saturation(dtype, scale, zp):
    x = np.linspace(-1, 1, 101, dtype=np.float32) if dtype == np.uint8 else np.linspace(0, 1, 101, dtype=np.float32)
    q = preprocess.quantize(x, scale, zp, dtype)
    assert q.dtype == dtype
    assert np.max(np.abs(preprocess.dequantize(q, scale, zp) - x)) <= scale / 2 + 1e-6
    info = np.iinfo(dtype)
    assert preprocess.quantize(np.array([1e6, -1e6], np.float32), scale, zp, dtype).tolist() == [info.max, info.min]
