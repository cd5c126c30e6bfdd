"""The input contract of a lone Keras file (no run.json beside it): options, or a `<stem>.json` sidecar.

A run folder's run.json records how its model was trained. A lone .keras / .h5 records nothing, and a
guess (RGB, pixel / 255, the data's sorted class names) cannot be caught by verification: Keras and
TFLite then see the same wrong inputs and agree. So the contract must be given, and the Keras model
must score well above chance on the data with it before anything is converted.
"""

from __future__ import annotations

import numpy as np

from edgeclf.edge_app.errors import EdgeClfError
from edgeclf.train.lonecontract import CONTRACT_OPTIONS, LoneContract, resolve, sidecar_path

# the contract itself (options, sidecar) lives in edgeclf.train.lonecontract, so `edgeclf train --init` reads a lone
# file's contract the same way; edgeclf.convert.pipeline goes on calling lonefile.resolve
__all__ = [
    "CONTRACT_OPTIONS",
    "LoneContract",
    "chance_floor",
    "check_above_chance",
    "relabel",
    "resolve",
    "sidecar_path",
]


def chance_floor(n_classes: int) -> float:
    """The least accuracy a correctly fed model must reach: twice chance (2 / n). For two classes, where
    that would be 1.0, halfway from chance to perfect (0.75); the two agree at three classes."""
    return min(2.0 / n_classes, (1.0 + 1.0 / n_classes) / 2.0)


def check_above_chance(probs: np.ndarray, labels: np.ndarray, contract: LoneContract) -> float:
    """The Keras model's accuracy on the data; a one-line refusal when it is under `chance_floor`."""
    n_classes = len(contract.labels)
    accuracy = float(np.mean(np.argmax(probs, axis=1) == labels)) if len(labels) else 0.0
    floor = chance_floor(n_classes)
    if accuracy < floor:
        raise EdgeClfError(
            f"the Keras model scores {accuracy:.4f} on {len(labels)} test images with the input contract from "
            f"{contract.origin}, under twice chance ({floor:.4f} for {n_classes} classes): check --mean, --std, "
            "--color and --labels (in the model's output order); nothing converted"
        )
    return accuracy


def relabel(labels: np.ndarray, data_classes: tuple[str, ...], contract: LoneContract) -> np.ndarray:
    """The data's labels (indices into its sorted class names) as indices into the model's outputs."""
    unknown = [x for x in contract.labels if x not in data_classes]
    if unknown:
        raise EdgeClfError(
            f"label(s) {', '.join(unknown)} from {contract.origin} are not among the data's classes "
            f"({', '.join(data_classes)})"
        )
    unlabelled = [c for c in data_classes if c not in contract.labels]
    if unlabelled:
        raise EdgeClfError(
            f"the data's class(es) {', '.join(unlabelled)} are not among the labels from {contract.origin}"
        )
    order = np.array([contract.labels.index(c) for c in data_classes], dtype=np.int64)
    return order[labels]
