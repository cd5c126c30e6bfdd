"""The input contract in code: colour order, resize / centre crop, normalisation, quantisation.

Everything works on uint8 arrays with OpenCV and vectorised numpy; training, calibration,
evaluation, benchmarks and the live app all call these functions.
"""

from __future__ import annotations

import numpy as np

from edgeclf.edge_app.contract import InputSpec


def _cv2():  # noqa: ANN202 - lazy import keeps `import edge_app` light
    import os

    from edgeclf.edge_app.errors import require

    # OpenCV's own decode limit (default 2^30 pixels), read once when cv2 loads: a backstop behind
    # imagedecode's header checks for any path that reaches cv2.imdecode / imread directly
    os.environ.setdefault("OPENCV_IO_MAX_IMAGE_PIXELS", str(1 << 28))
    return require("cv2", "edge")


def to_color(image: np.ndarray, source: str, target: str) -> np.ndarray:
    """Return an HxWx3 uint8 image in `target` channel order ("RGB"/"BGR"); grey and RGBA are expanded."""
    if image.ndim == 2:
        image = np.repeat(image[:, :, None], 3, axis=2)
    elif image.ndim == 3 and image.shape[2] == 1:
        image = np.repeat(image, 3, axis=2)
    elif image.ndim == 3 and image.shape[2] == 4:
        image = image[:, :, :3]
    if image.ndim != 3 or image.shape[2] != 3:
        raise ValueError(f"expected an HxWx3 image, got shape {image.shape}")
    if source != target:
        if image.dtype == np.uint8:
            return _cv2().cvtColor(image, _cv2().COLOR_BGR2RGB)  # the same swap either way, and fast
        image = image[:, :, ::-1]
    return np.ascontiguousarray(image)


def center_crop_box(height: int, width: int, aspect: float) -> tuple[int, int, int, int]:
    """(top, left, h, w) of the largest centred box with width/height == aspect."""
    if width / height > aspect:
        w = max(1, round(height * aspect))
        return 0, (width - w) // 2, height, w
    h = max(1, round(width / aspect))
    return (height - h) // 2, 0, h, width


def resize(image: np.ndarray, height: int, width: int, mode: str = "stretch") -> np.ndarray:
    """Resize to height x width, stretching or after a centred crop to the target aspect."""
    if mode == "center_crop":
        top, left, h, w = center_crop_box(image.shape[0], image.shape[1], width / height)
        image = image[top : top + h, left : left + w]
    elif mode != "stretch":
        raise ValueError(f"unknown resize mode {mode!r}")
    if image.shape[0] == height and image.shape[1] == width:
        return image
    cv2 = _cv2()
    shrinking = image.shape[0] > height or image.shape[1] > width
    interp = cv2.INTER_AREA if shrinking else cv2.INTER_LINEAR
    return cv2.resize(image, (width, height), interpolation=interp)


def normalize(images: np.ndarray, spec: InputSpec) -> np.ndarray:
    """uint8 pixels (..., 3) in the model's colour order -> float32 (pixel - mean) / std."""
    mean = np.asarray(spec.mean, dtype=np.float32)
    inv_std = 1.0 / np.asarray(spec.std, dtype=np.float32)
    return (images.astype(np.float32) - mean) * inv_std


def normalize_rgb(images: np.ndarray, spec: InputSpec) -> np.ndarray:
    """Decoded RGB uint8 images (..., 3), as the datasets hold them, in the model's colour order and normalised.

    COLORS holds RGB and BGR only, so reversing the last axis is the whole conversion."""
    return normalize(images[..., ::-1] if spec.color == "BGR" else images, spec)


def prepare(image: np.ndarray, spec: InputSpec, color: str = "BGR") -> np.ndarray:
    """One frame (any size, `color` order) -> the float32 HxWx3 the model expects."""
    if image.ndim != 3 or image.shape[2] != 3:
        image = to_color(image, color, color)  # grey / RGBA -> 3 channels first
    small = resize(image, spec.height, spec.width, spec.resize)  # shrink first: the swap then costs nothing
    return normalize(to_color(small, color, spec.color), spec)


def quantize(x: np.ndarray, scale: float, zero_point: int, dtype: np.dtype) -> np.ndarray:
    """Float -> integer tensor with the interpreter's scale and zero point (saturating)."""
    info = np.iinfo(dtype)
    q = np.rint(x / scale) + zero_point
    return np.clip(q, info.min, info.max).astype(dtype)


def dequantize(q: np.ndarray, scale: float, zero_point: int) -> np.ndarray:
    """Integer tensor -> float32 with the interpreter's scale and zero point."""
    return (q.astype(np.float32) - zero_point) * np.float32(scale)
