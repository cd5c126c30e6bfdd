"""The teach folder (`<label>/<pictures>`) of the Teach and Review pages, and Learn: teach the base
model with the whole folder and put the taught model in force (Deployer).

Learn always starts again from the server's base (its --model, or the last upload or reload) with
every label folder, so removing a class is moving its folder aside and learning again (the folder is
deleted once that worked, put back when it failed). It runs in the request's thread, one at a time
(a second gets Busy, 409): a few hundred pictures take seconds, and the live loop keeps its own
interpreter meanwhile (only the swap takes its lock, for an instant). A Learn whose base was replaced
while it ran (an upload, SIGHUP) is refused (BaseChanged, 409) rather than undo that replacement.
"""

from __future__ import annotations

import os
import shutil
import threading
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from edgeclf.edge_app import files, preprocess
from edgeclf.edge_app.errors import EdgeClfError
from edgeclf.edge_app.labelname import check_label
from edgeclf.edge_app.teach import TeachConfig, TeachResult, teach
from edgeclf.edge_app.web.deploy import Deployer, stamp

JPEG_QUALITY = 95
MAX_CAPTURE = 100  # frames one Capture may take from the live feed
CAPTURE_EVERY = 0.2  # s between two captured frames: consecutive camera frames are near copies
FRAME_WAIT = 3.0  # s a capture waits for the next live frame before it gives up


class Busy(EdgeClfError):
    """Another Learn is running (answered with 409)."""


@dataclass(frozen=True)
class Learned:
    """What the last Learn did, for the page and the API."""

    model: str
    mode: str
    labels: tuple[str, ...]
    shots: dict[str, int]
    seconds: float
    taught_accuracy: float
    skipped: int
    base_taken: float | None = None  # with --base-data: the share of those pictures the new classes take

    def to_dict(self) -> dict[str, Any]:
        return {
            "model": self.model,
            "mode": self.mode,
            "labels": list(self.labels),
            "shots": self.shots,
            "seconds": round(self.seconds, 2),
            "taught_accuracy": round(self.taught_accuracy, 4),
            "skipped": self.skipped,
            "base_taken": None if self.base_taken is None else round(self.base_taken, 4),
        }


def picture_name(suffix: str = ".jpg") -> str:
    """A new picture's file name: its time (names sort by it) and a random part (never a clash)."""
    return f"{stamp()}-{uuid.uuid4().hex[:8]}{suffix}"


def suffix_of(data: bytes) -> str:
    """The file suffix of an image the upload check accepted (JPEG, PNG, BMP or WebP), by its first bytes."""
    if data.startswith(b"\x89PNG"):
        return ".png"
    if data.startswith(b"BM"):
        return ".bmp"
    if data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        return ".webp"
    return ".jpg"


class Teaching:
    """The teach folder `root`, the taught models' folder, and the Deployer that puts them in force."""

    def __init__(
        self,
        root: Path,
        taught: Path,
        deploy: Deployer,
        threads: int | None = None,
        base_data: Path | None = None,
        base_cost: float | None = None,
    ) -> None:
        self.root = root
        self.base_data = base_data  # pictures of the base's classes: extend fits against them (teach --base-data)
        self.base_cost = base_cost  # percent of them the new classes may take (teach --base-cost)
        self.taught = taught
        self.deploy = deploy
        self.threads = threads or max(1, (os.cpu_count() or 2) // 2)  # the rest stay with the live loop
        self.last: Learned | None = None
        self._learning = threading.Lock()

    def labels(self) -> list[tuple[str, int]]:
        """(label, number of pictures) of each label folder, sorted; hidden files and folders do not count."""
        if not self.root.is_dir():
            return []
        found = []
        for entry in sorted(os.scandir(self.root), key=lambda e: e.name):
            if entry.is_dir() and not entry.name.startswith("."):
                with os.scandir(entry.path) as pictures:
                    found.append((entry.name, sum(1 for p in pictures if p.is_file() and not p.name.startswith("."))))
        return found

    def folder(self, label: str) -> Path:
        """The folder of `label`; LabelError when the name cannot be one."""
        return self.root / check_label(label)

    def save(self, label: str, image_bgr: np.ndarray) -> Path:
        """Add a picture (BGR) to `label`, as a JPEG written atomically."""
        cv2 = preprocess._cv2()
        ok, data = cv2.imencode(".jpg", image_bgr, [cv2.IMWRITE_JPEG_QUALITY, JPEG_QUALITY])
        if not ok:
            raise EdgeClfError("could not encode the picture as JPEG")
        return files.write_bytes(self.folder(label) / picture_name(), data.tobytes())

    def save_upload(self, label: str, data: bytes) -> Path:
        """Add an uploaded picture (already checked as an image) as it came: re-encoding a PNG of fine
        stripes as JPEG blurs what the class is."""
        return files.write_bytes(self.folder(label) / picture_name(suffix_of(data)), data)

    def take(self, label: str, source: Path) -> Path:
        """Move the file `source` (a collected frame) into `label`'s folder; FileNotFoundError when it is gone."""
        target = self.folder(label) / picture_name()
        target.parent.mkdir(parents=True, exist_ok=True)
        try:
            os.replace(source, target)
        except OSError as exc:
            if not isinstance(exc, FileNotFoundError) and source.is_file():  # another filesystem: copy, then remove
                files.write_bytes(target, source.read_bytes())
                source.unlink()
            else:
                raise
        return target

    def capture(self, feed: Any, label: str, count: int) -> int:
        """Save `count` new frames of the live feed to `label` (one every CAPTURE_EVERY s); how many."""
        if not 1 <= count <= MAX_CAPTURE:
            raise EdgeClfError(f"capture 1 to {MAX_CAPTURE} frames at a time, not {count}")
        self.folder(label)  # the name is checked before any frame is taken
        saved, seen, last = 0, feed.frames, -CAPTURE_EVERY
        while saved < count:
            image, frames = feed.wait_image(seen, FRAME_WAIT)
            if frames == seen or image is None:
                why = feed.error or f"no new frame for {FRAME_WAIT:g} s"
                raise EdgeClfError(f"the live feed gave {saved} of {count} frames: {why}")
            seen = frames
            if time.monotonic() - last < CAPTURE_EVERY:
                continue
            last = time.monotonic()
            self.save(label, image)
            saved += 1
        return saved

    def remove(self, label: str) -> Learned | None:
        """Remove `label`'s folder and, when a taught model is in force, learn again without it (the base is put
        back when no class is left); what that Learn did, or None. KeyError when there is no such class, Busy
        while a Learn runs. The pictures are deleted only once all that worked: on any failure they are back
        in their folder and the model in force is the one before."""
        folder = self.folder(label)
        if not self._learning.acquire(blocking=False):  # before the disk is touched: the Learn running reads it
            raise Busy("a Learn is already running; try again when it ends")
        try:
            if not folder.is_dir():
                raise KeyError(label)
            aside = self.root / f".removing-{label}-{uuid.uuid4().hex[:8]}"  # hidden: no label, not taught
            os.replace(folder, aside)
            try:
                learned = None
                if not self.deploy.current.base:  # a taught model is in force: teach again without the class
                    if self.labels():
                        learned = self._learn(self.last.mode if self.last else "extend")
                    else:
                        self.deploy.taught_undone()
            except BaseException:
                put_back(aside, folder)
                raise
            shutil.rmtree(aside, ignore_errors=True)
            return learned
        finally:
            self._learning.release()

    def learn(self, mode: str = "extend") -> Learned:
        """Teach the base with every label folder and put the taught model in force. TeachError for data that
        cannot teach (an empty folder, one class in replace mode, a label the base has in extend mode...);
        BaseChanged when an upload or a reload made a new base meanwhile (the taught model is not used)."""
        if not self._learning.acquire(blocking=False):
            raise Busy("a Learn is already running; try again when it ends")
        try:
            return self._learn(mode)
        finally:
            self._learning.release()

    def _learn(self, mode: str) -> Learned:
        base = self.deploy.base
        out = self.taught / f"taught-{stamp()}.tflite"
        config = TeachConfig(
            base=base.path,
            data=self.root,
            out=out,
            mode=mode,
            labels=base.labels,
            threads=self.threads,
            base_data=self.base_data if mode == "extend" else None,
            base_cost=self.base_cost if mode == "extend" and self.base_data is not None else None,
        )
        result: TeachResult = teach(config)
        self.deploy.taught(out, base)
        self.last = Learned(
            out.name,
            mode,
            result.labels,
            result.shots,
            result.seconds,
            result.taught_accuracy,
            result.skipped,
            result.base_taken,
        )
        return self.last


def put_back(aside: Path, folder: Path) -> None:
    """Move a class's pictures back from `aside` to `folder`, where a capture or an upload may have added
    some meanwhile (picture names never clash: they hold a random part)."""
    if not folder.exists():
        os.replace(aside, folder)
        return
    for picture in aside.iterdir():
        os.replace(picture, folder / picture.name)
    aside.rmdir()
