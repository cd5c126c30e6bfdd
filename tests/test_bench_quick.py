"""Quick mode (issue 15, item 2): warm-up until timings settle, the frame-below-invoke flag, and
`--quick` end to end on the tiny models. No assertion here depends on real speed."""

import json

import pytest

from edgeclf.benchmarks import bench, device
from edgeclf.benchmarks import report as report_mod
from edgeclf.benchmarks.cli import main as bench_main
from edgeclf.benchmarks.stats import interleaved, settle


class FakeClock:
    """A nanosecond clock that only moves when the fake task runs: call i takes durations(i) ns."""

    def __init__(self, durations):
        self.now = 0
        self.calls = 0
        self.durations = durations

    def __call__(self) -> int:
        return self.now

    def task(self) -> None:
        self.now += self.durations(self.calls)
        self.calls += 1


def test_warmup_continues_while_slow_and_stops_once_settled():
    # the first 12 calls are slow (cold caches, weight packing), then a steady 1 ms
    clock = FakeClock(lambda i: 20_000_000 - i * 1_000_000 if i < 12 else 1_000_000)
    result = settle(clock.task, window=5, tolerance=0.05, max_calls=500, max_seconds=100.0, clock=clock)
    assert result.settled
    assert result.calls == clock.calls
    # not a fixed count: past the 12 slow calls, and stopped within two windows of the steady ones
    assert 12 < result.calls <= 12 + 10
    assert result.median_ms == pytest.approx(1.0)


def test_warmup_of_a_task_that_is_steady_from_the_start_takes_two_windows():
    clock = FakeClock(lambda i: 2_000_000)
    result = settle(clock.task, window=4, tolerance=0.05, max_calls=500, max_seconds=100.0, clock=clock)
    assert result.settled and result.calls == 8


def test_warmup_that_never_settles_stops_at_the_call_cap():
    clock = FakeClock(lambda i: 1_000_000 * 1.2**i if i % 2 else 1_000_000 * 1.2 ** (i + 3))
    result = settle(clock.task, window=3, tolerance=0.05, max_calls=40, max_seconds=1e9, clock=clock)
    assert not result.settled and result.calls == 40 == clock.calls


def test_warmup_that_never_settles_stops_at_the_time_cap():
    clock = FakeClock(lambda i: 1_000_000 * (i + 1))  # 1, 2, 3, ... ms: always 5 % slower than before
    result = settle(clock.task, window=3, tolerance=0.01, max_calls=10_000, max_seconds=0.1, clock=clock)
    assert not result.settled
    assert clock.now >= 100_000_000 and clock.now - clock.durations(clock.calls - 1) < 100_000_000


def test_interleaved_warms_each_task_up_before_each_of_its_blocks():
    order = []
    log = {}
    samples = interleaved(
        {"a": lambda: order.append("a"), "b": lambda: order.append("b")},
        0.0,
        16,
        rounds=4,
        warmup_s=0.5,
        settle_log=log,
    )
    assert len(samples["a"]) >= 16 and len(samples["b"]) >= 16
    assert sorted(log) == ["a", "b"] and all(len(blocks) == 4 for blocks in log.values())
    # each block begins with its task's warm-up calls, which are not among its samples
    warm_a = sum(s.calls for s in log["a"])
    assert order.count("a") == warm_a + len(samples["a"])
    assert all(s.calls >= 2 for s in log["a"] + log["b"])


def _row(invoke_p50, frame_p50):
    return {"invoke_ms": {"p50": invoke_p50}, "frame_ms": {"p50": frame_p50}}


def test_a_frame_faster_than_its_own_invoke_is_flagged():
    assert bench.row_flags(_row(2.0, 1.5)) == ["frame_below_invoke"]
    assert bench.row_flags(_row(2.0, 2.4)) == []
    assert bench.row_flags(_row(None, None)) == []


def _synthetic_report(flags):
    stats = {"p50": 2.0, "p90": 2.2, "p99": 2.5, "mean": 2.1, "std": 0.1, "n": 40}
    row = {
        "model": "models/resnet8_int8.tflite",
        "architecture": "resnet8",
        "quantization": "int8",
        "runtime": "ai_edge_litert 2.3.0",
        "threads": 1,
        "input": "32x32 int8",
        "invoke_ms": stats,
        "frame_ms": {**stats, "p50": 1.5},
        "fps": 600.0,
        "bytes": 96922,
        "rss_mb": 60.0,
        "cold_start_s": 0.5,
        "flags": flags,
    }
    return {
        "device": device.describe(),
        "mode": "quick",
        "thermal": {"before": None, "after": None},
        "rows": [row],
        "reference": {"skipped": "no Keras model given (--keras)"},
    }


def test_report_md_shows_a_flagged_row():
    md = report_mod.to_markdown(_synthetic_report(["frame_below_invoke"]))
    assert "resnet8_int8.tflite (threads 1, ai_edge_litert 2.3.0): frame p50 1.500 ms below invoke p50 2.000 ms" in md
    assert "| resnet8_int8.tflite ⚠ | int8 |" in md
    clean = report_mod.to_markdown(_synthetic_report([]))
    assert "below invoke p50" not in clean and "⚠" not in clean


def test_quick_runs_end_to_end_with_flags_and_warmup_recorded(converted, tmp_path):
    out = tmp_path / "report"
    models = [str(converted[m]) for m in ("int8", "float32")]
    assert bench_main([*models, "--quick", "--no-reference", "--out", str(out)]) == 0
    report = json.loads((out / "report.json").read_text())
    assert report["mode"] == "quick" and len(report["rows"]) == 2
    for row in report["rows"]:
        assert isinstance(row["flags"], list) and set(row["flags"]) <= {"frame_below_invoke", "warmup_capped"}
        assert ("frame_below_invoke" in row["flags"]) == (row["frame_ms"]["p50"] < row["invoke_ms"]["p50"])
        warm = row["warmup"]
        assert len(warm["invoke_calls"]) == len(warm["frame_calls"]) == bench.QUICK.rounds
        assert all(n >= 1 for n in warm["invoke_calls"] + warm["frame_calls"])
        assert ("warmup_capped" in row["flags"]) == (warm["unsettled_blocks"] > 0)
        assert row["invoke_ms"]["n"] >= bench.QUICK.invoke_n


def test_quick_check_pairs_and_agreement():
    from edgeclf.benchmarks import quick_check

    pairs = quick_check.shipped_pairs()
    assert {f32.name.removesuffix("_float32.tflite") for f32, _ in pairs} >= {"airbench_whiten", "resnet8"}
    assert all(i8.name == f32.name.replace("float32", "int8") for f32, i8 in pairs)
    full = {"m_int8.tflite": {"invoke_speedup": 2.0, "frame_speedup": 1.0}}
    quick = {"m_int8.tflite": {"invoke_speedup": 2.28, "frame_speedup": 0.84}}
    got = {a["ratio"]: a for a in quick_check.agreement(quick, full, 0.15)}
    assert got["invoke_speedup"]["ok"] and got["invoke_speedup"]["diff"] == pytest.approx(0.14)
    assert not got["frame_speedup"]["ok"] and got["frame_speedup"]["diff"] == pytest.approx(-0.16)
    missing = quick_check.agreement({}, full, 0.15)
    assert len(missing) == 2 and not any(a["ok"] for a in missing)
