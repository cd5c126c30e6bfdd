import numpy as np
import pytest

from edgeclf.edge_app import datasets
from edgeclf.edge_app.errors import DataError

pytestmark = pytest.mark.device  # edge extra + pytest only: .ci/edge-job runs it


def test_folder_loads_skips_corrupt_and_caches(colour_folder, tmp_path, capsys, monkeypatch):
    bad_dir = colour_folder / "train" / "red"
    (bad_dir / "broken.jpg").write_bytes(b"\xff\xd8\xff not really a jpeg")
    (bad_dir / "notes.txt").write_text("not an image")
    (bad_dir / "empty.png").write_bytes(b"")
    classes = datasets.class_names(colour_folder / "train")
    assert classes == ("blue", "green", "red")
    cache = tmp_path / "cache"
    data = datasets.load_folder(colour_folder / "train", classes, (8, 8), cache_dir=cache)
    assert data.images.shape == (36, 8, 8, 3) and data.images.dtype == np.uint8
    assert data.skipped == 3
    assert "skipped 3 corrupt, non-image or oversized" in capsys.readouterr().err
    # red class folder -> label 2, and its images really are red-dominant (RGB order)
    red = data.images[data.labels == 2].astype(int)
    assert (red[..., 0].mean(axis=(1, 2)) > red[..., 2].mean(axis=(1, 2))).all()
    assert len(list(cache.glob("images-*.npz"))) == 1

    def no_decode(*args, **kwargs):
        raise AssertionError("decoded again despite the cache")

    monkeypatch.setattr(datasets, "_decode", no_decode)
    again = datasets.load_folder(colour_folder / "train", classes, (8, 8), cache_dir=cache)
    assert np.array_equal(again.images, data.images) and again.skipped == 3


def test_cache_is_invalidated_by_changes(colour_folder, tmp_path):
    classes = datasets.class_names(colour_folder / "train")
    cache = tmp_path / "cache"
    first = datasets.load_folder(colour_folder / "train", classes, (8, 8), cache_dir=cache)
    next(iter((colour_folder / "train" / "blue").iterdir())).unlink()
    second = datasets.load_folder(colour_folder / "train", classes, (8, 8), cache_dir=cache)
    assert len(second) == len(first) - 1


def test_split_dirs_and_errors(colour_folder, tmp_path):
    assert set(datasets.split_dirs(colour_folder)) == {"train", "test"}
    assert set(datasets.split_dirs(colour_folder / "train")) == {"all"}
    with pytest.raises(DataError, match="not found"):
        datasets.split_dirs(tmp_path / "nowhere")
    (tmp_path / "empty").mkdir()
    with pytest.raises(DataError, match="no class sub-folders"):
        datasets.class_names(tmp_path / "empty")
    (tmp_path / "empty" / "cat").mkdir()
    with pytest.raises(DataError, match="holds no files"):
        datasets.load_folder(tmp_path / "empty", ("cat",), (8, 8), use_cache=False)
    (tmp_path / "empty" / "cat" / "x.jpg").write_bytes(b"garbage")
    with pytest.raises(DataError, match="none of 1 files could be decoded"):
        datasets.load_folder(tmp_path / "empty", ("cat",), (8, 8), use_cache=False, warn=False)
