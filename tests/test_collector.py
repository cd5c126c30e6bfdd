"""`--collect`: uncertain frames saved at a bounded rate, into a folder with a quota and a free-space floor."""

import logging
import os
import re
import shutil
from collections import namedtuple

import pytest

from edgeclf.edge_app.collector import FRAME_NAME, TEMP, CollectLimits, Collector, frame_name
from edgeclf.edge_app.errors import EdgeClfError
from edgeclf.edge_app.sources import Frame
from tests.fakes import pattern

pytestmark = pytest.mark.device  # edge extra + pytest only: .ci/edge-job runs it

MIB = 1024 * 1024
Usage = namedtuple("Usage", "total used free")


class Clock:
    """A monotonic clock the test moves by hand."""

    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def frame(index: int, size=(160, 120)) -> Frame:
    return Frame(pattern(*size, seed=index), index, "test", timestamp=1_700_000_000 + index / 10)


def jpgs(root):
    return sorted(p for p in root.rglob("*.jpg") if not p.name.startswith("."))


def allocated(paths) -> int:
    """What files take on the card: their allocated blocks."""
    return sum(p.stat().st_blocks * 512 for p in paths)


def ours(root):
    """The frames the collector writes: <label>/<%Y%m%dT%H%M%S%f>-<index, 6+ digits>.jpg."""
    return [
        p
        for p in jpgs(root)
        if p.parent.parent == root and re.fullmatch(r"[\w.-]+", p.parent.name)
        if re.fullmatch(r"\d{8}T\d{12}-\d{6,}\.jpg", p.name)
    ]


def write_frame_file(folder, i: int, size: int):
    """A file named as the collector names frames, of `size` bytes, from an earlier run (old mtime)."""
    folder.mkdir(exist_ok=True)
    path = folder / frame_name(1_000_000 + i, i)
    path.write_bytes(b"x" * size)
    os.utime(path, (1_000_000 + i, 1_000_000 + i))
    return path


def plenty(path):
    return Usage(10**12, 0, 10**12)


def test_at_most_one_frame_per_label_every_s_seconds(tmp_path):
    clock = Clock()
    collector = Collector(tmp_path, CollectLimits(every=2.0), clock=clock, disk_usage=plenty)
    saved = []
    for t, label in [(0, "cat"), (0.5, "cat"), (0.5, "dog"), (1.9, "cat"), (2.0, "cat"), (2.1, "dog"), (2.6, "dog")]:
        clock.now = 100.0 + t
        saved.append(collector.offer(frame(len(saved)), label) is not None)
    assert saved == [True, False, True, False, True, False, True]
    assert [p.parent.name for p in jpgs(tmp_path)].count("cat") == 2 and collector.saved == 4


def test_every_zero_saves_every_frame(tmp_path):
    collector = Collector(tmp_path, CollectLimits(every=0), clock=Clock(), disk_usage=plenty)
    for i in range(5):
        assert collector.offer(frame(i), "cat") is not None
    assert len(jpgs(tmp_path)) == 5


def test_the_oldest_files_go_once_the_folder_exceeds_its_cap_without_rescanning(tmp_path, monkeypatch):
    collector = Collector(tmp_path, CollectLimits(every=0, max_mb=0.1), clock=Clock(), disk_usage=plenty)

    def no_rescan(*args, **kwargs):
        raise AssertionError("the folder is scanned once, at start")

    monkeypatch.setattr(os, "scandir", no_rescan)
    monkeypatch.setattr(os, "walk", no_rescan)
    paths = [collector.offer(frame(i), "cat") for i in range(60)]
    monkeypatch.undo()
    cap = 0.1 * MIB
    kept = jpgs(tmp_path)
    assert allocated(kept) <= cap < allocated(kept) + 20_000
    assert kept == sorted(paths[-len(kept) :])  # the newest stayed
    assert 3 < len(kept) < 60 and collector.total == allocated(kept) and collector.evicted == 60 - len(kept)


def test_files_from_earlier_runs_count_and_go_first(tmp_path):
    old = [write_frame_file(tmp_path / "dog", i, 10_400) for i in range(10)]
    leftover = tmp_path / "dog" / f".{old[-1].name}.abcd1234.tmp.jpg"  # a temp file of a killed process
    leftover.write_bytes(b"y" * 50_000)
    (tmp_path / "notes.txt").write_text("not ours: never counted, never removed")
    cap_mb = (allocated(old) + 2048) / MIB  # room for the old frames, not for one more
    collector = Collector(tmp_path, CollectLimits(every=0, max_mb=cap_mb), clock=Clock(), disk_usage=plenty)
    assert collector.total == allocated(old) and collector.counted == 10 and not leftover.exists()
    new = collector.offer(frame(0), "cat")
    assert new.exists() and not old[0].exists() and old[-1].exists()
    assert collector.total == allocated(ours(tmp_path)) <= cap_mb * MIB and (tmp_path / "notes.txt").exists()


def test_a_cap_below_what_is_there_is_enforced_at_start(tmp_path):
    old = [write_frame_file(tmp_path / "cat", i, 30_000) for i in range(5)]  # 32 KiB each on disk
    collector = Collector(tmp_path, CollectLimits(max_mb=0.1), clock=Clock(), disk_usage=plenty)
    assert collector.total <= 0.1 * MIB and [p.exists() for p in old] == [False, False, True, True, True]


def test_names_and_the_pattern_that_finds_them_agree():
    names = [frame_name(t, i) for t, i in [(0, 0), (1_700_000_000.123456, 42), (4_102_444_799.999, 1_234_567)]]
    assert names[1] == "20231114T221320123456-000042.jpg"
    assert all(FRAME_NAME.match(n) for n in names)
    assert all(TEMP.match(f".{n}.abcd_123.tmp.jpg") and not FRAME_NAME.match(f".{n}") for n in names)
    for other in ["IMG_0001.jpg", "20231114T221320123456-42.jpg", "20231114T221320-000042.jpg", ".x.jpg.ab12.tmp.jpg"]:
        assert not FRAME_NAME.match(other) and not TEMP.match(other)


def test_saving_pauses_below_the_free_space_floor_checked_every_few_seconds(tmp_path, caplog):
    clock, free, calls = Clock(), [500 * MIB], []

    def usage(path):
        calls.append(path)
        return Usage(10**12, 0, free[0])

    caplog.set_level(logging.INFO)
    collector = Collector(tmp_path, CollectLimits(every=0, min_free_mb=1024), clock=clock, disk_usage=usage)
    for i in range(50):
        clock.now += 0.01
        assert collector.offer(frame(i), "cat") is None
    assert len(calls) == 1 and jpgs(tmp_path) == []
    assert [r.levelno for r in caplog.records if "free" in r.getMessage()] == [logging.WARNING]  # said once
    free[0] = 2048 * MIB
    clock.now += Collector.FREE_CHECK_EVERY
    assert collector.offer(frame(99), "cat") is not None and len(calls) == 2
    assert "resumed" in caplog.text


def test_zero_disables_the_cap_and_the_floor(tmp_path):
    def never(path):
        raise AssertionError("no floor: free space is never asked")

    collector = Collector(tmp_path, CollectLimits(every=0, max_mb=0, min_free_mb=0), clock=Clock(), disk_usage=never)
    for i in range(20):
        collector.offer(frame(i), "cat")
    assert len(jpgs(tmp_path)) == 20 and collector.evicted == 0


def test_frames_are_written_atomically_without_fsync(tmp_path, monkeypatch):
    synced = []
    monkeypatch.setattr(os, "fsync", lambda fd: synced.append(fd))
    collector = Collector(tmp_path, CollectLimits(every=0), clock=Clock(), disk_usage=plenty)
    path = collector.offer(frame(3), "T-shirt/top")
    assert synced == [] and path.parent.name == "T-shirt_top" and path.name.endswith("-000003.jpg")
    assert [p.name for p in path.parent.iterdir()] == [path.name]  # no temp file left
    import cv2

    assert cv2.imread(str(path)).shape == (120, 160, 3)


def test_an_unwritable_folder_is_an_edgeclf_error(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("a file where the folder should be")
    with pytest.raises(EdgeClfError, match="cannot"):
        Collector(blocker / "sub", CollectLimits(), clock=Clock(), disk_usage=shutil.disk_usage)


# Issue 13 review: only the collector's own frames count and go; no state without a cap; allocated space.


def test_files_the_collector_did_not_write_are_never_counted_nor_removed(tmp_path):
    holiday = tmp_path / "holiday-2023"
    holiday.mkdir()
    photos = []
    for i in range(3):
        photos.append(holiday / f"IMG_{i:04d}.jpg")
        photos[-1].write_bytes(os.urandom(600_000))
        os.utime(photos[-1], (1_000_000 + i, 1_000_000 + i))  # older than any frame
    lookalikes = [
        tmp_path / "20231128T053412123456-000042.jpg",  # ours by name, but not in a label folder
        tmp_path / "cat" / "20231128T053412123456-42.jpg",  # index not padded to 6 digits
        tmp_path / "cat" / "20231128T053412-000042.jpg",  # no microseconds
        tmp_path / "cat" / "copy of 20231128T053412123456-000042.jpg",
        tmp_path / "My Photos" / "20231128T053412123456-000042.jpg",  # a folder name a label never makes
    ]
    for path in lookalikes:
        path.parent.mkdir(exist_ok=True)
        path.write_bytes(os.urandom(50_000))
        os.utime(path, (1_000_000, 1_000_000))
    collector = Collector(tmp_path, CollectLimits(every=0, max_mb=0.1), clock=Clock(), disk_usage=plenty)
    assert all(p.exists() for p in photos + lookalikes) and collector.total == 0
    for i in range(40):
        collector.offer(frame(i), "cat")
    assert collector.evicted > 0
    assert all(p.exists() for p in photos + lookalikes)
    assert collector.total == allocated(ours(tmp_path)) <= 0.1 * MIB


def test_without_a_cap_the_folder_is_not_scanned_and_nothing_is_kept_per_frame(tmp_path, monkeypatch):
    (tmp_path / "cat").mkdir()
    (tmp_path / "cat" / "20231128T053412123456-000042.jpg").write_bytes(b"x" * 10_000)

    def no_scan(*args, **kwargs):
        raise AssertionError("no cap: nothing to count, so no scan")

    monkeypatch.setattr(os, "scandir", no_scan)
    collector = Collector(tmp_path, CollectLimits(every=0, max_mb=0, min_free_mb=0), clock=Clock())
    for i in range(50):
        assert collector.offer(frame(i), "cat") is not None
    monkeypatch.undo()
    assert len(jpgs(tmp_path)) == 51 and collector.evicted == 0
    assert len(getattr(collector, "_files", ())) == 0  # ~384 bytes a frame, for weeks, otherwise


def test_the_quota_counts_allocated_blocks_not_file_sizes(tmp_path):
    cap_mb = 0.25
    collector = Collector(tmp_path, CollectLimits(every=0, max_mb=cap_mb), clock=Clock(), disk_usage=plenty)
    for i in range(200):
        collector.offer(frame(i), "cat")
    kept = ours(tmp_path)
    assert collector.evicted > 0
    assert collector.total == allocated(kept) <= cap_mb * MIB  # what the card loses
    assert allocated(kept) > sum(p.stat().st_size for p in kept)  # small JPEGs: blocks are the larger count


def test_frames_from_earlier_runs_are_counted_in_allocated_blocks(tmp_path):
    first = Collector(tmp_path, CollectLimits(every=0, max_mb=0), clock=Clock(), disk_usage=plenty)
    for i in range(30):
        first.offer(frame(i), "cat")
    collector = Collector(tmp_path, CollectLimits(every=0, max_mb=10), clock=Clock(), disk_usage=plenty)
    assert collector.total == allocated(ours(tmp_path)) and len(ours(tmp_path)) == 30


def test_a_frame_relabelled_inside_the_folder_is_counted_again_after_a_rescan(tmp_path):
    clock = Clock()
    collector = Collector(tmp_path, CollectLimits(every=0, max_mb=0.1), clock=clock, disk_usage=plenty)
    for i in range(60):
        clock.now += 0.5
        collector.offer(frame(i), "cat")
    assert collector.evicted > 0
    (tmp_path / "dog").mkdir()
    moved = [tmp_path / "dog" / p.name for p in ours(tmp_path)[:4]]
    for path in moved:  # the user relabels the oldest frames: moved to another label folder, mtime kept
        (tmp_path / "cat" / path.name).rename(path)
    for i in range(60, 70):
        clock.now += 0.5
        collector.offer(frame(i), "cat")
    assert collector.total >= 0
    clock.now += Collector.RESCAN_EVERY
    collector.offer(frame(70), "cat")
    assert not any(p.exists() for p in moved)  # still in the folder, so still counted: the oldest go first
    assert collector.total == allocated(ours(tmp_path)) <= 0.1 * MIB  # over the quota for RESCAN_EVERY at most


def test_a_frame_that_cannot_be_written_is_an_edgeclf_error(tmp_path, monkeypatch):
    import errno

    collector = Collector(tmp_path, CollectLimits(every=0), clock=Clock(), disk_usage=plenty)

    def full(path, data, fsync=True):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr("edgeclf.edge_app.files.write_bytes", full)
    with pytest.raises(EdgeClfError, match="No space left"):
        collector.offer(frame(0), "cat")
