"""Verification: run the converted model in the TFLite runtime and compare it with the Keras model."""

from __future__ import annotations

import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from edgeclf.edge_app import metadata, metrics
from edgeclf.edge_app.classifier import Classifier
from edgeclf.edge_app.contract import ModelInfo


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


CLASS_ROWS = 20  # every class up to this many; above, the ones the conversion hurt most


def class_changes(check: Verification) -> list[dict[str, Any]]:
    """Per class: Keras and converted recall and F1, and the change in points (negative = the conversion hurt
    it), most hurt first (then in label order)."""
    rows = []
    for name, k in check.keras["per_class"].items():
        t = check.tflite["per_class"][name]
        change = 100.0 * (t["recall"] - k["recall"])
        rows.append({"class": name, "support": k["support"], "keras_recall": k["recall"], "recall": t["recall"],
                     "keras_f1": k["f1"], "f1": t["f1"], "recall_change_points": change})  # fmt: skip
    return sorted(rows, key=lambda r: r["recall_change_points"])


def class_change_lines(check: Verification, mode: str) -> list[str]:
    """The per-class change as a small table for the conversion report, so a class the conversion hurts
    stands out even when the overall accuracy barely moves."""
    rows = class_changes(check)
    shown = rows if len(rows) <= CLASS_ROWS else rows[:10]
    width = max(len("class"), *(len(r["class"]) for r in shown))
    lines = [
        f"per class  recall, Keras -> {mode} (change in points), F1; "
        + ("all classes, most hurt first" if shown is rows else f"the 10 most hurt of {len(rows)} classes"),
        f"  {'class':<{width}}{'images':>8}{'Keras':>9}{mode:>9}{'change':>9}{'F1 Keras':>10}{mode + ' F1':>10}",
    ]
    for r in shown:
        lines.append(
            f"  {r['class']:<{width}}{r['support']:>8,}{r['keras_recall']:>9.4f}{r['recall']:>9.4f}"
            f"{r['recall_change_points'] + 0.0:>+9.2f}{r['keras_f1']:>10.4f}{r['f1']:>10.4f}"
        )
    return lines


# Ops that convert at the float edges of a model whose I/O is float32 by request
BOUNDARY_OPS = {"QUANTIZE", "DEQUANTIZE"}


def op_report(path: Path) -> dict[str, Any]:
    """Every op of the model (without delegates, so none hide) and those that touch float32 tensors."""
    import importlib

    from edgeclf.edge_app.runtime import interpreter_class

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
