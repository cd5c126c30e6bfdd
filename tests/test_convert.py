import numpy as np
import pytest

from edgeclf.convert import modes
from edgeclf.edge_app import metrics, preprocess
from edgeclf.edge_app.classifier import Classifier
from edgeclf.edge_app.contract import InputSpec
from edgeclf.edge_app.errors import EdgeClfError
from tests.conftest import colour_images

# What the table promises for each mode: its default I/O type, and the agreement with Keras verification
# requires (modes without a floor are judged by accuracy drop; 0.95 holds for the confident tiny model)
EXPECTED_IO = {name: np.dtype(m.default_io).type for name, m in modes.QUANT_MODES.items()}
AGREEMENT = {name: m.row.min_agreement or 0.95 for name, m in modes.QUANT_MODES.items()}


@pytest.mark.parametrize("mode", list(modes.QUANT_MODES))
def test_every_mode_runs_in_the_runtime_and_agrees_with_keras(mode, converted, tiny_keras_model):
    model, _ = tiny_keras_model
    clf = Classifier(converted[mode])
    assert clf.input_quant.dtype == EXPECTED_IO[mode]
    assert clf.output_quant.dtype == EXPECTED_IO[mode]
    x, y = colour_images(200, 16, seed=9)
    xn = preprocess.normalize(x, InputSpec(16, 16))
    keras_probs = model.predict(xn, verbose=0)
    tfl_probs = clf.predict(xn)
    assert tfl_probs.shape == (200, 3)
    assert np.allclose(tfl_probs.sum(axis=1), 1.0, atol=0.02)
    assert metrics.agreement(keras_probs, tfl_probs) >= AGREEMENT[mode]
    assert np.mean(np.argmax(tfl_probs, axis=1) == y) > 0.9
    if mode == "float32":
        assert np.allclose(keras_probs, tfl_probs, atol=1e-4)


def test_sizes_shrink_with_quantization(converted):
    size = {m: p.stat().st_size for m, p in converted.items()}
    assert size["float16"] < size["float32"]
    assert size["int8"] < size["float16"]
    assert size["dynamic"] < size["float32"]


def test_int8_uint8_io(tiny_keras_model):
    from edgeclf.convert.tflite import to_tflite
    from edgeclf.edge_app import metadata
    from edgeclf.edge_app.contract import ModelInfo

    model, _ = tiny_keras_model
    spec = InputSpec(16, 16)
    mode, io = modes.get("int8", "uint8")
    data = to_tflite(model, mode, io, preprocess.normalize(colour_images(50, 16, 3)[0], spec))
    import tempfile
    from pathlib import Path

    with tempfile.TemporaryDirectory() as tmp:
        path = metadata.write_model(Path(tmp) / "u8.tflite", data, ModelInfo(("r", "g", "b"), spec, "int8"))
        clf = Classifier(path)
        assert clf.input_quant.dtype == np.uint8 and clf.input_quant.scale > 0
        x, y = colour_images(100, 16, seed=4)
        assert np.mean(np.argmax(clf.predict(preprocess.normalize(x, spec)), axis=1) == y) > 0.9


def test_mode_table_errors():
    with pytest.raises(EdgeClfError, match="unknown quantization"):
        modes.get("int4")
    with pytest.raises(EdgeClfError, match="--io uint8 is not available for float16"):
        modes.get("float16", "uint8")
    assert modes.get("int8") == (modes.QUANT_MODES["int8"], "int8")


def test_calibrated_mode_needs_images(tiny_keras_model):
    from edgeclf.convert.tflite import to_tflite

    with pytest.raises(EdgeClfError, match="needs calibration images"):
        to_tflite(tiny_keras_model[0], modes.QUANT_MODES["int8"], "int8", None)


def test_op_report_shows_int8_is_integer_only(converted):
    from edgeclf.convert.verify import op_report

    int8 = op_report(converted["int8"])
    assert int8["count"] > 0 and int8["float_ops"] == [] and "CONV_2D" in int8["types"]
    assert "DELEGATE" not in int8["types"]  # listed without delegates, so no op hides
    dynamic = op_report(converted["dynamic"])
    assert "CONV_2D" in dynamic["float_ops"]  # dynamic range keeps float activations


def test_flip_tta_graph_averages_both_views_and_stays_integer_only(tiny_keras_model, tmp_path):
    from edgeclf.convert.tflite import to_tflite
    from edgeclf.convert.tta import wrap
    from edgeclf.convert.verify import op_report

    model, _ = tiny_keras_model
    x = preprocess.normalize(colour_images(40, 16, seed=5)[0], InputSpec(16, 16))
    wrapped = wrap(model, "flip")
    assert wrap(model, "none") is model
    expected = (model.predict(x, verbose=0) + model.predict(x[:, :, ::-1], verbose=0)) / 2
    assert np.allclose(wrapped.predict(x, verbose=0), expected, atol=1e-5)
    mode, io = modes.get("int8")
    path = tmp_path / "tta.tflite"
    path.write_bytes(to_tflite(wrapped, mode, io, x[:20]))
    ops = op_report(path)
    assert ops["float_ops"] == [] and "REVERSE_V2" in ops["types"]
    plain = len(to_tflite(model, mode, io, x[:20]))
    assert path.stat().st_size < 1.5 * plain  # the two views share one copy of the weights
    with pytest.raises(EdgeClfError, match="--tta must be one of"):
        wrap(model, "rotate")


def test_flip_shift_tta_weights_six_views_and_stays_integer_only(tiny_keras_model, tmp_path):
    from edgeclf.convert.tflite import to_tflite
    from edgeclf.convert.tta import VIEWS, wrap
    from edgeclf.convert.verify import op_report

    model, _ = tiny_keras_model
    x = preprocess.normalize(colour_images(40, 16, seed=6)[0], InputSpec(16, 16))
    padded = np.pad(x, ((0, 0), (1, 1), (1, 1), (0, 0)), mode="reflect")

    def pair(images):
        return (model.predict(images, verbose=0) + model.predict(images[:, :, ::-1], verbose=0)) / 2

    expected = 0.5 * pair(x) + 0.25 * pair(padded[:, :-2, :-2]) + 0.25 * pair(padded[:, 2:, 2:])
    wrapped = wrap(model, "flip_shift")
    assert VIEWS["flip_shift"] == 6
    # the toy model is confident: compare small scores relatively, not against an absolute tolerance
    assert np.allclose(wrapped.predict(x, verbose=0), expected, rtol=1e-3, atol=1e-9)
    assert not np.allclose(expected, pair(x), rtol=1e-3, atol=1e-9)  # the shifted views change the answer
    mode, io = modes.get("int8")
    path = tmp_path / "tta6.tflite"
    path.write_bytes(to_tflite(wrapped, mode, io, x[:20]))
    ops = op_report(path)
    assert ops["float_ops"] == [] and "MIRROR_PAD" in ops["types"]
    # six views share one copy of the weights (six copies would be over 5x the plain file)
    assert path.stat().st_size < 2 * len(to_tflite(model, mode, io, x[:20]))


def test_per_class_change_shows_the_class_a_conversion_hurts():
    from edgeclf.convert.verify import Verification, class_change_lines, class_changes

    y = np.array([0, 0, 0, 0, 1, 1, 1, 1, 2, 2])
    keras_pred = y.copy()
    int8_pred = np.array([0, 0, 0, 0, 1, 1, 0, 0, 2, 2])  # two 'green' images become 'red'
    labels = ("red", "green", "blue")
    check = Verification(
        keras=metrics.classification_report(np.eye(3)[keras_pred], y, labels),
        tflite=metrics.classification_report(np.eye(3)[int8_pred], y, labels),
        agreement=0.8,
        runtime="test",
        n=10,
        ops={},
    )
    rows = class_changes(check)
    assert [r["class"] for r in rows] == ["green", "red", "blue"]  # most hurt first
    assert rows[0]["recall_change_points"] == pytest.approx(-50.0) and rows[0]["f1"] == pytest.approx(2 / 3)
    assert rows[1]["recall_change_points"] == 0.0 and rows[1]["f1"] == pytest.approx(2 * (4 / 6) / (4 / 6 + 1))
    lines = class_change_lines(check, "int8")
    assert lines[0].startswith("per class  recall, Keras -> int8")
    assert lines[2].split() == ["green", "4", "1.0000", "0.5000", "-50.00", "1.0000", "0.6667"]
    assert lines[4].split() == ["blue", "2", "1.0000", "1.0000", "+0.00", "1.0000", "1.0000"]

    many = tuple(f"c{i:02d}" for i in range(25))
    y = np.arange(50) % 25
    wide = Verification(*(metrics.classification_report(np.eye(25)[y], y, many) for _ in range(2)), 1.0, "t", 50, {})
    assert "the 10 most hurt of 25 classes" in class_change_lines(wide, "int8")[0]
    assert len(class_change_lines(wide, "int8")) == 12
