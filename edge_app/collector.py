"""`--collect`: uncertain frames saved for later labelling, with bounds fit for a process that runs for weeks.

On real scenes a CIFAR-sized model is uncertain on most frames: saving them all, each with an fsync,
fills an SD card in hours and wears it. Frames of one predicted label are saved at most once per
`every` seconds; the folder has a quota (its oldest frames go first, counted in memory after one scan
at start) and the filesystem a free-space floor (asked every few seconds, not per frame). Files are
written atomically (temp file, rename) without fsync: a power cut may lose the newest frames, never
leave a half one.

Only the collector's own frames count and go: `<label folder>/<time>-<frame index>.jpg` with the
names `frame_name` makes (`FRAME_NAME`). Anything else in the folder (photos, notes, a frame renamed
by hand) is never counted towards the quota and never removed. The quota counts the blocks a frame
takes on the card (`st_blocks`), not its size: a 3 kB JPEG takes 4 KiB.
"""

from __future__ import annotations

import logging
import math
import os
import re
import shutil
import string
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from edgeclf.edge_app import files, preprocess
from edgeclf.edge_app.errors import EdgeClfError
from edgeclf.edge_app.sources import Frame

log = logging.getLogger(__name__)

MIB = 1024 * 1024
NAME = "{stamp}-{index}.jpg"  # a saved frame's file name, in its label's folder
STAMP = "%Y%m%dT%H%M%S%f"  # the frame's time in UTC: names sort by time
INDEX_DIGITS = 6  # the frame's index, zero-padded to at least this many digits
_STAMP_FIELDS = {
    "%Y": r"\d{4}",
    "%m": r"\d{2}",
    "%d": r"\d{2}",
    "%H": r"\d{2}",
    "%M": r"\d{2}",
    "%S": r"\d{2}",
    "%f": r"\d{6}",
}


def frame_name(timestamp: float, index: int) -> str:
    """The file name of a saved frame: '20261128T053412123456-000042.jpg' (its time in UTC, its index)."""
    stamp = datetime.fromtimestamp(timestamp, UTC).strftime(STAMP)
    return NAME.format(stamp=stamp, index=f"{index:0{INDEX_DIGITS}d}")


def _name_regex() -> str:
    """`frame_name`'s names as a regex, built from NAME, STAMP and INDEX_DIGITS (a new directive is a KeyError)."""
    fields = {
        "stamp": "".join(
            _STAMP_FIELDS[part] if part.startswith("%") else re.escape(part)
            for part in re.split(r"(%.)", STAMP)
            if part
        ),
        "index": rf"\d{{{INDEX_DIGITS},}}",
    }
    return "".join(
        re.escape(text) + (fields[field] if field else "") for text, field, _, _ in string.Formatter().parse(NAME)
    )


FRAME_NAME = re.compile(rf"^{_name_regex()}$")
TEMP = re.compile(rf"^\.{_name_regex()}\.[{re.escape(files.TEMP_CHARS)}]+\.tmp\.jpg$")  # atomic_write's, of a frame


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
    """Saves frames to `root/<label>/<time>-<frame>.jpg` within `limits`; `offer()` decides per frame.

    With a cap (`max_mb`), the frames already there are counted once at start and then in memory,
    `total` bytes of allocated blocks, oldest (by mtime) first. A frame the user moves away or deletes
    is noticed when its turn to go comes (its file is missing): then the folder is counted again, at
    most every RESCAN_EVERY seconds, so a frame moved to another label folder inside `root` counts (and
    goes when it is the oldest) again; move frames you want to keep out of `root`. `total` therefore
    never drops below zero (it is the sum of the frames counted) and the folder exceeds its quota by
    moved frames for RESCAN_EVERY seconds at most. Without a cap nothing is scanned nor kept per frame
    (`total` stays 0), and temp files of a killed run stay too."""

    FREE_CHECK_EVERY = 5.0  # s between two questions to the filesystem about its free space
    RESCAN_EVERY = 60.0  # s between two counts of the folder after frames went missing from it

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
        self._files: deque[tuple[Path, int]] = deque()  # oldest first; empty without a cap
        self._free_checked = -math.inf
        self._paused = False
        self._missing = False  # an evicted frame had gone: the count is low until the next scan
        self._scanned = clock()
        self.total = 0  # bytes the frames counted take on disk (allocated blocks)
        self.saved = self.evicted = 0
        try:
            self.root.mkdir(parents=True, exist_ok=True)
            if self.limits.max_mb:
                found, leftovers = self._scan()
        except OSError as exc:
            raise EdgeClfError(f"cannot collect into {self.root}: {exc.strerror or exc}") from None
        if self.limits.max_mb:
            if found or leftovers:
                log.info(
                    "collect: %s holds %d frames (%.1f MiB)%s",
                    self.root,
                    found,
                    self.total / MIB,
                    f"; removed {leftovers} temporary files of a killed run" if leftovers else "",
                )
            self._evict()

    @property
    def counted(self) -> int:
        """How many frames count towards the quota (0 without a cap)."""
        return len(self._files)

    def _scan(self) -> tuple[int, int]:
        """Count the frames there (of earlier runs, or moved), oldest first, replacing what was counted;
        remove temp files a killed run left. (frames, temp files removed)."""
        found, leftovers = [], 0
        with os.scandir(self.root) as folders:
            for folder in folders:
                if not folder.is_dir(follow_symlinks=False) or safe_name(folder.name) != folder.name:
                    continue  # no label makes this folder: not ours
                with os.scandir(folder.path) as entries:
                    for entry in entries:
                        if TEMP.match(entry.name) and entry.is_file(follow_symlinks=False):
                            Path(entry.path).unlink(missing_ok=True)
                            leftovers += 1
                        elif FRAME_NAME.match(entry.name) and entry.is_file(follow_symlinks=False):
                            stat = entry.stat(follow_symlinks=False)
                            found.append((stat.st_mtime_ns, entry.path, allocated(stat)))
        found.sort()
        self._files = deque((Path(path), size) for _, path, size in found)
        self.total = sum(size for _, _, size in found)
        self._missing, self._scanned = False, self._clock()
        return len(found), leftovers

    def offer(self, frame: Frame, label: str) -> Path | None:
        """Save `frame` under `label` when the limits allow; its path, or None when skipped.

        EdgeClfError when the frame cannot be written or an old one removed (a full disk)."""
        now = self._clock()
        if self.limits.every and now - self._last.get(label, -math.inf) < self.limits.every:
            return None
        if self.limits.min_free_mb and not self._free_enough(now):
            return None
        cv2 = preprocess._cv2()
        ok, data = cv2.imencode(".jpg", frame.image)
        if not ok:
            raise EdgeClfError("could not encode a frame as JPEG")
        path = self.root / safe_name(label) / frame_name(frame.timestamp, frame.index)
        try:
            files.write_bytes(path, data.tobytes(), fsync=False)
            size = allocated(path.stat()) if self.limits.max_mb else 0
            if self._missing and now - self._scanned >= self.RESCAN_EVERY:
                found, _ = self._scan()  # counts the new frame too
                log.info("collect: frames went missing from %s; counted again: %d frames", self.root, found)
            elif self.limits.max_mb:
                self._files.append((path, size))
                self.total += size
        except OSError as exc:
            raise EdgeClfError(f"cannot save a frame in {path.parent}: {exc.strerror or exc}") from None
        self._last[label] = now
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
                path.unlink()
            except FileNotFoundError:
                self._missing = True  # moved away (or to another label folder: counted again at the next scan)
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


def allocated(stat: os.stat_result) -> int:
    """Bytes a file takes on disk: its allocated blocks (st_blocks counts 512-byte units), at least its
    size (a filesystem that compresses, or has not allocated yet, may report fewer blocks)."""
    return max(getattr(stat, "st_blocks", 0) * 512, stat.st_size)
