"""Fit the rows of taught classes as a logistic regression beside the base model's own, fixed logits (numpy).

extend mode with pictures of the base's classes (`--base-data`): each taught class's row is fitted so that
its pictures score above the base classes and the base's pictures below it, with the base classes' logits
left as the model computes them. A row imprinted from the class mean cannot do that: the taught class's
nearest base sibling (a dog for a cat) shares most of its direction, and only a discriminative fit finds the
part that tells them apart. Few pictures and many parameters (one per embedding dimension) overfit, so the
rows are kept small (L2) and start from the imprinted rows.

The loss is the cross-entropy of one softmax over [fixed logits, taught logits] per view, each view weighted
as the model averages its views. The fixed logits never change, so they enter only through their
log-sum-exp, computed once: a step costs the taught columns alone, however many classes the base has.
"""

from __future__ import annotations

import numpy as np

from edgeclf.edge_app.head import view_probabilities

STEPS = 300
RATE = 0.05
# L2 on the rows, relative to a loss whose weights sum to 1: picked on a validation split with the bias then set
# by budget_shift (0.01 / 0.03 / 0.1 / 0.3: 34.9 / 35.9 / 37.6 / 37.2% of the new classes' pictures at a 2-point
# cost to the base classes, 500 base pictures a class; 36.7 / 37.1 / 37.7% at 200 for 0.03 / 0.1 / 0.3)
DECAY = 0.3
SHIFT_LIMIT = 64.0  # logits: budget_shift looks for its shift in [-SHIFT_LIMIT, SHIFT_LIMIT]
# logits the shift stays below the boundary it finds: the head is stored and scored in float32, which moves a
# logit by far less, but enough to flip the picture at the boundary when the shift sits on it
SHIFT_MARGIN = 1e-3
SHARE_TOLERANCE = 1e-9  # a sum of weights may overshoot an exactly allowed share in its last bits


class Problem:
    """One fit's data, flattened to one row per view, with what never changes computed once."""

    def __init__(
        self,
        embedding: np.ndarray,
        fixed_logits: np.ndarray,
        target: np.ndarray,
        weight: np.ndarray,
        view_weights: tuple[float, ...],
        classes: int,
    ) -> None:
        n, views, dim = embedding.shape
        if fixed_logits.shape[:2] != (n, views) or target.shape != (n,) or weight.shape != (n,):
            raise ValueError("embedding, fixed logits, target and weight disagree in their sample and view counts")
        if len(view_weights) != views:
            raise ValueError(f"{len(view_weights)} view weight(s) for {views} view(s)")
        self.x = embedding.reshape(n * views, dim).astype(np.float32)
        fixed = fixed_logits.reshape(n * views, -1).astype(np.float64)
        top = fixed.max(axis=1)
        self.fixed_lse = top + np.log(np.exp(fixed - top[:, None]).sum(axis=1))
        per_view = np.asarray(view_weights, dtype=np.float64) / np.sum(view_weights)
        w = (weight.astype(np.float64)[:, None] * per_view[None, :]).reshape(-1)
        self.w = w / w.sum()
        taught = np.repeat(target, views)
        self.onehot = np.zeros((n * views, classes), dtype=np.float64)
        self.taught = taught >= 0
        self.onehot[self.taught, taught[self.taught]] = 1.0

    def loss_and_grad(
        self, rows: np.ndarray, bias: np.ndarray, anchor: np.ndarray | float, decay: float
    ) -> tuple[float, np.ndarray, np.ndarray]:
        """The weighted cross-entropy (references: of the fixed classes together) plus decay x |rows - anchor|^2,
        and its gradient with respect to rows and bias."""
        z = (self.x @ rows.T.astype(np.float32)).astype(np.float64) + bias
        top = np.maximum(z.max(axis=1), self.fixed_lse)
        exp_taught = np.exp(z - top[:, None])
        denom = np.exp(self.fixed_lse - top) + exp_taught.sum(axis=1)
        p = exp_taught / denom[:, None]
        log_denom = top + np.log(denom)
        own = np.where(self.taught, (z * self.onehot).sum(axis=1), self.fixed_lse)
        loss = float((self.w * (log_denom - own)).sum() + decay * ((rows - anchor) ** 2).sum())
        g = (p - self.onehot) * self.w[:, None]
        grad_rows = (g.T.astype(np.float32) @ self.x).astype(np.float64) + 2.0 * decay * (rows - anchor)
        return loss, grad_rows, g.sum(axis=0)


def fit_rows(
    embedding: np.ndarray,
    fixed_logits: np.ndarray,
    target: np.ndarray,
    weight: np.ndarray,
    rows: np.ndarray,
    bias: np.ndarray,
    view_weights: tuple[float, ...],
    anchor: np.ndarray | float = 0.0,
    steps: int = STEPS,
    decay: float = DECAY,
) -> tuple[np.ndarray, np.ndarray]:
    """Rows (classes, dim) and biases (classes,) of the taught classes.

    embedding (n, views, dim) and fixed_logits (n, views, fixed) of each sample; target (n,) the taught class
    index of a sample, or -1 for a sample of a fixed (base) class; weight (n,) each sample's share of the loss;
    rows, bias: where the fit starts; view_weights: how the model averages its views; anchor: what the L2
    term holds the rows near (a row fitted earlier, or 0). Full-batch Adam: deterministic."""
    problem = Problem(embedding, fixed_logits, target, weight, view_weights, len(rows))
    params = [rows.astype(np.float64).copy(), bias.astype(np.float64).copy()]
    moments = [[np.zeros_like(p), np.zeros_like(p)] for p in params]
    for step in range(1, steps + 1):
        _, *grads = problem.loss_and_grad(params[0], params[1], anchor, decay)
        for param, grad, (m, v) in zip(params, grads, moments):
            m *= 0.9
            m += 0.1 * grad
            v *= 0.999
            v += 0.001 * grad * grad
            param -= RATE * (m / (1 - 0.9**step)) / (np.sqrt(v / (1 - 0.999**step)) + 1e-8)
    return params[0].astype(np.float32), params[1].astype(np.float32)


def budget_shift(
    fixed_logits: np.ndarray,
    taught_logits: np.ndarray,
    weight: np.ndarray,
    view_weights: tuple[float, ...],
    share: float,
    background: int | None = None,
) -> float:
    """The largest shift of every taught logit at which the taught classes take at most `share` of the samples.

    fixed_logits (n, views, fixed) and taught_logits (n, views, taught) of samples of the fixed classes (base
    pictures); weight (n,) each sample's share. A sample is taken when its view-averaged probabilities, as the
    model averages them, put a taught class first; a `background` fixed class (never reported) does not count
    as first. The share only grows with the shift, so it is bisected. ValueError if the taught classes take
    more than `share` even at the lowest shift."""
    weight = weight.astype(np.float64) / weight.sum()
    fixed = fixed_logits.astype(np.float64)
    taught = taught_logits.astype(np.float64)
    shown = np.arange(fixed.shape[-1]) != background

    def taken(shift: float) -> float:
        mean = view_probabilities(np.concatenate([fixed, taught + shift], axis=-1), view_weights)
        won = mean[:, fixed.shape[-1] :].max(axis=1) > mean[:, : fixed.shape[-1]][:, shown].max(axis=1)
        return float(weight[won].sum())

    low, high = -SHIFT_LIMIT, SHIFT_LIMIT
    if taken(low) > share + SHARE_TOLERANCE:
        raise ValueError(f"the taught classes take {taken(low):.1%} of the base pictures even at the lowest shift")
    if taken(high) <= share + SHARE_TOLERANCE:
        return high
    for _ in range(50):
        middle = (low + high) / 2
        if taken(middle) <= share + SHARE_TOLERANCE:
            low = middle
        else:
            high = middle
    return low - SHIFT_MARGIN
