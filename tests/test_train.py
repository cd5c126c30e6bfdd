"""Training on a tiny image folder: reproducibility, augmentation kept out of the model, registry."""

import csv

import numpy as np
import pytest

from edgeclf.edge_app.contract import InputSpec
from edgeclf.edge_app.errors import DataError, EdgeClfError
from edgeclf.train import architectures, augment
from edgeclf.train.data import DataSpec, load_splits, stratified_split
from edgeclf.train.fit import TrainConfig, train_model


def config(folder, out, **changes):
    data = DataSpec(data=str(folder), image_size=16, val_split=0.25, cache_dir=str(out.parent / "cache"))
    base = dict(
        data=data,
        arch="tutorial_cnn",
        epochs=2,
        batch_size=8,
        out=str(out),
        augment=("flip", "crop", "rotate", "zoom", "brightness"),
    )
    base.update(changes)
    return TrainConfig(**base)


def history(run):
    with open(run / "history.csv") as fh:
        return [[float(v) for v in row.values()] for row in csv.DictReader(fh)]


def test_seeded_runs_repeat_and_augmentation_is_not_exported(colour_folder, tmp_path):
    import keras

    first = train_model(config(colour_folder, tmp_path / "a"), verbose=0)
    second = train_model(config(colour_folder, tmp_path / "b"), verbose=0)
    assert np.allclose(history(tmp_path / "a"), history(tmp_path / "b"), atol=1e-4)
    assert first.test["accuracy"] == second.test["accuracy"]
    model = keras.models.load_model(tmp_path / "a" / "model.keras")
    names = [type(layer).__name__ for layer in model.layers]
    assert names == ["Conv2D", "MaxPooling2D", "Conv2D", "MaxPooling2D", "Flatten", "Dense", "Dense"]
    assert (
        first.info.params == model.count_params() == 32 * 3 * 9 + 32 + 64 * 32 * 9 + 64 + 256 * 128 + 128 + 128 * 3 + 3
    )


def test_registry_builds_every_architecture():
    for name in architectures.names():
        model = architectures.build(name, (32, 32, 3), 10)
        assert model.output_shape == (None, 10)
    assert architectures.build("tutorial_cnn", (32, 32, 3), 10).count_params() == 315_722
    assert architectures.build("resnet8", (32, 32, 3), 10).count_params() < 100_000
    assert architectures.build("mobilenet_tiny", (32, 32, 3), 10).count_params() < 100_000
    assert 1_500_000 < architectures.build("airbench", (32, 32, 3), 10).count_params() <= 2_500_000
    assert 1_500_000 < architectures.build("airbench_whiten", (32, 32, 3), 10).count_params() <= 2_500_000
    assert 80_000 < architectures.build("airbench_tiny", (32, 32, 3), 10).count_params() <= 100_000
    with pytest.raises(EdgeClfError, match="--weights applies to the pretrained backbones"):
        architectures.build("resnet8", (32, 32, 3), 10, weights="imagenet")
    with pytest.raises(EdgeClfError, match="unknown architecture"):
        architectures.build("vgg99", (32, 32, 3), 10)


def test_augment_parsing():
    assert augment.parse("flip, crop") == ("flip", "crop")
    assert augment.parse("none") == ()
    with pytest.raises(EdgeClfError):
        augment.parse("flip,shear")


def test_whole_pixel_shifts_move_pixels_without_blurring_them():
    images = np.random.default_rng(0).integers(0, 256, (8, 32, 32, 3)).astype("float32")
    spec = InputSpec(height=32, width=32)
    for name, most in (("shift", 4), ("shift2", 2)):
        out = np.asarray(augment.build((name,), spec, seed=1)(images, training=True))
        for before, after in zip(images, out):
            # the centre of a shifted image is the same pixels, found again at one whole-pixel offset
            centre = after[most:-most, most:-most]
            found = [
                (dy, dx)
                for dy in range(-most, most + 1)
                for dx in range(-most, most + 1)
                if np.array_equal(centre, before[most + dy : 32 - most + dy, most + dx : 32 - most + dx])
            ]
            assert found, name
    # the sub-pixel 'crop2' interpolates, so its outputs are not the input's pixel values
    blurred = np.asarray(augment.build(("crop2",), spec, seed=1)(images, training=True))
    assert not np.allclose(blurred, np.round(blurred))


def test_splits_are_stratified_disjoint_and_seeded(colour_folder):
    labels = np.repeat(np.arange(3), 20)
    rest, carved = stratified_split(labels, 0.25, seed=3)
    assert len(set(rest) & set(carved)) == 0 and len(rest) + len(carved) == 60
    assert np.bincount(labels[carved]).tolist() == [5, 5, 5]
    assert np.array_equal(carved, stratified_split(labels, 0.25, seed=3)[1])
    splits = load_splits(DataSpec(data=str(colour_folder), image_size=16, val_split=0.25))
    assert (len(splits.train), len(splits.val), len(splits.test)) == (27, 9, 36)
    flat = load_splits(DataSpec(data=str(colour_folder / "train"), image_size=16, test_split=0.25, val_split=0.25))
    assert len(flat.test) == 9 and len(flat.train) + len(flat.val) == 27


def test_mismatched_train_and_test_classes(colour_folder):
    (colour_folder / "test" / "purple").mkdir()
    with pytest.raises(DataError, match="different classes"):
        load_splits(DataSpec(data=str(colour_folder), image_size=16))


def test_distillation_ema_mixup_cutout_train_and_convert(colour_folder, tmp_path):
    """A teacher run, then a student distilled from it with EMA, mixup and cutout; the student converts to int8."""
    from edgeclf.convert.pipeline import convert

    teacher = train_model(config(colour_folder, tmp_path / "teacher", epochs=3), verbose=0)
    student = train_model(
        config(
            colour_folder,
            tmp_path / "student",
            epochs=3,
            teacher=str(teacher.out),
            ema=0.9,
            mixup=0.2,
            augment=("flip", "cutout"),
            learning_rate=3e-3,
        ),
        verbose=0,
    )
    hist = history(tmp_path / "student")
    assert len(hist) == 3 and student.best_epoch >= 1
    # every seed tried (training 0-2 x folder 0-1) scored 1.0 on the 36 colour images; chance is 1/3
    assert student.test["accuracy"] >= 0.9, student.test
    result = convert(tmp_path / "student", "int8", calibration=20, allow_drop=True)
    assert result.info.metrics["float_ops"] == 0 and result.path.is_file()


def test_fixed_distillation_targets(colour_folder, tmp_path):
    """--distill-targets fixed: the teacher runs once (flip-averaged) and the student trains on its outputs."""
    from edgeclf.train.distill import fixed_targets, load_teacher

    teacher_run = train_model(config(colour_folder, tmp_path / "teacher", epochs=2), verbose=0)
    teacher = load_teacher(teacher_run.out)
    x = np.random.default_rng(0).random((6, 16, 16, 3)).astype(np.float32)
    both = (teacher.predict(x, verbose=0) + teacher.predict(x[:, :, ::-1], verbose=0)) / 2
    assert np.allclose(fixed_targets(teacher, x), both, atol=1e-6)
    student = train_model(
        config(colour_folder, tmp_path / "student", teacher=str(teacher_run.out), distill_targets="fixed"), verbose=0
    )
    assert len(history(tmp_path / "student")) == 2
    assert student.test["accuracy"] >= 0.9, student.test  # 1.0 at every seed tried; chance is 1/3
    with pytest.raises(EdgeClfError, match="--distill-targets must be one of"):
        train_model(config(colour_folder, tmp_path / "bad", distill_targets="sometimes"), verbose=0)


def test_distillation_loss_values():
    import tensorflow as tf

    from edgeclf.train import distill

    labels = tf.constant([[1.0, 0.0]])
    teacher = tf.constant([[0.9, 0.1]])
    target = tf.concat([labels, teacher], axis=-1)

    def distillation_loss(*args):  # one value per image; Keras averages them
        per_image = distill.distillation_loss(*args)
        return lambda y_true, y_pred: tf.reduce_mean(per_image(y_true, y_pred))
    ce_only = distillation_loss(2, 0.0, 4.0)(target, tf.constant([[0.9, 0.1]]))
    assert float(ce_only) == pytest.approx(-np.log(0.9), rel=1e-4)
    same = distillation_loss(2, 1.0, 4.0)(target, tf.constant([[0.9, 0.1]]))
    assert float(same) == pytest.approx(0.0, abs=1e-5)  # student equals teacher: no KL
    apart = distillation_loss(2, 1.0, 4.0)(target, tf.constant([[0.1, 0.9]]))
    assert float(apart) > 0.1


def test_bad_teacher(colour_folder, tmp_path):
    with pytest.raises(EdgeClfError, match="teacher not found"):
        train_model(config(colour_folder, tmp_path / "s", teacher=str(tmp_path / "nope")), verbose=0)


def test_mac_counts_match_hand_computation():
    from edgeclf.train.macs import count_macs

    tutorial = architectures.build("tutorial_cnn", (32, 32, 3), 10)
    # conv1 30x30x32x(3x3x3) + conv2 13x13x64x(3x3x32) + dense 2304x128 + dense 128x10
    expected = 30 * 30 * 32 * 27 + 13 * 13 * 64 * 288 + 2304 * 128 + 128 * 10
    assert count_macs(tutorial) == expected
    tiny = architectures.build("mobilenet_tiny", (32, 32, 3), 10)
    assert 0 < count_macs(tiny) < count_macs(architectures.build("airbench", (32, 32, 3), 10))


def test_teacher_with_other_normalisation_is_refused(colour_folder, tmp_path, tiny_keras_model):
    import json
    import shutil

    _, keras_path = tiny_keras_model
    teacher = tmp_path / "teacher"
    teacher.mkdir()
    shutil.copy(keras_path, teacher / "model.keras")
    info = {
        "schema": 1,
        "labels": ["blue", "green", "red"],
        "quantization": "float32",
        "input": {"height": 16, "width": 16, "mean": [127.5] * 3, "std": [127.5] * 3},
    }
    (teacher / "run.json").write_text(json.dumps({"model_info": info}))
    with pytest.raises(EdgeClfError, match="teacher expects inputs"):
        train_model(config(colour_folder, tmp_path / "s", teacher=str(teacher)), verbose=0)


def test_bn_recalibration_sets_statistics_from_the_data(colour_folder, tmp_path):
    import keras

    from edgeclf.train.bn import recalibrate

    inputs = keras.Input((4, 4, 3))
    model = keras.Model(inputs, keras.layers.BatchNormalization(momentum=0.99)(inputs))
    layer = model.layers[-1]
    layer.moving_mean.assign(np.full(3, 50.0, np.float32))  # stale statistics
    x = np.random.default_rng(1).normal([1.0, -2.0, 3.0], [0.5, 1.0, 2.0], size=(400, 4, 4, 3)).astype(np.float32)
    gamma = layer.gamma.numpy()
    assert recalibrate(model, x, batches=20, batch_size=100) == 2000
    assert np.allclose(layer.moving_mean.numpy(), [1.0, -2.0, 3.0], atol=0.1)
    assert np.allclose(np.sqrt(layer.moving_variance.numpy()), [0.5, 1.0, 2.0], rtol=0.1)
    assert layer.momentum == 0.99 and np.array_equal(layer.gamma.numpy(), gamma)
    assert recalibrate(keras.Sequential([keras.Input((2,)), keras.layers.Dense(1)]), x[:, 0, 0, :2]) == 0
    run = train_model(config(colour_folder, tmp_path / "r", arch="resnet8", bn_recalibrate=2), verbose=0)
    assert run.test["accuracy"] >= 0.9, run.test  # 1.0 at every seed tried; chance is 1/3
    with pytest.raises(EdgeClfError, match="--bn-recalibrate must be"):
        train_model(config(colour_folder, tmp_path / "bad", bn_recalibrate=-1), verbose=0)
