"""`edgeclf train --resume RUN_DIR`: a run killed with SIGKILL after epoch 2 of 4 continues where it stopped,
with its weights, optimiser state (schedule position, EMA), lookahead average, best checkpoint and history."""

import csv
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from edgeclf.train.cli import main

ROOT = Path(__file__).resolve().parent.parent

# The child is the real `python -m edgeclf.train`, with one hook: right after the resume state of epoch HOLD is
# committed it touches a marker and blocks, so the SIGKILL lands at a known point instead of racing epoch 3.
HOLD_AFTER = 2
LAUNCHER = """
import runpy, sys, threading
from pathlib import Path
from edgeclf.train import resume
marker, hold = Path(sys.argv[1]), int(sys.argv[2])
commit = resume.commit


def held(run_dir, staged, state, *args, **kwargs):
    out = commit(run_dir, staged, state, *args, **kwargs)
    if state["epochs"] == hold:
        marker.write_text("held")
        threading.Event().wait()
    return out


resume.commit = held
sys.argv = ["python -m edgeclf.train", *sys.argv[3:]]
runpy.run_module("edgeclf.train", run_name="__main__")
"""


def train_args(data: Path, out: Path, *extra: str) -> list[str]:
    return [
        "--data", str(data), "--image-size", "16", "--val-split", "0.25", "--arch", "tutorial_cnn",
        "--epochs", "4", "--batch-size", "8", "--learning-rate", "3e-3", "--schedule", "cosine", "--ema", "0.9",
        "--cache-dir", str(out.parent / "cache"), "--out", str(out), *extra,
    ]  # fmt: skip


def rows(run: Path) -> list[dict[str, str]]:
    with open(run / "history.csv") as fh:
        return list(csv.DictReader(fh))


class Crash(Exception):
    """The run stops here as if killed (in-process, so the test can resume it at once)."""


def crash_after(monkeypatch, when):
    """Make the run crash right after the epoch whose committed state satisfies `when(state)`."""
    from edgeclf.train import resume

    commit = resume.commit

    def crashing(run_dir, staged, state, *args):
        commit(run_dir, staged, state, *args)
        if when(state):
            raise Crash

    monkeypatch.setattr(resume, "commit", crashing)


def wait_for(path: Path, proc: subprocess.Popen, log: Path, deadline_s: float) -> None:
    """Poll until `path` exists; fail with the child's output if it exits or the deadline passes."""
    end = time.monotonic() + deadline_s
    while not path.exists():
        if proc.poll() is not None:
            pytest.fail(f"training exited ({proc.returncode}) before epoch {HOLD_AFTER} was held:\n{log.read_text()}")
        if time.monotonic() > end:
            proc.kill()
            pytest.fail(f"epoch {HOLD_AFTER} not reached in {deadline_s} s")
        time.sleep(0.05)


def test_killed_run_resumes_where_it_stopped(colour_folder, tmp_path, capsys):
    run = tmp_path / "run"
    marker = tmp_path / "held"
    env = {**os.environ, "PYTHONPATH": str(ROOT), "TF_CPP_MIN_LOG_LEVEL": "2"}
    log = tmp_path / "killed.log"
    with open(log, "w") as sink:  # a file, not a pipe nobody reads while the child runs
        proc = subprocess.Popen(
            [sys.executable, "-c", LAUNCHER, str(marker), str(HOLD_AFTER), *train_args(colour_folder, run)],
            cwd=ROOT,
            env=env,
            stdout=sink,
            stderr=subprocess.STDOUT,
        )
    wait_for(marker, proc, log, deadline_s=300)
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=60)
    assert proc.returncode == -signal.SIGKILL
    assert not (run / "model.keras").exists()
    before = rows(run)
    assert [r["epoch"] for r in before] == ["1", "2"]
    assert json.loads((run / "run.json").read_text())["config"]["epochs"] == 4  # written at the start

    # a new run over it needs --force, and the message points at --resume
    assert main(train_args(colour_folder, run)) == 1
    assert f"--resume {run}" in capsys.readouterr().err
    # only --epochs may go with --resume, and never below the epochs done
    with pytest.raises(SystemExit) as usage:
        main(["--resume", str(run), "--learning-rate", "0.1"])
    assert usage.value.code == 2 and "--learning-rate" in capsys.readouterr().err
    assert main(["--resume", str(run), "--epochs", "1"]) == 1
    assert "--epochs 1 is fewer than the 2 epochs" in capsys.readouterr().err

    resumed = subprocess.run(
        [sys.executable, "-m", "edgeclf.train", "--resume", str(run)],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert f"resuming {run} after epoch 2 of 4" in resumed.stderr
    epochs_shown = [line.split()[1] for line in resumed.stdout.splitlines() if line.startswith("Epoch ")]
    assert epochs_shown == ["3/4", "4/4"]  # Keras' own progress lines: only the missing epochs ran
    after = rows(run)
    assert [r["epoch"] for r in after] == ["1", "2", "3", "4"]
    assert after[:2] == before  # the killed run's epochs, exactly as they were
    assert not (run / "resume").exists() and (run / "model.keras").is_file()
    record = json.loads((run / "run.json").read_text())
    assert record["epochs_run"] == 4 and "model_info" in record

    # an uninterrupted run with the same options: the learning rate of every epoch (its value at the epoch's
    # first step) is the same, so the schedule went on from step 8 instead of starting again
    assert main(train_args(colour_folder, tmp_path / "reference")) == 0
    reference = rows(tmp_path / "reference")
    lr = [float(r["learning_rate"]) for r in after]
    assert lr == [float(r["learning_rate"]) for r in reference]
    assert lr[0] > lr[1] > lr[2] > lr[3] > 0  # cosine, per step
    # the weights went on too: epoch 3's training loss is far below a fresh network's ln(3)
    assert float(after[2]["loss"]) < 0.8 * float(after[0]["loss"])
    # the best checkpoint spans both sittings
    val = [float(r["val_accuracy"]) for r in after]
    assert record["best_epoch"] == int(np.argmax(val)) + 1
    assert record["best_val_accuracy"] == pytest.approx(max(val), abs=1e-6)
    assert max(val) > 0.6  # three colours: well above chance

    assert main(["--resume", str(run)]) == 0  # finished: nothing to do
    assert "already complete" in capsys.readouterr().err


def test_resume_refusals(tmp_path, capsys):
    assert main(["--resume", str(tmp_path / "nope")]) == 1
    assert "no such run folder" in capsys.readouterr().err

    bare = tmp_path / "bare"
    bare.mkdir()
    assert main(["--resume", str(bare)]) == 1
    assert "no run.json" in capsys.readouterr().err

    started = tmp_path / "started"
    started.mkdir()
    (started / "run.json").write_text(json.dumps({"config": {"epochs": 4, "arch": "tutorial_cnn"}}))
    assert main(["--resume", str(started)]) == 1
    assert "before its first epoch ended" in capsys.readouterr().err

    cluster = tmp_path / "cluster"
    cluster.mkdir()
    (cluster / "run.json").write_text(json.dumps({"config": {"epochs": 4, "strategy": "multiworker"}}))
    assert main(["--resume", str(cluster)]) == 1
    err = capsys.readouterr().err
    assert "multiworker" in err and len(err.strip().splitlines()) == 1

    done = tmp_path / "done"
    done.mkdir()
    (done / "run.json").write_text(json.dumps({"config": {"epochs": 4}, "model_info": {}, "epochs_run": 4}))
    (done / "model.keras").write_bytes(b"")
    assert main(["--resume", str(done)]) == 0
    assert "already complete" in capsys.readouterr().err
    assert main(["--resume", str(done), "--epochs", "8"]) == 1
    assert "cannot be extended" in capsys.readouterr().err

    (bare / "run.json").write_text("{not json")
    assert main(["--resume", str(bare)]) == 1
    assert "run.json" in capsys.readouterr().err


def test_saved_state_is_what_comes_back(tmp_path):
    """Weights, every optimiser variable (step count, moments, EMA), the best checkpoint and the lookahead
    average written after an epoch are what a fresh model gets back."""
    import keras

    from edgeclf.train import optim, resume

    def model_and_optimizer():
        keras.utils.set_random_seed(3)
        model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(8), keras.layers.Dense(3)])
        schedule = keras.optimizers.schedules.CosineDecay(0.05, 40)
        model.compile(keras.optimizers.Adam(schedule, use_ema=True, ema_momentum=0.9), loss="mse")
        return model

    x = np.random.default_rng(0).random((32, 4)).astype("float32")
    y = np.random.default_rng(1).random((32, 3)).astype("float32")

    class Snapshot(keras.callbacks.Callback):
        """The state at the last epoch's end: fit's own end then moves the EMA into the weights."""

        def on_epoch_end(self, epoch, logs=None):
            self.weights = self.model.get_weights()
            self.variables = [np.asarray(v) for v in self.model.optimizer.variables]

    model = model_and_optimizer()
    ahead = optim.lookahead(keras, total_steps=16)
    tracker = resume.Tracker(keras, tmp_path, steps_per_epoch=4, train_images=32, classes=("a", "b", "c"))
    tracker.lookahead = ahead
    first, last = tracker.callbacks()
    snap = Snapshot()
    model.fit(x, y, batch_size=8, epochs=2, callbacks=[first, ahead, snap, last], verbose=0, validation_data=(x, y))
    saved = resume.load(tmp_path)
    assert saved is not None and saved.epochs == 2 and saved.phase == "train"
    assert len(saved.history["loss"]) == 2 and "learning_rate" not in saved.history  # no logger in this fit
    fresh = model_and_optimizer()
    assert int(fresh.optimizer.iterations) == 0
    resume.restore_model(fresh, saved)
    assert int(fresh.optimizer.iterations) == 8
    assert len(snap.variables) == len(fresh.optimizer.variables) == 1 + 3 * 4  # step; 2 moments + EMA of 4
    for a, b in zip(snap.variables, fresh.optimizer.variables, strict=True):
        assert np.array_equal(a, np.asarray(b)), b.path
    for a, b in zip(snap.weights, fresh.get_weights(), strict=True):
        assert np.array_equal(a, b)
    step, average = ahead.state()
    assert step == 8 and average is not None
    again = optim.lookahead(keras, total_steps=16)
    again.set_model(fresh)
    again.restore(*saved.lookahead())
    assert again.state()[0] == 8
    assert all(np.array_equal(a, b) for a, b in zip(average, again.state()[1], strict=True))
    resume.clear(tmp_path)
    assert resume.load(tmp_path) is None


def test_crash_while_fine_tuning_resumes_in_that_phase(colour_folder, tmp_path, capsys, monkeypatch):
    """A pretrained backbone trains its head for 1 epoch, then fine-tunes for 2; a crash after the first
    fine-tuning epoch resumes with the backbone's top unfrozen and the fine-tuning optimiser restored."""
    import keras

    from edgeclf.train import resume

    backbone = keras.applications.MobileNetV2(include_top=False, weights=None, input_shape=(48, 48, 3), pooling="avg")
    weights = tmp_path / "backbone.weights.h5"
    backbone.save_weights(weights)
    run = tmp_path / "run"
    argv = [
        "--data", str(colour_folder), "--arch", "mobilenet_v2", "--image-size", "48", "--batch-size", "8",
        "--val-split", "0.25", "--weights", str(weights), "--epochs", "1", "--fine-tune-epochs", "2",
        "--cache-dir", str(tmp_path / "cache"), "--out", str(run),
    ]  # fmt: skip

    crash_after(monkeypatch, lambda state: state["epochs"] == 2)
    with pytest.raises(Crash):
        main(argv)
    monkeypatch.undo()
    saved = resume.load(run)
    assert (saved.epochs, saved.phase, saved.state["head_epochs"]) == (2, "fine_tune", 1)
    before = rows(run)
    capsys.readouterr()

    assert main(["--resume", str(run)]) == 0
    out, err = capsys.readouterr()
    assert f"resuming {run} after epoch 2 of 3 (fine-tuning)" in err and "fine-tuning:" in err
    assert [line.split()[1] for line in out.splitlines() if line.startswith("Epoch ")] == ["3/3"]
    after = rows(run)
    assert [r["epoch"] for r in after] == ["1", "2", "3"] and after[:2] == before
    lr = [float(r["learning_rate"]) for r in after]
    assert lr[1] == lr[2] == pytest.approx(lr[0] / 10)  # the fine-tuning rate, not the head's
    assert json.loads((run / "run.json").read_text())["epochs_run"] == 3
    assert not (run / "resume").exists()


def test_crash_after_early_stop_runs_no_more_epochs(colour_folder, tmp_path, capsys, monkeypatch):
    """Early stopping ended training; a crash before the run folder was written resumes into no more epochs,
    only the end of the run (best weights back, test, write)."""
    from edgeclf.train import resume

    run = tmp_path / "run"
    argv = [*train_args(colour_folder, run), "--epochs", "8", "--patience", "1"]

    crash_after(monkeypatch, lambda state: state["stopped"])
    with pytest.raises(Crash):  # 9 validation images: accuracy stops rising within 8 epochs
        main(argv)
    monkeypatch.undo()
    saved = resume.load(run)
    assert saved.stopped and saved.epochs < 8 and saved.epochs - saved.state["best_epoch"] == 1
    capsys.readouterr()
    assert main(["--resume", str(run)]) == 0
    out, err = capsys.readouterr()
    assert f"resuming {run} after epoch {saved.epochs} of 8" in err
    assert not [line for line in out.splitlines() if line.startswith("Epoch ")]
    record = json.loads((run / "run.json").read_text())
    assert record["epochs_run"] == saved.epochs and record["best_epoch"] == saved.state["best_epoch"]
    assert len(rows(run)) == saved.epochs


def test_resume_can_extend_the_run(colour_folder, tmp_path, capsys, monkeypatch):
    """--epochs is the one option --resume takes: the run goes on to the new count, and run.json says so."""

    run = tmp_path / "run"

    crash_after(monkeypatch, lambda state: state["epochs"] == 2)
    with pytest.raises(Crash):
        main([*train_args(colour_folder, run), "--epochs", "3"])
    monkeypatch.undo()
    capsys.readouterr()
    assert main(["--resume", str(run), "--epochs", "5"]) == 0
    out, err = capsys.readouterr()
    assert "the cosine schedule now spans 5 epochs instead of 3" in err
    assert f"resuming {run} after epoch 2 of 5" in err
    assert [line.split()[1] for line in out.splitlines() if line.startswith("Epoch ")] == ["3/5", "4/5", "5/5"]
    record = json.loads((run / "run.json").read_text())
    assert record["config"]["epochs"] == 5 and record["epochs_run"] == 5


def test_crash_while_writing_the_run_folder_resumes_the_end(colour_folder, tmp_path, capsys, monkeypatch):
    """Killed inside the final write (run.json there, the plots not yet): --resume must finish the folder, not
    call the run complete while the train command calls it interrupted."""
    from edgeclf.train import report, resume

    run = tmp_path / "run"

    def crash(*args, **kwargs):
        raise Crash

    monkeypatch.setattr(report, "plot_confusion", crash)
    with pytest.raises(Crash):
        main([*train_args(colour_folder, run), "--epochs", "2"])
    monkeypatch.undo()
    assert resume.has_state(run) and not (run / "confusion.png").exists()
    capsys.readouterr()
    assert main(["--resume", str(run)]) == 0
    out, err = capsys.readouterr()
    assert "already complete" not in err
    assert (run / "confusion.png").is_file() and not resume.has_state(run)
    assert not [line for line in out.splitlines() if line.startswith("Epoch ")]
    assert json.loads((run / "run.json").read_text())["epochs_run"] == 2


def test_a_lookahead_run_cannot_be_extended(colour_folder, tmp_path, capsys, monkeypatch):
    """The lookahead average starts at 30% of the run and copies itself back at each validation: stretched, a
    restored average older than the new start was copied over every resumed epoch's progress."""
    from edgeclf.edge_app.errors import EdgeClfError
    from edgeclf.train import resume

    run = tmp_path / "run"
    argv = [a for a in train_args(colour_folder, run) if a not in ("--ema", "0.9")]

    crash_after(monkeypatch, lambda state: state["epochs"] == 2)
    with pytest.raises(Crash):
        main([*argv, "--epochs", "3", "--lookahead"])
    monkeypatch.undo()
    with pytest.raises(EdgeClfError, match="lookahead"):
        resume.resume_config(run, 6)
    assert resume.resume_config(run) is not None  # the run's own length still resumes


def test_an_epoch_commit_makes_its_folder_and_rename_durable(tmp_path, monkeypatch):
    """A power cut after state.json names epoch-NNNN must not find that folder empty or missing: the staged
    folder's entries and the rename are fsynced before state.json is written."""
    from edgeclf.edge_app import files
    from edgeclf.train import resume

    synced, order = [], []
    real = files.fsync_folder
    monkeypatch.setattr(files, "fsync_folder", lambda folder: (synced.append(Path(folder).name), real(folder)))
    real_write = files.write_json
    monkeypatch.setattr(files, "write_json", lambda path, data: (order.append(len(synced)), real_write(path, data)))
    staged = tmp_path / resume.RESUME_DIR / "staging"
    staged.mkdir(parents=True)
    (staged / resume.WEIGHTS_FILE).write_bytes(b"w")
    resume.commit(tmp_path, staged, {"epochs": 3, "history": {"loss": [1.0, 0.5, 0.25]}}, None, None)
    assert synced[:2] == ["staging", resume.RESUME_DIR] and order and order[0] >= 2
    assert (tmp_path / resume.RESUME_DIR / "epoch-0003" / resume.WEIGHTS_FILE).is_file()
