"""--strategy: mirrored over two logical CPUs; multiworker: TF_CONFIG, the chief, the custom loop, two workers."""

import json
import subprocess
import sys
from types import SimpleNamespace

import numpy as np
import pytest

from tests.conftest import ROOT

TWO_CPUS = """
import tensorflow as tf
cpu = tf.config.list_physical_devices("CPU")[0]
tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * 2)
"""
TRAIN = """
import sys
from edgeclf.train.cli import main
sys.exit(main(sys.argv[1:]))
"""


def on_two_cpus(code: str, tmp_path, *argv: str) -> subprocess.CompletedProcess:
    """`code` in a fresh Python whose TensorFlow sees two logical CPU devices (set before it starts)."""
    return subprocess.run(
        [sys.executable, "-c", TWO_CPUS + code, *argv],
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=300,
        env={"TF_CPP_MIN_LOG_LEVEL": "2", "PATH": "/usr/bin:/bin", "HOME": str(tmp_path), "PYTHONPATH": str(ROOT)},
    )


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
    result = on_two_cpus(TRAIN, tmp_path, *argv)
    assert result.returncode == 0, result.stderr[-2000:]
    assert "2 replicas, global batch 8, learning rate 0.004" in result.stderr
    config = json.loads((run / "run.json").read_text())["config"]
    assert config["strategy"] == "mirrored" and config["batch_size"] == 4
    assert (run / "model.keras").is_file()


def test_multiworker_needs_tf_config(colour_folder, tmp_path, monkeypatch, capsys):
    from edgeclf.train.cli import main

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


def _run_cluster(
    argv_for, tmp_path, timeout: float = 240.0, kill_worker_1_at: str | None = None
) -> list[subprocess.CompletedProcess]:
    """Start one `python -m edgeclf.train` per worker of a two-worker localhost cluster and wait for both with
    one deadline (a worker left alone would wait for its peer for an hour, so both are killed at it).
    With `kill_worker_1_at`, worker 1 is killed once its output shows that text."""
    import os
    import time

    ports = _free_ports(2)
    cluster = {"worker": [f"127.0.0.1:{p}" for p in ports]}
    procs = []
    for index in range(2):
        env = {
            "TF_CPP_MIN_LOG_LEVEL": "2",
            "PYTHONUNBUFFERED": "1",  # the epoch lines arrive as they are printed
            "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
            "HOME": str(tmp_path),
            "TF_CONFIG": json.dumps({"cluster": cluster, "task": {"type": "worker", "index": index}}),
        }
        log = (tmp_path / f"worker{index}.log").open("w+")
        cmd = [sys.executable, "-m", "edgeclf.train", *argv_for(index)]
        procs.append((subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, text=True, cwd=ROOT, env=env), log))
    deadline = time.monotonic() + timeout
    try:
        while kill_worker_1_at and time.monotonic() < deadline:
            worker1 = procs[1][0]
            if kill_worker_1_at in (tmp_path / "worker1.log").read_text() or worker1.poll() is not None:
                worker1.kill()
                break
            try:  # polls with a deadline: returns early if worker 0 ends first
                procs[0][0].wait(timeout=0.5)
                break
            except subprocess.TimeoutExpired:
                pass
        results = []
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
    from edgeclf.convert.pipeline import convert
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
    # each summary names what is on that host's disk: only the chief's points at a run folder
    assert f"next       edgeclf convert {outs[0]}" in results[0].stdout
    assert str(outs[1]) not in results[1].stdout.split("test       accuracy")[1]
    assert "the chief writes the run folder" in results[1].stdout
    assert (outs[0] / "model.keras").is_file() and (outs[0] / "run.json").is_file()
    assert not outs[1].exists()
    history = (outs[0] / "history.csv").read_text().splitlines()
    assert len(history) == 3  # header and two epochs
    converted = convert(outs[0], "int8", calibration=20, allow_drop=True)
    assert converted.path.is_file()
    assert converted.info.metrics["test_accuracy"] > 0.5  # three classes: chance is 1/3


def test_a_worker_that_dies_stops_the_other_with_one_line(tmp_path, colour_folder):
    """A worker killed mid-training: TensorFlow's heartbeat aborts the survivor's collectives, and the
    survivor exits 1 with one line instead of waiting for ever or printing a traceback."""
    import time

    def argv_for(index: int) -> list[str]:
        return [
            *("--data", str(colour_folder), "--image-size", "16", "--val-split", "0.25", "--batch-size", "4"),
            *(
                "--strategy",
                "multiworker",
                "--epochs",
                "500",
                "--patience",
                "0",
                "--out",
                str(tmp_path / f"run{index}"),
            ),
        ]

    start = time.monotonic()
    results = _run_cluster(argv_for, tmp_path, timeout=200, kill_worker_1_at="Epoch 2/")
    assert results[1].returncode == -9, results[1].stdout[-2000:]  # killed in training, not finished
    survivor = results[0].stdout
    assert results[0].returncode == 1, survivor[-3000:]
    assert "error: the cluster lost a worker (" in survivor and "Traceback" not in survivor
    assert not (tmp_path / "run0" / "model.keras").exists()
    print(f"the survivor stopped {time.monotonic() - start:.0f} s after the start")


CLUSTER = {"worker": ["hostA:23456", "hostB:23456"]}


@pytest.mark.parametrize(
    ("cluster", "task", "chief"),
    [
        (CLUSTER, {"type": "worker", "index": 0}, True),  # no chief: worker 0 is
        (CLUSTER, {"type": "worker", "index": 1}, False),
        ({"chief": ["hostC:1"], **CLUSTER}, {"type": "chief", "index": 0}, True),
        ({"chief": ["hostC:1"], **CLUSTER}, {"type": "worker", "index": 0}, False),  # a chief task outranks worker 0
        ({"evaluator": ["hostE:1"], **CLUSTER}, {"type": "evaluator", "index": 0}, False),
    ],
)
def test_is_chief_follows_tf_config(cluster, task, chief):
    from edgeclf.train import distribute

    cluster_strategy = SimpleNamespace(cluster_resolver=object())  # what MultiWorkerMirroredStrategy has
    environ = {"TF_CONFIG": json.dumps({"cluster": cluster, "task": task})}
    assert distribute.is_chief(cluster_strategy, environ) is chief
    # one host always writes its run folder, whatever TF_CONFIG says
    assert distribute.is_chief(None, environ) is True
    assert distribute.is_chief(SimpleNamespace(cluster_resolver=None), environ) is True


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        ('{"task": {"type": "worker", "index": 0}}', 'TF_CONFIG needs {"cluster"'),
        ('{"cluster": {"worker": ["a:1", "b:1"]}}', 'TF_CONFIG needs {"cluster"'),
        ('["a:1", "b:1"]', 'TF_CONFIG needs {"cluster"'),
        ('{"cluster": {"worker": []}, "task": {"type": "worker", "index": 0}}', "non-empty list of host:port"),
        ('{"cluster": {"worker": ["a:1"]}, "task": {"type": "chief", "index": 0}}', "task type 'chief' is not in"),
        ('{"cluster": {"worker": ["a:1"]}, "task": {"type": "worker", "index": "0"}}', "must be a whole number"),
        ('{"cluster": {"worker": ["a:1", "b:1"]}, "task": {"type": "worker", "index": 2}}', "index 2 is outside"),
    ],
)
def test_malformed_tf_config_is_one_line_error(raw, message):
    from edgeclf.edge_app.errors import EdgeClfError
    from edgeclf.train import distribute

    with pytest.raises(EdgeClfError) as info:
        distribute.tf_config({"TF_CONFIG": raw})
    assert message in str(info.value) and "\n" not in str(info.value)


def test_malformed_tf_config_through_the_cli(colour_folder, tmp_path, monkeypatch, capsys):
    from edgeclf.train.cli import main

    monkeypatch.setenv("TF_CONFIG", json.dumps({"cluster": {"worker": ["127.0.0.1:1"]}}))
    argv = ["--data", str(colour_folder), "--image-size", "16", "--epochs", "1", "--strategy", "multiworker"]
    assert main([*argv, "--out", str(tmp_path / "run")]) == 1
    err = capsys.readouterr().err
    assert 'TF_CONFIG needs {"cluster"' in err and "Traceback" not in err
    assert not (tmp_path / "run").exists()


LOOP_VS_FIT = """
import json
import numpy as np
import keras
from edgeclf.train import multiworker

strategy = tf.distribute.MirroredStrategy(devices=[d.name for d in tf.config.list_logical_devices("CPU")])
rng = np.random.default_rng(0)
x = rng.random((58, 8, 8, 3)).astype("float32")
y = np.eye(3, dtype="float32")[np.arange(58) % 3]
x[np.arange(58), :, :, np.arange(58) % 3] += 1.0  # the class is the brightest channel
train = tf.data.Dataset.from_tensor_slices((x[:40], y[:40])).batch(16, drop_remainder=True)
val = tf.data.Dataset.from_tensor_slices((x[40:], y[40:])).batch(512)  # 18 images: the replicas get 18 and 0


def run(loop, stop_after):
    keras.utils.set_random_seed(1)
    with strategy.scope():
        model = keras.Sequential([
            keras.Input((8, 8, 3)), keras.layers.Conv2D(4, 3, activation="relu"), keras.layers.BatchNormalization(),
            keras.layers.GlobalAveragePooling2D(), keras.layers.Dense(3, activation="softmax")])
        model.compile(optimizer=keras.optimizers.Adam(0.05, use_ema=True, ema_momentum=0.5),
                      loss=keras.losses.CategoricalCrossentropy(label_smoothing=0.1), metrics=["accuracy"])
    seen = []

    class Record(keras.callbacks.Callback):
        def on_epoch_end(self, epoch, logs=None):
            seen.append([epoch, sorted(logs)])
            self.model.stop_training = epoch + 1 >= stop_after

    callbacks = [keras.callbacks.SwapEMAWeights(swap_on_epoch=True), Record()]
    kw = dict(epochs=5, initial_epoch=1, callbacks=callbacks, validation_data=val, verbose=0, shuffle=False)
    history = multiworker.fit(model, strategy, train, **kw) if loop else model.fit(train, **kw).history
    # predict reads this worker's copy of the weights in batches of 7 (a short last one): as one call would
    probs = [multiworker.predict(model, x[40:], 7), keras.ops.convert_to_numpy(model(x[40:], training=False))]
    return {"history": history, "seen": seen, "weights": [w.tolist() for w in model.get_weights()],
            "probs": [p.tolist() for p in probs]}


print("RESULT " + json.dumps({"fit": run(False, 3), "loop": run(True, 3)}))
"""


def test_custom_loop_matches_keras_fit(tmp_path):
    """The multi-worker loop, run here under a two-replica MirroredStrategy where Keras' fit works too,
    trains exactly like fit: same loss scaling, gradient averaging, metrics over an unevenly split
    validation batch, EMA swaps and the final EMA weights, initial_epoch and stop_training."""
    result = on_two_cpus(LOOP_VS_FIT, tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    out = json.loads(result.stdout.split("RESULT ", 1)[1])
    fit, loop = out["fit"], out["loop"]
    assert (
        fit["seen"]
        == loop["seen"]
        == [
            [1, ["accuracy", "loss", "val_accuracy", "val_loss"]],
            [2, ["accuracy", "loss", "val_accuracy", "val_loss"]],
        ]
    )
    assert sorted(loop["history"]) == sorted(fit["history"])
    for key, values in fit["history"].items():
        np.testing.assert_allclose(loop["history"][key], values, rtol=1e-5, atol=1e-6, err_msg=key)
    for mine, theirs in zip(loop["weights"], fit["weights"], strict=True):
        np.testing.assert_allclose(mine, theirs, rtol=1e-5, atol=1e-6)
    assert np.array(loop["probs"][0]).shape == (18, 3)
    np.testing.assert_allclose(loop["probs"][0], loop["probs"][1], rtol=1e-5, atol=1e-6)
    assert fit["history"]["val_accuracy"][-1] > 0.5  # it learnt something: the comparison is not of two no-ops


def test_readme_cluster_commands_name_a_chief_and_a_worker():
    """The README's two-host example: both TF_CONFIGs are accepted, describe one cluster, and A is the chief."""
    import re
    import shlex

    from edgeclf.train import distribute

    text = (ROOT / "README.md").read_text()
    configs = [json.loads(shlex.split(raw)[0]) for raw in re.findall(r"export TF_CONFIG=('[^']+')", text)]
    assert len(configs) == 2 and configs[0]["cluster"] == configs[1]["cluster"]
    chiefs = [
        distribute.is_chief(SimpleNamespace(cluster_resolver=object()), {"TF_CONFIG": json.dumps(c)}) for c in configs
    ]
    assert chiefs == [True, False]


DISTILL_LOSS = """
import numpy as np
import keras
from keras.src.losses.losses import LossFunctionWrapper  # what compile() wraps a loss function in
from edgeclf.train import distill

n, batch = 3, 8
rng = np.random.default_rng(0)
labels = np.eye(n, dtype=np.float32)[rng.integers(0, n, batch)]
teacher = rng.dirichlet(np.ones(n), batch).astype(np.float32)
student = rng.dirichlet(np.ones(n), batch).astype(np.float32)
y_true = np.concatenate([labels, teacher], axis=-1)
loss = LossFunctionWrapper(distill.distillation_loss(n, 0.7, 4.0, 0.1))
single = float(loss(y_true, student))
strategy = tf.distribute.MirroredStrategy(["/cpu:0", "/cpu:1"])
with strategy.scope():
    loss = LossFunctionWrapper(distill.distillation_loss(n, 0.7, 4.0, 0.1))
data = strategy.experimental_distribute_dataset(tf.data.Dataset.from_tensor_slices((y_true, student)).batch(batch))
for yt, yp in data:
    total = float(strategy.reduce("SUM", strategy.run(loss, args=(yt, yp)), axis=None))
print(f"{single:.6f} {total:.6f}")
"""


def test_distillation_loss_is_scaled_once_per_replica(tmp_path):
    # Keras scales a reduced loss by 1 / replicas; the gradients are then summed over replicas. A loss
    # that reduces its parts itself got the cross-entropy scaled and the teacher's KL term not (n times
    # too heavy on n replicas).
    result = on_two_cpus(DISTILL_LOSS, tmp_path)
    assert result.returncode == 0, result.stderr[-2000:]
    single, total = map(float, result.stdout.split()[-2:])
    assert single > 0.1
    assert abs(total - single) < 1e-4 * single, (single, total)
