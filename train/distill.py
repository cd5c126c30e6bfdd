"""Knowledge distillation and mixup: the student learns from labels and a teacher's soft outputs.

Targets travel as one tensor [one-hot labels | teacher probabilities], so plain `model.fit`
works; every model here ends in softmax, so temperatures act on log-probabilities.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from edgeclf.edge_app.contract import InputSpec, ModelInfo
from edgeclf.edge_app.errors import EdgeClfError, MetadataError, require


def teacher_input(path: str | Path) -> InputSpec | None:
    """The teacher's input contract from its run.json, when it has one."""
    path = Path(path)
    run_file = (path if path.is_dir() else path.parent) / "run.json"
    try:
        return ModelInfo.from_dict(json.loads(run_file.read_text())["model_info"]).input
    except (OSError, ValueError, KeyError, MetadataError):
        return None


def load_teacher(path: str | Path) -> Any:
    """A trained Keras model (a run folder or a .keras file), frozen."""
    keras = require("keras", "train")
    path = Path(path)
    model_path = path / "model.keras" if path.is_dir() else path
    if not model_path.is_file():
        raise EdgeClfError(f"teacher not found: {path} (give a run folder or a .keras file)")
    try:
        teacher = keras.models.load_model(model_path, compile=False)
    except Exception as exc:  # noqa: BLE001 - any load failure is one line for the user
        raise EdgeClfError(f"{model_path} could not be loaded as a teacher: {str(exc).splitlines()[0][:160]}") from None
    teacher.trainable = False
    return teacher


def fixed_targets(teacher: Any, x: Any, batch: int = 512) -> Any:
    """The teacher's probabilities for each image, averaged with those for its mirror image."""
    probs = teacher.predict(x, batch_size=batch, verbose=0)
    mirrored = teacher.predict(x[:, :, ::-1], batch_size=batch, verbose=0)
    return (probs + mirrored) / 2


def distillation_loss(n_classes: int, alpha: float, temperature: float, label_smoothing: float = 0.0) -> Any:
    """(1 - alpha) * CE(labels, p) + alpha * T^2 * KL(teacher_T || student_T)."""
    tf = require("tensorflow", "train")
    keras = require("keras", "train")
    eps = 1e-7

    def soften(p: Any) -> Any:
        return tf.nn.softmax(tf.math.log(tf.clip_by_value(p, eps, 1.0)) / temperature, axis=-1)

    def loss(y_true: Any, y_pred: Any) -> Any:
        # one value per image: Keras averages them and scales the mean for the replicas once; a loss
        # object or a mean in here would be scaled on its own (or not at all) under tf.distribute
        labels, teacher = y_true[:, :n_classes], y_true[:, n_classes:]
        t, s = soften(teacher), soften(y_pred)
        kl = tf.reduce_sum(t * (tf.math.log(t + eps) - tf.math.log(s + eps)), axis=-1)
        ce = keras.losses.categorical_crossentropy(labels, y_pred, label_smoothing=label_smoothing)
        return (1.0 - alpha) * ce + alpha * temperature**2 * kl

    return loss


def label_accuracy(n_classes: int) -> Any:
    """Accuracy against the label part of a [labels | teacher] target."""
    tf = require("tensorflow", "train")

    def accuracy(y_true: Any, y_pred: Any) -> Any:
        return tf.cast(tf.equal(tf.argmax(y_true[:, :n_classes], -1), tf.argmax(y_pred, -1)), tf.float32)

    accuracy.__name__ = "accuracy"
    return accuracy


def mixup(alpha: float, seed: int) -> Any:
    """A batch map mixing each batch with a shuffled copy of itself, lambda ~ Beta(alpha, alpha)."""
    tf = require("tensorflow", "train")
    rng = tf.random.Generator.from_seed(seed)

    def mix(x: Any, y: Any) -> Any:
        seeds = rng.make_seeds(3)
        a = tf.random.stateless_gamma([], seed=seeds[:, 0], alpha=alpha)
        b = tf.random.stateless_gamma([], seed=seeds[:, 1], alpha=alpha)
        lam = a / (a + b)  # Beta(alpha, alpha)
        order = tf.argsort(tf.random.stateless_uniform([tf.shape(x)[0]], seed=seeds[:, 2]))
        return lam * x + (1 - lam) * tf.gather(x, order), lam * y + (1 - lam) * tf.gather(y, order)

    return mix
