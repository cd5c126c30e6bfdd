"""`edgeclf capture`: frames from a video, a folder of images, and its bad inputs (an empty source, labels
with path characters, a full or read-only folder)."""

from __future__ import annotations

import errno
import os
from pathlib import Path

import cv2
import numpy as np
import pytest

from edgeclf.edge_app import files
from edgeclf.edge_app.capturecmd import main
from edgeclf.edge_app.collector import FRAME_NAME
from edgeclf.edge_app.labelname import label_problem
from tests.conftest import ROOT

CLIP = ROOT / "models" / "samples" / "clip.mp4"  # 80 frames at 8 fps: 10 s of video

pytestmark = pytest.mark.device  # the edge extra alone: capture runs on the Pi


def images(folder: Path, n: int) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    for i in range(n):
        cv2.imwrite(str(folder / f"{i}.png"), np.full((24, 32, 3), 20 * i, np.uint8))
    return folder


def test_video_frames_one_every_second_of_its_own_time(tmp_path, capsys):
    assert main(["--label", "cup", "--count", "4", "--every", "1", "--source", str(CLIP), "--out", str(tmp_path)]) == 0
    saved = sorted((tmp_path / "cup").iterdir())
    assert len(saved) == 4 and all(FRAME_NAME.match(p.name) for p in saved)
    # the frames 1 s of video apart: 8 frames at 8 fps, whatever the speed of the read
    assert [int(p.stem.rsplit("-", 1)[1]) for p in saved] == [0, 8, 16, 24]
    image = cv2.imread(str(saved[0]))
    assert image.shape == (480, 640, 3)
    out = capsys.readouterr().out.strip().splitlines()
    assert len(out) == 1 and out[0].startswith(f"saved 4 of 4 frame(s) of 'cup' to {tmp_path / 'cup'} in ")


def test_flips_apply_and_a_short_source_says_it_ended(tmp_path, capsys):
    images(tmp_path / "in", 3)
    args = ["--label", "grey", "--count", "5", "--source", str(tmp_path / "in"), "--out", str(tmp_path / "data")]
    assert main(args) == 0
    out = capsys.readouterr().out
    assert "saved 3 of 5 frame(s)" in out and "the source ended after 3 frame(s)" in out
    clip = ["--label", "v", "--count", "1", "--source", str(CLIP), "--hflip", "--out", str(tmp_path / "f")]
    assert main(clip) == 0
    plain = ["--label", "v", "--count", "1", "--source", str(CLIP), "--out", str(tmp_path / "p")]
    assert main(plain) == 0
    flipped = cv2.imread(str(next((tmp_path / "f" / "v").iterdir()))).astype(int)
    straight = cv2.imread(str(next((tmp_path / "p" / "v").iterdir()))).astype(int)
    assert np.abs(flipped[:, ::-1] - straight).mean() < 3 < np.abs(flipped - straight).mean()


@pytest.mark.parametrize("make", ["empty folder", "empty video"])
def test_an_empty_source_is_one_line(tmp_path, capsys, make):
    if make == "empty folder":
        (tmp_path / "none").mkdir()
        source, message = tmp_path / "none", "no images in"
    else:
        source, message = tmp_path / "empty.mp4", "not a video OpenCV can read"
        source.write_bytes(b"")
    assert main(["--label", "x", "--count", "3", "--source", str(source), "--out", str(tmp_path / "o")]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: ") and message in err[0]
    assert not (tmp_path / "o" / "x").exists() or not any((tmp_path / "o" / "x").iterdir())


@pytest.mark.parametrize("label", ["../x", "a/b", "a\\b", "..", ".hidden", "", " x", "a\nb"])
def test_labels_with_path_characters_are_refused(tmp_path, capsys, label):
    assert label_problem(label)
    with pytest.raises(SystemExit) as exit_:
        main(["--label", label, "--count", "1", "--source", str(CLIP), "--out", str(tmp_path / "out")])
    assert exit_.value.code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert ": error: --label: the label" in err[-1]
    assert not (tmp_path / "out").exists() and not (tmp_path / "x").exists()


def test_plain_labels_pass():
    for label in ("cup", "T-shirt top", "my_cup.v2", "chat", "猫", "a.b"):
        assert label_problem(label) is None, label


def test_a_full_disk_stops_with_one_line_and_no_half_file(tmp_path, capsys, monkeypatch):
    """ENOSPC in the middle of the third frame's write: two frames stay, no temp file, one error line."""
    real = files.write_bytes
    written = []

    def filling(path, data, fsync=True):
        if len(written) == 2:

            def half(tmp: Path) -> None:
                tmp.write_bytes(data[: len(data) // 2])
                raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

            return files.atomic_write(path, half, fsync)
        written.append(path)
        return real(path, data, fsync)

    monkeypatch.setattr("edgeclf.edge_app.capturecmd.files.write_bytes", filling)
    args = ["--label", "cup", "--count", "5", "--source", str(CLIP), "--out", str(tmp_path)]
    assert main(args) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "No space left on device" in err[0] and "(after 2 of 5 frames)" in err[0]
    assert sorted(p.name for p in (tmp_path / "cup").iterdir()) == sorted(p.name for p in written)


def test_a_read_only_folder_is_one_line(tmp_path, capsys, monkeypatch):
    out = tmp_path / "ro"
    (out / "cup").mkdir(parents=True)
    if os.geteuid() != 0:
        os.chmod(out / "cup", 0o555)
    else:  # root writes through any mode bits: the kernel's answer for a read-only folder, simulated

        def refused(path: Path) -> tuple[Path, int]:
            raise PermissionError(errno.EACCES, os.strerror(errno.EACCES), str(path.parent))

        monkeypatch.setattr(files, "_create_temp", refused)
    try:
        assert main(["--label", "cup", "--count", "2", "--source", str(CLIP), "--out", str(out)]) == 1
    finally:
        os.chmod(out / "cup", 0o755)
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "Permission denied" in err[0] and "(after 0 of 2 frames)" in err[0]
    assert list((out / "cup").iterdir()) == []
