"""Training-time augmentation, applied in the tf.data pipeline: never part of the exported model."""

from __future__ import annotations

from typing import Any

from edgeclf.edge_app.contract import InputSpec
from edgeclf.edge_app.errors import EdgeClfError

AUGMENTATIONS = ("flip", "crop", "crop2", "shift", "shift2", "rotate", "zoom", "brightness", "cutout")
DEFAULT_AUGMENT = ("flip", "crop")


def parse(text: str) -> tuple[str, ...]:
    """'flip,crop' -> ('flip', 'crop'); 'none' or '' -> (); unknown names are an error."""
    names = tuple(n.strip() for n in text.split(",") if n.strip() and n.strip() != "none")
    unknown = [n for n in names if n not in AUGMENTATIONS]
    if unknown:
        raise EdgeClfError(f"unknown augmentation(s) {', '.join(unknown)}; choose from {', '.join(AUGMENTATIONS)}")
    return names


def build(names: tuple[str, ...], spec: InputSpec, seed: int) -> Any | None:
    """A Keras Sequential of the chosen random layers, or None when there are none."""
    if not names:
        return None
    import keras

    layers = keras.layers
    low, high = spec.value_range

    def translate(fraction: float, interpolation: str) -> Any:
        return layers.RandomTranslation(
            fraction, fraction, fill_mode="reflect", interpolation=interpolation, seed=seed + 1
        )

    makers = {
        "flip": lambda: layers.RandomFlip("horizontal", seed=seed),
        # crop / crop2: up to 1/8 / 1/16 of the side (2 pixels at 32x32: airbench's lighter shift for
        # short runs), sub-pixel with bilinear interpolation, which also blurs; shift / shift2: the
        # same ranges in whole pixels (nearest neighbour), never blurred, like the test images
        "crop": lambda: translate(0.125, "bilinear"),
        "crop2": lambda: translate(0.0625, "bilinear"),
        "shift": lambda: translate(0.125, "nearest"),
        "shift2": lambda: translate(0.0625, "nearest"),
        "rotate": lambda: layers.RandomRotation(15 / 360, fill_mode="reflect", seed=seed + 2),
        "zoom": lambda: layers.RandomZoom(0.15, fill_mode="reflect", seed=seed + 3),
        "brightness": lambda: layers.RandomBrightness(0.15, value_range=(low, high), seed=seed + 4),
        # cutout / random erasing: one box of up to a quarter of the image, on half of the images
        "cutout": lambda: layers.RandomErasing(
            0.5, scale=(0.02, 0.25), fill_value=0.0, value_range=(low, high), seed=seed + 5
        ),
    }
    return keras.Sequential([makers[n]() for n in names], name="augment")
