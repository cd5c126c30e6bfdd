"""Transfer learning: backbones with --weights none / PATH / imagenet (offline), at a size other than 32."""

import json

import keras
import pytest

from convert.cli import main as convert_main
from edge_app.run import main as run_main
from train.cli import main as train_main


def mnv2_args(folder, run, *extra):
    """train argv for MobileNetV2 at 48 px on the tiny colour folder."""
    return [
        "--data",
        str(folder),
        "--arch",
        "mobilenet_v2",
        "--image-size",
        "48",
        "--batch-size",
        "8",
        "--val-split",
        "0.25",
        "--out",
        str(run),
        *extra,
    ]


def test_mobilenet_v2_from_scratch_at_48_px_train_convert_run(colour_folder, tmp_path, capsys):
    run = tmp_path / "run"
    argv = mnv2_args(colour_folder, run, "--weights", "none", "--epochs", "1")
    assert train_main(argv) == 0
    info = json.loads((run / "run.json").read_text())["model_info"]
    assert info["input"]["height"] == 48 and info["input"]["mean"] == [127.5] * 3  # MobileNetV2 wants [-1, 1]
    model = run / "mnv2_int8.tflite"
    assert (
        convert_main([str(run), "--quantize", "int8", "--out", str(model), "--calibration", "16", "--allow-drop"]) == 0
    )
    capsys.readouterr()
    image = next((colour_folder / "test" / "red").iterdir())
    assert run_main(["--model", str(model), "--source", str(image)]) == 0
    record = json.loads(capsys.readouterr().out)
    assert record["top"][0]["label"] in ("blue", "green", "red")


def test_pretrained_weights_file_trains_in_two_phases(colour_folder, tmp_path, capsys):
    backbone = keras.applications.MobileNetV2(include_top=False, weights=None, input_shape=(48, 48, 3), pooling="avg")
    weights = tmp_path / "backbone.weights.h5"
    backbone.save_weights(weights)
    run = tmp_path / "run"
    argv = mnv2_args(
        colour_folder, run, "--weights", str(weights), "--epochs", "1", "--fine-tune-epochs", "1", "--ema", "0.9"
    )  # EMA across both phases: each phase gets its own averages
    assert train_main(argv) == 0
    assert "fine-tuning:" in capsys.readouterr().err
    assert len((run / "history.csv").read_text().splitlines()) == 1 + 2  # head epoch + fine-tune epoch


def test_imagenet_offline_is_one_line(colour_folder, tmp_path, capsys, monkeypatch):
    from keras.src.applications import mobilenet_v2

    def offline(*args, **kwargs):
        raise Exception("URL fetch failure on https://storage.googleapis.com/...: None -- [Errno -3] no network")

    monkeypatch.setattr(mobilenet_v2.file_utils, "get_file", offline)
    argv = [
        "--data",
        str(colour_folder),
        "--arch",
        "mobilenet_v2",
        "--weights",
        "imagenet",
        "--image-size",
        "48",
        "--epochs",
        "1",
        "--out",
        str(tmp_path / "run"),
    ]
    assert train_main(argv) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert err[-1].startswith("error: --weights imagenet needs the internet") and "--weights PATH" in err[-1]


@pytest.mark.parametrize("weights, message", [("/no/such.weights.h5", "no such weights file")])
def test_bad_weights(colour_folder, tmp_path, capsys, weights, message):
    argv = ["--data", str(colour_folder), "--arch", "mobilenet_v2", "--weights", weights, "--out", str(tmp_path / "r")]
    assert train_main(argv) == 1
    assert message in capsys.readouterr().err
    assert (
        train_main(
            ["--data", str(colour_folder), "--arch", "resnet8", "--weights", "imagenet", "--out", str(tmp_path / "r2")]
        )
        == 1
    )
    assert "--weights applies to" in capsys.readouterr().err
