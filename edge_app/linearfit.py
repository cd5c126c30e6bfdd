"""Fit the rows of taught classes as a logistic regression beside the base model's own, fixed logits (numpy).

extend mode with pictures of the base's classes (`--base-data`): each taught class's row is fitted so that
its pictures score above the base classes and the base's pictures below it, with the base classes' logits
left as the model computes them. A row imprinted from the class mean cannot do that: the taught class's
nearest base sibling (a dog for a cat) shares most of its direction, and only a discriminative fit finds the
part that tells them apart. Few pictures and many parameters (one per embedding dimension) overfit, so the
rows are kept small (L2) and start from the imprinted rows.

The loss is the cross-entropy of one softmax over [base logits, taught logits] per view. Each base class
weighs as much as each taught class (the references together weigh as many classes as the base has), so a
new class's handful of pictures is not drowned by hundreds of references.
"""

from __future__ import annotations

import numpy as np

STEPS = 300
RATE = 0.05
DECAY = 0.01  # L2 on the rows, relative to a loss whose weights sum to 1: picked on a validation split


def fit_rows(
    embedding: np.ndarray,
    fixed_logits: np.ndarray,
    target: np.ndarray,
    weight: np.ndarray,
    rows: np.ndarray,
    bias: np.ndarray,
    anchor: np.ndarray | float = 0.0,
    steps: int = STEPS,
    decay: float = DECAY,
) -> tuple[np.ndarray, np.ndarray]:
    """Rows (classes, dim) and biases (classes,) of the taught classes.

    embedding (n, views, dim) and fixed_logits (n, views, fixed) of each sample; target (n,) the taught class
    index of a sample, or -1 for a sample of a fixed (base) class; weight (n,) each sample's share of the loss;
    rows, bias: where the fit starts; anchor: what the L2 term holds the rows near (a row fitted earlier, or 0).
    Full-batch Adam: deterministic, and a few hundred steps over a few
    thousand samples take well under a second."""
    n, views, dim = embedding.shape
    x = embedding.reshape(n * views, dim).astype(np.float64)
    fixed = fixed_logits.reshape(n * views, -1).astype(np.float64)
    taught = np.repeat(target, views)
    w = np.repeat(weight.astype(np.float64), views)
    w /= w.sum()
    onehot = np.zeros((n * views, len(rows)))
    mine = taught >= 0
    onehot[np.flatnonzero(mine), taught[mine]] = 1.0
    params = [rows.astype(np.float64).copy(), bias.astype(np.float64).copy()]
    moments = [[np.zeros_like(p), np.zeros_like(p)] for p in params]
    for step in range(1, steps + 1):
        z = np.concatenate([fixed, x @ params[0].T + params[1]], axis=1)
        z -= z.max(axis=1, keepdims=True)
        p = np.exp(z)
        p /= p.sum(axis=1, keepdims=True)
        g = (p[:, fixed.shape[1] :] - onehot) * w[:, None]
        grads = (g.T @ x + 2.0 * decay * (params[0] - anchor), g.sum(axis=0))
        for param, grad, (m, v) in zip(params, grads, moments):
            m *= 0.9
            m += 0.1 * grad
            v *= 0.999
            v += 0.001 * grad * grad
            param -= RATE * (m / (1 - 0.9**step)) / (np.sqrt(v / (1 - 0.999**step)) + 1e-8)
    return params[0].astype(np.float32), params[1].astype(np.float32)
