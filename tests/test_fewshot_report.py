"""edgeclf.benchmarks.fewshot's arithmetic: the raw-pixel baseline, the per-k summary and the table."""

from __future__ import annotations

import numpy as np
import pytest

from edgeclf.benchmarks.fewshot import ncm_pixels, summarize, to_markdown


def test_nearest_class_mean_on_pixels_by_hand():
    # two taught classes from BGR pictures (means: all 10 and all 200), one base class mean of 100 (RGB)
    shots = {"dark": [np.full((2, 2, 3), 10, np.uint8)], "light": [np.full((2, 2, 3), 190, np.uint8),
                                                                  np.full((2, 2, 3), 210, np.uint8)]}
    pixels = np.stack([np.full((2, 2, 3), v, np.uint8) for v in (0, 60, 140, 255)])
    assert ncm_pixels(shots, None, pixels).tolist() == [0, 0, 1, 1]
    base = np.full((1, 12), 100.0)
    assert ncm_pixels(shots, base, pixels).tolist() == [1, 0, 0, 2]  # base first, then the taught classes


def test_the_channel_order_of_the_pictures_is_made_rgb():
    bgr = np.zeros((1, 1, 3), np.uint8)
    bgr[..., 0] = 255  # blue, in BGR order
    rgb_blue = np.zeros((1, 1, 1, 3), np.uint8)
    rgb_blue[..., 2] = 255
    red = np.zeros((1, 1, 3), np.uint8)
    red[..., 2] = 255  # red, in BGR order
    assert ncm_pixels({"blue": [bgr], "red": [red]}, None, rgb_blue).tolist() == [0]


def test_summary_and_table():
    rows = [
        {"k": 1, "seed": s, "mode": "extend", "new_acc": a, "pixel_ncm_acc": 0.2, "base_acc_after": 0.9,
         "teach_s": 0.5, "wall_s": 2.0, "peak_rss_mb": 80}
        for s, a in enumerate((0.4, 0.6))
    ]
    (entry,) = summarize(rows)
    assert entry["draws"] == 2 and entry["new_acc"] == pytest.approx((0.5, 0.1))
    result = {"base": "b.tflite", "base_labels": list("abcdefgh"), "base_acc_before": 0.91, "runs": rows,
              "machine": {"cpu": "X", "cores": 2, "cpu_features": [], "int8_dot_product": None, "max_mhz": None},
              "cost": None}
    table = to_markdown(result)
    assert "| 1 | extend | 50.00% ± 10.00% | 20.00% ± 0.00% | +30.0 pt | 90.00% ± 0.00% |" in table
    assert "91.00%" in table
