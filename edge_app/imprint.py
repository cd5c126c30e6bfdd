"""Weight imprinting: a classifier head built from the embeddings of a few pictures per class, in numpy.

Each class is kept as the sum and count of its pictures' embeddings; `head.Head` scores from their means.

replace: the taught classes alone, by cosine similarity to each class's centred mean.

extend: the base classes keep the base model's own logits; each taught class gets a row of the base head's
kind, a dense layer on the raw embedding scaled to the base rows' mean norm (our heads are biased dense
layers, some with scaled logits, not cosine classifiers). Imprinted rows with the base's mean bias would
outscore the base classes almost everywhere: ReLU embeddings share a large common part, which trained rows
cancel and an imprinted mean does not. So each new row's bias is calibrated on its own pictures: the highest
bias at which `COVER` of their views still score above the best base class. That alone still takes many
pictures of a similar base class (a taught cat takes dogs). Given pictures of the base's classes
(`--base-data`), the taught rows are instead fitted against them (`linearfit`): a logistic regression beside
the base's fixed logits, started from the imprinted rows, which finds what tells a cat from a dog.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np

from edgeclf.edge_app.errors import TeachError
from edgeclf.edge_app.head import Head, background_index, unit
from edgeclf.edge_app.linearfit import budget_shift, fit_rows
from edgeclf.edge_app.tflite_graph import HeadSite

COVER = 0.8  # extend mode: the share of the taught views each new class must win against the base classes
# --base-data: the share of the base pictures (each folder weighing the same) that the classes taught now may take.
# On the validation split (500 base pictures a class, k = 10) 1.75% and 1.9% cost the base classes 1.39 and 1.54
# points and won 32.3% and 33.7% of the new classes' pictures; 1.5% is the default, a little safer.
COST = 0.015


@dataclass(frozen=True)
class References:
    """Pictures of the base's own classes (`--base-data`): embeddings (n, views, dim), base logits (n, views,
    classes), and the index of the folder (base class) each came from."""

    embedding: np.ndarray
    logits: np.ndarray
    folder: np.ndarray
    cost: float = COST  # the share of them the classes taught now may take

    @property
    def weight(self) -> np.ndarray:
        """Each picture's weight: every folder (base class) weighs the same, however many pictures it holds."""
        return 1.0 / np.bincount(self.folder)[self.folder]


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
    references: References | None = None,
) -> Head:
    """The head for `embeddings` {label: (embedding (n, views, dim), base logits (n, views, classes))}, added to
    what `prior` (a taught base's head) already knows. With `references` (embeddings and base logits of pictures
    of the base's own classes), extend mode fits the taught rows against them; without, it imprints and
    calibrates."""
    labels = list(prior.labels) if prior is not None else []
    sums = list(prior.sums) if prior is not None else []
    shots = list(prior.shots) if prior is not None else []
    bias = list(prior.bias) if prior is not None else []
    for label, (emb, _) in embeddings.items():
        units = unit(emb)
        total = units.mean(axis=1).sum(axis=0)  # one picture counts once, however many views the model runs
        if label in labels:
            i = labels.index(label)
            sums[i], shots[i] = sums[i] + total, shots[i] + len(emb)
        else:
            labels.append(label)
            sums.append(total)
            shots.append(len(emb))
            bias.append(base.bias if mode == "extend" else 0.0)
    head = Head(
        mode=mode,
        labels=tuple(labels),
        base_labels=base_labels,
        sums=np.stack(sums).astype(np.float32),
        shots=tuple(shots),
        bias=np.asarray(bias, dtype=np.float32),
        view_weights=tuple(view_weights),
        base_norm=base.norm,
        base_bias=base.bias,
    )
    if mode == "replace":
        return head
    if references is not None:
        return _fit(head, embeddings, references, prior)
    if prior is not None and prior.rows is not None:
        raise TeachError("the base was taught with --base-data; teach it again with --base-data")
    return _calibrate(head, embeddings)


def _fit(
    head: Head,
    embeddings: dict[str, tuple[np.ndarray, np.ndarray]],
    references: References,
    prior: Head | None,
) -> Head:
    """The rows of the classes pictured now, fitted against the references beside the base logits (`linearfit`).

    Classes an earlier teach fitted and not pictured now keep their rows, and score beside the base's logits
    in the fit. A class pictured again starts from, and is held near, its earlier row: what its earlier
    pictures taught is kept in that row, since the pictures themselves are not."""
    if prior is not None and prior.rows is None:
        raise TeachError(
            "the base's taught classes were imprinted, not fitted against base pictures (taught without "
            "--base-data, or by an older edgeclf): teach it again without --base-data, or teach the original model "
            "with all the pictures and --base-data"
        )
    ref_emb, ref_logits = references.embedding, references.logits
    known = len(prior.labels) if prior is not None else 0
    rows = np.zeros_like(head.sums)
    bias = head.bias.copy()
    if prior is not None:
        rows[:known], bias[:known] = prior.rows, prior.bias
    fitted = [head.labels.index(label) for label in embeddings]
    kept = [i for i in range(len(head.labels)) if i not in fitted]
    again = np.array([i < known for i in fitted])  # pictured before: start from and stay near the earlier row

    def fixed(emb: np.ndarray, base: np.ndarray) -> np.ndarray:
        return np.concatenate([base, emb @ rows[kept].T + bias[kept]], axis=-1)

    samples, logits = [ref_emb], [fixed(ref_emb, ref_logits)]
    target = [np.full(len(ref_emb), -1)]
    weight = [references.weight]  # each base folder weighs as much as each taught class
    for j, (emb, base) in enumerate(embeddings.values()):
        samples.append(emb)
        logits.append(fixed(emb, base))
        target.append(np.full(len(emb), j))
        weight.append(np.full(len(emb), 1.0 / len(emb)))
    imprinted = unit(head.means[fitted]) * head.base_norm
    rows[fitted], bias[fitted] = fit_rows(
        np.concatenate(samples),
        np.concatenate(logits),
        np.concatenate(target),
        np.concatenate(weight),
        np.where(again[:, None], rows[fitted], imprinted),
        np.where(again, bias[fitted], head.base_bias),
        head.view_weights,
        anchor=np.where(again[:, None], rows[fitted], 0.0),
    )
    # then one shift of their biases sets how many base pictures they may take (--base-cost)
    taught = ref_emb @ rows[fitted].T + bias[fitted]
    try:
        bias[fitted] += budget_shift(
            logits[0], taught, references.weight, head.view_weights, references.cost, background_index(head.base_labels)
        )
    except ValueError as exc:
        raise TeachError(f"{exc}, above --base-cost {references.cost:.1%}: give more pictures of each class") from None
    return replace(head, rows=rows.astype(np.float32), bias=bias.astype(np.float32))


def base_taken(head: Head, references: References, labels: list[str]) -> float:
    """The share of the reference pictures (each folder weighing the same) that `head` shows as one of `labels`
    (a background class is never shown)."""
    probs = head.probabilities(references.embedding, references.logits)
    background = background_index(head.all_labels)
    if background is not None:
        probs[:, background] = -1.0
    predicted = np.array(head.all_labels)[probs.argmax(axis=1)]
    weight = references.weight
    return float(weight[np.isin(predicted, labels)].sum() / weight.sum())


def _calibrate(head: Head, embeddings: dict[str, tuple[np.ndarray, np.ndarray]]) -> Head:
    """Set each newly pictured class's bias so that `COVER` of its pictures' views score above every base class.

    Each picture is scored by the class as taught without it (leave one out; with a single picture, each view
    against the others): a picture always looks like a mean it is part of, and a bias set from that optimism
    lets the class win nothing new. The taught classes' scores move together with the bias, so their order
    among themselves is kept."""
    bias = head.bias.copy()
    for label, (emb, logits) in embeddings.items():
        i = head.labels.index(label)
        n, views = emb.shape[:2]
        units = unit(emb)
        margins = []
        if n == 1 and views == 1:
            groups = [(np.s_[0:1, 0:1], 0.0)]  # nothing to leave out: the picture against its own mean
        elif n == 1:
            groups = [(np.s_[0:1, v : v + 1], 1.0 / views) for v in range(views)]
        else:
            groups = [(np.s_[j : j + 1, :], 1.0) for j in range(n)]
        for part, weight in groups:
            left = units[part].sum(axis=(0, 1)) / units[part].shape[1] * weight
            sums, shots = head.sums.copy(), list(head.shots)
            sums[i] -= left
            shots[i] -= weight
            loo = replace(head, sums=sums, shots=tuple(shots)) if weight else head
            own = loo.taught_logits(emb[part].astype(np.float32))[..., i] - head.bias[i]
            margins.append((own - logits[part].max(axis=-1)).reshape(-1))
        bias[i] = -float(np.quantile(np.concatenate(margins), 1.0 - COVER))
    return replace(head, bias=bias.astype(np.float32))
