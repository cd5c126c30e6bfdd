"""`edgeclf teach` on third-party bases, made in the test with Keras and TFLiteConverter, without our metadata:
a Keras MobileNetV2 with random weights (no pretrained weights can be downloaded here), and a TF-slim style
head that ends in a 1x1 CONV_2D."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from edgeclf.edge_app import metadata, tflite_graph
from edgeclf.edge_app.classifier import Classifier
from edgeclf.edge_app.teach import TeachConfig, main, teach
from tests.test_teach import predict_files, write_patterns

keras = pytest.importorskip("keras")
tf = pytest.importorskip("tensorflow")


def _convert(model: object, path: Path, int8: bool = False) -> Path:
    converter = tf.lite.TFLiteConverter.from_keras_model(model)
    if int8:
        rng = np.random.default_rng(0)
        shape = model.input_shape[1:]

        def calibration():  # noqa: ANN202
            for _ in range(8):
                yield [rng.uniform(-1, 1, (1, *shape)).astype(np.float32)]

        converter.optimizations = [tf.lite.Optimize.DEFAULT]
        converter.representative_dataset = calibration
        converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
        converter.inference_input_type = tf.uint8
        converter.inference_output_type = tf.uint8
    path.write_bytes(converter.convert())
    return path


@pytest.fixture(scope="module")
def mobilenet(tmp_path_factory) -> Path:
    """MobileNetV2 (alpha 0.35, 96x96, 10 classes, random weights) as float32: GAP -> FC -> SOFTMAX."""
    keras.utils.set_random_seed(0)
    model = keras.applications.MobileNetV2(input_shape=(96, 96, 3), alpha=0.35, weights=None, classes=10)
    return _convert(model, tmp_path_factory.mktemp("mnv2") / "mobilenet_v2.tflite")


@pytest.fixture(scope="module")
def slim_head(tmp_path_factory) -> Path:
    """A small conv net ending as TF-slim MobileNets do: average pool, 1x1 conv to the classes, squeeze, softmax;
    uint8 in and out, like the old Coral / TF-slim quantised files."""
    keras.utils.set_random_seed(1)
    inputs = keras.Input((32, 32, 3))
    x = keras.layers.Conv2D(16, 3, strides=2, activation="relu")(inputs)
    x = keras.layers.Conv2D(32, 3, strides=2, activation="relu")(x)
    x = keras.layers.GlobalAveragePooling2D(keepdims=True)(x)
    x = keras.layers.Conv2D(5, 1)(x)
    x = keras.layers.Reshape((5,))(x)
    outputs = keras.layers.Softmax()(x)
    return _convert(keras.Model(inputs, outputs), tmp_path_factory.mktemp("slim") / "slim.tflite", int8=True)


def test_mobilenet_embedding_is_the_pooled_features(mobilenet):
    model = tflite_graph.load(mobilenet.read_bytes())
    site = tflite_graph.find_head(model)
    assert site.op == "FULLY_CONNECTED" and site.dim == 1280 and site.weights.shape == (10, 1280)
    assert metadata.read_embedded(mobilenet) is None and metadata.read_sidecar(mobilenet) is None


def test_mobilenet_replace_and_extend(mobilenet, tmp_path, capsys):
    data = write_patterns(tmp_path / "data", per_label=8, seed=1)
    held = write_patterns(tmp_path / "held", per_label=10, seed=2)
    out = tmp_path / "taught.tflite"
    assert main([str(mobilenet), "--data", str(data), "--out", str(out)]) == 0
    assert "accuracy on the taught pictures" in capsys.readouterr().out
    taught = Classifier(out)  # no --mean/--std/--labels needed any more: the taught file carries them
    assert taught.labels == ("checker", "stripes") and taught.spec.height == 96
    assert taught.spec.mean == (127.5,) * 3  # the foreign-model convention, as `run` uses
    # random weights: no claim about new pictures, but the embedding must tell the taught ones apart
    right = sum(predict_files(taught, data / kind).count(kind) for kind in ("checker", "stripes"))
    assert right / 16 >= 0.75
    assert len(predict_files(taught, held / "stripes")) == 10

    # extend needs the base's labels; without metadata they come from --labels
    assert main([str(mobilenet), "--data", str(data), "--out", str(out), "--mode", "extend"]) == 1
    assert "needs its labels (--labels FILE)" in capsys.readouterr().err
    labels = tmp_path / "labels.txt"
    labels.write_text("\n".join(f"thing{i}" for i in range(10)) + "\n")
    result = teach(TeachConfig(mobilenet, data, out, mode="extend", labels=labels, mean=(127.5,) * 3, std=(127.5,) * 3))
    assert result.labels == (*(f"thing{i}" for i in range(10)), "checker", "stripes")
    assert Classifier(out).labels == result.labels


def test_a_tf_slim_head_ends_in_a_1x1_conv(slim_head, tmp_path):
    model = tflite_graph.load(slim_head.read_bytes())
    site = tflite_graph.find_head(model)
    assert site.op == "CONV_2D" and site.dim == 32 and site.weights.shape == (5, 32)
    out = tmp_path / "taught.tflite"
    result = teach(TeachConfig(slim_head, write_patterns(tmp_path / "data", 6, 3), out))
    taught = Classifier(out)
    assert taught.labels == ("checker", "stripes") and result.taught_accuracy >= 0.5
    emb, _ = taught.outputs(np.zeros((3, 32, 32, 3), np.float32), per_view=True)
    assert emb.shape == (3, 1, 32)  # (1, 1, 1, 32) per image flattened; uint8 dequantised
