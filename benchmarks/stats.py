"""Latency statistics over samples, and the interleaved timing loop that collects them."""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from typing import Any

import numpy as np


def summarize(samples_ms: np.ndarray | list[float]) -> dict[str, Any]:
    """p50 / p90 / p99 (linear interpolation), mean, std (population) and n of millisecond samples."""
    ms = np.asarray(samples_ms, dtype=np.float64)
    if ms.size == 0:
        return {"p50": None, "p90": None, "p99": None, "mean": None, "std": None, "n": 0}
    p50, p90, p99 = np.percentile(ms, [50, 90, 99])
    return {
        "p50": float(p50),
        "p90": float(p90),
        "p99": float(p99),
        "mean": float(ms.mean()),
        "std": float(ms.std()),
        "n": int(ms.size),
    }


class Samples:
    """A preallocated buffer of nanosecond timings, so the timed loop never allocates."""

    def __init__(self, capacity: int = 4096) -> None:
        self.ns = np.empty(capacity, dtype=np.int64)
        self.n = 0

    def reserve(self, more: int) -> None:
        if self.n + more > len(self.ns):
            self.ns = np.resize(self.ns, max(2 * len(self.ns), self.n + more))

    def ms(self) -> np.ndarray:
        return self.ns[: self.n] / 1e6


def time_block(fn: Callable[[], Any], samples: Samples, min_seconds: float, min_count: int) -> None:
    """Call `fn` at least `min_count` times and for at least `min_seconds`, timing each call."""
    perf = time.perf_counter_ns
    deadline = perf() + int(min_seconds * 1e9)
    done = 0
    chunk = 8  # calls between deadline checks; small, so slow models do not overshoot much
    while True:
        samples.reserve(chunk)  # outside the timed region
        buf, i = samples.ns, samples.n
        for _ in range(chunk):
            start = perf()
            fn()
            buf[i] = perf() - start
            i += 1
        samples.n = i
        done += chunk
        if done >= min_count and perf() >= deadline:
            return


def interleaved(
    tasks: dict[str, Callable[[], Any]], min_seconds: float, min_count: int, rounds: int = 5, warmup: int = 5
) -> dict[str, np.ndarray]:
    """Time every task in turns (A, B, A, B, ...) so machine noise hits all of them alike; ms per call."""
    for fn in tasks.values():
        for _ in range(warmup):
            fn()
    samples = {name: Samples() for name in tasks}
    per_round_s = min_seconds / rounds
    per_round_n = math.ceil(min_count / rounds)
    for _ in range(rounds):
        for name, fn in tasks.items():
            time_block(fn, samples[name], per_round_s, per_round_n)
    return {name: s.ms() for name, s in samples.items()}
