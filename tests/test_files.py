"""edgeclf.edge_app.files: atomic writes that set modes without touching the process umask (issue 12 item 9)."""

from __future__ import annotations

import os
import re
import stat
import threading
import time
from pathlib import Path

import pytest

from edgeclf.edge_app import files
from edgeclf.edge_app.errors import EdgeClfError

pytestmark = pytest.mark.device  # edge extra + pytest only: .ci/edge-job runs it


@pytest.fixture()
def umask():
    """Set the process umask for one test and put the old one back after it."""
    old = os.umask(0o022)
    os.umask(old)
    yield lambda value: os.umask(value)
    os.umask(old)


def _current_umask() -> int:
    value = os.umask(0)
    os.umask(value)
    return value


def _spy_umask(monkeypatch) -> list[int]:
    """Record every os.umask call; each one is slow, as a thread switch between its two calls would be."""
    real = os.umask
    calls: list[int] = []

    def spy(mask: int) -> int:
        calls.append(mask)
        previous = real(mask)
        time.sleep(0.002)
        return previous

    monkeypatch.setattr(os, "umask", spy)
    return calls


@pytest.mark.parametrize("mask", [0o022, 0o077, 0o002, 0o277])
def test_new_files_get_0666_less_the_umask_without_calling_umask(mask, umask, tmp_path, monkeypatch):
    umask(mask)
    calls = _spy_umask(monkeypatch)
    written = [
        files.write_bytes(tmp_path / "a.jpg", b"\xff\xd8 frame"),
        files.write_text(tmp_path / "sub" / "b.txt", "text"),
        files.write_json(tmp_path / "c.json", {"a": 1}),
        files.atomic_write(tmp_path / "d.npz", lambda tmp: tmp.write_bytes(b"PK")),
    ]
    assert calls == []
    for path in written:
        assert path.stat().st_mode & 0o777 == 0o666 & ~mask, path
    monkeypatch.undo()
    assert _current_umask() == mask


@pytest.mark.parametrize("mode", [0o600, 0o640, 0o664, 0o444])
def test_an_existing_files_mode_is_kept(mode, umask, tmp_path, monkeypatch):
    umask(0o022)
    target = tmp_path / "model.tflite"
    target.write_bytes(b"old")
    target.chmod(mode)
    calls = _spy_umask(monkeypatch)
    files.write_bytes(target, b"new")
    assert calls == []
    assert target.read_bytes() == b"new"
    assert target.stat().st_mode & 0o777 == mode


def test_concurrent_writes_from_threads_leave_the_umask_and_modes_alone(umask, tmp_path, monkeypatch):
    umask(0o027)
    calls = _spy_umask(monkeypatch)  # today's code calls it; the slow spy makes the race show every time
    errors: list[BaseException] = []
    start = threading.Barrier(8)

    def writer(n: int) -> None:
        try:
            start.wait()
            for i in range(25):
                files.write_bytes(tmp_path / f"t{n}" / f"{i:03d}.jpg", bytes([n, i]) * 100)
        except BaseException as exc:  # noqa: BLE001 - reported by the main thread
            errors.append(exc)

    threads = [threading.Thread(target=writer, args=(n,)) for n in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    monkeypatch.undo()
    assert errors == []
    assert oct(_current_umask()) == oct(0o027)
    modes = {oct(p.stat().st_mode & 0o777) for p in tmp_path.rglob("*.jpg")}
    assert len(list(tmp_path.rglob("*.jpg"))) == 200 and modes == {oct(0o640)}
    assert list(tmp_path.rglob("*.tmp*")) == []
    assert calls == []


def test_temp_file_lies_beside_the_target_and_is_removed_on_failure(tmp_path):
    seen: list[Path] = []

    def fail(tmp: Path) -> None:
        seen.append(tmp)
        tmp.write_bytes(b"partial")
        raise OSError(28, "No space left on device")

    files.write_bytes(tmp_path / "x.jpg", b"old")
    with pytest.raises(EdgeClfError, match=r"cannot write .*x\.jpg: No space left on device"):
        files.atomic_write(tmp_path / "x.jpg", fail)
    # same folder (so the rename is atomic), hidden, named like mkstemp's: .<name>.<8 chars>.tmp<suffix>
    assert seen[0].parent == tmp_path and re.fullmatch(r"\.x\.jpg\.[a-z0-9_]{8}\.tmp\.jpg", seen[0].name)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["x.jpg"]
    assert (tmp_path / "x.jpg").read_bytes() == b"old"

    def interrupted(tmp: Path) -> None:
        tmp.write_bytes(b"partial")
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        files.atomic_write(tmp_path / "y.jpg", interrupted)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["x.jpg"]


def test_file_and_folder_are_fsynced_before_and_after_the_rename(tmp_path, monkeypatch):
    events: list[str] = []
    real_fsync, real_replace = os.fsync, os.replace

    def fsync(fd: int) -> None:
        events.append("fsync dir" if stat.S_ISDIR(os.fstat(fd).st_mode) else "fsync file")
        real_fsync(fd)

    def replace(src, dst) -> None:
        events.append("rename")
        real_replace(src, dst)

    monkeypatch.setattr(os, "fsync", fsync)
    monkeypatch.setattr(os, "replace", replace)
    files.write_bytes(tmp_path / "x.jpg", b"data")
    assert events == ["fsync file", "rename", "fsync dir"]


def test_unwritable_folder_is_one_error(tmp_path):
    target = tmp_path / "file.txt"
    target.write_text("a file where a folder should be")
    with pytest.raises(EdgeClfError, match="cannot write"):
        files.write_bytes(target / "x.jpg", b"data")
