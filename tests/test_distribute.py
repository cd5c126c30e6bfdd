"""--strategy: MirroredStrategy over two logical CPU devices; multiworker needs TF_CONFIG."""

import json
import subprocess
import sys

from tests.conftest import ROOT

SCRIPT = """
import sys
import tensorflow as tf
cpu = tf.config.list_physical_devices("CPU")[0]
tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * 2)
from train.cli import main
sys.exit(main(sys.argv[1:]))
"""


def test_mirrored_over_two_logical_cpus(colour_folder, tmp_path):
    run = tmp_path / "run"
    argv = [
        "--data",
        str(colour_folder),
        "--image-size",
        "16",
        "--epochs",
        "2",
        "--batch-size",
        "4",
        "--learning-rate",
        "0.002",
        "--val-split",
        "0.25",
        "--strategy",
        "mirrored",
        "--out",
        str(run),
    ]
    result = subprocess.run(
        [sys.executable, "-c", SCRIPT, *argv],
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=300,
        env={"TF_CPP_MIN_LOG_LEVEL": "2", "PATH": "/usr/bin:/bin", "HOME": str(tmp_path)},
    )
    assert result.returncode == 0, result.stderr[-2000:]
    assert "2 replicas, global batch 8, learning rate 0.004" in result.stderr
    config = json.loads((run / "run.json").read_text())["config"]
    assert config["strategy"] == "mirrored" and config["batch_size"] == 4
    assert (run / "model.keras").is_file()


def test_multiworker_needs_tf_config(colour_folder, tmp_path, monkeypatch, capsys):
    from train.cli import main

    monkeypatch.delenv("TF_CONFIG", raising=False)
    argv = [
        "--data",
        str(colour_folder),
        "--image-size",
        "16",
        "--epochs",
        "1",
        "--strategy",
        "multiworker",
        "--out",
        str(tmp_path / "run"),
    ]
    assert main(argv) == 1
    assert "needs TF_CONFIG" in capsys.readouterr().err
    monkeypatch.setenv("TF_CONFIG", "{not json")
    assert main([*argv[:-1], str(tmp_path / "run2")]) == 1
    assert "TF_CONFIG is not valid JSON" in capsys.readouterr().err
