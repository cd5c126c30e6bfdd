"""`edgeclf train --resume RUN_DIR`: what a killed run needs to go on, saved after every epoch.

RUN_DIR/resume/ holds the last committed epoch:

    state.json        names the current epoch folder and holds the small state: epochs done, phase
                      (train / fine_tune) and where fine-tuning began, early stop, best epoch and
                      accuracy, where patience counts from, the history so far, training seconds, the
                      lookahead step, and the data facts a resumed run must match
    epoch-NNNN/       state.weights.h5: the model's weights and every optimiser variable (the step
                      count that drives the schedule, moments, EMA averages), written by Keras'
                      save_weights as keras.callbacks.BackupAndRestore does; best.npz: the best
                      checkpoint's weights; lookahead.npz: the lookahead average

BackupAndRestore itself is not used: it overwrites its weights file and then its epoch file in
place, so a kill between the two, or between it and the state kept here, leaves files that
disagree. Here an epoch is written to a staging folder, renamed into place, and only then named
in state.json (itself replaced atomically): a kill at any moment leaves one whole epoch. The
epoch count goes to fit as `initial_epoch` instead of BackupAndRestore's private attribute.

A resumed run continues the weights, optimiser, schedule, EMA, lookahead, best checkpoint,
patience and history exactly; the data pipeline (shuffle order, augmentation draws) starts again
from the seed plus the epochs done, so it matches an uninterrupted run in distribution, not bit
for bit. The state is removed when the run folder is written at the end.
"""

from __future__ import annotations

import json
import os
import shutil
import sys
import tempfile
import time
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from edgeclf.edge_app import files
from edgeclf.edge_app.errors import EdgeClfError
from edgeclf.train import report

if TYPE_CHECKING:
    from edgeclf.train.fit import TrainConfig

RESUME_DIR = "resume"
STATE_FILE = "state.json"
WEIGHTS_FILE = "state.weights.h5"  # Keras' save_weights insists on the .weights.h5 suffix
BEST_FILE = "best.npz"
LOOKAHEAD_FILE = "lookahead.npz"
STAGING_PREFIX = ".staging-"
VERSION = 1
PHASES = ("train", "fine_tune")
FACTS = ("steps_per_epoch", "train_images", "classes", "replicas")


@dataclass(frozen=True)
class Saved:
    """A committed epoch: its folder and its state.json."""

    folder: Path
    state: dict[str, Any]

    @property
    def epochs(self) -> int:
        return int(self.state["epochs"])

    @property
    def phase(self) -> str:
        return str(self.state["phase"])

    @property
    def stopped(self) -> bool:
        """Whether early stopping ended the phase at this epoch."""
        return bool(self.state.get("stopped", False))

    @property
    def history(self) -> dict[str, list[float]]:
        return {key: list(values) for key, values in self.state["history"].items()}

    def best_weights(self) -> list[np.ndarray] | None:
        return _read_arrays(self.folder / BEST_FILE)

    def lookahead(self) -> tuple[int, list[np.ndarray] | None]:
        """(steps seen, average or None), as optim.lookahead's restore takes them."""
        return int(self.state.get("lookahead_step") or 0), _read_arrays(self.folder / LOOKAHEAD_FILE)


def has_state(run_dir: str | Path) -> bool:
    return (Path(run_dir) / RESUME_DIR / STATE_FILE).is_file()


def load(run_dir: str | Path) -> Saved | None:
    """The last committed epoch in `run_dir`, or None when there is none."""
    path = Path(run_dir) / RESUME_DIR / STATE_FILE
    if not path.is_file():
        return None
    try:
        state = json.loads(path.read_text(encoding="utf-8"))
        name = state["folder"]
        ok = (
            state.get("version") == VERSION
            and isinstance(name, str)
            and Path(name).name == name
            and state["phase"] in PHASES
            and int(state["epochs"]) >= 1
            and isinstance(state["history"], dict)
        )
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise EdgeClfError(f"{path} is unreadable ({exc}); start the run again with --force") from None
    if not ok:
        raise EdgeClfError(f"{path} is not a resume state of this version; start the run again with --force")
    folder = path.parent / name
    if not (folder / WEIGHTS_FILE).is_file():
        raise EdgeClfError(f"{path} names {name}/{WEIGHTS_FILE}, which is missing; start the run again with --force")
    return Saved(folder, state)


def clear(run_dir: str | Path) -> None:
    """Remove the resume state (a finished run, or a new run over an old folder)."""
    shutil.rmtree(Path(run_dir) / RESUME_DIR, ignore_errors=True)


def stage(run_dir: str | Path, model: Any) -> Path:
    """A new staging folder holding the model's weights and optimiser variables."""
    root = Path(run_dir) / RESUME_DIR
    try:
        root.mkdir(parents=True, exist_ok=True)
        staged = Path(tempfile.mkdtemp(prefix=STAGING_PREFIX, dir=root))
        model.save_weights(staged / WEIGHTS_FILE)
    except OSError as exc:
        raise EdgeClfError(f"cannot save the resume state in {root}: {exc.strerror or exc}") from None
    return staged


def commit(
    run_dir: str | Path,
    staged: Path,
    state: dict[str, Any],
    best_weights: list[np.ndarray] | None,
    average: list[np.ndarray] | None,
) -> Path:
    """Complete `staged`, rename it to epoch-NNNN, point state.json at it, drop older epochs, and write
    history.csv; the order makes every moment of it a whole epoch to resume from."""
    root = Path(run_dir) / RESUME_DIR
    name = f"epoch-{int(state['epochs']):04d}"
    final = root / name
    try:
        if best_weights is not None:
            _write_arrays(staged / BEST_FILE, best_weights)
        if average is not None:
            _write_arrays(staged / LOOKAHEAD_FILE, average)
        for path in staged.iterdir():
            _fsync(path)
        files.fsync_folder(staged)  # its entries, then (below) the rename, survive a power cut
        if final.exists():  # renamed by a run killed before its state.json named it: never current
            shutil.rmtree(final)
        os.replace(staged, final)
        files.fsync_folder(root)
    except OSError as exc:
        raise EdgeClfError(f"cannot save the resume state in {root}: {exc.strerror or exc}") from None
    files.write_json(root / STATE_FILE, {"version": VERSION, "folder": name, **state})
    for old in root.iterdir():
        if old.is_dir() and old.name != name:
            shutil.rmtree(old, ignore_errors=True)
    files.write_text(Path(run_dir) / "history.csv", report.history_csv(state["history"]))
    return final


def restore_model(model: Any, saved: Saved) -> None:
    """Load the committed weights and optimiser variables into a compiled `model` of the same shape."""
    if model.optimizer is not None and not model.optimizer.built:
        model.optimizer.build(model.trainable_variables)  # its variables must exist to be loaded into
    path = saved.folder / WEIGHTS_FILE
    try:
        model.load_weights(path)
    except Exception as exc:  # noqa: BLE001 - h5py and Keras raise several types for a file that does not fit
        raise EdgeClfError(f"{path} does not fit this model: {str(exc).splitlines()[0][:160]}") from None


def check_facts(saved: Saved, facts: dict[str, Any]) -> None:
    """Refuse to resume on data or a device count other than the run's: the schedule counts steps."""
    was = {key: saved.state.get(key) for key in FACTS}
    now = {key: list(value) if isinstance(value, tuple) else value for key, value in facts.items()}
    if was != now:
        differ = ", ".join(f"{key} {was[key]} -> {now[key]}" for key in FACTS if was[key] != now[key])
        raise EdgeClfError(f"the data or replicas changed since the run started ({differ}); resume needs the same")


class Tracker:
    """Saves the resume state after every epoch, through the two callbacks of `callbacks()`.

    `best` (the best-checkpoint callback), `lookahead` (the current phase's), `phase` and
    `head_epochs` (where fine-tuning began) are set by the training loop as it goes.
    """

    def __init__(
        self,
        keras: Any,
        run_dir: str | Path,
        steps_per_epoch: int,
        train_images: int,
        classes: tuple[str, ...],
        replicas: int = 1,
        prior: Saved | None = None,
        started: float | None = None,
    ) -> None:
        self.keras, self.run_dir = keras, Path(run_dir)
        self.facts = {
            "steps_per_epoch": steps_per_epoch,
            "train_images": train_images,
            "classes": list(classes),
            "replicas": replicas,
        }
        self.best: Any = None
        self.lookahead: Any = None
        self.phase, self.head_epochs = "train", None
        self.history = prior.history if prior else {}
        self.seconds_before = float(prior.state.get("seconds", 0.0)) if prior else 0.0
        self.started = time.perf_counter() if started is None else started
        self.staged: Path | None = None

    def callbacks(self) -> tuple[Any, Any]:
        """(stage, commit): `stage` goes first in the callback list, so it saves the weights that
        training goes on from before SwapEMAWeights swaps the averages in at the epoch's end;
        `commit` goes last, after the best checkpoint and early stopping have seen the epoch."""
        tracker = self

        class Stage(self.keras.callbacks.Callback):
            def on_epoch_end(self, epoch: int, logs: dict | None = None) -> None:
                tracker.staged = stage(tracker.run_dir, self.model)

        class Commit(self.keras.callbacks.Callback):
            def on_epoch_end(self, epoch: int, logs: dict | None = None) -> None:
                tracker._commit(epoch, logs or {}, bool(self.model.stop_training))

        return Stage(), Commit()

    def _commit(self, epoch: int, logs: dict[str, Any], stopped: bool) -> None:
        if self.staged is None:
            raise RuntimeError("the resume Stage callback must come first in the callback list")
        for key, value in logs.items():
            self.history.setdefault(key, []).append(float(value))
        best = self.best
        step, average = self.lookahead.state() if self.lookahead is not None else (None, None)
        state = {
            "epochs": epoch + 1,
            "phase": self.phase,
            "head_epochs": self.head_epochs,
            "stopped": stopped,
            "best_val_accuracy": None if best is None else float(best.best),
            "best_epoch": None if best is None else int(best.best_epoch),
            "patience_from": None if best is None else int(best.patience_from),
            "history": self.history,
            "seconds": round(self.seconds_before + time.perf_counter() - self.started, 3),
            "lookahead_step": step,
            **self.facts,
        }
        staged, self.staged = self.staged, None
        commit(self.run_dir, staged, state, None if best is None else best.weights, average)


def resume_config(run_dir: str | Path, epochs: int | None = None) -> TrainConfig | None:
    """The config that continues the interrupted run in `run_dir` (its run.json's, with `epochs` if
    given), or None when the run already finished; a one-line EdgeClfError when it cannot resume."""
    from edgeclf.train.fit import TrainConfig

    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        raise EdgeClfError(f"--resume {run_dir}: no such run folder")
    path = run_dir / report.RUN_FILE
    if not path.is_file():
        raise EdgeClfError(f"--resume {run_dir}: no run.json, so not a run folder of `edgeclf train`")
    try:
        record = json.loads(path.read_text(encoding="utf-8"))
        raw = record["config"]
        if not isinstance(raw, dict):
            raise TypeError("'config' is not an object")
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise EdgeClfError(f"--resume {run_dir}: run.json is unreadable ({exc})") from None
    if raw.get("strategy") == "multiworker":
        raise EdgeClfError(f"--resume {run_dir}: --strategy multiworker runs cannot be resumed yet")
    # a finished run has its full run.json and model.keras and no resume state; with the state still there,
    # the run was killed while writing its folder, and resuming finishes it
    if "model_info" in record and (run_dir / "model.keras").is_file() and not has_state(run_dir):
        if epochs is not None:
            raise EdgeClfError(
                f"--resume {run_dir}: the run finished after {record.get('epochs_run')} epochs, and a finished "
                "run cannot be extended (its resume state is removed at the end); start a new run"
            )
        return None
    saved = load(run_dir)
    if saved is None:
        raise EdgeClfError(
            f"--resume {run_dir}: no resume state; the run was killed before its first epoch ended, "
            "so start it again with --force"
        )
    unknown = sorted(set(raw) - set(TrainConfig.__dataclass_fields__))
    if unknown:
        raise EdgeClfError(f"--resume {run_dir}: run.json has options this version does not know: {unknown}")
    try:
        config = TrainConfig.from_dict(raw)
    except (TypeError, ValueError) as exc:
        raise EdgeClfError(f"--resume {run_dir}: run.json's config is malformed ({exc})") from None
    if epochs is not None and epochs != config.epochs:
        if saved.phase == "fine_tune":
            raise EdgeClfError(f"--epochs {epochs}: the run is fine-tuning, so its first phase cannot change")
        if epochs < saved.epochs:
            raise EdgeClfError(f"--epochs {epochs} is fewer than the {saved.epochs} epochs already done")
        if config.lookahead:  # its start and decay are laid out over the run it started in
            raise EdgeClfError(
                f"--epochs {epochs}: a --lookahead run cannot be extended (its average would be older than the "
                "new start and overwrite the resumed epochs); resume it without --epochs"
            )
        if config.schedule != "constant":  # laid out over the whole run
            print(
                f"note: the {config.schedule} schedule now spans {epochs} epochs instead of {config.epochs}: "
                f"from step {saved.epochs * int(saved.state['steps_per_epoch'])} on, the longer curve",
                file=sys.stderr,
            )
        config = replace(config, epochs=epochs)
    return replace(config, out=str(run_dir))


def _write_arrays(path: Path, arrays: list[np.ndarray]) -> None:
    with open(path, "wb") as fh:
        np.savez(fh, *[np.asarray(a) for a in arrays])


def _read_arrays(path: Path) -> list[np.ndarray] | None:
    if not path.is_file():
        return None
    with np.load(path) as stored:
        return [stored[f"arr_{i}"] for i in range(len(stored.files))]


def _fsync(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY | getattr(os, "O_CLOEXEC", 0))
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
