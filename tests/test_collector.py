"""`--collect`: uncertain frames saved at a bounded rate, into a folder with a quota and a free-space floor."""

import logging
import os
import shutil
from collections import namedtuple

import pytest

from edge_app.collector import CollectLimits, Collector
from edge_app.errors import EdgeClfError
from edge_app.sources import Frame
from tests.fakes import pattern

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


def folder_bytes(root) -> int:
    return sum(p.stat().st_size for p in root.rglob("*") if p.is_file())


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
    assert folder_bytes(tmp_path) <= cap < sum(p.stat().st_size for p in paths if p.exists()) + 20_000
    kept = jpgs(tmp_path)
    assert kept == sorted(paths[-len(kept) :])  # the newest stayed
    assert 3 < len(kept) < 60 and collector.total == folder_bytes(tmp_path) and collector.evicted == 60 - len(kept)


def test_files_from_earlier_runs_count_and_go_first(tmp_path):
    old = tmp_path / "dog"
    old.mkdir()
    for i in range(10):
        path = old / f"old-{i}.jpg"
        path.write_bytes(b"x" * 10_400)
        os.utime(path, (1_000_000 + i, 1_000_000 + i))
    leftover = old / ".old-9.jpg.abcd1234.tmp.jpg"  # a temp file of a killed process
    leftover.write_bytes(b"y" * 50_000)
    (tmp_path / "notes.txt").write_text("not ours: never counted, never removed")
    collector = Collector(tmp_path, CollectLimits(every=0, max_mb=0.1), clock=Clock(), disk_usage=plenty)
    assert collector.total == 104_000 and not leftover.exists()  # 0.1 MiB is 104,857 bytes
    new = collector.offer(frame(0), "cat")
    kept = [p.name for p in sorted(old.glob("old-*.jpg"))]
    assert new.exists() and "old-0.jpg" not in kept and kept[-1] == "old-9.jpg"
    assert collector.total <= 0.1 * MIB and (tmp_path / "notes.txt").exists()


def test_a_cap_below_what_is_there_is_enforced_at_start(tmp_path):
    (tmp_path / "cat").mkdir()
    for i in range(5):
        (tmp_path / "cat" / f"{i}.jpg").write_bytes(b"x" * 30_000)
    collector = Collector(tmp_path, CollectLimits(max_mb=0.1), clock=Clock(), disk_usage=plenty)
    assert collector.total <= 0.1 * MIB and len(jpgs(tmp_path)) == 3


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
