"""Fit a model: seeded, validation-driven checkpoint selection, early stopping, test metrics."""

from __future__ import annotations

import contextlib
import sys
import time
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np

from edgeclf.edge_app import files, metrics, preprocess
from edgeclf.edge_app.contract import InputSpec, ModelInfo
from edgeclf.edge_app.errors import EdgeClfError, require
from edgeclf.train import (
    architectures,
    augment,
    balance,
    bn,
    distill,
    distribute,
    multiworker,
    optim,
    report,
    transfer,
    warmstart,
    whiten,
)
from edgeclf.train import resume as resume_state
from edgeclf.train.data import DataSpec, Splits, load_splits
from edgeclf.train.macs import count_macs
from edgeclf.train.optim import OPTIMIZERS, SCHEDULES

DISTILL_TARGETS = ("live", "fixed")


@dataclass(frozen=True)
class TrainConfig:
    """Everything that defines a training run (stored in run.json)."""

    data: DataSpec = field(default_factory=DataSpec)
    arch: str = "tutorial_cnn"
    epochs: int = 20
    batch_size: int = 64
    learning_rate: float = 1e-3
    optimizer: str = "adam"
    schedule: str = "constant"
    warmup_epochs: int = 0
    weight_decay: float = 0.0
    label_smoothing: float = 0.0
    augment: tuple[str, ...] = augment.DEFAULT_AUGMENT
    mixup: float = 0.0  # Beta(alpha, alpha) mixing of batches; 0 = off
    ema: float = 0.0  # exponential moving average of weights, e.g. 0.999; 0 = off
    teacher: str | None = None  # distil from this run folder or .keras file
    weights: str = "none"  # backbones only: imagenet | PATH | none
    fine_tune_epochs: int = 5  # backbones with pretrained weights: epochs with the top unfrozen
    strategy: str = "none"  # tf.distribute: none | auto | mirrored | multiworker
    distill_alpha: float = 0.7
    distill_temperature: float = 4.0
    distill_targets: str = "live"  # live: teacher on every augmented batch; fixed: once, flip-averaged
    patience: int = 5
    bn_recalibrate: int = 0  # batches of 500 training images for precise batch-norm statistics; 0 = off
    bias_lr_scale: float = 1.0  # SGD: batch-norm shifts step this many times further
    lookahead: bool = False  # average weights every few steps and copy the average back
    balance: str = "auto"  # none | weights | sampling | auto (train_model resolves it; run.json holds the result)
    init: warmstart.InitSource | None = None  # start from this model's weights (warmstart.configure sets it)
    out: str = "runs/latest"

    def to_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out["augment"] = list(self.augment)
        return out

    @classmethod
    def from_dict(cls, raw: dict[str, Any]) -> TrainConfig:
        """The inverse of to_dict (run.json's "config"); missing options take their defaults."""
        fields = {k: v for k, v in raw.items() if k in cls.__dataclass_fields__ and k not in ("data", "augment")}
        fields.setdefault("balance", "none")  # runs from before --balance trained without it
        if fields.get("init") is not None:
            fields["init"] = warmstart.InitSource.from_dict(fields["init"])
        data = DataSpec.from_dict(raw.get("data") or {})
        return cls(data=data, augment=tuple(raw.get("augment", augment.DEFAULT_AUGMENT)), **fields)


@dataclass(frozen=True)
class TrainResult:
    out: Path
    info: ModelInfo
    test: dict[str, Any]
    best_epoch: int
    best_val_accuracy: float
    epochs_run: int
    train_seconds: float
    images_per_second: float
    wrote: bool = True  # False on a cluster's non-chief workers: the chief writes the run folder
    counts: dict[str, dict[str, int]] | None = None  # images per class and split (balance.counts_table)
    monitor: str = "val_accuracy"  # the validation number that picked best_epoch (balance.monitor)
    init: dict[str, Any] | None = None  # what a warm start kept (warmstart.outcome)


def input_spec_for(config: TrainConfig) -> InputSpec:
    """The contract's input for a run: RGB at the run's size and resize mode, scaled to 0..1, or as
    a pretrained backbone expects it, or as the --init model was trained."""
    size = config.data.image_size
    if config.init is not None:  # the init model's contract: it must see frames as it did before
        return config.init.input_spec(size, config.data.resize)
    mean, std = 0.0, 255.0
    if config.arch in transfer.BACKBONES:
        mean, std = transfer.BACKBONES[config.arch].mean, transfer.BACKBONES[config.arch].std
    return InputSpec(size, size, "RGB", (mean,) * 3, (std,) * 3, config.data.resize)


def _best_checkpoint(keras: Any, patience: int, monitor: str = "val_accuracy") -> Any:
    class BestCheckpoint(keras.callbacks.Callback):
        """Keep the weights of the best `monitor` (a validation accuracy); stop after `patience` epochs without
        gain."""

        def __init__(self) -> None:
            super().__init__()
            self.best, self.best_epoch, self.weights = -1.0, 0, None
            self.patience_from = 0  # a new training phase restarts the patience count

        def on_epoch_end(self, epoch: int, logs: dict | None = None) -> None:
            acc = float((logs or {}).get(monitor, 0.0))
            if acc > self.best:
                self.best, self.best_epoch, self.weights = acc, epoch + 1, self.model.get_weights()
            elif patience and epoch + 1 - max(self.best_epoch, self.patience_from) >= patience:
                print(f"early stop: no validation gain for {patience} epochs", file=sys.stderr)
                self.model.stop_training = True

        def on_train_end(self, logs: dict | None = None) -> None:
            if self.weights is not None:
                self.model.set_weights(self.weights)

    return BestCheckpoint()


def _dataset(
    tf: Any,
    x: np.ndarray,
    y: np.ndarray,
    n_classes: int,
    batch: int,
    config: TrainConfig,
    aug: Any = None,
    teacher: Any = None,
    shuffle: bool = True,
    drop_remainder: bool = False,
    soft: np.ndarray | None = None,
    steps: int = 0,
) -> Any:
    """Batches of (image, target): augmented, mixed up, and with the teacher's outputs appended
    (computed on each batch by `teacher`, or given once per image as `soft`); with --balance sampling,
    `steps` batches per epoch that draw the classes evenly."""
    targets = np.eye(n_classes, dtype=np.float32)[y]
    if soft is not None:
        targets = np.concatenate([targets, soft.astype(np.float32)], axis=-1)
    if shuffle and config.balance == "sampling":
        ds = balance.sampled(tf, x, targets, y, config.data.seed).batch(batch).take(steps)
    else:
        ds = tf.data.Dataset.from_tensor_slices((x, targets))
        if shuffle:
            ds = ds.shuffle(len(x), seed=config.data.seed, reshuffle_each_iteration=True)
        # several replicas split each batch: a short last batch would leave them with different shapes
        ds = ds.batch(batch, drop_remainder=shuffle and drop_remainder)
    # one call at a time: the random layers draw from a seeded state, and parallel calls would race for it
    if aug is not None:
        ds = ds.map(lambda a, b: (aug(a, training=True), b))
    if config.mixup and shuffle:
        ds = ds.map(distill.mixup(config.mixup, config.data.seed + 7))
    if teacher is not None:
        ds = ds.map(lambda a, b: (a, tf.concat([b, teacher(a, training=False)], axis=-1)))
    return ds.prefetch(tf.data.AUTOTUNE)


def validate(config: TrainConfig) -> None:
    """Reject impossible settings before any data is loaded."""
    checks = [
        (config.epochs >= 1, "--epochs must be at least 1"),
        (config.batch_size >= 1, "--batch-size must be at least 1"),
        (config.learning_rate > 0, "--learning-rate must be positive"),
        (0 < config.data.val_split < 1, "--val-split must be between 0 and 1"),
        (0 < config.data.test_split < 1, "--test-split must be between 0 and 1"),
        (config.data.limit is None or config.data.limit >= 20, "--limit must be at least 20"),
        (config.data.image_size >= 8, "--image-size must be at least 8"),
        (0 <= config.label_smoothing < 1, "--label-smoothing must be in [0, 1)"),
        (config.optimizer in OPTIMIZERS, f"--optimizer must be one of {OPTIMIZERS}"),
        (config.mixup >= 0, "--mixup must be 0 (off) or a positive alpha"),
        (0 <= config.ema < 1, "--ema must be in [0, 1), e.g. 0.999"),
        (0 <= config.distill_alpha <= 1, "--distill-alpha must be in [0, 1]"),
        (config.distill_temperature > 0, "--distill-temperature must be positive"),
        (config.distill_targets in DISTILL_TARGETS, f"--distill-targets must be one of {DISTILL_TARGETS}"),
        (config.bn_recalibrate >= 0, "--bn-recalibrate must be 0 (off) or a number of batches"),
        (
            config.bn_recalibrate == 0 or config.strategy == "none",
            "--bn-recalibrate works with --strategy none only",
        ),
        (config.schedule in SCHEDULES, f"--schedule must be one of {SCHEDULES}"),
        (config.bias_lr_scale > 0, "--bias-lr-scale must be positive"),
        (not config.lookahead or config.strategy == "none", "--lookahead works with --strategy none only"),
        (
            not (config.lookahead and config.ema),
            "--lookahead and --ema both average the weights and do not combine: choose one",
        ),
        (config.bias_lr_scale == 1 or config.optimizer == "sgd", "--bias-lr-scale works with --optimizer sgd only"),
        (config.balance in balance.MODES, f"--balance must be one of {balance.MODES}"),
    ]
    for ok, message in checks:
        if not ok:
            raise EdgeClfError(message)
    if config.arch not in architectures.names():
        architectures.build(config.arch, (8, 8, 3), 2)  # raises the one-line error
    if config.init is not None and config.weights != "none":
        raise EdgeClfError("--weights and --init both give the starting weights: choose one")
    if config.weights != "none" and config.arch not in transfer.BACKBONES:
        raise EdgeClfError(f"--weights applies to {', '.join(transfer.BACKBONES)}, not {config.arch}")


def _teacher_and_loss(
    keras: Any, config: TrainConfig, spec: InputSpec, n_classes: int, weights: np.ndarray | None = None
) -> tuple[Any, Any, Any]:
    """(teacher or None, loss, accuracy metric) for plain or distilled training; with class `weights`,
    each image's loss is scaled by its class's weight (balance.weighted_loss)."""
    if not config.teacher and weights is None:
        return None, keras.losses.CategoricalCrossentropy(label_smoothing=config.label_smoothing), "accuracy"
    if not config.teacher:

        def per_image(y_true: Any, y_pred: Any) -> Any:
            return keras.losses.categorical_crossentropy(y_true, y_pred, label_smoothing=config.label_smoothing)

        return None, balance.weighted_loss(per_image, weights), "accuracy"
    expected = distill.teacher_input(config.teacher)
    if expected is not None and (expected.mean, expected.std) != (spec.mean, spec.std):
        raise EdgeClfError(
            f"the teacher expects inputs (pixel - {expected.mean[0]:g}) / {expected.std[0]:g}, the student "
            f"(pixel - {spec.mean[0]:g}) / {spec.std[0]:g}: distil into an architecture with the same normalisation"
        )
    teacher = distill.load_teacher(config.teacher)
    if tuple(teacher.input_shape[1:]) != (spec.height, spec.width, 3) or teacher.output_shape[-1] != n_classes:
        raise EdgeClfError(
            f"teacher takes {tuple(teacher.input_shape[1:])} and gives {teacher.output_shape[-1]} scores; "
            f"the student needs {(spec.height, spec.width, 3)} and {n_classes}"
        )
    loss = distill.distillation_loss(
        n_classes, config.distill_alpha, config.distill_temperature, config.label_smoothing
    )
    if weights is not None:
        loss = balance.weighted_loss(loss, weights)
    return teacher, loss, distill.label_accuracy(n_classes)


def train_model(
    config: TrainConfig, splits: Splits | None = None, verbose: int | None = None, resume: bool = False
) -> TrainResult:
    """Train `config.arch` on the configured data and write the run folder `config.out`; with `resume`,
    continue the interrupted run in `config.out` from its last finished epoch (train/resume.py)."""
    validate(config)
    tf = require("tensorflow", "train")
    keras = require("keras", "train")
    out = Path(config.out)
    saved = resume_state.load(out) if resume else None
    if resume and saved is None:
        raise EdgeClfError(f"{out} holds no resume state: nothing to resume")
    if saved is not None and config.strategy == "multiworker":
        raise EdgeClfError("--strategy multiworker runs cannot be resumed yet")
    keras.utils.set_random_seed(config.data.seed)
    splits = splits or load_splits(config.data)
    chosen, counts = balance.prepare(config.balance, splits, config.data.val_split)
    config = replace(config, balance=chosen)  # run.json holds the mode used, so --resume goes on with it
    spec = input_spec_for(config)
    n_classes = len(splits.classes)
    strategy = distribute.strategy_for(tf, config.strategy)
    n_rep = distribute.replicas(strategy)
    # per-replica batch and learning rate scaled to the global batch (linear scaling rule)
    scaled = replace(config, batch_size=config.batch_size * n_rep, learning_rate=config.learning_rate * n_rep)
    scope = strategy.scope() if strategy is not None else contextlib.nullcontext()
    x_train = preprocess.normalize_rgb(splits.train.images, spec)
    x_val, y_val = preprocess.normalize_rgb(splits.val.images, spec), splits.val.labels
    if n_rep > 1:  # replicas must get equal shares of every validation batch: drop at most n_rep - 1 images
        keep = len(x_val) - len(x_val) % n_rep
        x_val, y_val = x_val[:keep], y_val[:keep]
    if n_rep > 1 and len(x_train) < scaled.batch_size:
        raise EdgeClfError(f"{len(x_train)} training images are fewer than the global batch {scaled.batch_size}")
    # several replicas drop the short last batch (see _dataset), so count only full ones
    steps = len(x_train) // scaled.batch_size if n_rep > 1 else int(np.ceil(len(x_train) / scaled.batch_size))
    facts = {"steps_per_epoch": steps, "train_images": len(x_train), "classes": splits.classes, "replicas": n_rep}
    if saved is not None:
        resume_state.check_facts(saved, facts)
    weights = balance.class_weights(np.bincount(splits.train.labels, minlength=n_classes))
    teacher, loss, metric = _teacher_and_loss(keras, config, spec, n_classes, weights if chosen == "weights" else None)
    monitor = balance.monitor(chosen, config.strategy)
    metric = [metric] + ([balance.balanced_accuracy(keras, n_classes)] if monitor != "val_accuracy" else [])
    soft_train = soft_val = None
    start = time.perf_counter()  # the teacher's pass over the data is part of the training time
    if teacher is not None and config.distill_targets == "fixed":
        # one flip-averaged pass of the teacher instead of one on every augmented batch
        soft_train, soft_val = distill.fixed_targets(teacher, x_train), distill.fixed_targets(teacher, x_val)
        teacher = None
        print(
            f"teacher targets: {len(x_train) + len(x_val)} images and their mirrors in "
            f"{time.perf_counter() - start:.0f} s",
            file=sys.stderr,
        )
    with scope:
        model, params, macs, started = _start_model(config, spec, splits.classes, x_train, fresh=saved is None)
        pretrained = _pretrained(config)
        model.compile(optimizer=optim.optimizer(keras, scaled, steps, model), loss=loss, metrics=metric)
    # a resumed run draws its shuffles and augmentations from a seed moved on by the epochs done,
    # so it does not replay the first epochs' batches (train/resume.py says why not bit for bit)
    pipeline = config
    if saved is not None:
        pipeline = replace(config, data=replace(config.data, seed=config.data.seed + saved.epochs))
    aug = augment.build(config.augment, spec, pipeline.data.seed)
    extra = {"drop_remainder": n_rep > 1, "soft": soft_train, "steps": steps}
    train_ds = _dataset(tf, x_train, splits.train.labels, n_classes, scaled.batch_size, pipeline, aug, teacher, **extra)
    val_ds = _dataset(tf, x_val, y_val, n_classes, 256 * n_rep, config, teacher=teacher, shuffle=False, soft=soft_val)
    best = _best_checkpoint(keras, config.patience, monitor)
    if saved is not None:
        best.best, best.best_epoch = float(saved.state["best_val_accuracy"]), int(saved.state["best_epoch"])
        best.patience_from, best.weights = int(saved.state["patience_from"]), saved.best_weights()
    tracker = None
    if distribute.is_chief(strategy) and config.strategy != "multiworker":
        tracker = resume_state.Tracker(keras, out, **facts, prior=saved, started=start)
        tracker.best = best

    def callbacks(restore: bool = False) -> list[Any]:
        # with EMA, validation and the kept checkpoint use the averaged weights; one swapper per
        # fit call, because each phase has its own optimizer and averages
        ema = [keras.callbacks.SwapEMAWeights(swap_on_epoch=True)] if config.ema else []
        ahead = [optim.lookahead(keras, config.epochs * steps)] if config.lookahead else []
        if ahead and restore and saved is not None:  # the phase the run was interrupted in
            ahead[0].set_model(model)
            ahead[0].restore(*saved.lookahead())
        logged = [optim.learning_rate_log(keras)]
        if tracker is None:
            return logged + ema + ahead + [best]
        tracker.lookahead = ahead[0] if ahead else None
        stage, commit = tracker.callbacks()  # first and last: see Tracker.callbacks
        return [stage] + logged + ema + ahead + [best, commit]

    if verbose is None:
        verbose = 1 if sys.stdout.isatty() else 2
    print(
        f"training {config.arch} ({params:,} params, {macs / 1e6:.1f} M MACs per image) on {splits.source}: "
        f"{len(x_train)} train / {len(x_val)} val / {len(splits.test)} test images, {n_classes} classes"
        + (
            f"; {n_rep} replicas, global batch {scaled.batch_size}, learning rate {scaled.learning_rate:g}"
            if strategy is not None
            else ""
        ),
        file=sys.stderr,
    )
    fit = {"validation_data": val_ds, "verbose": verbose, "shuffle": False}
    if distribute.is_chief(strategy):
        if saved is None:
            resume_state.clear(out)  # a new run over an old folder (--force) starts with no state
        report.write_started(out, config)  # a run killed from here on has its config for --resume
    history = saved.history if saved is not None else {}
    fine_tuning = saved is not None and saved.phase == "fine_tune"
    if not fine_tuning:
        first = saved.epochs if saved is not None else 0
        if saved is not None:
            resume_state.restore_model(model, saved)
            print(f"resuming {out} after epoch {first} of {config.epochs}", file=sys.stderr)
        # an early-stopped phase runs no more epochs; the empty fit still puts the best weights back
        last = first if saved is not None and saved.stopped else config.epochs
        more = _fit(
            model, strategy, train_ds, initial_epoch=first, epochs=last, callbacks=callbacks(restore=True), **fit
        )
        history = _joined(history, more)
    if pretrained and config.fine_tune_epochs > 0:
        with scope:
            unfrozen = transfer.unfreeze_top(model)
            tuned = replace(scaled, learning_rate=scaled.learning_rate / 10, schedule="constant", warmup_epochs=0)
            model.compile(optimizer=optim.optimizer(keras, tuned, steps, model), loss=loss, metrics=metric)
        print(f"fine-tuning: {unfrozen} backbone layers unfrozen at a tenth of the learning rate", file=sys.stderr)
        done = first = len(history.get("loss", []))
        if fine_tuning:
            done, first = int(saved.state["head_epochs"]), saved.epochs
            resume_state.restore_model(model, saved)
            total = done + config.fine_tune_epochs
            print(f"resuming {out} after epoch {first} of {total} (fine-tuning)", file=sys.stderr)
        best.patience_from = done
        if tracker is not None:
            tracker.phase, tracker.head_epochs = "fine_tune", done
        last = first if fine_tuning and saved.stopped else done + config.fine_tune_epochs
        more = _fit(
            model,
            strategy,
            train_ds,
            initial_epoch=first,
            epochs=last,
            callbacks=callbacks(restore=fine_tuning),
            **fit,
        )
        history = _joined(history, more)
    if config.bn_recalibrate:
        used = bn.recalibrate(model, x_train, config.bn_recalibrate, seed=config.data.seed)
        print(f"batch norm recalibrated on {used} training images", file=sys.stderr)
    seconds = time.perf_counter() - start + (float(saved.state.get("seconds", 0.0)) if saved is not None else 0.0)
    epochs_run = len(history.get("loss", []))
    test = _evaluate(model, strategy, splits, spec, n_rep)
    info = ModelInfo(
        labels=splits.classes,
        input=spec,
        quantization="float32",
        architecture=config.arch,
        params=params,
        dataset=splits.source,
        metrics={"test_accuracy": test["accuracy"], "macro_f1": test["macro_f1"], "n": test["n"], "macs": macs},
    )
    result = TrainResult(
        out=out,
        info=info,
        test=test,
        best_epoch=best.best_epoch,
        best_val_accuracy=best.best,
        epochs_run=epochs_run,
        train_seconds=seconds,
        images_per_second=epochs_run * len(x_train) / seconds if seconds > 0 else 0.0,
        wrote=distribute.is_chief(strategy),
        counts=counts,
        monitor=monitor,
        init=started,
    )
    if result.wrote:  # in a cluster, only the chief writes the run folder
        files.atomic_write(out / "model.keras", lambda tmp: _save_keras(model, tmp))
        report.write_run(out, config, result, history)
        resume_state.clear(out)  # the run folder is whole: nothing left to resume
    return result


def _pretrained(config: TrainConfig) -> bool:
    """Whether the run starts from trained weights in a backbone: its head trains first on the frozen backbone."""
    return config.arch in transfer.BACKBONES and (config.weights != "none" or config.init is not None)


def _start_model(
    config: TrainConfig, spec: InputSpec, classes: tuple[str, ...], x_train: np.ndarray, fresh: bool
) -> tuple[Any, int, int, dict[str, Any] | None]:
    """(model, trainable params, MACs, what --init kept) for a run: the architecture built, then its start set:
    the --init model's weights (a new run only: a resumed one, not `fresh`, gets its weights from the resume
    state), a pretrained backbone frozen for its head's phase, or a whitening stem set from the data."""
    model = architectures.build(config.arch, (spec.height, spec.width, 3), len(classes), config.weights)
    params = int(sum(int(np.prod(w.shape)) for w in model.trainable_weights))
    macs = count_macs(model)
    started = None
    if config.init is not None:
        started = warmstart.apply(model, config.init, classes) if fresh else warmstart.outcome(config.init, classes)
    if _pretrained(config):
        transfer.freeze_backbone(model)  # phase 1: the head only
    if config.init is None and whiten.initialise(model, x_train, seed=config.data.seed):
        print("whitening stem set from the training images' 2x2 patches", file=sys.stderr)
    return model, params, macs, started


def _evaluate(model: Any, strategy: Any | None, splits: Splits, spec: InputSpec, n_rep: int) -> dict[str, Any]:
    """The test split's classification report, with balanced accuracy."""
    x_test = preprocess.normalize_rgb(splits.test.images, spec)
    pad = (-len(x_test)) % n_rep  # equal shares for every replica; the padding is cut off again
    probs = _predict(model, strategy, np.concatenate([x_test, x_test[:pad]]), 256 * n_rep)[: len(x_test)]
    return report.with_balanced_accuracy(metrics.classification_report(probs, splits.test.labels, splits.classes))


def _joined(before: dict[str, list[float]], after: dict[str, list[float]]) -> dict[str, list[float]]:
    """Two histories, one after the other (a phase with no epochs adds nothing)."""
    return {k: before.get(k, []) + after.get(k, []) for k in {**before, **after}}


def _fit(model: Any, strategy: Any | None, train_ds: Any, **kwargs: Any) -> dict[str, list[float]]:
    """Keras' fit on one host, our own loop across hosts; the history as a dict of per-epoch lists."""
    if multiworker.is_multiworker(strategy):
        return multiworker.fit(model, strategy, train_ds, **kwargs)
    return model.fit(train_ds, **kwargs).history


def _predict(model: Any, strategy: Any | None, x: np.ndarray, batch_size: int) -> np.ndarray:
    """Class probabilities for `x`."""
    if multiworker.is_multiworker(strategy):
        return multiworker.predict(model, x, batch_size)
    return model.predict(x, batch_size=batch_size, verbose=0)


def _save_keras(model: Any, tmp: Path) -> None:
    # Keras insists on the .keras suffix, which the temp name keeps.
    model.save(tmp)
