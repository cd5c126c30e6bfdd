"""A lone Keras file has no run.json to say how it was trained: convert must be told (issue 14 item 6).

The tiny model was trained on RGB pixels / 255 with outputs in the order red, green, blue; the colour
folder's classes sort as blue, green, red. A wrong colour order or label order swaps red and blue, which
leaves about a third of the images right: under twice chance, so the gate must refuse it.
"""

from __future__ import annotations

import json
import shutil

import pytest

from edgeclf.convert.cli import main as convert_main
from tests.conftest import COLOURS
from tests.test_convert_inputs import GOOD_RUN

CONTRACT = ["--mean", "0", "--std", "255", "--color", "RGB"]


@pytest.fixture()
def lone(tiny_keras_model, tmp_path):
    """A private copy of the tiny model (a sidecar written beside it must not leak into other tests)."""
    path = tmp_path / "model" / "tiny.keras"
    path.parent.mkdir()
    shutil.copy(tiny_keras_model[1], path)
    return path


def labels_file(tmp_path, labels, name="labels.txt"):
    path = tmp_path / name
    path.write_text("\n".join(labels) + "\n", encoding="utf-8")
    return path


def one_error_line(capsys, code: int) -> str:
    captured = capsys.readouterr()
    lines = captured.err.strip().splitlines()
    assert code == 1, captured.err
    assert len(lines) == 1 and lines[0].startswith("error: "), captured.err
    return lines[0]


def base_argv(lone, folder, out):
    return [str(lone), "--data", str(folder), "--out", str(out), "--quantize", "float32", "--eval-limit", "30"]


def test_lone_file_without_a_contract_is_refused_naming_what_is_missing(lone, colour_folder, tmp_path, capsys):
    out = tmp_path / "t.tflite"
    line = one_error_line(capsys, convert_main(base_argv(lone, colour_folder, out)))
    assert "pass --mean, --std, --color and --labels" in line and "tiny.json" in line
    assert not out.exists()
    line = one_error_line(capsys, convert_main([*base_argv(lone, colour_folder, out), "--mean", "0", "--std", "255"]))
    assert "pass --color and --labels" in line and "--mean" not in line
    line = one_error_line(capsys, convert_main([str(lone), *CONTRACT]))
    assert "pass --data and --labels" in line


def test_lone_file_with_the_contract_converts(lone, colour_folder, tmp_path, capsys):
    out = tmp_path / "t.tflite"
    labels = labels_file(tmp_path, COLOURS)
    assert convert_main([*base_argv(lone, colour_folder, out), *CONTRACT, "--labels", str(labels)]) == 0
    sidecar = json.loads(out.with_suffix(".json").read_text())
    assert sidecar["labels"] == list(COLOURS)  # the model's output order, not the folder's sorted order
    assert sidecar["input"]["color"] == "RGB" and sidecar["input"]["std"] == [255.0] * 3
    assert sidecar["metrics"]["keras_accuracy"] > 0.9 and sidecar["metrics"]["test_accuracy"] > 0.9


def test_wrong_colour_order_is_refused_by_the_chance_gate(lone, colour_folder, tmp_path, capsys):
    out = tmp_path / "t.tflite"
    labels = labels_file(tmp_path, COLOURS)
    argv = [*base_argv(lone, colour_folder, out), "--mean", "0", "--std", "255", "--color", "BGR"]
    line = one_error_line(capsys, convert_main([*argv, "--labels", str(labels)]))
    assert "under twice chance (0.6667 for 3 classes)" in line and "--color" in line
    accuracy = float(line.split("scores ")[1].split()[0])
    assert accuracy < 0.5  # red and blue swapped: about a third right
    assert not out.exists() and not out.with_suffix(".json").exists()


def test_labels_in_the_wrong_order_are_refused_by_the_chance_gate(lone, colour_folder, tmp_path, capsys):
    out = tmp_path / "t.tflite"
    folder_order = labels_file(tmp_path, sorted(COLOURS))  # blue, green, red: what the old default assumed
    line = one_error_line(
        capsys, convert_main([*base_argv(lone, colour_folder, out), *CONTRACT, "--labels", str(folder_order)])
    )
    assert "under twice chance" in line and "--labels" in line
    assert not out.exists()


@pytest.mark.parametrize(
    ("labels", "message"),
    [
        (("red", "green"), "2 labels but the model outputs 3 scores"),
        (("red", "green", "purple"), "not among the data's classes"),
    ],
)
def test_labels_must_fit_the_model_and_the_data(labels, message, lone, colour_folder, tmp_path, capsys):
    out = tmp_path / "t.tflite"
    argv = [*base_argv(lone, colour_folder, out), *CONTRACT, "--labels", str(labels_file(tmp_path, labels))]
    assert message in one_error_line(capsys, convert_main(argv))


def test_sidecar_supplies_the_contract_and_options_override_it(lone, colour_folder, tmp_path, capsys):
    out = tmp_path / "t.tflite"
    sidecar = {"labels": list(COLOURS), "input": {"color": "RGB", "mean": [0, 0, 0], "std": [255, 255, 255]}}
    (lone.parent / "tiny.json").write_text(json.dumps(sidecar), encoding="utf-8")
    assert convert_main(base_argv(lone, colour_folder, out)) == 0
    assert json.loads(out.with_suffix(".json").read_text())["labels"] == list(COLOURS)
    capsys.readouterr()
    # a wrong sidecar is caught by the gate like wrong options ...
    sidecar["input"]["color"] = "BGR"
    (lone.parent / "tiny.json").write_text(json.dumps(sidecar), encoding="utf-8")
    line = one_error_line(capsys, convert_main([*base_argv(lone, colour_folder, out), "--force"]))
    assert "under twice chance" in line and "tiny.json" in line
    # ... and an option given on the command line wins over the sidecar
    assert convert_main([*base_argv(lone, colour_folder, out), "--force", "--color", "RGB"]) == 0


@pytest.mark.parametrize(
    ("sidecar", "message"),
    [
        ("{not json", "not valid JSON"),
        (json.dumps({"labels": "red", "input": {}}), "'labels' must be"),
        (json.dumps({"labels": list(COLOURS), "input": {"color": "YUV", "mean": [0] * 3, "std": [255] * 3}}), "color"),
        (json.dumps({"labels": list(COLOURS), "input": {"color": "RGB", "mean": [0] * 3, "std": [0] * 3}}), "std"),
        (json.dumps({"labels": list(COLOURS), "input": {"color": "RGB"}}), "pass --mean and --std"),
    ],
)
def test_bad_sidecar_is_one_line(sidecar, message, lone, colour_folder, tmp_path, capsys):
    (lone.parent / "tiny.json").write_text(sidecar, encoding="utf-8")
    line = one_error_line(capsys, convert_main(base_argv(lone, colour_folder, tmp_path / "t.tflite")))
    assert message in line and "tiny.json" in line


def test_contract_options_are_refused_for_a_run_folder(lone, tmp_path, capsys):
    run = tmp_path / "run"
    run.mkdir()
    shutil.copy(lone, run / "model.keras")
    (run / "run.json").write_text(json.dumps(GOOD_RUN), encoding="utf-8")
    line = one_error_line(capsys, convert_main([str(run), "--color", "BGR"]))
    assert "--color" in line and "run.json" in line


def test_chance_floor():
    from edgeclf.convert.lonefile import chance_floor

    assert chance_floor(3) == pytest.approx(2 / 3)
    assert chance_floor(10) == pytest.approx(0.2)
    assert chance_floor(2) == pytest.approx(0.75)  # twice chance would be 1.0: halfway to perfect instead


@pytest.fixture()
def bgr_keras(tiny_keras_model, tmp_path):
    """The tiny model made to expect BGR pixels: its first kernel's input channels reversed. Saved as .keras."""
    import keras

    model = keras.models.clone_model(tiny_keras_model[0])
    model.set_weights(tiny_keras_model[0].get_weights())
    first = model.layers[0]
    kernel, bias = first.get_weights()
    first.set_weights([kernel[:, :, ::-1, :], bias])
    path = tmp_path / "bgr" / "tiny_bgr.keras"
    path.parent.mkdir()
    model.save(path)
    return path


def test_a_bgr_model_is_fed_bgr_by_convert_and_by_the_benchmark(bgr_keras, colour_folder, tmp_path, capsys):
    """--color BGR reaches calibration and verification, and the benchmark's accuracy feeds the model's order."""
    from edgeclf.benchmarks import bench
    from edgeclf.edge_app.classifier import Classifier

    out = tmp_path / "bgr_int8.tflite"
    labels = labels_file(tmp_path, COLOURS)
    argv = [str(bgr_keras), "--data", str(colour_folder), "--out", str(out), "--calibration", "30"]
    one_error_line(capsys, convert_main([*argv, *CONTRACT, "--labels", str(labels)]))  # RGB: the gate refuses
    contract = ["--mean", "0", "--std", "255", "--color", "BGR", "--labels", str(labels)]
    assert convert_main([*argv, *contract]) == 0
    metrics = json.loads(out.with_suffix(".json").read_text())["metrics"]
    assert metrics["keras_accuracy"] > 0.9 and metrics["test_accuracy"] > 0.9 and metrics["agreement_vs_keras"] > 0.9
    clf = Classifier(out)
    config = bench.BenchConfig(models=[out], data=colour_folder, mode=bench.QUICK)
    accuracy = bench._accuracy(config, {"bgr": (out, None, 1, clf)}, bench.QUICK)
    assert accuracy[str(out)]["top1"] > 0.9


def test_the_function_takes_the_labels_themselves(lone, colour_folder, tmp_path):
    from edgeclf.convert.pipeline import convert

    result = convert(
        lone,
        "float32",
        out=tmp_path / "t.tflite",
        data={"data": str(colour_folder)},
        eval_limit=30,
        mean=(0, 0, 0),
        std=(255, 255, 255),
        color="RGB",
        labels=list(COLOURS),
    )
    assert result.info.labels == COLOURS and result.verification.keras["accuracy"] > 0.9
