"""Measurements of one model: invoke() latency and accuracy on an image folder."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import numpy as np

from edge_app import metrics, preprocess
from edge_app.classifier import Classifier
from edge_app.datasets import ImageSet, class_names, load_folder, split_dirs
from edge_app.errors import DataError


def latency(clf: Classifier, min_seconds: float, min_count: int, warmup: int = 10) -> dict[str, Any]:
    """Time invoke() alone on a fixed input: warm-up, then at least min_count calls and min_seconds."""
    clf.predict(np.zeros((1, clf.spec.height, clf.spec.width, 3), np.float32))  # batch 1, tensor set
    interpreter = clf.interpreter
    for _ in range(warmup):
        interpreter.invoke()
    samples = np.empty(max(min_count, 1) * 64, dtype=np.int64)
    n = 0
    deadline = time.perf_counter_ns() + int(min_seconds * 1e9)
    while n < min_count or time.perf_counter_ns() < deadline:
        if n == len(samples):
            samples = np.resize(samples, 2 * len(samples))
        start = time.perf_counter_ns()
        interpreter.invoke()
        samples[n] = time.perf_counter_ns() - start
        n += 1
    ms = samples[:n] / 1e6
    return {
        "p50": float(np.percentile(ms, 50)),
        "p90": float(np.percentile(ms, 90)),
        "p99": float(np.percentile(ms, 99)),
        "mean": float(ms.mean()),
        "std": float(ms.std()),
        "n": int(n),
    }


def evaluation_set(root: str | Path, labels: tuple[str, ...], size: tuple[int, int], mode: str) -> ImageSet:
    """The test split (or the whole folder) of an image folder, its labels mapped to the model's indices."""
    dirs = split_dirs(root)
    folder = dirs.get("test", dirs.get("all", dirs.get("train")))
    classes = class_names(folder)
    if set(classes) != set(labels):
        only_data = sorted(set(classes) - set(labels))
        only_model = sorted(set(labels) - set(classes))
        raise DataError(
            f"{folder}: classes do not match the model's labels "
            f"(only in data: {only_data or '-'}; only in model: {only_model or '-'})"
        )
    data = load_folder(folder, classes, size, mode)
    to_model = np.array([labels.index(name) for name in classes], dtype=np.int64)
    return ImageSet(data.images, to_model[data.labels], tuple(labels), data.skipped)


def accuracy(clf: Classifier, data: ImageSet) -> tuple[dict[str, Any], np.ndarray]:
    """Classification report of `clf` on `data`, and its probabilities."""
    probs = clf.predict(preprocess.normalize(data.images, clf.spec))
    return metrics.classification_report(probs, data.labels, clf.labels), probs
