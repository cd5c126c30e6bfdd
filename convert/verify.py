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
    ops: dict[str, Any]

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
        ops = op_report(path)
    return Verification(
        keras=metrics.classification_report(keras_probs, y, info.labels),
        tflite=metrics.classification_report(probs, y, info.labels),
        agreement=metrics.agreement(keras_probs, probs),
        runtime=runtime,
        n=len(y),
        ops=ops,
    )


# Ops that convert at the float edges of a model whose I/O is float32 by request
BOUNDARY_OPS = {"QUANTIZE", "DEQUANTIZE"}


def op_report(path: Path) -> dict[str, Any]:
    """Every op of the model (without delegates, so none hide) and those that touch float32 tensors."""
    import importlib

    from edge_app.runtime import interpreter_class

    cls, _ = interpreter_class()
    resolver = getattr(importlib.import_module(cls.__module__), "OpResolverType", None)
    kwargs = {"experimental_op_resolver_type": resolver.BUILTIN_WITHOUT_DEFAULT_DELEGATES} if resolver else {}
    interpreter = cls(model_path=str(path), **kwargs)
    interpreter.allocate_tensors()
    dtypes = {t["index"]: t["dtype"] for t in interpreter.get_tensor_details()}
    ops = interpreter._get_ops_details()  # the only listing the Python interpreters offer
    float_ops = [
        op["op_name"]
        for op in ops
        if op["op_name"] not in BOUNDARY_OPS
        and any(dtypes.get(i) == np.float32 for i in [*op["inputs"], *op["outputs"]] if i >= 0)
    ]
    return {"count": len(ops), "types": sorted({op["op_name"] for op in ops}), "float_ops": float_ops}
