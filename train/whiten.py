"""Patch-whitening stem initialisation (from airbench): the first conv's filters are the
eigenvectors of the covariance of small training-image patches, scaled by 1/sqrt(eigenvalue),
in + and - pairs so the following ReLU keeps both signs. The layer is frozen; its bias
subtracts the mean patch, so the stem sees centred, decorrelated, unit-variance inputs."""

from __future__ import annotations

from typing import Any

import numpy as np

LAYER = "whiten"
EPSILON = 5e-4  # added to the eigenvalues, relative to the mean patch variance
MAX_PATCHES = 5_000_000  # bounds memory at large input sizes (CIFAR-10: 5,000 images x 961 patches)


def patches(images: np.ndarray, size: int) -> np.ndarray:
    """Every size x size patch of every image, flattened in Keras kernel order (row, col, channel)."""
    n, h, w, c = images.shape
    views = np.lib.stride_tricks.sliding_window_view(images, (size, size), axis=(1, 2))
    # (n, h-size+1, w-size+1, c, size, size) -> (..., size, size, c)
    return np.moveaxis(views, 3, -1).reshape(-1, size * size * c)


def whitening(flat: np.ndarray, epsilon: float = EPSILON) -> tuple[np.ndarray, np.ndarray]:
    """(filters, mean): filters (k, d) whiten centred patches, strongest direction first."""
    flat = flat.astype(np.float64)
    mean = flat.mean(axis=0)
    centred = flat - mean
    cov = centred.T @ centred / len(flat)
    values, vectors = np.linalg.eigh(cov)
    values, vectors = values[::-1], vectors[:, ::-1]
    scale = epsilon * float(np.trace(cov)) / len(cov)
    return (vectors / np.sqrt(values + scale)).T, mean


def initialise(model: Any, images: np.ndarray, sample: int = 5000, seed: int = 0) -> bool:
    """Set the layer named `whiten` from up to `sample` training images (normalised model inputs),
    fewer when they would give more than MAX_PATCHES patches. Returns False (and changes nothing)
    when the model has no such layer."""
    try:
        layer = model.get_layer(LAYER)
    except ValueError:
        return False
    kh, kw, c, out = layer.kernel.shape
    per_image = (images.shape[1] - kh + 1) * (images.shape[2] - kw + 1)
    sample = max(1, min(sample, len(images), MAX_PATCHES // per_image))
    rng = np.random.default_rng(seed)
    pick = rng.choice(len(images), size=sample, replace=False)
    filters, mean = whitening(patches(np.asarray(images[np.sort(pick)], dtype=np.float32), kh))
    if out != 2 * len(filters):
        raise ValueError(f"layer {LAYER!r} has {out} filters; whitening {kh}x{kw}x{c} patches needs {2 * len(filters)}")
    both = np.concatenate([filters, -filters])  # (out, d)
    layer.kernel.assign(both.T.reshape(kh, kw, c, out).astype(np.float32))
    layer.bias.assign((-(both @ mean)).astype(np.float32))
    return True
