"""`--collect`: uncertain frames saved for later labelling, with bounds fit for a process that runs for weeks.

On real scenes a CIFAR-sized model is uncertain on most frames: saving them all, each with an fsync,
fills an SD card in hours and wears it. Frames of one predicted label are saved at most once per
`every` seconds; the folder has a quota (its oldest frames go first, counted in memory after one scan
at start) and the filesystem a free-space floor (asked every few seconds, not per frame). Files are
written atomically (temp file, rename) without fsync: a power cut may lose the newest frames, never
leave a half one.
"""

from __future__ import annotations

import logging
import math
import os
import re
import shutil
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from edge_app import files, preprocess
from edge_app.errors import EdgeClfError
from edge_app.sources import Frame

log = logging.getLogger(__name__)

MIB = 1024 * 1024
TEMP = re.compile(r"^\..+\.jpg\.[a-z0-9_]+\.tmp\.jpg$")  # files.atomic_write's temp file of a frame


@dataclass(frozen=True)
class CollectLimits:
    """How much `--collect` may save; 0 turns a limit off."""

    every: float = 2.0  # seconds between saved frames of one predicted label
    max_mb: float = 500.0  # MiB of frames in the folder; the oldest go first
    min_free_mb: float = 1024.0  # MiB the filesystem keeps free; saving pauses below it


def safe_name(label: str) -> str:
    """A label as one safe path component ('T-shirt/top' -> 'T-shirt_top'; never '.' or '..')."""
    return re.sub(r"[^\w.-]+", "_", label).strip("._") or "unlabelled"


class Collector:
    """Saves frames to `root/<label>/<time>-<frame>.jpg` within `limits`; `offer()` decides per frame."""

    FREE_CHECK_EVERY = 5.0  # s between two questions to the filesystem about its free space

    def __init__(
        self,
        root: Path,
        limits: CollectLimits = CollectLimits(),
        clock: Callable[[], float] = time.monotonic,
        disk_usage: Callable[[Any], Any] = shutil.disk_usage,
    ) -> None:
        self.root, self.limits = Path(root), limits
        self._clock, self._disk_usage = clock, disk_usage
        self._last: dict[str, float] = {}  # label -> when its last frame was saved (one entry per label)
        self._files: deque[tuple[Path, int]] = deque()  # oldest first
        self._free_checked = -math.inf
        self._paused = False
        self.total = 0  # bytes of frames in the folder
        self.saved = self.evicted = 0
        try:
            self.root.mkdir(parents=True, exist_ok=True)
            self._scan()
        except OSError as exc:
            raise EdgeClfError(f"cannot collect into {self.root}: {exc.strerror or exc}") from None
        if self.limits.max_mb:
            self._evict()

    def _scan(self) -> None:
        """Count the frames already there (earlier runs), oldest first; remove temp files a killed run left."""
        found, leftovers = [], 0
        with os.scandir(self.root) as folders:
            for folder in folders:
                if not folder.is_dir(follow_symlinks=False):
                    continue
                with os.scandir(folder.path) as entries:
                    for entry in entries:
                        if not entry.is_file(follow_symlinks=False) or not entry.name.endswith(".jpg"):
                            continue
                        if TEMP.match(entry.name):
                            Path(entry.path).unlink(missing_ok=True)
                            leftovers += 1
                        elif not entry.name.startswith("."):
                            stat = entry.stat(follow_symlinks=False)
                            found.append((stat.st_mtime_ns, entry.path, stat.st_size))
        found.sort()
        self._files.extend((Path(path), size) for _, path, size in found)
        self.total = sum(size for _, _, size in found)
        if found or leftovers:
            log.info(
                "collect: %s holds %d frames (%.1f MiB)%s",
                self.root,
                len(found),
                self.total / MIB,
                f"; removed {leftovers} temporary files of a killed run" if leftovers else "",
            )

    def offer(self, frame: Frame, label: str) -> Path | None:
        """Save `frame` under `label` when the limits allow; its path, or None when skipped.

        EdgeClfError when the frame cannot be written or an old one removed (a full disk)."""
        now = self._clock()
        if self.limits.every and now - self._last.get(label, -math.inf) < self.limits.every:
            return None
        if self.limits.min_free_mb and not self._free_enough(now):
            return None
        cv2 = preprocess._cv2()
        stamp = datetime.fromtimestamp(frame.timestamp, UTC).strftime("%Y%m%dT%H%M%S%f")
        ok, data = cv2.imencode(".jpg", frame.image)
        if not ok:
            raise EdgeClfError("could not encode a frame as JPEG")
        path = self.root / safe_name(label) / f"{stamp}-{frame.index:06d}.jpg"
        files.write_bytes(path, data.tobytes(), fsync=False)
        self._last[label] = now
        self._files.append((path, data.size))
        self.total += data.size
        self.saved += 1
        if self.limits.max_mb:
            self._evict()
        return path

    def _evict(self) -> None:
        """Remove the oldest frames while the folder is over its quota (the newest one always stays)."""
        cap = self.limits.max_mb * MIB
        while self.total > cap and len(self._files) > 1:
            path, size = self._files.popleft()
            try:
                path.unlink(missing_ok=True)  # someone may have moved it away already
            except OSError as exc:
                raise EdgeClfError(f"cannot remove {path} to stay within --collect-max-mb: {exc.strerror}") from None
            self.total -= size
            self.evicted += 1

    def _free_enough(self, now: float) -> bool:
        """Whether the filesystem has more than the floor free, asked at most every FREE_CHECK_EVERY seconds."""
        if now - self._free_checked < self.FREE_CHECK_EVERY:
            return not self._paused
        self._free_checked = now
        try:
            free = self._disk_usage(self.root).free
        except OSError as exc:
            raise EdgeClfError(f"cannot read the free space of {self.root}: {exc.strerror or exc}") from None
        floor = self.limits.min_free_mb * MIB
        if free < floor and not self._paused:
            log.warning(
                "collect: %.0f MiB free on %s, below --collect-min-free-mb %g; saving paused",
                free / MIB,
                self.root,
                self.limits.min_free_mb,
            )
        elif free >= floor and self._paused:
            log.info("collect: %.0f MiB free on %s again; saving resumed", free / MIB, self.root)
        self._paused = free < floor
        return not self._paused
