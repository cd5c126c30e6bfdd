"""Streaming statistics of per-frame durations in constant memory, for processes that run for weeks.

A list of every frame's time grows by about 32 bytes a frame (4 MB a day at a modest frame rate).
`Timings` keeps a count, a sum, the extremes, the first `EXACT` values as they came (so short runs
report exactly what numpy would), and past those a histogram of logarithmic bins.
"""

from __future__ import annotations

import math

import numpy as np


class Timings:
    """Count, mean, min, max and percentiles of durations in milliseconds; its buffers never grow.

    Once more than `EXACT` values arrived, percentiles come from bins `GROWTH` wide, within
    `RELATIVE_ERROR` of numpy's (for values between `LOW` and `HIGH`; outside, min or max)."""

    LOW = 1e-3  # ms (1 us): smaller values share the first bin
    HIGH = 1e6  # ms (1,000 s): larger values share the last bin
    GROWTH = 1.01  # each bin's upper edge over its lower one
    RELATIVE_ERROR = GROWTH - 1.0
    EXACT = 1024  # values kept as they are, for exact percentiles of short runs

    def __init__(self) -> None:
        self._scale = 1.0 / math.log(self.GROWTH)
        inner = math.ceil(math.log(self.HIGH / self.LOW) * self._scale)
        self._counts = np.zeros(inner + 2, np.int64)  # [0]: below LOW; [1..inner]: LOW * GROWTH**(i-1) ...; [-1]: HIGH+
        self._first = np.zeros(self.EXACT, np.float64)
        self.count = 0
        self.total = 0.0
        self.min = math.inf
        self.max = -math.inf

    def add(self, value: float) -> None:
        """Record one duration (ms)."""
        if self.count < self.EXACT:
            self._first[self.count] = value
        self.count += 1
        self.total += value
        if value < self.min:
            self.min = value
        if value > self.max:
            self.max = value
        if value < self.LOW:
            index = 0
        elif value >= self.HIGH:
            index = len(self._counts) - 1
        else:
            index = min(int(math.log(value / self.LOW) * self._scale) + 1, len(self._counts) - 2)
        self._counts[index] += 1

    @property
    def mean(self) -> float:
        """The mean, 0.0 before any value."""
        return self.total / self.count if self.count else 0.0

    @property
    def nbytes(self) -> int:
        """Bytes held by the buffers (the same from the first value to the last)."""
        return self._counts.nbytes + self._first.nbytes

    def percentile(self, q: float) -> float:
        """The q-th percentile (0..100) as numpy's default (linear) method gives it; 0.0 before any value."""
        if self.count == 0:
            return 0.0
        if self.count <= self.EXACT:
            return float(np.percentile(self._first[: self.count], q))
        rank = (self.count - 1) * q / 100.0  # numpy's position among the sorted values
        ends = np.cumsum(self._counts)
        index = int(np.searchsorted(ends, rank, side="right"))
        if index == 0:
            return float(self.min)
        if index >= len(self._counts) - 1:
            return float(self.max)
        inside = (rank - (ends[index] - self._counts[index]) + 0.5) / self._counts[index]  # 0..1 through the bin
        value = self.LOW * self.GROWTH ** (index - 1 + inside)
        return float(min(max(value, self.min), self.max))
