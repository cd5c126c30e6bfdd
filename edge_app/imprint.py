"""Weight imprinting: a classifier head built from the embeddings of a few pictures per class, in numpy.

replace: the taught classes alone, scored by cosine similarity to each class's mean direction (the
embeddings centred on the classes' mean first, as SimpleShot's CL2N), times a fixed temperature.

extend: the base classes keep the base model's own logits; each taught class gets a row of the base head's
kind, a dense layer on the raw embedding, scaled to the base rows' mean norm (our heads are biased dense
layers, some with scaled logits; they are not cosine classifiers). Imprinted rows alone would outscore the
base classes everywhere: the embeddings after a ReLU share a large common part, which trained rows cancel
and an imprinted mean does not. So each new row's bias is set from its own pictures: low enough that
`COVER` of the taught pictures' views score above the best base class, and no lower.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from edge_app.errors import TeachError
from edge_app.head import Head
from edge_app.tflite_graph import HeadSite

TEMPERATURE = 16.0  # replace mode: logits = 16 x cosine
COVER = 0.8  # extend mode: the share of the taught views each new class must win against the base classes


@dataclass(frozen=True)
class BaseHead:
    """What extend mode needs of the base head: its rows' mean norm and mean bias (in logit units)."""

    norm: float
    bias: float

    @classmethod
    def of(cls, site: HeadSite) -> BaseHead:
        """From the base model's last layer."""
        return cls(float(np.linalg.norm(site.weights, axis=1).mean()), float(site.bias.mean()))

    @classmethod
    def of_head(cls, head: Head) -> BaseHead:
        """From a taught model, which kept them."""
        return cls(head.base_norm, head.base_bias)


def _unit(x: np.ndarray) -> np.ndarray:
    return x / np.maximum(np.linalg.norm(x, axis=-1, keepdims=True), 1e-12)


def check_labels(labels: list[str], mode: str, base_labels: tuple[str, ...], prior: Head | None) -> None:
    """Refuse label sets that cannot be taught, each in one line."""
    if prior is not None and prior.mode != mode:
        raise TeachError(
            f"the base was taught in {prior.mode} mode; teach it again with --mode {prior.mode}, "
            f"or teach the original model"
        )
    if mode == "extend":
        clash = [label for label in labels if label in base_labels]
        if clash:
            raise TeachError(
                f"label(s) {', '.join(clash)} are classes the base model was trained on; extend mode adds new "
                f"classes, and more pictures of classes taught earlier, not of trained ones (rename the folder, "
                f"or use --mode replace)"
            )
    known = set(prior.labels) if prior is not None else set()
    if mode == "replace" and len(known | set(labels)) < 2:
        raise TeachError(f"replace mode needs at least two classes; {sorted(known | set(labels))} is one")


def fit(
    embeddings: dict[str, tuple[np.ndarray, np.ndarray]],
    mode: str,
    base_labels: tuple[str, ...],
    base: BaseHead,
    view_weights: tuple[float, ...],
    prior: Head | None = None,
) -> Head:
    """The head for `embeddings` {label: (embedding (n, views, dim), base logits (n, views, classes))}, added to
    what `prior` (a taught base's head) already knows."""
    dim = next(iter(embeddings.values()))[0].shape[-1]
    labels = list(prior.labels) if prior is not None else []
    sums = [row for row in prior.sums] if prior is not None else []
    shots = list(prior.shots) if prior is not None else []
    if prior is not None:
        center = prior.center
    elif mode == "replace":  # the mean of the class means: no class dominates the centre
        center = np.mean([emb.reshape(-1, dim).mean(axis=0) for emb, _ in embeddings.values()], axis=0)
    else:
        center = np.zeros(dim)
    for label, (emb, _) in embeddings.items():
        views = emb.shape[1]
        total = _unit(emb - center).sum(axis=(0, 1)) / views  # one image counts once, whatever its views
        if label in labels:
            i = labels.index(label)
            sums[i], shots[i] = sums[i] + total, shots[i] + len(emb)
        else:
            labels.append(label)
            sums.append(total)
            shots.append(len(emb))
    directions = _unit(np.stack(sums))
    if mode == "replace":
        weights, bias = TEMPERATURE * directions, np.zeros(len(labels))
    else:
        weights = base.norm * directions
        bias = np.array(prior.bias if prior is not None else [], dtype=np.float64)
        bias = np.concatenate([bias, np.full(len(labels) - len(bias), base.bias)])
        for label, (emb, logits) in embeddings.items():
            i = labels.index(label)
            margin = emb @ weights[i] + base.bias - logits.max(axis=-1)  # against the best base class, per view
            bias[i] = base.bias - float(np.quantile(margin, 1.0 - COVER))
    return Head(
        mode=mode,
        labels=tuple(labels),
        base_labels=base_labels,
        weights=weights.astype(np.float32),
        bias=bias.astype(np.float32),
        center=np.asarray(center, dtype=np.float32),
        normalize=mode == "replace",
        sums=np.stack(sums).astype(np.float32),
        shots=tuple(shots),
        view_weights=tuple(view_weights),
        base_norm=base.norm,
        base_bias=base.bias,
    )
