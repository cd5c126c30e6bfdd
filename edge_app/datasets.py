"""Image-folder datasets (`<root>/<class>/*.jpg`, optionally under train/ and test/), decoded once.

TensorFlow-free so benchmarks on a Pi read the same data. Corrupt or non-image files are
skipped and counted; decoded arrays are cached so the next run does not decode again.
"""

from __future__ import annotations

import hashlib
import os
import sys
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from edgeclf.edge_app import files, preprocess
from edgeclf.edge_app.errors import DataError, EdgeClfError
from edgeclf.edge_app.sources import read_image

CACHE_VERSION = 2  # 2: large JPEGs decode at reduced scale (imagedecode)
SPLITS = ("train", "test")


@dataclass(frozen=True)
class ImageSet:
    """Decoded images (N, H, W, 3) uint8 RGB, integer labels and the class names they index."""

    images: np.ndarray
    labels: np.ndarray
    classes: tuple[str, ...]
    skipped: int = 0

    def __len__(self) -> int:
        return len(self.labels)

    def subset(self, index: np.ndarray) -> ImageSet:
        """The images at `index` (a copy)."""
        return ImageSet(self.images[index], self.labels[index], self.classes, 0)


def default_cache_dir() -> Path:
    """$EDGECLF_CACHE, else $XDG_CACHE_HOME/edgeclf, else ~/.cache/edgeclf."""
    if os.environ.get("EDGECLF_CACHE"):
        return Path(os.environ["EDGECLF_CACHE"])
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "edgeclf"


def split_dirs(root: str | Path) -> dict[str, Path]:
    """{"train": .., "test": ..} when the folder has those splits, else {"all": root}."""
    root = Path(root)
    if not root.is_dir():
        raise DataError(f"dataset folder not found: {root}")
    found = {name: root / name for name in SPLITS if (root / name).is_dir()}
    if "train" in found:
        return found
    return {"all": root}


def class_names(folder: str | Path) -> tuple[str, ...]:
    """Sorted sub-folder names (hidden ones ignored); an error when there are none."""
    folder = Path(folder)
    names = tuple(sorted(p.name for p in folder.iterdir() if p.is_dir() and not p.name.startswith(".")))
    if not names:
        raise DataError(f"{folder} has no class sub-folders (expected <root>/<class>/*.jpg)")
    return names


def list_files(folder: str | Path, classes: tuple[str, ...]) -> list[tuple[Path, int]]:
    """(path, class index) of every non-hidden file under each class folder, in sorted order."""
    folder = Path(folder)
    items: list[tuple[Path, int]] = []
    for index, name in enumerate(classes):
        class_dir = folder / name
        if not class_dir.is_dir():
            continue
        for entry in sorted(os.scandir(class_dir), key=lambda e: e.name):
            if entry.is_file() and not entry.name.startswith("."):
                items.append((Path(entry.path), index))
    return items


def _cache_key(items: list[tuple[Path, int]], classes: tuple[str, ...], size: tuple[int, int], mode: str) -> str:
    digest = hashlib.sha256(f"{CACHE_VERSION}|{size}|{mode}|{classes}".encode())
    for path, label in items:
        stat = path.stat()
        digest.update(f"{path.resolve()}|{label}|{stat.st_size}|{stat.st_mtime_ns}\n".encode())
    return digest.hexdigest()[:24]


def _decode(path: Path, size: tuple[int, int], mode: str) -> np.ndarray | None:
    image = read_image(path)  # the app's own decoder: unreadable files are None, never an exception
    if image is None:
        return None
    return preprocess.to_color(preprocess.resize(image, size[0], size[1], mode), "BGR", "RGB")


def load_folder(
    folder: str | Path,
    classes: tuple[str, ...],
    size: tuple[int, int],
    mode: str = "stretch",
    cache_dir: str | Path | None = None,
    use_cache: bool = True,
    warn: bool = True,
) -> ImageSet:
    """Decode every image under `folder/<class>/`, resized to `size` (h, w), using the cache."""
    items = list_files(folder, classes)
    if not items:
        raise DataError(f"{folder} holds no files under its class folders {list(classes)}")
    cache = None
    if use_cache:
        cache = Path(cache_dir or default_cache_dir()) / f"images-{_cache_key(items, classes, size, mode)}.npz"
        if cache.is_file():
            try:
                with np.load(cache) as z:
                    return ImageSet(z["images"], z["labels"], classes, int(z["skipped"]))
            except (OSError, ValueError, KeyError):
                cache.unlink(missing_ok=True)
    with ThreadPoolExecutor(max_workers=os.cpu_count() or 1) as pool:
        decoded = list(pool.map(lambda item: _decode(item[0], size, mode), items))
    bad = [str(path) for (path, _), img in zip(items, decoded) if img is None]
    if bad and warn:
        shown = ", ".join(bad[:3]) + (f" and {len(bad) - 3} more" if len(bad) > 3 else "")
        print(f"warning: skipped {len(bad)} corrupt, non-image or oversized file(s): {shown}", file=sys.stderr)
    keep = [i for i, img in enumerate(decoded) if img is not None]
    if not keep:
        raise DataError(f"{folder}: none of {len(items)} files could be decoded as an image")
    images = np.stack([decoded[i] for i in keep])
    labels = np.array([items[i][1] for i in keep], dtype=np.int64)
    result = ImageSet(images, labels, classes, len(bad))
    if cache is not None:
        try:
            files.atomic_write(cache, lambda tmp: _save_npz(tmp, result))
        except EdgeClfError as exc:  # a cache that cannot be written only costs time
            print(f"warning: cannot write cache {cache}: {exc}", file=sys.stderr)
    return result


def _save_npz(path: Path, data: ImageSet) -> None:
    with open(path, "wb") as fh:
        np.savez(fh, images=data.images, labels=data.labels, skipped=np.int64(data.skipped))
