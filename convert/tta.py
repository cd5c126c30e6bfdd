"""Test-time augmentation baked into the exported graph: the model sees the image and its mirror
image and averages the two outputs. Twice the compute per frame for a steadier prediction; the
edge app needs nothing new, the input and output stay one image and one score vector."""

from __future__ import annotations

from typing import Any

from edge_app.errors import EdgeClfError, require

VIEWS = {"none": 1, "flip": 2}  # mode -> passes of the original network per image
TTA_MODES = tuple(VIEWS)


def wrap(model: Any, mode: str) -> Any:
    """`model` itself for 'none'; for 'flip' a model averaging the outputs for x and its mirror."""
    if mode not in TTA_MODES:
        raise EdgeClfError(f"--tta must be one of {', '.join(TTA_MODES)}, got {mode!r}")
    if mode == "none":
        return model
    keras = require("keras", "train")
    ops = keras.ops
    n_out = int(model.output_shape[-1])
    inputs = keras.Input(shape=tuple(model.input_shape[1:]), name="image")
    # the image and its mirror as one batch of two: one pass, one copy of the weights in the file
    pair = keras.layers.Lambda(lambda x: ops.concatenate([x, ops.flip(x, axis=2)], axis=0), name="mirror")(inputs)
    scores = model(pair)
    mean = keras.layers.Lambda(lambda y: ops.mean(ops.reshape(y, (2, -1, n_out)), axis=0), name="tta_average")
    return keras.Model(inputs, mean(scores), name=f"{model.name}_tta_flip")
