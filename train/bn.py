"""Batch-norm recalibration ("precise BN"): after training, recompute every BatchNormalization
layer's moving mean and variance as the plain average over batches of training images, with
the final weights. High learning rates move the weights faster than the moving averages
follow, so the statistics a short run ends with describe an older network."""

from __future__ import annotations

from typing import Any

import numpy as np


def batchnorm_layers(model: Any) -> list[Any]:
    """Every BatchNormalization layer, nested models included."""
    import keras

    from edgeclf.train.architectures import leaf_layers

    return [layer for layer in leaf_layers(model) if isinstance(layer, keras.layers.BatchNormalization)]


def recalibrate(model: Any, images: np.ndarray, batches: int = 50, batch_size: int = 500, seed: int = 0) -> int:
    """Reset the moving statistics to the average over `batches` batches of `images` (normalised
    model inputs, sampled with a seeded generator); trainable weights are untouched. Returns the
    number of images used (0 when the model has no batch norm)."""
    layers = batchnorm_layers(model)
    if not layers or batches < 1 or len(images) == 0:
        return 0
    rng = np.random.default_rng(seed)
    saved = [layer.momentum for layer in layers]
    used = 0
    try:
        for step in range(batches):
            for layer in layers:
                layer.momentum = step / (step + 1)  # running mean of the batch statistics
            pick = rng.choice(len(images), size=min(batch_size, len(images)), replace=False)
            model(images[pick], training=True)
            used += len(pick)
    finally:
        for layer, momentum in zip(layers, saved, strict=True):
            layer.momentum = momentum
    return used
