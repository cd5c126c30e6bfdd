"""Classification metrics in numpy: accuracy, top-k, per-class and macro precision / recall / F1."""

from __future__ import annotations

from typing import Any

import numpy as np


def confusion_matrix(y_true: np.ndarray, y_pred: np.ndarray, n_classes: int) -> np.ndarray:
    """Rows are true classes, columns predicted classes."""
    cm = np.zeros((n_classes, n_classes), dtype=np.int64)
    np.add.at(cm, (np.asarray(y_true, dtype=np.int64), np.asarray(y_pred, dtype=np.int64)), 1)
    return cm


def top_k_accuracy(probs: np.ndarray, y_true: np.ndarray, k: int) -> float:
    """Fraction of rows whose true class is among the k highest scores."""
    k = min(k, probs.shape[1])
    top = np.argpartition(-probs, k - 1, axis=1)[:, :k]
    return float(np.mean(np.any(top == np.asarray(y_true)[:, None], axis=1)))


def _safe_div(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return np.divide(a, b, out=np.zeros_like(a, dtype=np.float64), where=b > 0)


def classification_report(probs: np.ndarray, y_true: np.ndarray, labels: tuple[str, ...]) -> dict[str, Any]:
    """Accuracy, top-5, macro and per-class precision / recall / F1, and the confusion matrix. Macro averages
    are over the classes the data holds: a model may know more (a taught model), and those are not averaged in
    as zeros."""
    y_true = np.asarray(y_true, dtype=np.int64)
    y_pred = np.argmax(probs, axis=1)
    cm = confusion_matrix(y_true, y_pred, len(labels))
    tp = np.diag(cm).astype(np.float64)
    precision = _safe_div(tp, cm.sum(axis=0).astype(np.float64))
    recall = _safe_div(tp, cm.sum(axis=1).astype(np.float64))
    f1 = _safe_div(2 * precision * recall, precision + recall)
    present = cm.sum(axis=1) > 0
    report: dict[str, Any] = {
        "n": int(len(y_true)),
        "accuracy": float(np.mean(y_pred == y_true)) if len(y_true) else 0.0,
    }
    if len(labels) > 5:
        report["top5"] = top_k_accuracy(probs, y_true, 5)
    report.update(
        {
            "macro_precision": float(precision[present].mean()) if present.any() else 0.0,
            "macro_recall": float(recall[present].mean()) if present.any() else 0.0,
            "macro_f1": float(f1[present].mean()) if present.any() else 0.0,
            "per_class": {
                name: {
                    "precision": float(precision[i]),
                    "recall": float(recall[i]),
                    "f1": float(f1[i]),
                    "support": int(cm[i].sum()),
                }
                for i, name in enumerate(labels)
            },
            "confusion_matrix": cm.tolist(),
        }
    )
    return report


def agreement(probs_a: np.ndarray, probs_b: np.ndarray) -> float:
    """Fraction of rows where both models pick the same top-1 class."""
    return float(np.mean(np.argmax(probs_a, axis=1) == np.argmax(probs_b, axis=1)))
