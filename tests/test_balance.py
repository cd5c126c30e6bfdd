"""Uneven classes: the counts table and its warnings, the too-small class, the automatic --balance choice,
class weights and even sampling (numbers, and a shift toward the rare class on a skewed toy set), per-class
reporting, and --resume of a balanced run."""

import csv
import json
from pathlib import Path

import numpy as np
import pytest

from edgeclf.edge_app import metrics
from edgeclf.train import balance, report
from edgeclf.train.cli import main
from edgeclf.train.data import DataSpec, load_splits
from edgeclf.train.fit import TrainConfig, train_model


def write_folder(root: Path, train: dict[str, int], test: dict[str, int], seed: int = 0, junk: str = "") -> Path:
    """<root>/{train,test}/<class>/NNN.png: noise around a brightness drawn per image, brighter on average for
    each later class but overlapping, so where a model draws the line depends on the class mix it learnt;
    `junk` names a class whose train folder also holds one file that is no image."""
    import cv2

    rng = np.random.default_rng(seed)
    for split, per_class in (("train", train), ("test", test)):
        for c, (name, n) in enumerate(per_class.items()):
            folder = root / split / name
            folder.mkdir(parents=True, exist_ok=True)
            for i in range(n):
                level = rng.normal(100 + 30 * c, 25)
                image = np.clip(level + rng.normal(0, 20, (16, 16, 3)), 0, 255).astype(np.uint8)
                cv2.imwrite(str(folder / f"{i:03d}.png"), image)
    if junk:
        (root / "train" / junk / "broken.png").write_bytes(b"not a png")
    return root


def spec(folder: Path, tmp_path: Path, val_split: float = 0.25) -> DataSpec:
    return DataSpec(data=str(folder), image_size=16, val_split=val_split, cache_dir=str(tmp_path / "cache"))


def test_counts_table_and_warnings(tmp_path):
    folder = write_folder(tmp_path / "d", {"a": 12, "b": 12, "c": 4}, {"a": 3, "b": 3, "c": 2}, junk="c")
    splits = load_splits(spec(folder, tmp_path, val_split=0.1))
    table = balance.counts_table(splits)
    # 12 images at 0.1 validate round(1.2) = 1; c's 4 would validate round(0.4) = 0, stratified to 1
    assert table == {
        "a": {"train": 11, "validation": 1, "test": 3, "skipped": 0},
        "b": {"train": 11, "validation": 1, "test": 3, "skipped": 0},
        "c": {"train": 3, "validation": 1, "test": 2, "skipped": 1},
    }
    text = balance.format_table(table).splitlines()
    assert text[0].split() == ["class", "train", "validation", "test", "skipped"]
    assert text[3].split() == ["c", "3", "1", "2", "1"] and text[4].split() == ["total", "25", "3", "8", "1"]
    assert balance.warnings(table, 0.1) == [
        "warning: a 0.1 validation split would leave class 'c' (4 images) empty; the split is stratified, so 1 of "
        "them validate",
        "warning: class 'c' has 3 training images (fewer than 10): expect it to be learnt poorly, and its "
        "validation and test scores to be noisy",
    ]
    thin = {"a": {"train": 10, "validation": 2, "test": 0, "skipped": 0}}
    assert balance.warnings(thin, 0.1) == [
        "warning: class 'a' has no test images: its test precision / recall are 0, not measured"
    ]


def test_a_class_too_small_to_validate_stops_with_one_line(tmp_path, capsys):
    folder = write_folder(tmp_path / "d", {"a": 6, "b": 6, "lonely": 1}, {"a": 2, "b": 2, "lonely": 1})
    argv = ["--data", str(folder), "--image-size", "16", "--epochs", "1", "--cache-dir", str(tmp_path / "cache")]
    assert main([*argv, "--out", str(tmp_path / "run")]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert err[-1] == (
        "error: class 'lonely' has 1 image left for training and validation: it needs at least 2, one for each; "
        "add images to it or remove its folder"
    )
    assert not (tmp_path / "run" / "model.keras").exists()


def test_automatic_choice():
    assert balance.choose("auto", {"a": 21, "b": 10}) == (
        "weights",
        "automatic: largest class 'a' has 21 training images, more than 2 x the smallest ('b', 10)",
    )
    assert balance.choose("auto", {"a": 20, "b": 10, "c": 15})[0] == "none"  # exactly twice: not skewed
    assert balance.choose("sampling", {"a": 20, "b": 10}) == ("sampling", "as asked")
    assert balance.choose("none", {"a": 200, "b": 10}) == ("none", "as asked")


def test_class_weights_and_the_weighted_losses():
    import keras

    from edgeclf.train import distill

    w = balance.class_weights(np.array([30, 6]))
    assert w.tolist() == pytest.approx([36 / 60, 36 / 12])  # n / (classes x n_c): 0.6 and 3
    assert float(np.dot(w, [30, 6])) == pytest.approx(36)  # average weight 1 over the images

    labels = np.array([[1, 0], [0, 1], [0.25, 0.75]], dtype=np.float32)  # the last one mixed up
    pred = np.array([[0.8, 0.2], [0.4, 0.6], [0.5, 0.5]], dtype=np.float32)
    ce = -np.sum(labels * np.log(pred), axis=1)
    expect_w = np.array([0.6, 3.0, 0.25 * 0.6 + 0.75 * 3.0])
    plain = balance.weighted_loss(lambda t, p: keras.losses.categorical_crossentropy(t, p), w)
    assert np.asarray(plain(labels, pred)) == pytest.approx(ce * expect_w, rel=1e-5)

    # distillation: the weight comes from the label columns, not the teacher's appended after them
    teacher = np.array([[0.6, 0.4], [0.1, 0.9], [0.5, 0.5]], dtype=np.float32)
    target = np.concatenate([labels, teacher], axis=1)
    kd = distill.distillation_loss(2, 0.7, 4.0)
    weighted = balance.weighted_loss(kd, w)
    assert np.asarray(weighted(target, pred)) == pytest.approx(np.asarray(kd(target, pred)) * expect_w, rel=1e-5)


def test_sampling_draws_the_classes_evenly_for_a_fixed_number_of_steps(tmp_path):
    import tensorflow as tf

    from edgeclf.train.fit import _dataset

    y = np.array([0] * 90 + [1] * 10)
    x = np.arange(100, dtype=np.float32).reshape(100, 1)  # the image is its own index
    drawn = balance.sampled(tf, x, np.eye(2, dtype=np.float32)[y], y, seed=3).take(4000)
    picked = np.array([int(a[0]) for a, _ in drawn.as_numpy_iterator()])
    assert 0.46 < np.mean(y[picked]) < 0.54  # 10% of the images, half of the draws
    assert len(np.unique(picked[y[picked] == 1])) == 10  # every rare image, not one repeated

    cfg = TrainConfig(balance="sampling", data=DataSpec(seed=3))
    ds = _dataset(tf, x, y, 2, 8, cfg, steps=13)
    for _ in range(2):  # each epoch (a fresh pass) has exactly the unbalanced epoch's 13 steps
        batches = list(ds.as_numpy_iterator())
        assert len(batches) == 13 and all(len(b[0]) == 8 for b in batches)


@pytest.fixture(scope="module")
def skewed_runs(tmp_path_factory):
    """The same folder, 80 'common' and 16 'rare' training images, trained with each --balance mode (mixup and
    label smoothing on, so both keep working with it), seeded alike."""
    root = tmp_path_factory.mktemp("skewed")
    folder = write_folder(root / "d", {"common": 80, "rare": 16}, {"common": 30, "rare": 30}, seed=1)
    runs = {}
    for mode in ("none", "weights", "sampling"):
        cfg = TrainConfig(
            data=spec(folder, root),
            arch="tutorial_cnn",
            epochs=4,
            batch_size=8,
            augment=(),
            mixup=0.2,
            label_smoothing=0.1,
            patience=0,
            balance=mode,
            out=str(root / mode),
        )
        runs[mode] = train_model(cfg, verbose=0)
    return folder, root, runs


def rare_probability(run_dir: Path, folder: Path) -> float:
    """The mean probability the run's model gives 'rare' over the test images (half of them rare)."""
    import keras

    from edgeclf.edge_app import preprocess
    from edgeclf.train.fit import input_spec_for

    splits = load_splits(spec(folder, run_dir.parent))
    model = keras.models.load_model(run_dir / "model.keras", compile=False)
    cfg = TrainConfig(data=spec(folder, run_dir.parent))
    probs = model.predict(preprocess.normalize_rgb(splits.test.images, input_spec_for(cfg)), verbose=0)
    return float(np.mean(probs[:, splits.classes.index("rare")]))


def test_each_balance_mode_shifts_predictions_toward_the_rare_class(skewed_runs):
    folder, root, runs = skewed_runs
    p = {mode: rare_probability(root / mode, folder) for mode in runs}
    # unweighted training leans on the 60:12 training mix (rare ~1/6); both balance modes pull toward even
    # odds (measured: none 0.18, weights 0.45, sampling 0.50)
    assert p["none"] < 0.3
    assert p["weights"] > p["none"] + 0.1 and p["sampling"] > p["none"] + 0.1
    for mode, result in runs.items():
        record = json.loads((root / mode / "run.json").read_text())
        assert record["config"]["balance"] == mode
        m = json.loads((root / mode / "metrics.json").read_text())
        assert m["balance"] == mode
        assert m["counts"] == {
            "common": {"train": 60, "validation": 20, "test": 30, "skipped": 0},
            "rare": {"train": 12, "validation": 4, "test": 30, "skipped": 0},
        }
        recalls = [m["per_class"][c]["recall"] for c in ("common", "rare")]
        assert m["balanced_accuracy"] == pytest.approx(sum(recalls) / 2)
        assert m["checkpoint_metric"] == ("val_accuracy" if mode == "none" else "val_balanced_accuracy")
        assert (root / mode / "per_class.png").read_bytes()[:4] == b"\x89PNG"
        assert result.counts == m["counts"]


def test_balance_modes_work_with_distillation(skewed_runs, tmp_path):
    folder, root, _ = skewed_runs
    for mode, targets in (("weights", "fixed"), ("sampling", "live")):
        cfg = TrainConfig(
            data=spec(folder, tmp_path),
            epochs=1,
            batch_size=8,
            augment=(),
            teacher=str(root / "none"),
            distill_targets=targets,
            balance=mode,
            out=str(tmp_path / mode),
        )
        result = train_model(cfg, verbose=0)
        with open(tmp_path / mode / "history.csv") as fh:
            rows = list(csv.DictReader(fh))
        assert result.epochs_run == len(rows) == 1 and np.isfinite(float(rows[0]["loss"]))
        assert json.loads((tmp_path / mode / "run.json").read_text())["config"]["balance"] == mode


def test_per_class_report_matches_hand_computation(tmp_path):
    y = np.array([0, 0, 0, 0, 1, 1, 2, 2, 2, 2])
    pred = np.array([0, 0, 0, 1, 1, 0, 2, 2, 1, 1])
    test = report.with_balanced_accuracy(metrics.classification_report(np.eye(4)[pred], y, ("a", "b", "c", "d")))
    # a: 3 of 4 found, 3 of 4 'a' right; b: 1 of 2 found, 1 of 4 'b' right; c: 2 of 4, 2 of 2; d: no images
    hand = {
        "a": (3 / 4, 3 / 4, 4),
        "b": (1 / 4, 1 / 2, 2),
        "c": (2 / 2, 2 / 4, 4),
        "d": (0.0, 0.0, 0),
    }
    for name, (precision, recall, support) in hand.items():
        m = test["per_class"][name]
        f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
        assert (m["precision"], m["recall"], m["f1"], m["support"]) == pytest.approx((precision, recall, f1, support))
    # balanced accuracy leaves out 'd', which has no test images (as the macro averages do)
    assert test["balanced_accuracy"] == pytest.approx((3 / 4 + 1 / 2 + 2 / 4) / 3) == test["macro_recall"]
    # the Keras metric that picks a balanced run's checkpoint agrees, counted over two batches
    import keras

    metric = balance.balanced_accuracy(keras, 4)
    for part in (slice(0, 5), slice(5, 10)):
        metric.update_state(np.eye(4, dtype="float32")[y[part]], np.eye(4, dtype="float32")[pred[part]])
    assert float(metric.result()) == pytest.approx(test["balanced_accuracy"])
    text = report.per_class_text(test["per_class"]).splitlines()
    assert text[0].split() == ["class", "precision", "recall", "F1", "support"]
    assert text[2].split() == ["b", "0.2500", "0.5000", "0.3333", "2"]
    report.plot_per_class(test["per_class"], tmp_path / "per_class.png")
    assert (tmp_path / "per_class.png").read_bytes()[:4] == b"\x89PNG"


def test_an_automatic_choice_is_stored_and_resumed(tmp_path, capsys, monkeypatch):
    from tests.test_resume import Crash, crash_after

    folder = write_folder(tmp_path / "d", {"common": 40, "rare": 8}, {"common": 4, "rare": 4})
    run = tmp_path / "run"
    argv = ["--data", str(folder), "--image-size", "16", "--val-split", "0.25", "--epochs", "2", "--batch-size", "8",
            "--cache-dir", str(tmp_path / "cache"), "--out", str(run)]  # fmt: skip
    crash_after(monkeypatch, lambda state: state["epochs"] == 1)
    with pytest.raises(Crash):
        main(argv)
    monkeypatch.undo()
    err = capsys.readouterr().err
    assert "balance: weights (automatic: largest class 'common' has 30 training images, more than 2 x the " \
           "smallest ('rare', 6))" in err  # fmt: skip
    assert "common" in err and "images per class:" in err
    assert json.loads((run / "run.json").read_text())["config"]["balance"] == "weights"  # resolved, not 'auto'
    assert main(["--resume", str(run)]) == 0
    err = capsys.readouterr().err
    assert "balance: weights (as asked)" in err and f"resuming {run} after epoch 1 of 2" in err
    assert json.loads((run / "metrics.json").read_text())["balance"] == "weights"


def test_runs_from_before_balance_resume_without_it():
    assert TrainConfig.from_dict({"epochs": 3}).balance == "none"
    assert TrainConfig().balance == "auto"
