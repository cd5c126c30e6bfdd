"""A fresh process that loads one model and classifies 640x480 frames, for cold start and memory.

Prints a JSON line the moment the first result exists (the parent times process start to
that line), then one with the frame latencies and the peak RSS of the whole process.
`--keras` runs the tutorial's deployment path instead: the Keras model, `model.predict` on
one image at a time (this imports TensorFlow).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from edgeclf.edge_app.memory import peak_rss_mb


def frame_640x480(seed: int = 0) -> np.ndarray:
    """A deterministic 640x480 BGR test frame (smooth gradients plus noise)."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:480, 0:640]
    base = np.stack([x / 640 * 255, y / 480 * 255, (x + y) / 1120 * 255], axis=2)
    return np.clip(base + rng.normal(0, 12, base.shape), 0, 255).astype(np.uint8)


def _tflite_step(args: argparse.Namespace) -> Callable[[np.ndarray], Any]:
    from edgeclf.edge_app.classifier import Classifier
    from edgeclf.edge_app.live import FrameStep

    return FrameStep(Classifier(args.model, args.labels, runtime=args.runtime, threads=args.threads))


def _keras_step(args: argparse.Namespace) -> Callable[[np.ndarray], Any]:
    import keras

    from edgeclf.edge_app import metadata, preprocess

    spec = metadata.load_info(args.model).input
    try:
        model = keras.models.load_model(args.keras, compile=False)
    except Exception as exc:  # noqa: BLE001 - Keras says "File not found" for a corrupt .keras: say what it is
        first = (str(exc).strip().splitlines() or [type(exc).__name__])[0][:160]
        raise SystemExit(f"error: {args.keras} is not a readable Keras model: {first}") from None

    def step(image: np.ndarray) -> Any:
        x = preprocess.prepare(image, spec, "BGR")
        return model.predict(x[None], verbose=0)[0]

    return step


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m edgeclf.benchmarks.probe")
    parser.add_argument("--model", type=Path, required=True, help=".tflite (its metadata gives the input spec)")
    parser.add_argument("--keras", type=Path, help="time this Keras model with model.predict instead")
    parser.add_argument("--labels", type=Path, help="labels file for a model without metadata")
    parser.add_argument("--runtime")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--frames", type=int, default=50)
    args = parser.parse_args(argv)
    frame = frame_640x480()
    step = _keras_step(args) if args.keras else _tflite_step(args)
    step(frame)
    print(json.dumps({"first_result": True}), flush=True)
    times = []
    for _ in range(args.frames):
        start = time.perf_counter_ns()
        step(frame)
        times.append((time.perf_counter_ns() - start) / 1e6)
    from edgeclf.benchmarks.stats import summarize

    print(json.dumps({"frame_ms": summarize(times), "rss_mb": round(peak_rss_mb(), 1)}), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
