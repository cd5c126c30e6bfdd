"""Multiply-accumulates per image of a Keras model (convolutions and dense layers; the rest is
cheap next to them and left out, as in the usual MAC counts)."""

from __future__ import annotations

import math
from typing import Any


def _shape(tensor: Any) -> tuple[int, ...]:
    return tuple(int(d) for d in tensor.shape[1:] if d is not None)


def count_macs(model: Any) -> int:
    """MACs for one input image, nested models (backbones) included."""
    import keras

    from edgeclf.train.architectures import leaf_layers

    total = 0
    for layer in leaf_layers(model):
        if isinstance(layer, keras.layers.DepthwiseConv2D):
            kh, kw = layer.kernel_size
            out = _shape(layer.output)
            total += math.prod(out[:-1]) * out[-1] * kh * kw
        elif isinstance(layer, keras.layers.Conv2D):
            kh, kw = layer.kernel_size
            cin = _shape(layer.input)[-1]
            out = _shape(layer.output)
            total += math.prod(out) * kh * kw * cin // max(1, layer.groups)
        elif isinstance(layer, keras.layers.Dense):
            cin = _shape(layer.input)[-1]
            out = _shape(layer.output)
            total += math.prod(out) * cin
    return int(total)
