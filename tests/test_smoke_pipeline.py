"""Train + convert end to end on a few hundred images of the shared CIFAR-10 copy."""

import json
from pathlib import Path

import pytest

from edgeclf.convert.cli import main as convert_main
from edgeclf.edge_app.run import main as run_main
from edgeclf.train.cli import main as train_main
from tests.conftest import CIFAR, ROOT

pytestmark = pytest.mark.skipif(not (CIFAR / "train").is_dir(), reason=f"CIFAR-10 copy not at {CIFAR}")


@pytest.fixture(scope="module")
def smoke_run(tmp_path_factory):
    run = tmp_path_factory.mktemp("smoke") / "run"
    code = train_main(
        [
            "--data",
            "cifar10",
            "--data-dir",
            str(CIFAR),
            "--limit",
            "600",
            "--epochs",
            "3",
            "--batch-size",
            "32",
            "--augment",
            "flip,crop,rotate,zoom,brightness",
            "--out",
            str(run),
        ]
    )
    assert code == 0
    return run


def test_train_writes_the_run_folder(smoke_run, capsys):
    for name in ("model.keras", "run.json", "metrics.json", "history.csv", "curves.png", "confusion.png"):
        assert (smoke_run / name).is_file(), name
    m = json.loads((smoke_run / "metrics.json").read_text())
    assert m["split"] == "test" and m["n"] == 600
    assert set(m["per_class"]) == {
        "airplane",
        "automobile",
        "bird",
        "cat",
        "deer",
        "dog",
        "frog",
        "horse",
        "ship",
        "truck",
    }
    assert sum(map(sum, m["confusion_matrix"])) == 600
    assert m["accuracy"] > 0.13  # above the 10% of chance after 3 short epochs
    history = (smoke_run / "history.csv").read_text().splitlines()
    assert history[0].split(",") == ["epoch", "accuracy", "learning_rate", "loss", "val_accuracy", "val_loss"]
    assert len(history) == 4
    run = json.loads((smoke_run / "run.json").read_text())
    assert run["config"]["data"]["limit"] == 600 and run["model_info"]["architecture"] == "tutorial_cnn"
    assert (smoke_run / "curves.png").read_bytes()[:4] == b"\x89PNG"


def test_convert_int8_verifies_and_runs(smoke_run, capsys):
    code = convert_main([str(smoke_run), "--quantize", "int8", "--allow-drop"])
    assert code == 0
    out = capsys.readouterr().out
    assert "keras file" in out and "int8 tflite" in out
    model = smoke_run / "tutorial_cnn_int8.tflite"
    sidecar = json.loads(model.with_suffix(".json").read_text())
    m = sidecar["metrics"]
    assert m["n"] == 600 and m["split"] == "test" and m["agreement_vs_keras"] > 0.7
    assert abs(m["keras_accuracy"] - json.loads((smoke_run / "metrics.json").read_text())["accuracy"]) < 1e-5
    assert sidecar["input"]["height"] == 32 and sidecar["quantization"] == "int8"
    # the first 20 test images of each class, named by their folder: the edge app's answers beat chance (10%);
    # 42 of 200 (0.21) here, the sidecar's int8 test accuracy 0.228
    first_20 = CIFAR / "test" / "*" / "00[01][0-9].jpg"
    assert run_main(["--model", str(model), "--source", str(first_20), "--no-display", "--threshold", "0"]) == 0
    records = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    right = sum(r["label"] == Path(r["source"]).parent.name for r in records)
    assert len(records) == 200 and right / len(records) > 0.13, right


def test_convert_refuses_a_large_drop(smoke_run, capsys):
    out = smoke_run / "strict.tflite"
    code = convert_main([str(smoke_run), "--quantize", "float16", "--max-drop", "-50", "--out", str(out)])
    err = capsys.readouterr().err
    assert code == 1 and "more than --max-drop -50.0" in err and "nothing written" in err
    assert not out.exists() and not out.with_suffix(".json").exists()


@pytest.mark.slow
def test_shipped_tutorial_cnn_recipe_reproduces_its_accuracy(tmp_path):
    """The models/README recipe for tutorial_cnn on all of CIFAR-10, opt-in with `pytest -m slow` (training took
    465 s on the quiet 2-core reference VM, 3,124 s niced under other jobs): the int8 file it makes scores within
    1.5 points of the shipped one's (it scored the shipped 0.7438 exactly, Keras 0.7426, on 2026-11-28)."""
    run = tmp_path / "run"
    argv = ["--data", "cifar10", "--data-dir", str(CIFAR), "--arch", "tutorial_cnn", "--epochs", "30"]
    assert train_main([*argv, "--out", str(run)]) == 0
    model = tmp_path / "tutorial_cnn_int8.tflite"
    assert convert_main([str(run), "--quantize", "int8", "--out", str(model)]) == 0
    shipped = json.loads((ROOT / "models" / "tutorial_cnn_int8.json").read_text())["metrics"]
    ours = json.loads(model.with_suffix(".json").read_text())["metrics"]
    assert ours["n"] == shipped["n"] == 10_000 and ours["split"] == "test"
    assert abs(ours["test_accuracy"] - shipped["test_accuracy"]) < 0.015, (ours["test_accuracy"], shipped)
