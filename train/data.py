"""Training data: CIFAR-10 (Keras download, or an offline image-folder copy) or any image folder.

Splits: train / validation (carved from train, drives checkpointing and early stopping) /
test (only for final metrics). Convert uses the same function so calibration and
verification see exactly the split the run saw.
"""

from __future__ import annotations

import socket
import sys
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from edgeclf.edge_app import preprocess
from edgeclf.edge_app.datasets import ImageSet, class_names, list_files, load_folder, split_dirs
from edgeclf.edge_app.errors import DataError

CIFAR10_LABELS = ("airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck")
OFFLINE_HINT = "pass --data-dir PATH to an offline copy laid out as <root>/{train,test}/<class>/*.jpg"


@dataclass(frozen=True)
class DataSpec:
    """Where the images come from and how they are split; stored in run.json for convert."""

    data: str = "cifar10"
    data_dir: str | None = None
    image_size: int = 32
    resize: str = "stretch"
    val_split: float = 0.1
    test_split: float = 0.2
    limit: int | None = None
    seed: int = 0
    cache_dir: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> DataSpec:
        known = {k: v for k, v in data.items() if k in cls.__dataclass_fields__}
        return cls(**known)


@dataclass(frozen=True)
class Splits:
    train: ImageSet
    val: ImageSet
    test: ImageSet
    classes: tuple[str, ...]
    source: str
    skipped: int
    skipped_by_class: tuple[int, ...] = ()  # files that could not be decoded, per class (folders only)


def carved_count(n: int, fraction: float) -> int:
    """How many of a class's `n` images `stratified_split` carves off: the rounded share, but at least
    one and at most n - 1 when the class has two or more, so both sides hold every such class."""
    take = int(round(n * fraction))
    if fraction > 0 and n > 1:
        take = min(max(take, 1), n - 1)
    return take


def stratified_split(labels: np.ndarray, fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Indices (rest, carved): `fraction` of each class goes to `carved`, sorted, reproducible."""
    rng = np.random.default_rng(seed)
    carved = []
    for cls in np.unique(labels):
        idx = np.flatnonzero(labels == cls)
        rng.shuffle(idx)
        carved.append(idx[: carved_count(len(idx), fraction)])
    carved_idx = np.sort(np.concatenate(carved)) if carved else np.array([], dtype=np.int64)
    mask = np.ones(len(labels), dtype=bool)
    mask[carved_idx] = False
    return np.flatnonzero(mask), carved_idx


def _sample(data: ImageSet, limit: int | None, seed: int) -> ImageSet:
    if limit is None or limit >= len(data):
        return data
    _, keep = stratified_split(data.labels, limit / len(data), seed)
    return data.subset(keep)


def _resized(images: np.ndarray, size: int, mode: str) -> np.ndarray:
    if images.shape[1:3] == (size, size):
        return images
    return np.stack([preprocess.resize(img, size, size, mode) for img in images])


def _keras_cifar10(spec: DataSpec) -> tuple[ImageSet, ImageSet]:
    from edgeclf.edge_app.errors import require

    keras = require("keras", "train")
    old_timeout = socket.getdefaulttimeout()
    socket.setdefaulttimeout(20)
    try:
        (x_train, y_train), (x_test, y_test) = keras.datasets.cifar10.load_data()
    except Exception as exc:  # noqa: BLE001 - any download failure means the same to the user
        reason = str(exc).splitlines()[0][:120] if str(exc) else type(exc).__name__
        raise DataError(f"CIFAR-10 could not be downloaded ({reason}); {OFFLINE_HINT}") from None
    finally:
        socket.setdefaulttimeout(old_timeout)
    size, mode = spec.image_size, spec.resize
    train = ImageSet(_resized(x_train, size, mode), y_train.reshape(-1).astype(np.int64), CIFAR10_LABELS)
    test = ImageSet(_resized(x_test, size, mode), y_test.reshape(-1).astype(np.int64), CIFAR10_LABELS)
    return train, test


def _skipped_by_class(dirs: dict[str, Path], sets: list[ImageSet], classes: tuple[str, ...]) -> tuple[int, ...]:
    """Files listed minus images decoded, per class, over the folder's splits (the loader counts only the total)."""
    listed = np.zeros(len(classes), dtype=np.int64)
    for folder in dirs.values():
        for _, label in list_files(folder, classes):
            listed[label] += 1
    decoded = sum(np.bincount(s.labels, minlength=len(classes)) for s in sets)
    return tuple(int(v) for v in listed - decoded)


def _folder(root: str, spec: DataSpec) -> tuple[ImageSet, ImageSet, tuple[str, ...], tuple[int, ...]]:
    dirs = split_dirs(root)
    size = (spec.image_size, spec.image_size)
    classes = class_names(dirs.get("train", dirs.get("all")))
    load = {"classes": classes, "size": size, "mode": spec.resize, "cache_dir": spec.cache_dir}
    if "all" in dirs:
        everything = load_folder(dirs["all"], **load)
        rest, carved = stratified_split(everything.labels, spec.test_split, spec.seed + 1)
        train, test = everything.subset(rest), everything.subset(carved)
        skipped = everything.skipped
        per_class = _skipped_by_class(dirs, [everything], classes) if skipped else (0,) * len(classes)
    else:
        train = load_folder(dirs["train"], **load)
        if "test" in dirs:
            test_classes = class_names(dirs["test"])
            if test_classes != classes:
                extra = sorted(set(test_classes) ^ set(classes))
                raise DataError(f"{root}: train/ and test/ have different classes (differ in: {', '.join(extra)})")
            test = load_folder(dirs["test"], **load)
        else:
            rest, carved = stratified_split(train.labels, spec.test_split, spec.seed + 1)
            train, test = train.subset(rest), train.subset(carved)
        skipped = train.skipped + test.skipped
        per_class = _skipped_by_class(dirs, [train, test], classes) if skipped else (0,) * len(classes)
    return ImageSet(train.images, train.labels, classes, skipped), test, classes, per_class


def _check_class_sizes(train: ImageSet, classes: tuple[str, ...]) -> None:
    """A class needs one image for training and one for validation; one line naming the first that lacks them."""
    counts = np.bincount(train.labels, minlength=len(classes))
    for name, n in zip(classes, counts):
        if n < 2:
            raise DataError(
                f"class '{name}' has {n} image{'' if n == 1 else 's'} left for training and validation: it needs at "
                "least 2, one for each; add images to it or remove its folder"
            )


def load_splits(spec: DataSpec) -> Splits:
    """Load and split the data described by `spec` (train / val / test)."""
    per_class: tuple[int, ...] = ()
    if spec.data == "cifar10":
        if spec.data_dir:
            train, test, classes, per_class = _folder(spec.data_dir, spec)
            if classes != CIFAR10_LABELS:
                raise DataError(f"{spec.data_dir} does not hold the 10 CIFAR-10 class folders (found {list(classes)})")
            source = f"cifar10 ({Path(spec.data_dir).name} image folder)"
        else:
            train, test = _keras_cifar10(spec)
            classes, source = CIFAR10_LABELS, "cifar10 (keras.datasets)"
    else:
        if spec.data_dir:
            raise DataError("--data-dir is only for --data cifar10; give the folder as --data PATH")
        train, test, classes, per_class = _folder(spec.data, spec)
        source = Path(spec.data).name
    skipped = train.skipped
    if len(classes) < 2:
        raise DataError(f"need at least 2 classes, found {len(classes)}")
    train = _sample(train, spec.limit, spec.seed)
    test = _sample(test, spec.limit, spec.seed)
    _check_class_sizes(train, classes)
    rest, carved = stratified_split(train.labels, spec.val_split, spec.seed)
    if len(carved) == 0 or len(rest) == 0 or len(test) == 0:
        raise DataError(f"too few images to split into train/validation/test ({len(train)} train, {len(test)} test)")
    if skipped:
        print(f"note: {skipped} file(s) skipped as corrupt or non-image", file=sys.stderr)
    return Splits(train.subset(rest), train.subset(carved), test, classes, source, skipped, per_class)
