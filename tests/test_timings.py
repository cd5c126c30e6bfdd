"""Streaming per-frame timing statistics: constant memory, and numbers that agree with numpy."""

import tracemalloc

import numpy as np
import pytest

from edgeclf.edge_app.live import Summary
from edgeclf.edge_app.timings import Timings

pytestmark = pytest.mark.device  # edge extra + pytest only: .ci/edge-job runs it


def test_buffers_keep_their_size_over_100k_updates():
    stats = Timings()
    stats.add(1.0)
    sizes = stats.nbytes
    rng = np.random.default_rng(0)
    values = rng.lognormal(0.0, 0.5, 100_000).tolist()
    tracemalloc.start()
    before = tracemalloc.get_traced_memory()[0]
    for value in values:
        stats.add(value)
    grown = tracemalloc.get_traced_memory()[0] - before
    tracemalloc.stop()
    assert stats.count == 100_001 and stats.nbytes == sizes
    assert grown < 4096  # a list would hold 100k floats: 3.2 MB


def test_summary_memory_does_not_grow_with_frames():
    """Summary is what run_live keeps for a whole run: its per-frame record must be O(1)."""
    summary = Summary()
    tracemalloc.start()
    before = tracemalloc.get_traced_memory()[0]
    for i in range(100_000):
        summary.add_frame(0.5 + (i % 97) / 100)
    grown = tracemalloc.get_traced_memory()[0] - before
    tracemalloc.stop()
    assert summary.frames == 100_000 and grown < 4096


@pytest.mark.parametrize(
    "values",
    [
        np.random.default_rng(1).lognormal(0.5, 0.4, 200_000),  # inference times: a skewed bump
        np.random.default_rng(2).uniform(0.05, 40.0, 200_000),  # wide spread
        np.concatenate([np.full(150_000, 2.0), np.random.default_rng(3).uniform(10, 90, 50_000)]),  # stalls
    ],
    ids=["lognormal", "uniform", "bimodal"],
)
def test_mean_and_quantiles_match_numpy_within_one_percent(values):
    stats = Timings()
    for value in values.tolist():
        stats.add(value)
    assert stats.mean == pytest.approx(values.mean(), rel=1e-9)
    for q in (50, 90, 99):
        assert stats.percentile(q) == pytest.approx(np.percentile(values, q), rel=Timings.RELATIVE_ERROR), q
    assert stats.min == values.min() and stats.max == values.max()


def test_short_runs_are_exact():
    values = [1.0] * 9 + [11.0]
    stats = Timings()
    for value in values:
        stats.add(value)
    assert stats.percentile(90) == np.percentile(values, 90) == pytest.approx(2.0)


def test_out_of_range_values_are_clamped_and_empty_stats_are_zero():
    stats = Timings()
    assert stats.count == 0 and stats.mean == 0.0 and stats.percentile(90) == 0.0
    for value in [0.0, 1e-9, 5e9] * 2000:  # below and above the histogram's range
        stats.add(value)
    assert stats.min == 0.0 and stats.max == 5e9
    assert 0.0 <= stats.percentile(10) <= Timings.LOW and stats.percentile(99.9) == 5e9
