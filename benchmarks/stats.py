"""Latency statistics over samples, and the interleaved timing loop that collects them."""

from __future__ import annotations

import math
import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass
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


@dataclass(frozen=True)
class Settled:
    """How one warm-up went: calls made, whether the timings settled (else a cap stopped it), last median."""

    calls: int
    settled: bool
    median_ms: float


def settle(
    fn: Callable[[], Any],
    window: int = 5,
    tolerance: float = 0.05,
    max_calls: int = 1000,
    max_seconds: float = 0.5,
    clock: Callable[[], int] = time.perf_counter_ns,
) -> Settled:
    """Call `fn` until the median of its last `window` call times is within `tolerance` of the median of the
    `window` before, or a cap (calls, seconds) is reached.

    A fixed number of warm-up calls is too few for a model whose first calls pack weights or whose caches were
    just evicted by another variant, and wasted on one that is warm after two calls."""
    times: list[int] = []
    start = clock()
    while True:
        t0 = clock()
        fn()
        times.append(clock() - t0)
        if len(times) >= 2 * window:
            last = statistics.median(times[-window:])
            before = statistics.median(times[-2 * window : -window])
            if abs(last - before) <= tolerance * before:
                return Settled(len(times), True, last / 1e6)
        if len(times) >= max_calls or clock() - start >= max_seconds * 1e9:
            return Settled(len(times), False, statistics.median(times[-window:]) / 1e6)


def interleaved(
    tasks: dict[str, Callable[[], Any]],
    min_seconds: float,
    min_count: int,
    rounds: int = 5,
    warmup_s: float = 0.5,
    settle_log: dict[str, list[Settled]] | None = None,
) -> dict[str, np.ndarray]:
    """Time every task in turns (A, B, A, B, ...) so machine noise hits all of them alike; ms per call.

    Each block starts with a warm-up of its task until its timings settle (at most `warmup_s`): the block
    before ran another model, whose weights and activations pushed this one's out of the caches, and
    timing its first calls made short blocks (quick mode) read slower than the same model in long ones.
    `warmup_s=0` times cold. `settle_log`, when given, receives each task's warm-ups, one per block."""
    samples = {name: Samples() for name in tasks}
    per_round_s = min_seconds / rounds
    per_round_n = math.ceil(min_count / rounds)
    for _ in range(rounds):
        for name, fn in tasks.items():
            if warmup_s > 0:
                warm = settle(fn, max_seconds=warmup_s)
                if settle_log is not None:
                    settle_log.setdefault(name, []).append(warm)
            time_block(fn, samples[name], per_round_s, per_round_n)
    return {name: s.ms() for name, s in samples.items()}
