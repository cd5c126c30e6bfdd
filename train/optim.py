"""Optimisers and schedules for `train_model`: SGD / Adam / AdamW, constant / cosine / one-cycle
learning rates, a larger learning rate for batch-norm shifts, lookahead weight averaging, and the
per-epoch learning-rate log."""

from __future__ import annotations

from typing import Any

from edgeclf.edge_app.errors import EdgeClfError

OPTIMIZERS = ("adam", "adamw", "sgd")
SCHEDULES = ("constant", "cosine", "onecycle")
# one-cycle: linear from START x lr up to lr over the warm-up, then linear down to END x lr
ONECYCLE_START, ONECYCLE_END = 0.2, 0.07
LOOKAHEAD_EVERY = 5  # steps between averages
LOOKAHEAD_FROM = 0.3  # fraction of the run before averaging starts


def _onecycle(keras: Any, peak: float, warm: int, total: int) -> Any:
    ops = keras.ops

    class OneCycle(keras.optimizers.schedules.LearningRateSchedule):
        def __call__(self, step: Any) -> Any:
            step = ops.cast(step, "float32")
            up = ONECYCLE_START + (1 - ONECYCLE_START) * step / max(warm, 1)
            down = 1 + (ONECYCLE_END - 1) * (step - warm) / max(total - warm, 1)
            return peak * ops.where(step < warm, up, ops.maximum(down, ONECYCLE_END))

        def get_config(self) -> dict[str, Any]:
            return {"peak": peak, "warm": warm, "total": total}

    return OneCycle()


def learning_rate(keras: Any, config: Any, steps_per_epoch: int) -> Any:
    """The configured learning rate: a float, or a schedule over optimiser steps."""
    total = max(1, config.epochs * steps_per_epoch)
    warm = min(total - 1, config.warmup_epochs * steps_per_epoch)
    if config.schedule == "onecycle":
        return _onecycle(keras, config.learning_rate, warm, total)
    if config.schedule == "cosine":
        return keras.optimizers.schedules.CosineDecay(
            config.learning_rate / 10 if warm else config.learning_rate,
            decay_steps=total - warm,
            warmup_target=config.learning_rate if warm else None,
            warmup_steps=warm,
        )
    return config.learning_rate


def _scaled_sgd(keras: Any, scaled: set[str], factor: float, **options: Any) -> Any:
    class ScaledSGD(keras.optimizers.SGD):
        """SGD whose named variables step `factor` times further (their gradients are scaled,
        which for momentum SGD is the same as scaling their learning rate; weight decay is not)."""

        def apply(self, grads: Any, trainable_variables: Any = None) -> Any:
            variables = trainable_variables if trainable_variables is not None else self._trainable_variables
            grads = [g * factor if v.path in scaled else g for g, v in zip(grads, variables, strict=True)]
            return super().apply(grads, trainable_variables)

    return ScaledSGD(**options)


def batchnorm_shifts(model: Any) -> set[str]:
    """Paths of the trainable batch-norm shift (beta) variables."""
    from edgeclf.train.bn import batchnorm_layers

    return {layer.beta.path for layer in batchnorm_layers(model) if layer.center and layer.trainable}


def optimizer(keras: Any, config: Any, steps_per_epoch: int, model: Any = None) -> Any:
    """The configured optimiser for `model` (needed only for --bias-lr-scale)."""
    options: dict[str, Any] = {"learning_rate": learning_rate(keras, config, steps_per_epoch)}
    options["weight_decay"] = config.weight_decay or None
    if config.ema:
        options.update(use_ema=True, ema_momentum=config.ema)
    if config.optimizer == "sgd":
        options.update(momentum=0.9, nesterov=True)
        if config.bias_lr_scale != 1 and model is not None:
            return _scaled_sgd(keras, batchnorm_shifts(model), config.bias_lr_scale, **options)
        return keras.optimizers.SGD(**options)
    if config.optimizer == "adamw":
        options["weight_decay"] = config.weight_decay
        return keras.optimizers.AdamW(**options)
    return keras.optimizers.Adam(**options)


def lookahead(keras: Any, total_steps: int) -> Any:
    """Lookahead averaging (hlb-cifar10 / airbench): every few steps after the first 30% of the run,
    an exponential average of all float weights (batch-norm statistics included) is updated and
    copied back into the model; its decay grows towards the end. At each epoch end the model
    takes the average."""
    start = int(LOOKAHEAD_FROM * total_steps)

    class Lookahead(keras.callbacks.Callback):
        def __init__(self) -> None:
            super().__init__()
            self.step, self.weights, self.average = 0, [], None

        def _update(self, decay: float) -> None:
            if self.average is None:  # the first average is the weights as they are
                self.weights = [w for w in self.model.weights if "float" in str(w.dtype)]
                self.average = [keras.ops.copy(w.value) for w in self.weights]
            self.average = [a * decay + w.value * (1 - decay) for a, w in zip(self.average, self.weights, strict=True)]
            for w, a in zip(self.weights, self.average, strict=True):
                w.assign(a)

        def on_train_batch_end(self, batch: int, logs: dict | None = None) -> None:
            self.step += 1
            if self.step >= start and self.step % LOOKAHEAD_EVERY == 0:
                self._update(0.95**LOOKAHEAD_EVERY * (self.step / total_steps) ** 3)

        def on_test_begin(self, logs: dict | None = None) -> None:
            # validation (and the checkpoint kept after it) sees the averaged weights
            if self.average is not None:
                self._update(1.0)

        def state(self) -> tuple[int, list[Any] | None]:
            """(steps seen, the average as numpy arrays or None before it starts), for --resume."""
            average = None if self.average is None else [keras.ops.convert_to_numpy(a) for a in self.average]
            return self.step, average

        def restore(self, step: int, average: list[Any] | None) -> None:
            """Continue from `state()`; the model must be set (set_model) and built."""
            self.step, self.weights, self.average = step, [], None
            if average is not None:
                self.weights = [w for w in self.model.weights if "float" in str(w.dtype)]
                if [tuple(w.shape) for w in self.weights] != [tuple(a.shape) for a in average]:
                    raise EdgeClfError("the saved lookahead average does not fit this model")
                pairs = zip(average, self.weights, strict=True)
                self.average = [keras.ops.convert_to_tensor(a, dtype=w.dtype) for a, w in pairs]

    return Lookahead()


def learning_rate_log(keras: Any) -> Any:
    """A callback that adds `learning_rate` to each epoch's logs (so to history.csv): the rate at the
    epoch's first step, which shows where a schedule stands (and that a resumed run did not restart it)."""

    class LearningRateLog(keras.callbacks.Callback):
        def __init__(self) -> None:
            super().__init__()
            self.value = 0.0

        def on_epoch_begin(self, epoch: int, logs: dict | None = None) -> None:
            self.value = float(keras.ops.convert_to_numpy(self.model.optimizer.learning_rate))

        def on_epoch_end(self, epoch: int, logs: dict | None = None) -> None:
            if logs is not None:
                logs["learning_rate"] = self.value

    return LearningRateLog()
