"""A taught classifier head: the numpy layer `edgeclf teach` stores in a model's metadata.

The model file's outputs are the embedding (and, when the base classes are kept, the base head's logits);
this head turns them into one probability vector per image. Each test-time view is scored on its own and
the views' probabilities are averaged with their weights, as our models do inside the graph.
"""

from __future__ import annotations

import base64
from dataclasses import dataclass
from typing import Any

import numpy as np

from edgeclf.edge_app.errors import MetadataError

MODES = ("replace", "extend")
# the head's kind, written as its "method": a reader refuses one it does not know instead of scoring it with
# the wrong formula (an edgeclf that knew only "imprint" would score a fitted head's rows as imprinted ones)
IMPRINTED, FITTED = "imprint", "linearfit"
METHODS = (IMPRINTED, FITTED)
TEMPERATURE = 16.0  # logits = 16 x cosine: a clear margin of 0.2 in cosine is 96% against 4%
BACKGROUNDS = ("background", "???", "__background__")  # TF-slim's extra first class, never a prediction


def background_index(labels: tuple[str, ...] | list[str]) -> int | None:
    """Index of a background class (never reported as a prediction), if the labels have one."""
    return 0 if labels and labels[0].lower() in BACKGROUNDS else None


def encode(array: np.ndarray) -> str:
    """float32 little-endian bytes, base64: a 256 x 10 head is 14 kB of JSON instead of 50."""
    return base64.b64encode(np.ascontiguousarray(array, dtype="<f4").tobytes()).decode("ascii")


def decode(text: Any, shape: tuple[int, ...], what: str) -> np.ndarray:
    """The array `encode` wrote; MetadataError when it is not `shape`."""
    try:
        raw = base64.b64decode(str(text), validate=True)
    except ValueError:
        raise MetadataError(f"head {what} is not base64") from None
    values = np.frombuffer(raw, dtype="<f4")
    if values.size != int(np.prod(shape)) or not np.all(np.isfinite(values)):
        raise MetadataError(f"head {what} holds {values.size} values, expected finite {list(shape)}")
    return values.reshape(shape).astype(np.float32)


@dataclass(frozen=True)
class Head:
    """Taught classes scored on the embedding; in extend mode appended to the base model's own classes
    (`base_labels`, whose logits are the model's second output).

    What is stored is what the pictures gave: each class's sum of unit-length embeddings (one image counts once,
    however many views it has) and its count, so that teaching more pictures of a class later updates its mean instead
    of forgetting the earlier ones; the scoring rows are derived from the means:

    - every mode: rel_c = cos(u - m, mean_c - m), u = e / |e|, m the mean of the class means (SimpleShot's
      CL2N: ReLU embeddings share a large common part that would make every class look alike);
    - replace: logits = TEMPERATURE x rel;
    - extend: the base classes keep the base model's logits; a taught class scores like a row of the base head,
      base_norm x (e . unit(mean_c)) + bias_c (the base rows' mean norm, its bias calibrated by `imprint` so the
      class wins most of its own pictures and little else), plus TEMPERATURE x (rel_c - mean of rel) to tell the
      taught classes apart;
    - extend with `rows` (taught with pictures of the base classes): a dense layer, e . rows_c + bias_c, fitted
      against the base logits by `linearfit`.
    """

    mode: str
    labels: tuple[str, ...]
    base_labels: tuple[str, ...]
    sums: np.ndarray
    shots: tuple[float, ...]
    bias: np.ndarray
    view_weights: tuple[float, ...]
    base_norm: float
    base_bias: float
    rows: np.ndarray | None = None

    def __post_init__(self) -> None:
        if self.mode not in MODES:
            raise MetadataError(f"head mode must be one of {MODES}, got {self.mode!r}")
        n = len(self.labels)
        if not n or self.sums.ndim != 2 or len(self.sums) != n or self.bias.shape != (n,) or len(self.shots) != n:
            raise MetadataError("head labels, sums, shots and bias disagree in length")
        if any(s <= 0 for s in self.shots):
            raise MetadataError("every taught class needs at least one picture")
        if self.mode == "extend" and not self.base_labels:
            raise MetadataError("an extend head needs the base model's labels")
        if not self.view_weights or any(w <= 0 for w in self.view_weights):
            raise MetadataError("head view weights must be positive")
        if self.rows is not None and (self.mode != "extend" or self.rows.shape != self.sums.shape):
            raise MetadataError(f"head rows must be an extend head's {list(self.sums.shape)}")

    @property
    def dim(self) -> int:
        return int(self.sums.shape[1])

    @property
    def all_labels(self) -> tuple[str, ...]:
        """The labels the taught model reports, in score order."""
        return (*self.base_labels, *self.labels) if self.mode == "extend" else self.labels

    @property
    def means(self) -> np.ndarray:
        return self.sums / np.asarray(self.shots, dtype=np.float32)[:, None]

    def taught_logits(self, embedding: np.ndarray) -> np.ndarray:
        """Embeddings (..., dim) -> the taught classes' logits (..., classes), bias included."""
        if self.rows is not None:
            return embedding @ self.rows.T + self.bias
        means = self.means
        center = means.mean(axis=0)
        rel = unit(unit(embedding) - center) @ unit(means - center).T
        if self.mode == "replace":
            return TEMPERATURE * rel + self.bias
        gate = self.base_norm * (embedding @ unit(means).T) + self.bias
        return gate + TEMPERATURE * (rel - rel.mean(axis=-1, keepdims=True))

    def logits(self, embedding: np.ndarray, base_logits: np.ndarray | None) -> np.ndarray:
        """Embeddings (n, views, dim) and, in extend mode, the base logits (n, views, base classes) -> the
        logits of every class for each view (n, views, classes)."""
        if embedding.ndim != 3 or embedding.shape[1:] != (len(self.view_weights), self.dim):
            raise MetadataError(
                f"the model's embedding output is {list(embedding.shape[1:])} per image, "
                f"the head expects {len(self.view_weights)} view(s) of {self.dim}"
            )
        logits = self.taught_logits(embedding.astype(np.float32))
        if self.mode == "extend":
            if base_logits is None or base_logits.shape[-1] != len(self.base_labels):
                raise MetadataError(f"an extend head needs the base model's {len(self.base_labels)} logits")
            logits = np.concatenate([base_logits.astype(np.float32), logits], axis=-1)
        return logits

    def probabilities(self, embedding: np.ndarray, base_logits: np.ndarray | None) -> np.ndarray:
        """The model's outputs for a batch -> probabilities (n, classes): a softmax per view, then the views'
        weighted average."""
        return view_probabilities(self.logits(embedding, base_logits), self.view_weights)

    def to_dict(self) -> dict[str, Any]:
        return {
            "method": IMPRINTED if self.rows is None else FITTED,
            "mode": self.mode,
            "labels": list(self.labels),
            "base_labels": list(self.base_labels),
            "dim": self.dim,
            "view_weights": list(self.view_weights),
            "shots": list(self.shots),
            "bias": [float(b) for b in self.bias],
            "base_norm": self.base_norm,
            "base_bias": self.base_bias,
            "sums": encode(self.sums),
            **({} if self.rows is None else {"rows": encode(self.rows)}),
        }

    @classmethod
    def from_dict(cls, data: Any) -> Head:
        """Validate the JSON form; a one-line MetadataError for anything malformed."""
        if not isinstance(data, dict):
            raise MetadataError("metadata head is not a JSON object")
        method = data.get("method")
        if method not in METHODS:
            raise MetadataError(f"unknown head method {method!r} (this version knows {', '.join(METHODS)})")
        if (method == FITTED) != ("rows" in data):
            raise MetadataError(f"a head of method {method!r} {'needs' if method == FITTED else 'has no'} rows")
        try:
            labels = tuple(data["labels"])
            return cls(
                mode=str(data["mode"]),
                labels=labels,
                base_labels=tuple(data.get("base_labels", ())),
                sums=decode(data["sums"], (len(labels), int(data["dim"])), "sums"),
                shots=tuple(int(s) for s in data["shots"]),
                bias=np.asarray(data["bias"], dtype=np.float32).reshape(-1),
                view_weights=tuple(float(w) for w in data["view_weights"]),
                base_norm=float(data["base_norm"]),
                base_bias=float(data["base_bias"]),
                rows=None if "rows" not in data else decode(data["rows"], (len(labels), int(data["dim"])), "rows"),
            )
        except (KeyError, TypeError, ValueError) as exc:
            raise MetadataError(f"malformed head in metadata: {type(exc).__name__}: {exc}") from None


def view_probabilities(logits: np.ndarray, view_weights: tuple[float, ...]) -> np.ndarray:
    """Logits (n, views, classes) -> probabilities (n, classes): a softmax per view, then the views' weighted
    average, as our models combine their in-graph test-time views."""
    z = logits - logits.max(axis=-1, keepdims=True)
    probs = np.exp(z)
    probs /= probs.sum(axis=-1, keepdims=True)
    w = np.asarray(view_weights, dtype=np.float32)
    return np.einsum("v,nvc->nc", w / w.sum(), probs)


def unit(x: np.ndarray) -> np.ndarray:
    """Each vector along the last axis scaled to length 1 (a zero vector stays zero)."""
    return x / np.maximum(np.linalg.norm(x, axis=-1, keepdims=True), 1e-12)
