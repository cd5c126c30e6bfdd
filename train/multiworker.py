"""The training loop for `--strategy multiworker`.

Keras 3's `fit` cannot drive tf.distribute.MultiWorkerMirroredStrategy: before the first step it
reduces a per-replica batch eagerly and fails with "Attempt to convert a value (PerReplica ...)
to a Tensor" (keras-team/keras#20585). This loop runs the same steps itself: the model's compiled
loss and optimiser under `strategy.run`, the Keras callbacks, and a history like `fit`'s.

Data: every worker builds the same seeded pipeline and tf.data's DATA auto-sharding hands each
replica its own slice of every global batch, so the workers see distinct images and the global
batch is the same as on one host. Every collective below is reached by every worker in the same
order (one all-reduce of the gradients and of the step's sums per batch, one of the validation
sums per validation batch, one of the stop flag per epoch); nothing after training needs one, so
a worker that finishes early cannot strand the others.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from edgeclf.edge_app.errors import EdgeClfError, require


def is_multiworker(strategy: Any | None) -> bool:
    """Whether `strategy` spans several hosts (it has a cluster resolver: MultiWorkerMirroredStrategy)."""
    return strategy is not None and getattr(strategy, "cluster_resolver", None) is not None


def _sharded(tf: Any, strategy: Any, ds: Any) -> Any:
    # the datasets come from in-memory arrays: there are no files to shard by, so shard by element
    options = tf.data.Options()
    options.experimental_distribute.auto_shard_policy = tf.data.experimental.AutoShardPolicy.DATA
    return strategy.experimental_distribute_dataset(ds.with_options(options))


def _steps(tf: Any, model: Any, strategy: Any) -> tuple[Any, Any]:
    """(train step, evaluation step): each takes one distributed batch and returns the all-reduced
    (sum of per-image losses, correct predictions, images) over every replica of every worker."""
    n_rep = strategy.num_replicas_in_sync
    SUM = tf.distribute.ReduceOp.SUM

    def sums(x: Any, y: Any, pred: Any, loss: Any) -> tuple[Any, Any, Any]:
        count = tf.cast(tf.shape(x)[0], tf.float32)
        # Keras divides a replica's mean loss by the replica count (so that the summed gradients
        # average); undone here to weigh it by the replica's own, possibly empty, share of the batch
        total = tf.where(count > 0, tf.cast(loss, tf.float32) * n_rep * count, 0.0)
        labels = y[:, : pred.shape[-1]]  # distillation targets append the teacher's scores
        correct = tf.reduce_sum(tf.cast(tf.equal(tf.argmax(labels, -1), tf.argmax(pred, -1)), tf.float32))
        return total, correct, count

    def train_replica(x: Any, y: Any) -> tuple[Any, Any, Any]:
        with tf.GradientTape() as tape:
            pred = model(x, training=True)
            loss = model.compute_loss(x=x, y=y, y_pred=pred, training=True)
            scaled = model.optimizer.scale_loss(loss)
        grads = tape.gradient(scaled, model.trainable_variables)
        # the optimiser all-reduces (sums) the gradients across replicas before it applies them
        model.optimizer.apply_gradients(zip(grads, model.trainable_variables))
        return sums(x, y, pred, loss)

    def eval_replica(x: Any, y: Any) -> tuple[Any, Any, Any]:
        pred = model(x, training=False)
        return sums(x, y, pred, model.compute_loss(x=x, y=y, y_pred=pred, training=False))

    def reduced(replica_fn: Any) -> Any:
        def step(batch: Any) -> Any:
            per_replica = strategy.run(replica_fn, args=tuple(batch))
            return tf.stack([strategy.reduce(SUM, v, axis=None) for v in per_replica])

        # the last validation batch is shorter: retrace once for it rather than for every shape
        return tf.function(step, reduce_retracing=True)

    return reduced(train_replica), reduced(eval_replica)


def _anyone(tf: Any, strategy: Any) -> Any:
    """A collective "does any worker say yes": callbacks decide alone, but all workers must stop together."""

    @tf.function
    def anyone(flag: Any) -> Any:
        votes = strategy.run(lambda f: tf.identity(f), args=(flag,))
        return strategy.reduce(tf.distribute.ReduceOp.SUM, votes, axis=None) > 0

    return anyone


def _build(model: Any, strategy: Any, train_ds: Any) -> None:
    """Create the optimiser's and the compiled loss's state in cross-replica context (Keras' fit does
    this in its symbolic build; created lazily inside `strategy.run` it would be per replica)."""
    with strategy.scope():
        if not model.optimizer.built:
            model.optimizer.build(model.trainable_variables)
        x, y = (np.zeros((1, *spec.shape[1:]), spec.dtype.as_numpy_dtype) for spec in train_ds.element_spec)
        model.compute_loss(x=x, y=y, y_pred=model(x, training=False), training=False)


def fit(
    model: Any,
    strategy: Any,
    train_ds: Any,
    epochs: int = 1,
    initial_epoch: int = 0,
    callbacks: list[Any] | None = None,
    validation_data: Any = None,
    verbose: int = 1,
    shuffle: bool = False,
) -> dict[str, list[float]]:
    """Keras' `fit(train_ds, ...)` for a multi-worker strategy: the history as a dict of per-epoch lists.
    `shuffle` is ignored as in `fit` with a dataset (the dataset shuffles itself)."""
    tf = require("tensorflow", "train")
    keras = require("keras", "train")
    _build(model, strategy, train_ds)
    train_step, eval_step = _steps(tf, model, strategy)
    anyone = _anyone(tf, strategy)
    train_dist = _sharded(tf, strategy, train_ds)
    val_dist = _sharded(tf, strategy, validation_data) if validation_data is not None else None
    steps = int(train_ds.cardinality()) if int(train_ds.cardinality()) > 0 else None
    hooks = keras.callbacks.CallbackList(
        callbacks, add_progbar=verbose != 0, model=model, verbose=verbose, epochs=epochs, steps=steps
    )
    try:
        return _epochs(tf, model, hooks, train_step, eval_step, anyone, train_dist, val_dist, initial_epoch, epochs)
    except (tf.errors.UnavailableError, tf.errors.AbortedError, tf.errors.DeadlineExceededError) as exc:
        raise EdgeClfError(f"the cluster lost a worker ({_first_line(exc)}); start every worker again") from None


def _first_line(exc: Any) -> str:
    # TensorFlow prefixes "{{function_node ...}}" and names the failed tasks on the line after its sentence
    lines = [line.strip() for line in str(getattr(exc, "message", exc)).split("}}")[-1].splitlines() if line.strip()]
    return (" ".join(lines[:2]) if lines else type(exc).__name__)[:240]


def _epochs(
    tf: Any,
    model: Any,
    hooks: Any,
    train_step: Any,
    eval_step: Any,
    anyone: Any,
    train_dist: Any,
    val_dist: Any,
    initial_epoch: int,
    epochs: int,
) -> dict[str, list[float]]:
    history: dict[str, list[float]] = {}
    model.stop_training = False
    hooks.on_train_begin()
    logs: dict[str, float] = {}
    for epoch in range(initial_epoch, epochs):
        hooks.on_epoch_begin(epoch)
        total = np.zeros(3)
        for step, batch in enumerate(train_dist):
            hooks.on_train_batch_begin(step)
            total += train_step(batch).numpy()
            hooks.on_train_batch_end(step, _logs(total))
        logs = _logs(total)
        if val_dist is not None:
            hooks.on_test_begin()  # SwapEMAWeights validates the averaged weights
            total = np.zeros(3)
            for batch in val_dist:
                total += eval_step(batch).numpy()
            val = _logs(total)
            hooks.on_test_end(val)
            logs.update({f"val_{k}": v for k, v in val.items()})
        hooks.on_epoch_end(epoch, logs)
        for key, value in logs.items():
            history.setdefault(key, []).append(value)
        # checked once an epoch, not after each batch as fit does: every worker must run the same steps
        if bool(anyone(tf.constant(float(bool(model.stop_training))))):
            model.stop_training = True
            break
    if epochs > 0:  # as fit: with EMA, the model ends with the averaged weights (each worker its own copy)
        model.optimizer.finalize_variable_values(model.trainable_weights)
    hooks.on_train_end(logs)
    return history


def _logs(total: np.ndarray) -> dict[str, float]:
    loss, correct, count = (float(v) for v in total)
    return {"loss": loss / count, "accuracy": correct / count} if count else {"loss": 0.0, "accuracy": 0.0}


def predict(model: Any, x: np.ndarray, batch_size: int) -> np.ndarray:
    """Class probabilities for `x`, computed by this worker alone from its copy of the (synchronised)
    weights: no collectives, so each worker can predict (and the chief save) on its own."""
    keras = require("keras", "train")
    out = [
        keras.ops.convert_to_numpy(model(x[i : i + batch_size], training=False)) for i in range(0, len(x), batch_size)
    ]
    return np.concatenate(out) if out else np.zeros((0, model.output_shape[-1]), np.float32)
