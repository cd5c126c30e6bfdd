"""Uneven classes: the per-class image counts, their warnings, and `--balance` (class weights in the
loss, or batches that sample the classes evenly).

Both modes act on what the model is trained on, never on the data: validation and test keep
their natural class mix, so the run's reports say how the model does on data like the user's.
"""

from __future__ import annotations

import sys
from typing import TYPE_CHECKING, Any

import numpy as np

from edgeclf.train.data import carved_count

if TYPE_CHECKING:
    from edgeclf.train.data import Splits

MODES = ("auto", "none", "weights", "sampling")
SKEW = 2.0  # auto picks weights when the largest class has more than this many times the smallest's images
FEW = 10  # fewer training images than this in a class earns a warning
COLUMNS = ("train", "validation", "test", "skipped")


def counts_table(splits: Splits) -> dict[str, dict[str, int]]:
    """{class: {train, validation, test, skipped}}, the images of each split per class."""
    n = len(splits.classes)
    columns = {
        "train": np.bincount(splits.train.labels, minlength=n),
        "validation": np.bincount(splits.val.labels, minlength=n),
        "test": np.bincount(splits.test.labels, minlength=n),
        "skipped": np.asarray(splits.skipped_by_class or (0,) * n),
    }
    return {name: {col: int(columns[col][i]) for col in COLUMNS} for i, name in enumerate(splits.classes)}


def format_table(table: dict[str, dict[str, int]]) -> str:
    """The counts table as aligned text with a total row."""
    width = max(len("class"), len("total"), *(len(name) for name in table))
    rows = [f"{'class':<{width}}" + "".join(f"{col:>12}" for col in COLUMNS)]
    for name, row in table.items():
        rows.append(f"{name:<{width}}" + "".join(f"{row[col]:>12,}" for col in COLUMNS))
    totals = {col: sum(row[col] for row in table.values()) for col in COLUMNS}
    rows.append(f"{'total':<{width}}" + "".join(f"{totals[col]:>12,}" for col in COLUMNS))
    return "\n".join(rows)


def warnings(table: dict[str, dict[str, int]], val_split: float) -> list[str]:
    """One line per class that is thin in training, that the validation split would have left empty, or
    that has no test images."""
    lines = []
    for name, row in table.items():
        before = row["train"] + row["validation"]
        if round(before * val_split) == 0 and carved_count(before, val_split) > 0:
            lines.append(
                f"warning: a {val_split:g} validation split would leave class '{name}' ({before} images) empty; "
                f"the split is stratified, so {row['validation']} of them validate"
            )
        if row["train"] < FEW:
            lines.append(f"warning: class '{name}' has {row['train']} training images (fewer than {FEW}): expect it "
                         "to be learnt poorly, and its validation and test scores to be noisy")  # fmt: skip
        if row["test"] == 0:
            lines.append(f"warning: class '{name}' has no test images: its test precision / recall are 0, not measured")
    return lines


def choose(mode: str, train_counts: dict[str, int]) -> tuple[str, str]:
    """(mode to use, why): `auto` becomes weights when the largest class has more than SKEW times the
    smallest's training images, else none; any other mode is kept."""
    if mode != "auto":
        return mode, "as asked"
    largest = max(train_counts, key=lambda name: train_counts[name])
    smallest = min(train_counts, key=lambda name: train_counts[name])
    big, small = train_counts[largest], train_counts[smallest]
    skewed = big > SKEW * small
    relation = "more than" if skewed else "at most"
    why = f"automatic: largest class '{largest}' has {big} training images, {relation} {SKEW:g} x the smallest"
    why += f" ('{smallest}', {small})"
    return ("weights" if skewed else "none"), why


def class_weights(counts: np.ndarray) -> np.ndarray:
    """n_total / (n_classes * n_c) per class (scikit-learn's 'balanced'): each class carries the same
    total weight, and the weights average 1 over the training images, so the learning rate keeps its meaning."""
    counts = np.asarray(counts, dtype=np.float64)
    # a class without training images (only possible with splits made by hand) weighs no image: any value does
    return (counts.sum() / (len(counts) * np.maximum(counts, 1))).astype(np.float32)


def weighted_loss(per_image: Any, weights: np.ndarray) -> Any:
    """`per_image(y_true, y_pred)` (one value per image) times each image's class weight.

    The weight is the class weights' expectation under the target's label part (its first n_classes
    columns, before label smoothing; distillation appends the teacher's outputs after them): for a
    one-hot label, that class's weight; for a mixup label lam * a + (1 - lam) * b, lam * w_a + (1 - lam) *
    w_b, the two images' weights mixed with the batch's lambda.
    """
    from edgeclf.edge_app.errors import require

    tf = require("tensorflow", "train")
    w = tf.constant(weights, dtype=tf.float32)
    n = len(weights)

    def loss(y_true: Any, y_pred: Any) -> Any:
        labels = tf.cast(y_true[:, :n], tf.float32)
        return per_image(y_true, y_pred) * tf.reduce_sum(labels * w, axis=-1)

    return loss


def monitor(mode: str, strategy: str) -> str:
    """The validation number that picks the kept checkpoint: with a balance mode, balanced accuracy, since
    plain accuracy on an uneven validation split rewards the epochs that favour the big classes again (our
    multi-host loop logs plain accuracy only)."""
    return "val_balanced_accuracy" if mode != "none" and strategy != "multiworker" else "val_accuracy"


def balanced_accuracy(keras: Any, n_classes: int) -> Any:
    """A Keras metric: the mean over classes of the share of their images classified right (recall), from
    counts summed over the epoch; the label is the first n_classes columns of the target (see distill)."""
    ops = keras.ops

    class BalancedAccuracy(keras.metrics.Metric):
        def __init__(self) -> None:
            super().__init__(name="balanced_accuracy")
            self.right = self.add_variable(shape=(n_classes,), initializer="zeros", name="right")
            self.seen = self.add_variable(shape=(n_classes,), initializer="zeros", name="seen")

        def update_state(self, y_true: Any, y_pred: Any, sample_weight: Any = None) -> None:
            true = ops.argmax(y_true[:, :n_classes], axis=-1)
            hits = ops.cast(ops.equal(true, ops.argmax(y_pred, axis=-1)), "float32")
            onehot = ops.one_hot(true, n_classes)
            self.seen.assign_add(ops.sum(onehot, axis=0))
            self.right.assign_add(ops.sum(onehot * hits[:, None], axis=0))

        def result(self) -> Any:
            present = ops.cast(self.seen > 0, "float32")
            recall = self.right / ops.maximum(self.seen, 1.0)
            return ops.sum(recall * present) / ops.maximum(ops.sum(present), 1.0)

        def reset_state(self) -> None:
            self.right.assign(ops.zeros((n_classes,)))
            self.seen.assign(ops.zeros((n_classes,)))

    return BalancedAccuracy()


def sampled(tf: Any, x: np.ndarray, targets: np.ndarray, labels: np.ndarray, seed: int) -> Any:
    """An endless dataset of (image, target) that draws each class equally often: one shuffled, repeated
    dataset per class, interleaved by `sample_from_datasets` with uniform weights. The caller batches it
    and cuts epochs with `take`, so an epoch has as many steps as an unbalanced one."""
    per_class = []
    for c in np.unique(labels):
        idx = np.flatnonzero(labels == c)
        ds = tf.data.Dataset.from_tensor_slices((x[idx], targets[idx]))
        per_class.append(ds.shuffle(len(idx), seed=seed + int(c), reshuffle_each_iteration=True).repeat())
    weights = [1.0 / len(per_class)] * len(per_class)
    # a new class order every epoch, as the shuffles inside each class have
    return tf.data.Dataset.sample_from_datasets(per_class, weights, seed=seed, rerandomize_each_iteration=True)


def prepare(mode: str, splits: Splits, val_split: float) -> tuple[str, dict[str, dict[str, int]]]:
    """Print the counts table, its warnings and the balance mode chosen; return (mode, table)."""
    table = counts_table(splits)
    print("images per class:\n" + format_table(table), file=sys.stderr)
    for line in warnings(table, val_split):
        print(line, file=sys.stderr)
    chosen, why = choose(mode, {name: row["train"] for name, row in table.items()})
    print(f"balance: {chosen} ({why})", file=sys.stderr)
    return chosen, table
