"""One table of quantisation modes (issue 14 item 7): the CLI, converter, verification and benchmark agree with it."""

from __future__ import annotations

import dataclasses

import pytest

from edgeclf.edge_app import quantmodes
from edgeclf.edge_app.quantmodes import MODES, REFERENCE


def test_the_table_is_the_contracts_list_of_quantizations():
    from edgeclf.edge_app.contract import QUANTIZATIONS

    assert QUANTIZATIONS == tuple(MODES) == ("float32", "float16", "dynamic", "int8")
    assert REFERENCE in MODES and MODES[REFERENCE].weights == "float32"
    for name, mode in MODES.items():
        assert mode.name == name and mode.io_choices and mode.default_io == mode.io_choices[0]
        assert set(mode.io_choices) <= set(quantmodes.IO_TYPES)
    assert [m.name for m in MODES.values() if m.integer_only] == ["int8"]
    assert len({m.colour for m in MODES.values()}) == len(MODES)  # the report's markers tell modes apart


def test_get_names_the_choices():
    from edgeclf.edge_app.errors import EdgeClfError

    assert quantmodes.get("int8") is MODES["int8"]
    with pytest.raises(EdgeClfError, match="unknown quantization 'int4'; choose from float32, float16, dynamic, int8"):
        quantmodes.get("int4")


def test_every_row_has_a_converter_setting_and_every_setting_a_row():
    from edgeclf.convert import modes

    assert list(modes.CONVERTERS) == list(MODES)
    assert list(modes.QUANT_MODES) == list(MODES)
    for name, mode in modes.QUANT_MODES.items():
        assert mode.row is MODES[name] and mode.name == name and mode.io_choices == MODES[name].io_choices


def test_a_row_without_a_converter_setting_fails_and_so_does_a_setting_without_a_row():
    from edgeclf.convert import modes

    extra = {**MODES, "int4": dataclasses.replace(MODES["int8"], name="int4")}
    with pytest.raises(RuntimeError, match="int4 .*no converter setting"):
        modes.build(extra, modes.CONVERTERS)
    fewer = {k: v for k, v in MODES.items() if k != "dynamic"}
    with pytest.raises(RuntimeError, match="dynamic .*not in the table"):
        modes.build(fewer, modes.CONVERTERS)


def test_cli_choices_come_from_the_table():
    from edgeclf.convert.cli import build_parser

    actions = {a.dest: a for a in build_parser()._actions}
    assert list(actions["quantize"].choices) == list(MODES)
    assert list(actions["io"].choices) == list(quantmodes.IO_TYPES)
    for name, mode in MODES.items():
        assert f"{name}: {mode.description}" in actions["quantize"].help


def test_report_colours_and_row_order_come_from_the_table():
    from edgeclf.benchmarks import report

    for name, mode in MODES.items():
        assert report.colour(name) == mode.colour
    assert report.colour("foreign-thing") == report.UNKNOWN_COLOUR
    rows = [
        {"model": "b_int8.tflite", "architecture": "b", "quantization": "int8", "runtime": "r", "threads": 1},
        {"model": "a_int8.tflite", "architecture": "a", "quantization": "int8", "runtime": "r", "threads": 1},
        {"model": "a_f16.tflite", "architecture": "a", "quantization": "float16", "runtime": "r", "threads": 1},
        {"model": "b_f32.tflite", "architecture": "b", "quantization": "float32", "runtime": "r", "threads": 1},
        {"model": "a_f32.tflite", "architecture": "a", "quantization": "float32", "runtime": "r", "threads": 1},
    ]
    ordered = [r["model"] for r in report.ordered(rows)]
    # architectures in the order given, modes in table order within each
    assert ordered == ["b_f32.tflite", "b_int8.tflite", "a_f32.tflite", "a_f16.tflite", "a_int8.tflite"]


def test_verification_holds_each_mode_to_its_agreement_floor(tiny_keras_model, colour_folder, tmp_path, capsys):
    """A float32 file that disagrees with Keras on 2% of images is a broken conversion, whatever the accuracy."""
    import edgeclf.convert.pipeline
    from edgeclf.convert.cli import main as convert_main

    assert MODES["float32"].min_agreement == 0.999 and MODES["int8"].min_agreement is None
    real = edgeclf.convert.pipeline.verify

    def worse(*args, **kwargs):
        return dataclasses.replace(real(*args, **kwargs), agreement=0.98)

    labels = tmp_path / "labels.txt"
    labels.write_text("red\ngreen\nblue\n")
    out = tmp_path / "t.tflite"
    argv = [str(tiny_keras_model[1]), "--data", str(colour_folder), "--out", str(out), "--eval-limit", "30"]
    argv += ["--mean", "0", "--std", "255", "--color", "RGB", "--labels", str(labels)]
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(edgeclf.convert.pipeline, "verify", worse)
        assert convert_main([*argv, "--quantize", "float32"]) == 1
        err = capsys.readouterr().err.strip().splitlines()[-1]
        assert err.startswith("error: float32 top-1 agreement with Keras 0.9800 is under the 0.999 float32 requires")
        assert not out.exists()
        assert convert_main([*argv, "--quantize", "float32", "--allow-drop"]) == 0  # kept on request
        assert convert_main([*argv, "--quantize", "int8", "--force", "--calibration", "20"]) == 0  # no floor


def test_readme_table_lists_the_table_rows():
    from tests.conftest import ROOT

    lines = (ROOT / "README.md").read_text().splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith("| `--quantize` |"))
    end = next(i for i in range(start, len(lines)) if not lines[i].startswith("|"))
    rows = lines[start + 2 : end]
    assert [r.split("`")[1] for r in rows] == list(MODES)
    for row, mode in zip(rows, MODES.values()):
        assert f"| {mode.weights} | {mode.activations} |" in row
        if mode.min_agreement is not None:
            assert f"under {mode.min_agreement:g} |" in row
