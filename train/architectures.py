"""Architectures by name. Adding one is one function here and one line in ARCHITECTURES."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from edgeclf.edge_app.errors import EdgeClfError


def _keras() -> Any:
    from edgeclf.edge_app.errors import require

    return require("keras", "train")


def tutorial_cnn(input_shape: tuple[int, int, int], n_classes: int) -> Any:
    """The tutorial's network exactly: Conv32-Pool-Conv64-Pool-Dense128-Dense(n) (softmax)."""
    keras = _keras()
    layers = keras.layers
    return keras.Sequential(
        [
            keras.Input(shape=input_shape),
            layers.Conv2D(32, 3, activation="relu"),
            layers.MaxPooling2D(2),
            layers.Conv2D(64, 3, activation="relu"),
            layers.MaxPooling2D(2),
            layers.Flatten(),
            layers.Dense(128, activation="relu"),
            layers.Dense(n_classes, activation="softmax"),
        ],
        name="tutorial_cnn",
    )


def _conv_bn(x: Any, filters: int, stride: int = 1, relu: bool = True) -> Any:
    layers = _keras().layers
    x = layers.Conv2D(filters, 3, strides=stride, padding="same", use_bias=False, kernel_initializer="he_normal")(x)
    x = layers.BatchNormalization()(x)
    return layers.ReLU()(x) if relu else x


def resnet8(input_shape: tuple[int, int, int], n_classes: int) -> Any:
    """MLPerf Tiny's ResNet-8 shape (16-32-64 residual stages, ~78k params), ReLU + batch norm."""
    keras = _keras()
    layers = keras.layers
    inputs = keras.Input(shape=input_shape)
    x = _conv_bn(inputs, 16)
    for filters, stride in ((16, 1), (32, 2), (64, 2)):
        y = _conv_bn(x, filters, stride)
        y = _conv_bn(y, filters, 1, relu=False)
        if stride != 1 or x.shape[-1] != filters:
            x = layers.Conv2D(filters, 1, strides=stride, use_bias=False, kernel_initializer="he_normal")(x)
            x = layers.BatchNormalization()(x)
        x = layers.ReLU()(layers.Add()([x, y]))
    x = layers.GlobalAveragePooling2D()(x)
    outputs = layers.Dense(n_classes, activation="softmax")(x)
    return keras.Model(inputs, outputs, name="resnet8")


def airbench(input_shape: tuple[int, int, int], n_classes: int) -> Any:
    """Accuracy tier: airbench-style blocks (conv-pool-BN-ReLU-conv-BN-ReLU, widths 64-256-256, ~2M
    params), ReLU instead of GELU so every op has an int8 kernel."""
    keras = _keras()
    layers = keras.layers
    inputs = keras.Input(shape=input_shape)
    x = _conv_bn(inputs, 32)
    for width in (64, 256, 256):
        x = layers.Conv2D(width, 3, padding="same", use_bias=False, kernel_initializer="he_normal")(x)
        x = layers.MaxPooling2D(2)(x)
        x = layers.ReLU()(layers.BatchNormalization()(x))
        x = _conv_bn(x, width)
    x = layers.GlobalMaxPooling2D()(x)
    # logits scaled by 1/8 (as in airbench and the DAWNBench ResNet-9): steadier at high learning rates
    x = layers.Rescaling(0.125)(layers.Dense(n_classes)(x))
    outputs = layers.Activation("softmax")(x)
    return keras.Model(inputs, outputs, name="airbench")


def _dirac(conv: Any) -> None:
    """Identity ("dirac") start for a built 3x3 conv: its first min(in, out) filters pass their own
    input channel through unchanged, so the deep stack starts close to an implicit residual net."""
    kernel = conv.kernel.numpy()
    n = min(kernel.shape[2], kernel.shape[3])
    kernel[:, :, :, :n] = 0.0
    kernel[kernel.shape[0] // 2, kernel.shape[1] // 2, range(n), range(n)] = 1.0
    conv.kernel.assign(kernel)


def _whitened_net(name: str, widths: tuple[int, int, int], input_shape: tuple[int, int, int], n_classes: int) -> Any:
    """airbench94's layout: a frozen 2x2 patch-whitening stem (24 filters, set from the training
    images by `edgeclf.train.whiten` before training), three conv-pool-BN-ReLU-conv-BN-ReLU groups of the
    given widths with identity-initialised convs and shift-only batch norm (momentum 0.4 in Keras
    terms, airbench's 0.6 in PyTorch terms), global max pool, a bias-free linear head scaled by 1/9.
    ReLU instead of GELU, so every op has an int8 kernel."""
    if min(input_shape[:2]) < 16:
        raise EdgeClfError(f"{name} needs inputs of at least 16x16 (three 2x2 poolings), not {input_shape[0]}")
    keras = _keras()
    layers = keras.layers
    # PyTorch's conv default (uniform, +-1/sqrt(fan_in)), which the identity start was tuned with
    init = keras.initializers.VarianceScaling(1 / 3, "fan_in", "uniform")
    inputs = keras.Input(shape=input_shape)
    whiten = layers.Conv2D(2 * 3 * 2 * 2, 2, padding="valid", name="whiten", trainable=False)
    x = layers.ReLU()(whiten(inputs))
    for width in widths:
        for pool in (True, False):
            conv = layers.Conv2D(width, 3, padding="same", use_bias=False, kernel_initializer=init)
            x = conv(x)
            _dirac(conv)
            x = layers.MaxPooling2D(2)(x) if pool else x
            x = layers.ReLU()(layers.BatchNormalization(momentum=0.4, epsilon=1e-5, scale=False)(x))
    x = layers.GlobalMaxPooling2D()(x)
    x = layers.Rescaling(1 / 9)(layers.Dense(n_classes, use_bias=False, kernel_initializer=init)(x))
    outputs = layers.Activation("softmax")(x)
    return keras.Model(inputs, outputs, name=name)


def airbench_whiten(input_shape: tuple[int, int, int], n_classes: int) -> Any:
    """Accuracy tier: the whitened airbench94 layout at widths 64-256-256 (~1.97M params, 118M MACs)."""
    return _whitened_net("airbench_whiten", (64, 256, 256), input_shape, n_classes)


def airbench_tiny(input_shape: tuple[int, int, int], n_classes: int) -> Any:
    """Tiny tier: the same layout at widths 24-48-56 (~95k params, ~11M MACs)."""
    return _whitened_net("airbench_tiny", (24, 48, 56), input_shape, n_classes)


def mobilenet_tiny(input_shape: tuple[int, int, int], n_classes: int) -> Any:
    """Tiny tier alternative: depthwise-separable blocks (MobileNet style, ReLU6), ~70k params."""
    keras = _keras()
    layers = keras.layers
    inputs = keras.Input(shape=input_shape)
    x = _conv_bn(inputs, 32)
    for filters, stride in ((64, 1), (128, 2), (128, 1), (256, 2)):
        x = layers.DepthwiseConv2D(3, strides=stride, padding="same", use_bias=False)(x)
        x = layers.ReLU(6.0)(layers.BatchNormalization()(x))
        x = layers.Conv2D(filters, 1, use_bias=False, kernel_initializer="he_normal")(x)
        x = layers.ReLU(6.0)(layers.BatchNormalization()(x))
    x = layers.GlobalAveragePooling2D()(x)
    outputs = layers.Dense(n_classes, activation="softmax")(x)
    return keras.Model(inputs, outputs, name="mobilenet_tiny")


def leaf_layers(model: Any) -> list[Any]:
    """Every layer of a built model, with nested models (backbones) opened up in place."""
    keras = _keras()
    found = []
    for layer in model.layers:
        found += leaf_layers(layer) if isinstance(layer, keras.Model) else [layer]
    return found


ARCHITECTURES: dict[str, Callable[[tuple[int, int, int], int], Any]] = {
    "tutorial_cnn": tutorial_cnn,
    "resnet8": resnet8,
    "mobilenet_tiny": mobilenet_tiny,
    "airbench": airbench,
    "airbench_whiten": airbench_whiten,
    "airbench_tiny": airbench_tiny,
}


def build(name: str, input_shape: tuple[int, int, int], n_classes: int, weights: str = "none") -> Any:
    """Build the named architecture, or a one-line error listing the known names."""
    from edgeclf.train import transfer

    if name in transfer.BACKBONES:
        return transfer.build(name, input_shape, n_classes, weights)
    if name not in ARCHITECTURES:
        known = [*ARCHITECTURES, *transfer.BACKBONES]
        raise EdgeClfError(f"unknown architecture {name!r}; choose from {', '.join(known)}")
    if weights != "none":
        raise EdgeClfError(
            f"--weights applies to the pretrained backbones ({', '.join(transfer.BACKBONES)}), not {name}"
        )
    return ARCHITECTURES[name](input_shape, n_classes)


def names() -> list[str]:
    """Every architecture --arch accepts."""
    from edgeclf.train import transfer

    return [*ARCHITECTURES, *transfer.BACKBONES]
