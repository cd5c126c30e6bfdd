"""CLI behaviour: dispatch, usage errors (exit 2), user errors (exit 1, one line), help texts."""

import json

import pytest

from edgeclf.convert.cli import main as convert_main
from edgeclf.edge_app.cli import COMMANDS
from edgeclf.edge_app.cli import main as edgeclf
from edgeclf.edge_app.run import main as run_main
from edgeclf.train.cli import main as train_main


def one_line_error(capsys, code, expected):
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 1
    assert len(err) == 1 and err[0].startswith("error: ") and expected in err[0], err


def test_dispatcher(capsys):
    assert edgeclf([]) == 2
    assert "commands:" in capsys.readouterr().out
    assert edgeclf(["--help"]) == 0
    assert edgeclf(["frobnicate"]) == 2
    assert "unknown command 'frobnicate'" in capsys.readouterr().err
    for name in COMMANDS:
        with pytest.raises(SystemExit) as exc:
            edgeclf([name, "--help"])
        assert exc.value.code == 0
        assert f"usage: edgeclf {name}" in capsys.readouterr().out


def test_unknown_options_are_usage_errors(capsys):
    for main in (train_main, convert_main):
        with pytest.raises(SystemExit) as exc:
            main(["--no-such-option"])
        assert exc.value.code == 2


@pytest.mark.parametrize(
    "argv, expected",
    [
        (["--epochs", "0"], "--epochs must be at least 1"),
        (["--val-split", "1.5"], "--val-split must be between 0 and 1"),
        (["--augment", "flip,warp"], "unknown augmentation(s) warp"),
        (["--limit", "5"], "--limit must be at least 20"),
        (["--data", "/no/such/folder"], "dataset folder not found"),
    ],
)
def test_train_bad_arguments(argv, expected, tmp_path, capsys):
    one_line_error(capsys, train_main([*argv, "--out", str(tmp_path / "run")]), expected)


def test_train_cifar10_offline_without_copy(monkeypatch, tmp_path, capsys):
    import keras

    def offline():
        raise Exception("URL fetch failure: [Errno -3] Temporary failure in name resolution")

    monkeypatch.setattr(keras.datasets.cifar10, "load_data", offline)
    code = train_main(
        ["--data", "cifar10", "--epochs", "1", "--out", str(tmp_path / "run"), "--cache-dir", str(tmp_path)]
    )
    one_line_error(capsys, code, "CIFAR-10 could not be downloaded")


def test_train_refuses_existing_run(tmp_path, capsys):
    run = tmp_path / "run"
    run.mkdir()
    (run / "model.keras").write_text("x")
    one_line_error(capsys, train_main(["--out", str(run)]), "already exists; pass --force")


def test_convert_bad_sources(tmp_path, capsys, tiny_keras_model):
    one_line_error(capsys, convert_main([str(tmp_path / "missing")]), "no such run folder or Keras file")
    text = tmp_path / "notes.txt"
    text.write_text("hello")
    one_line_error(capsys, convert_main([str(text)]), "is not a Keras model")
    fake = tmp_path / "fake.keras"
    fake.write_bytes(b"PK\x03\x04 definitely not a keras archive")
    one_line_error(capsys, convert_main([str(fake), "--data", str(tmp_path)]), "is not a readable Keras model")
    empty_run = tmp_path / "run"
    empty_run.mkdir()
    one_line_error(capsys, convert_main([str(empty_run)]), "not a run folder")
    _, keras_path = tiny_keras_model
    one_line_error(capsys, convert_main([str(keras_path)]), "no run.json beside it; pass --data")


def test_convert_lone_keras_file_with_data(tiny_keras_model, colour_folder, tmp_path, capsys):
    _, keras_path = tiny_keras_model
    out = tmp_path / "tiny.tflite"
    labels = tmp_path / "labels.txt"
    labels.write_text("red\ngreen\nblue\n")  # the tiny model's output order (a lone file must be told it)
    argv = [str(keras_path), "--data", str(colour_folder), "--image-size", "16", "--out", str(out)]
    argv += ["--mean", "0", "--std", "255", "--color", "RGB", "--labels", str(labels)]
    assert convert_main([*argv, "--calibration", "20"]) == 0
    printed = capsys.readouterr().out
    assert "int8 tflite" in printed and "agreement" in printed
    sidecar = json.loads(out.with_suffix(".json").read_text())
    assert sidecar["labels"] == ["red", "green", "blue"]  # the --labels order, not the sorted folder names
    assert sidecar["quantization"] == "int8" and sidecar["metrics"]["n"] == 36
    assert sidecar["metrics"]["calibration_images"] == 20
    # refuses to overwrite, then does with --force
    one_line_error(capsys, convert_main(argv), "exists; pass --force")
    assert convert_main([*argv, "--force", "--quantize", "float16", "--eval-limit", "9"]) == 0
    sidecar = json.loads(out.with_suffix(".json").read_text())
    assert sidecar["quantization"] == "float16" and sidecar["metrics"]["n"] == 9
    plain_macs = sidecar["metrics"]["macs"]
    assert convert_main([*argv, "--force", "--tta", "flip", "--calibration", "20"]) == 0
    sidecar = json.loads(out.with_suffix(".json").read_text())
    assert sidecar["metrics"]["tta"] == "flip" and sidecar["metrics"]["macs"] == 2 * plain_macs
    assert sidecar["metrics"]["float_ops"] == 0
    capsys.readouterr()
    one_line_error(capsys, convert_main([*argv, "--force", "--quantize", "dynamic", "--io", "int8"]), "--io int8")
    one_line_error(capsys, convert_main([*argv, "--force", "--out", str(tmp_path / "x.bin")]), "must end in .tflite")


def test_run_bad_inputs(converted, tmp_path, capsys):
    one_line_error(capsys, run_main(["--model", str(tmp_path / "none.tflite"), "--source", str(tmp_path)]), "not found")
    (tmp_path / "bad.jpg").write_bytes(b"nope")
    code = run_main(["--model", str(converted["int8"]), "--source", str(tmp_path / "bad.jpg")])
    err = capsys.readouterr().err
    assert code == 1 and "skipped" in err and "no frame could be classified" in err
    one_line_error(
        capsys, run_main(["--model", str(converted["int8"]), "--source", str(tmp_path / "nope")]), "source not found"
    )


def test_run_prints_json_lines(converted, colour_folder, capsys):
    source = str(colour_folder / "test" / "red")
    assert run_main(["--model", str(converted["int8"]), "--source", source, "--top-k", "2"]) == 0
    lines = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert len(lines) == 12
    assert all(len(rec["top"]) == 2 for rec in lines)
    assert sum(rec["top"][0]["label"] == "red" for rec in lines) >= 11


def test_convert_refuses_int8_with_float_ops(tiny_keras_model, colour_folder, tmp_path, capsys, monkeypatch):
    import edgeclf.convert.verify

    real = edgeclf.convert.verify.op_report
    monkeypatch.setattr(edgeclf.convert.verify, "op_report", lambda p: {**real(p), "float_ops": ["GELU"]})
    _, keras_path = tiny_keras_model
    out = tmp_path / "t.tflite"
    labels = tmp_path / "labels.txt"
    labels.write_text("red\ngreen\nblue\n")
    contract = ["--mean", "0", "--std", "255", "--color", "RGB", "--labels", str(labels)]
    code = convert_main([str(keras_path), "--data", str(colour_folder), "--out", str(out), *contract])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 1 and err[-1].startswith("error: the int8 model still computes in float32: GELU")
    assert not out.exists()


def test_non_finite_numbers_are_refused_everywhere(capsys):
    """Every float option of every stage refuses nan / inf (exit 2) instead of accepting and ignoring it."""
    import argparse
    import importlib

    checked = 0
    for module_name, _ in COMMANDS.values():
        module = importlib.import_module(module_name)
        if not hasattr(module, "build_parser"):
            continue
        for action in module.build_parser()._actions:
            assert action.type is not float, f"{module_name} {action.option_strings}: plain float accepts nan"
            if action.type is None or not action.option_strings:
                continue
            try:
                parsed = action.type("1")
            except (argparse.ArgumentTypeError, ValueError):
                continue  # not a number option
            if not isinstance(parsed, int | float | tuple | list):
                continue  # a path, a name...
            if isinstance(parsed, tuple | list) and not all(isinstance(v, int | float) for v in parsed):
                continue  # a list of names (--ha-labels 1 is the label "1")
            for bad in ("nan", "inf", "-inf"):
                with pytest.raises((argparse.ArgumentTypeError, ValueError)):
                    action.type(bad)
            checked += 1
    assert checked >= 15
    with pytest.raises(SystemExit) as exc:
        run_main(["--duration", "nan"])
    assert exc.value.code == 2 and "finite" in capsys.readouterr().err
