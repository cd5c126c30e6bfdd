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


def _free_ports(n: int) -> list[int]:
    """Ports the kernel hands out now: picked at test time, so parallel runs do not collide
    (the README's example uses 23456 / 23457)."""
    import socket

    socks = [socket.socket() for _ in range(n)]
    try:
        for s in socks:
            s.bind(("127.0.0.1", 0))
        return [s.getsockname()[1] for s in socks]
    finally:
        for s in socks:
            s.close()


def _run_cluster(argv_for, tmp_path, timeout: float = 240.0) -> list[subprocess.CompletedProcess]:
    """Start one `python -m train` per worker of a two-worker localhost cluster, wait for both with
    one deadline; a worker left alone would wait for its peer forever, so both are killed at it."""
    import os
    import time

    ports = _free_ports(2)
    cluster = {"worker": [f"127.0.0.1:{p}" for p in ports]}
    procs = []
    for index in range(2):
        env = {
            "TF_CPP_MIN_LOG_LEVEL": "2",
            "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
            "HOME": str(tmp_path),
            "TF_CONFIG": json.dumps({"cluster": cluster, "task": {"type": "worker", "index": index}}),
        }
        log = (tmp_path / f"worker{index}.log").open("w+")
        cmd = [sys.executable, "-m", "train", *argv_for(index)]
        procs.append((subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, text=True, cwd=ROOT, env=env), log))
    deadline = time.monotonic() + timeout
    results = []
    try:
        for proc, log in procs:
            rc = proc.wait(timeout=max(1.0, deadline - time.monotonic()))
            log.seek(0)
            results.append(subprocess.CompletedProcess(proc.args, rc, log.read(), ""))
    finally:
        for proc, log in procs:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
            log.close()
    return results


def test_multiworker_two_processes_train_and_only_the_chief_writes(tmp_path):
    """Issue 14: two workers on localhost train together; both exit 0, only worker 0 (the chief) writes
    its --out, and that model converts and beats chance on the easy colour data."""
    from convert.pipeline import convert
    from tests.conftest import write_image_folder

    data = write_image_folder(tmp_path / "colours", per_class=24)
    outs = [tmp_path / "run0", tmp_path / "run1"]

    def argv_for(index: int) -> list[str]:
        return [
            "--data",
            str(data),
            "--image-size",
            "16",
            "--epochs",
            "2",
            "--batch-size",
            "8",
            "--learning-rate",
            "0.005",
            "--val-split",
            "0.25",
            "--strategy",
            "multiworker",
            "--out",
            str(outs[index]),
        ]

    results = _run_cluster(argv_for, tmp_path)
    for index, result in enumerate(results):
        assert result.returncode == 0, f"worker {index}:\n{result.stdout[-3000:]}"
        assert "2 replicas, global batch 16, learning rate 0.01" in result.stdout
    assert "worker 1 is not the chief" in results[1].stdout
    assert (outs[0] / "model.keras").is_file() and (outs[0] / "run.json").is_file()
    assert not outs[1].exists()
    history = (outs[0] / "history.csv").read_text().splitlines()
    assert len(history) == 3  # header and two epochs
    converted = convert(outs[0], "int8", calibration=20, allow_drop=True)
    assert converted.path.is_file()
    assert converted.info.metrics["test_accuracy"] > 0.5  # three classes: chance is 1/3
