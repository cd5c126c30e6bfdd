"""Evaluation data without TensorFlow: an image folder, or CIFAR-10's published python batches."""

from __future__ import annotations

import pickle
from pathlib import Path

import numpy as np

from edgeclf.edge_app import preprocess
from edgeclf.edge_app.datasets import ImageSet, class_names, load_folder, split_dirs
from edgeclf.edge_app.errors import DataError


def _check_classes(classes: tuple[str, ...], labels: tuple[str, ...], where: str) -> None:
    """Every class of the data must be one the model knows; the model may know more (a taught model that
    extends the base it is evaluated against)."""
    if not set(classes) <= set(labels):
        only_data = sorted(set(classes) - set(labels))
        only_model = sorted(set(labels) - set(classes))
        raise DataError(
            f"{where}: classes do not match the model's labels "
            f"(only in data: {only_data or '-'}; only in model: {only_model or '-'})"
        )


def _map_to_model(data: ImageSet, labels: tuple[str, ...], where: str) -> ImageSet:
    """Check the data's classes against the model's labels and re-index to the model's order."""
    _check_classes(data.classes, labels, where)
    to_model = np.array([labels.index(name) for name in data.classes], dtype=np.int64)
    return ImageSet(data.images, to_model[data.labels], tuple(labels), data.skipped)


def cifar_batches(root: Path) -> ImageSet | None:
    """The test batch of `cifar-10-batches-py` (`test_batch` + `batches.meta`), None if not that layout."""
    test, meta = root / "test_batch", root / "batches.meta"
    if not (test.is_file() and meta.is_file()):
        return None
    try:
        with open(test, "rb") as fh:
            batch = pickle.load(fh, encoding="bytes")
        with open(meta, "rb") as fh:
            names = pickle.load(fh, encoding="bytes")[b"label_names"]
        images = np.asarray(batch[b"data"], dtype=np.uint8).reshape(-1, 3, 32, 32).transpose(0, 2, 3, 1)
        labels = np.asarray(batch[b"labels"], dtype=np.int64)
    except (OSError, pickle.UnpicklingError, KeyError, ValueError, EOFError) as exc:
        raise DataError(f"{root}: unreadable CIFAR-10 python batches ({exc})") from None
    return ImageSet(np.ascontiguousarray(images), labels, tuple(n.decode() for n in names))


def evaluation_set(root: str | Path, labels: tuple[str, ...], size: tuple[int, int], mode: str) -> ImageSet:
    """Test images (RGB, resized to `size`) with labels in the model's index order.

    `root` is an image folder (its test/ split when there is one) or CIFAR-10's python batches."""
    root = Path(root)
    batches = cifar_batches(root) if root.is_dir() else None
    if batches is not None:
        data, where = batches, str(root)
        if data.images.shape[1:3] != size:
            data = ImageSet(
                np.stack([preprocess.resize(i, size[0], size[1], mode) for i in data.images]), data.labels, data.classes
            )
    else:
        dirs = split_dirs(root)
        folder = dirs.get("test", dirs.get("all", dirs.get("train")))
        classes = class_names(folder)
        _check_classes(classes, labels, str(folder))  # before decoding anything
        data = load_folder(folder, classes, size, mode)
        where = str(folder)
    return _map_to_model(data, labels, where)


def limit(data: ImageSet, n: int | None, seed: int = 0) -> ImageSet:
    """A class-balanced random subset of at most n images (all when n is None)."""
    if n is None or n >= len(data):
        return data
    rng = np.random.default_rng(seed)
    order = rng.permutation(len(data))
    # round-robin over classes keeps the subset balanced
    by_class = [order[data.labels[order] == c] for c in np.unique(data.labels)]
    picked = [idx for group in zip(*by_class) for idx in group][:n]
    return data.subset(np.sort(np.asarray(picked, dtype=np.int64)))
