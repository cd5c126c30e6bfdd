"""Transfer learning: a keras.applications backbone with a new head, for users' own datasets.

Phase 1 trains the head on the frozen backbone; phase 2 unfreezes the top of the backbone at a
tenth of the learning rate (batch-norm layers stay frozen). `--weights none` trains all of it
from scratch in one phase.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from edgeclf.edge_app.errors import EdgeClfError, require


@dataclass(frozen=True)
class Backbone:
    factory: str  # attribute of keras.applications
    mean: float  # what the backbone expects: x = (pixel - mean) / std
    std: float


BACKBONES: dict[str, Backbone] = {
    "mobilenet_v2": Backbone("MobileNetV2", 127.5, 127.5),  # [-1, 1]
    "efficientnet_b0": Backbone("EfficientNetB0", 0.0, 1.0),  # rescales 0..255 itself
}
BACKBONE_LAYER = "backbone"


def build(name: str, input_shape: tuple[int, int, int], n_classes: int, weights: str = "none") -> Any:
    """Backbone (weights: imagenet | PATH | none) + global pooling + dropout + softmax head."""
    keras = require("keras", "train")
    factory = getattr(keras.applications, BACKBONES[name].factory)
    path = None if weights in ("none", "imagenet") else Path(weights)
    if path is not None and not path.is_file():
        raise EdgeClfError(f"--weights {weights}: no such weights file (or use imagenet / none)")
    try:
        backbone = factory(
            include_top=False,
            weights="imagenet" if weights == "imagenet" else None,
            input_shape=input_shape,
            pooling="avg",
        )
    except Exception as exc:  # noqa: BLE001 - a failed download surfaces as several exception types
        if weights == "imagenet":
            raise EdgeClfError(
                f"--weights imagenet needs the internet to download the {name} weights "
                f"({str(exc).splitlines()[0][:100]}); "
                "offline, pass --weights PATH to a saved weights file, or --weights none"
            ) from None
        raise EdgeClfError(f"cannot build {name} for input {input_shape}: {str(exc).splitlines()[0][:160]}") from None
    backbone.name = BACKBONE_LAYER
    if path is not None:
        try:
            backbone.load_weights(path)
        except Exception as exc:  # noqa: BLE001
            raise EdgeClfError(f"{path} does not fit the {name} backbone: {str(exc).splitlines()[0][:160]}") from None
    inputs = keras.Input(shape=input_shape)
    x = backbone(inputs)
    x = keras.layers.Dropout(0.2)(x)
    outputs = keras.layers.Dense(n_classes, activation="softmax")(x)
    return keras.Model(inputs, outputs, name=name)


def freeze_backbone(model: Any) -> None:
    """Phase 1: only the head learns."""
    model.get_layer(BACKBONE_LAYER).trainable = False


def unfreeze_top(model: Any, fraction: float = 0.3) -> int:
    """Phase 2: the top `fraction` of the backbone's layers learn again (batch norm stays frozen)."""
    keras = require("keras", "train")
    backbone = model.get_layer(BACKBONE_LAYER)
    backbone.trainable = True
    layers = backbone.layers
    start = int(len(layers) * (1 - fraction))
    count = 0
    for i, layer in enumerate(layers):
        layer.trainable = i >= start and not isinstance(layer, keras.layers.BatchNormalization)
        count += layer.trainable
    return count


def has_backbone(model: Any) -> bool:
    return any(layer.name == BACKBONE_LAYER for layer in model.layers)
