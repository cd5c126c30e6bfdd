"""The soak benchmark's plumbing on a short run (the long run is a benchmark, not a test)."""

import json

import pytest

from edgeclf.benchmarks import soak
from edgeclf.edge_app.shipped import MODELS_DIR


@pytest.mark.skipif(not (MODELS_DIR / "resnet8_int8.tflite").is_file(), reason="no shipped resnet8_int8 model")
def test_a_short_soak_writes_its_results(tmp_path, capsys):
    out = tmp_path / "soak"
    argv = ["--frames", "2000", "--sample-every", "0.2", "--warmup", "0.2", "--collect-max-mb", "0.2"]
    code = soak.main([*argv, "--collect-every", "0", "--out", str(out)])
    result = json.loads((out / "soak.json").read_text())
    assert code == (1 if result["failures"] else 0)
    assert result["frames"] == 2000 and result["fps"] > 0 and result["runtime"]["name"] and result["cpu"]
    assert len(result["samples"]) >= 2 and all(row["rss_mb"] > 10 for row in result["samples"])
    assert result["samples"][-1]["frames"] >= 2000 and result["collected"] > 0
    assert 0 < result["collect"]["final_mb"] <= 0.2 < result["collected"] * 1000 / 2**20  # the quota was reached
    assert (out / "soak.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert "2,000 frames" in (out / "README.md").read_text() and "2,000 frames" in capsys.readouterr().out


def test_drift_and_an_overfull_folder_fail_the_soak():
    rows = [{"t": t, "rss_mb": rss, "frames": 0, "collect_mb": 0} for t, rss in [(0, 50), (60, 70), (70, 71), (80, 76)]]
    base, deviation = soak.drift(rows, 60)
    assert (base, deviation) == (70, 6)
    result = {
        "rss_max_deviation_after_warmup_mb": deviation,
        "rss_max_drift_allowed_mb": 5.0,
        "collect": {"cap_mb": 20.0, "final_mb": 20.5, "max_sampled_mb": 20.5, "largest_frame_bytes": 10_000},
    }
    assert [p.split(" ")[0] for p in soak.failures(result)] == ["RSS", "collect", "collect"]
    result["rss_max_deviation_after_warmup_mb"] = 4.9
    result["collect"].update(final_mb=20.0, max_sampled_mb=20.009)  # one frame over while it is replaced
    assert soak.failures(result) == []
    assert soak.drift(rows, 100) == (None, None)  # ended within the warm-up: nothing to judge
