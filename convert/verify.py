"""Verification: run the converted model in the TFLite runtime and compare it with the Keras model."""

from __future__ import annotations

import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from edge_app import metadata, metrics
from edge_app.classifier import Classifier
from edge_app.contract import ModelInfo


@dataclass(frozen=True)
class Verification:
    keras: dict[str, Any]
    tflite: dict[str, Any]
    agreement: float
    runtime: str
    n: int

    @property
    def drop_points(self) -> float:
        """Accuracy lost by conversion, in percentage points (positive = worse)."""
        return 100.0 * (self.keras["accuracy"] - self.tflite["accuracy"])


def verify(model_bytes: bytes, info: ModelInfo, keras_probs: np.ndarray, x: np.ndarray, y: np.ndarray) -> Verification:
    """Evaluate `model_bytes` on normalised images `x` and compare with the Keras probabilities."""
    with tempfile.TemporaryDirectory(prefix="edgeclf-verify-") as tmp:
        path = Path(tmp) / "candidate.tflite"
        path.write_bytes(metadata.embed(model_bytes, info))
        clf = Classifier(path)
        probs = clf.predict(x)
        runtime = str(clf.runtime)
    return Verification(
        keras=metrics.classification_report(keras_probs, y, info.labels),
        tflite=metrics.classification_report(probs, y, info.labels),
        agreement=metrics.agreement(keras_probs, probs),
        runtime=runtime,
        n=len(y),
    )
