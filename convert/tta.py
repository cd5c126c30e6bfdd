"""Test-time augmentation baked into the exported graph: the network runs once on a small batch of
views of the frame (its mirror image, one-pixel shifts) and the outputs are averaged. More compute
per frame for a steadier prediction; the edge app needs nothing new, the input and output stay one
image and one score vector, and the file holds one copy of the weights."""

from __future__ import annotations

from typing import Any

from edgeclf.edge_app.errors import EdgeClfError, require
from edgeclf.edge_app.tta import VIEW_WEIGHTS

VIEWS = {mode: len(weights) for mode, weights in VIEW_WEIGHTS.items()}  # passes of the network per image
TTA_MODES = tuple(VIEWS)


def _views(ops: Any, x: Any, mode: str) -> Any:
    """The views of a batch x (N, H, W, C) stacked as one batch, view by view."""
    views = [x, ops.flip(x, axis=2)]
    if mode == "flip_shift":
        padded = ops.pad(x, [[0, 0], [1, 1], [1, 1], [0, 0]], mode="reflect")
        for shifted in (padded[:, :-2, :-2, :], padded[:, 2:, 2:, :]):
            views += [shifted, ops.flip(shifted, axis=2)]
    return ops.concatenate(views, axis=0)


def wrap(model: Any, mode: str) -> Any:
    """`model` itself for 'none'; otherwise a model that runs `model` on the mode's views of its
    input and returns their weighted average."""
    if mode not in TTA_MODES:
        raise EdgeClfError(f"--tta must be one of {', '.join(TTA_MODES)}, got {mode!r}")
    if mode == "none":
        return model
    keras = require("keras", "train")
    ops = keras.ops
    n_out = int(model.output_shape[-1])
    weights = VIEW_WEIGHTS[mode]
    inputs = keras.Input(shape=tuple(model.input_shape[1:]), name="image")
    batch = keras.layers.Lambda(lambda x: _views(ops, x, mode), name=f"views_{mode}")(inputs)
    scores = model(batch)

    def average(y: Any) -> Any:
        stacked = ops.reshape(y, (len(weights), -1, n_out))
        if len(set(weights)) == 1:
            return ops.mean(stacked, axis=0)
        return ops.sum(stacked * ops.reshape(ops.array(weights, dtype=y.dtype), (-1, 1, 1)), axis=0)

    outputs = keras.layers.Lambda(average, name="tta_average")(scores)
    return keras.Model(inputs, outputs, name=f"{model.name}_tta_{mode}")
